#!/usr/bin/env python3
"""Embedding throughput through a running server (docs/perf.md): N sentences of about 20
tokens, each its own request to the OpenAI route /v1/embeddings, from C concurrent
clients; reports sentences per second (all sentences / wall time) over several rounds.
The same script measures any server with that route (hearth serve, llama-server
--embedding), so the two run side by side on the same GGUF and threads:

    hearth serve -m all-minilm --port 8080 -t 2 &
    scripts/bench-embeddings.py --port 8080
    llama-server -m ~/.cache/hearth/models/all-minilm-l6-v2-f32.gguf --embedding \\
        --pooling mean -t 2 -np 16 -c 8192 --port 8081 &
    scripts/bench-embeddings.py --port 8081

The sentences are tests/data/gpl-3.txt cut into runs of 15 words (about 20 word pieces
with [CLS] and [SEP]), from the start again when the text runs out; every response is checked to
carry one vector per request.
"""

import argparse
import http.client
import json
import queue
import statistics
import threading
import time
from pathlib import Path

TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "gpl-3.txt"


def sentences(n):
    words = TEXT.read_text().split()
    return [" ".join(words[(i * 15 + j) % len(words)] for j in range(15)) for i in range(n)]


def client(args, work, counts):
    conn = http.client.HTTPConnection(args.host, args.port, timeout=600)
    while True:
        try:
            s = work.get_nowait()
        except queue.Empty:
            break
        body = json.dumps({"model": args.model, "input": s})
        conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, data[:300]
        assert len(json.loads(data)["data"]) == 1
        counts.append(1)
    conn.close()


def round_(args, texts):
    work = queue.Queue()
    for t in texts:
        work.put(t)
    counts = []
    threads = [threading.Thread(target=client, args=(args, work, counts)) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    assert len(counts) == len(texts), (len(counts), len(texts))
    return len(texts) / dt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--model", default="all-minilm-l6-v2")
    p.add_argument("-n", "--sentences", type=int, default=1000)
    p.add_argument("-c", "--clients", type=int, default=16)
    p.add_argument("-r", "--rounds", type=int, default=3)
    args = p.parse_args()
    texts = sentences(args.sentences)
    round_(args, texts[:50])  # warm-up
    rates = [round_(args, texts) for _ in range(args.rounds)]
    print(json.dumps({"port": args.port, "sentences": len(texts), "clients": args.clients,
                      "sentences_per_s": [round(r, 1) for r in rates],
                      "median": round(statistics.median(rates), 1)}))


if __name__ == "__main__":
    main()
