"""Hostile inputs that used to freeze or kill the server: a chat template that loops for
ever, request bodies of megabytes of blanks, and KV pools the machine cannot hold."""

import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import HEARTH_BIN, MODEL, Server, default_model_path
import gguf_edit

LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
# A liveness bound, not a speed measurement: /health waits on nothing but the scheduler.
HEALTH_S = 0.5


def health_latency(server):
    t0 = time.monotonic()
    status, _ = server.request("GET", "/health", timeout=30)
    assert status == 200
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def looping(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "loop.gguf"
    gguf_edit.with_metadata(default_model_path(), path, {"tokenizer.chat_template": LOOP})
    s = Server(["-m", str(path), "--parallel", "4"])
    yield s
    s.stop()


def test_a_looping_template_fails_its_request_and_nothing_else(looping):
    name = os.path.basename(looping.args[1]).removesuffix(".gguf")
    results = []

    def chat():
        results.append(looping.post_json("/v1/chat/completions", {
            "model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))

    threads = [threading.Thread(target=chat) for _ in range(4)]
    for t in threads:
        t.start()
    worst = max(health_latency(looping) for _ in range(10))
    for t in threads:
        t.join()
    assert worst < HEALTH_S, worst
    for status, body in results:
        assert status == 400, body
        assert "runs too long" in body["error"]["message"], body
    status, body = looping.post_json("/api/chat", {
        "model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    assert status == 400 and "runs too long" in body["error"], body
    # Raw completions do not use the template: still served.
    status, body = looping.post_json("/v1/completions", {
        "model": name, "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0})
    assert status == 200, body


def test_megabytes_of_blanks_do_not_stall_health(server):
    results = []

    def send():
        results.append(server.post_json("/v1/completions", {
            "model": MODEL, "prompt": " " * ((4 << 20) - 200), "max_tokens": 1}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    worst = max(health_latency(server) for _ in range(10))
    for t in threads:
        t.join()
    assert worst < HEALTH_S, worst
    for status, body in results:
        # The prompt is longer than the context: a clean 400.
        assert status == 400, body


@pytest.mark.parametrize("args", [
    ["-c", "100000000"],
    ["--kv-blocks", "1000000000"],
    ["--kv-memory", "100000000"],
])
def test_a_kv_pool_the_machine_cannot_hold_exits_1_before_ready(args):
    p = subprocess.run([HEARTH_BIN, "serve", "--port", "0", "-t", "1", *args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "KV cache" in p.stderr, p.stderr
    assert "ready in" not in p.stderr and "listening" not in p.stderr, p.stderr


def test_openai_routes_without_v1_and_one_model(server):
    import openai
    bare = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=60)
    r = bare.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                     max_tokens=3, temperature=0)
    assert r.choices[0].message.content
    assert bare.completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices[0].text is not None
    assert [m.id for m in bare.models.list().data][0] == MODEL
    assert server.openai().models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        server.openai().models.retrieve("no-such-model")


def test_http_edges_get_clear_errors(server):
    # A wrong method: 405 with a JSON error; an unknown Ollama route: Ollama's shape.
    status, body = server.request("DELETE", "/v1/models")
    assert status == 405 and "error" in json.loads(body)
    status, body = server.request("GET", "/api/nothing")
    assert status == 404 and isinstance(json.loads(body)["error"], str)
    # A declared length over --max-body is refused before any body is sent.
    import http.client
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Length", str(10 ** 12))
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413, r.read()
    conn.close()
    # A malformed chunked body is a 400, not a 413.
    s = socket.create_connection((server.host, server.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n")
    head = s.recv(200)
    s.close()
    assert head.startswith(b"HTTP/1.1 400"), head
    # Ollama's repeat_last_n -1: the whole context.
    status, body = server.post_json("/api/generate", {
        "model": MODEL, "prompt": "Hi", "stream": False,
        "options": {"repeat_last_n": -1, "repeat_penalty": 1.2, "num_predict": 3}})
    assert status == 200, body


def test_a_stream_cut_by_the_drain_ends_in_an_error(tmp_path):
    import signal
    s = Server(["--drain", "1", "--parallel", "4"])
    try:
        def stream(path, body):
            conn = http.client.HTTPConnection(s.host, s.port, timeout=60)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            return conn.getresponse()

        long = {"model": MODEL, "max_tokens": 4000, "ignore_eos": True, "stream": True}
        oai = stream("/v1/chat/completions", {**long, "messages": [{"role": "user", "content": "Hi"}]})
        # Ollama has no ignore_eos: a schema keeps the answer going.
        endless = {"type": "object", "properties": {"s": {"type": "string", "minLength": 100000}},
                   "required": ["s"]}
        oll = stream("/api/generate", {"model": MODEL, "prompt": "Hi", "format": endless,
                                       "options": {"num_predict": 4000}})
        ant = stream("/v1/messages", {"model": MODEL, "max_tokens": 4000, "stream": True,
                                      "messages": [{"role": "user", "content": "Hi"}],
                                      "output_config": {"format": {"type": "json_schema", "schema": endless}}})
        for r in (oai, oll, ant):
            assert r.status == 200
            r.readline()
        s.proc.send_signal(signal.SIGTERM)
        texts = [r.read().decode() for r in (oai, oll, ant)]
        assert s.proc.wait(30) == 0
    finally:
        s.stop()
    oai_text, oll_text, ant_text = texts
    assert "[DONE]" not in oai_text and '"server_error"' in oai_text.strip().splitlines()[-1]
    last = json.loads(oll_text.strip().splitlines()[-1])
    assert "error" in last and not last.get("done")
    assert "event: error" in ant_text and "message_stop" not in ant_text


def closed_by_server(c):
    """Whether the server closes `c` within 5 s (whatever it sends first)."""
    c.settimeout(5)
    try:
        while c.recv(1024):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_half_open_connections_are_closed_and_capped():
    """1,000 connections that send half a header, and one that sends half a body, are
    closed by the read timeout while normal requests are served; past
    --max-connections a new connection is closed at once."""
    s = Server(["--parallel", "4", "--read-timeout", "2", "--max-connections", "1100"])
    socks = []
    try:
        for _ in range(1000):
            c = socket.create_connection((s.host, s.port), timeout=30)
            c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-")
            socks.append(c)
        body = socket.create_connection((s.host, s.port), timeout=30)
        body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"model\":")
        # Served meanwhile.
        status, _ = s.post_json("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert status == 200
        time.sleep(4)
        closed = sum(closed_by_server(c) for c in socks)
        assert closed == 1000, closed
        body.settimeout(5)
        head = body.recv(200)
        assert head.startswith(b"HTTP/1.1 408"), head
    finally:
        for c in socks:
            c.close()
        s.stop()
    capped = Server(["--parallel", "2", "--max-connections", "3"])
    try:
        time.sleep(1)  # the start-up's /health connections are closed and given back
        held = [socket.create_connection((capped.host, capped.port), timeout=30) for _ in range(3)]
        time.sleep(0.5)
        extra = socket.create_connection((capped.host, capped.port), timeout=30)
        assert closed_by_server(extra)
        for h in held:
            h.close()
        time.sleep(0.5)
        status, _ = capped.post_json("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert status == 200
    finally:
        capped.stop()


def test_a_final_assistant_message_is_continued(oai, oll):
    q = [{"role": "user", "content": "Name three colors."}]
    pieces = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=MODEL, messages=q, max_tokens=20, temperature=0, stream=True) if c.choices]
    pieces = [p for p in pieces if p]
    whole, prefix = "".join(pieces), "".join(pieces[:4])
    r = oai.chat.completions.create(model=MODEL, max_tokens=16, temperature=0,
                                    messages=q + [{"role": "assistant", "content": prefix}])
    assert whole.startswith(prefix + r.choices[0].message.content), (prefix, r.choices[0].message.content)
    o = oll.chat(model=MODEL, messages=q + [{"role": "assistant", "content": prefix}],
                 options={"temperature": 0, "num_predict": 16, "repeat_penalty": 1.0})
    assert o.message.content == r.choices[0].message.content


def test_prompt_endings_follow_add_generation_prompt_and_continue_final_message(server):
    q = [{"role": "user", "content": "Name three colors."}]
    pre = q + [{"role": "assistant", "content": "Red,"}]

    def prompt_tokens(messages, **switches):
        status, v = server.post_json("/v1/chat/completions", {
            "model": MODEL, "messages": messages, "max_tokens": 1, "temperature": 0, **switches})
        assert status == 200, v
        return v["usage"]["prompt_tokens"]

    def count(text):
        status, v = server.post_json("/tokenize", {"content": text})
        assert status == 200, v
        return len(v["tokens"])

    opening = count("<|im_start|>assistant\n")  # SmolLM2's ChatML turn opening
    opened = prompt_tokens(q)
    assert prompt_tokens(q, add_generation_prompt=False) == opened - opening
    continued = prompt_tokens(pre)
    assert prompt_tokens(pre, continue_final_message=True, add_generation_prompt=False) == continued
    # A new turn after the assistant's message: its turn is closed and another opened.
    assert prompt_tokens(pre, continue_final_message=False) == \
        continued + count("<|im_end|>\n") + opening
    for messages, switches in [(pre, {"continue_final_message": True, "add_generation_prompt": True}),
                               (q, {"continue_final_message": True})]:
        status, v = server.post_json("/v1/chat/completions", {
            "model": MODEL, "messages": messages, "max_tokens": 1, **switches})
        assert status == 400 and v["error"]["param"] == "continue_final_message", v


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/completions", {"model": MODEL, "prompt": "Hi"}),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False}),
    ("/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False}),
    ("/v1/messages", {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/responses", {"model": MODEL, "input": "Hi"}),
    ("/completion", {"prompt": "Hi"}),
])
def test_a_field_hearth_does_not_implement_is_refused_by_name(server, path, body):
    status, v = server.post_json(path, {**body, "frobnicate": 1})
    assert status == 400, v
    assert "frobnicate is not supported" in json.dumps(v), v
