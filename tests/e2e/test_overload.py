"""A server that can take no more: with one sequence running and one place to wait
(--parallel 1 --max-waiting 1), of four requests sent at once exactly two are taken and
the others refused (503 with Retry-After, OpenAI's error shape); the server keeps
serving. And a burst on an idle server with places for all is taken whole."""

import http.client
import json
import threading

from conftest import MODEL, Server, check_openai_error

N = 4


def test_overload_is_refused_cleanly():
    s = Server(["--parallel", "1", "--max-waiting", "1"])
    try:
        alone = s.openai().completions.create(model=MODEL, prompt="Hello", temperature=0,
                                              max_tokens=8).choices[0].text
        payload = json.dumps({"model": MODEL, "prompt": "Tell me a long story.",
                              "max_tokens": 200, "temperature": 0, "ignore_eos": True,
                              "stream": True})
        sent, answered = threading.Barrier(N), threading.Barrier(N)
        outcome = [None] * N

        def client(i):
            conn = http.client.HTTPConnection(s.host, s.port, timeout=120)
            try:
                sent.wait()
                conn.request("POST", "/v1/completions", body=payload,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status == 200:
                    first = resp.readline()
                    outcome[i] = (200, first)
                else:
                    assert resp.getheader("Retry-After") == "1", resp.status
                    outcome[i] = (resp.status, json.loads(resp.read()))
                # Nobody hangs up before every request has its answer, so the running
                # and the waiting requests hold their places while the others arrive.
                answered.wait()
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert all(o is not None for o in outcome), outcome
        statuses = sorted(o[0] for o in outcome)
        assert statuses.count(200) == 2, statuses
        for status, body in outcome:
            if status != 200:
                assert status in (429, 503), outcome
                check_openai_error(status, body, status)
        again = s.openai().completions.create(model=MODEL, prompt="Hello", temperature=0,
                                              max_tokens=8).choices[0].text
        assert again == alone
    finally:
        s.stop()


def test_a_burst_with_places_for_all_is_taken(server):
    # The main server runs 32 at once: 32 simultaneous requests are all served.
    results = []

    def one(i):
        results.append(server.post_json("/v1/completions", {
            "model": MODEL, "prompt": f"Count {i}", "max_tokens": 2})[0])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [200] * 32, results
