#!/usr/bin/env python3
"""The cost of constrained decoding on a running `hearth serve` (docs/perf.md).

Runs the same load with and without a JSON schema, alternating, several rounds:
- 1 stream: time per generated token (between the first and the last streamed token);
- N streams at once: aggregate generated tokens per second (all tokens / wall time).

Every request generates exactly --tokens tokens: the unconstrained ones with
`ignore_eos`, the constrained ones under a schema whose string must be longer than that
(so the grammar is never complete first). Sampling at temperature 0.8.

    hearth serve --port 8080 --parallel 16 &
    scripts/bench-constraints.py --port 8080
"""

import argparse
import http.client
import json
import statistics
import threading
import time

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": 60},
                   "story": {"type": "string", "minLength": 4000}},
    "required": ["title", "story"],
}


def one(args, constrained, seed, out):
    body = {"model": args.model, "stream": True, "stream_options": {"include_usage": True},
            "temperature": 0.8, "seed": seed,
            "max_tokens": args.tokens,
            "messages": [{"role": "user", "content": "Write a long story as JSON."}]}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}
    else:
        body["ignore_eos"] = True
    conn = http.client.HTTPConnection(args.host, args.port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    first = last = None
    n = 0
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            n = chunk["usage"]["completion_tokens"]
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
    conn.close()
    out.append((t0, first, last, n))


def run(args, constrained, streams, round_no):
    out = []
    threads = [threading.Thread(target=one, args=(args, constrained, 1000 * round_no + i, out))
               for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(r[3] for r in out)
    assert all(r[3] == args.tokens for r in out), [r[3] for r in out]
    per_token = statistics.mean((r[2] - r[1]) / max(1, r[3] - 1) for r in out)
    return total / wall, per_token * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run(args, False, 1, 99)  # warm-up
    run(args, True, 1, 99)
    rows = {}
    for r in range(args.rounds):
        for constrained in (False, True):
            for streams in (1, args.parallel):
                rows.setdefault((constrained, streams), []).append(run(args, constrained, streams, r))
    print("| load | unconstrained | JSON schema | ratio |")
    print("|---|---|---|---|")
    for streams in (1, args.parallel):
        free = [x for x in rows[(False, streams)]]
        cons = [x for x in rows[(True, streams)]]
        if streams == 1:
            a = statistics.median(x[1] for x in free)
            b = statistics.median(x[1] for x in cons)
            print(f"| 1 stream, ms per token | {a:.2f} | {b:.2f} | {b / a:.3f} |")
        else:
            a = statistics.median(x[0] for x in free)
            b = statistics.median(x[0] for x in cons)
            print(f"| {streams} streams, aggregate tokens/s | {a:.1f} | {b:.1f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
