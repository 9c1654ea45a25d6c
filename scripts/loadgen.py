#!/usr/bin/env python3
"""Load generator for an OpenAI-compatible completions server (Hearth, or llama-server for
comparison). Standard library only.

For each concurrency N it starts N clients at once; each sends --requests-per-client
streaming POST /v1/completions requests one after another, each with a fixed prompt of
about --prompt-tokens tokens (a request number in front, so no two requests share a
cached prefix; with --shared-prefix the number goes at the end instead, so every request
shares the rest), max_tokens --max-tokens, temperature 0, ignore_eos, and
stream_options.include_usage. It reports per N:

  agg tok/s      all completion tokens of the batch / wall time of the batch
  TTFT p50/p99   time from sending the request to its first streamed token
  stream tok/s   median over requests of (completion tokens - 1) / (last token time -
                 first token time): the decode rate a client sees after its first token
  failures       requests that got an HTTP error, a broken stream, or no [DONE]

Tokens are counted from the usage the server sends; without usage, content chunks.

Usage:
  scripts/loadgen.py --url http://127.0.0.1:8080 --concurrency 1,4,16,64 --label hearth \\
      --json hearth.json
  scripts/loadgen.py --url http://127.0.0.1:8081 --model whatever --label llama.cpp
  # Options: --model NAME (default smollm2-135m-instruct), --max-tokens 128,
  # --prompt-tokens 100, --requests-per-client 1, --api-key KEY, --timeout 600,
  # --no-warmup. Several --url/--label pairs run one after the other into one table:
  scripts/loadgen.py --url http://127.0.0.1:8080 --label hearth \\
      --url http://127.0.0.1:8081 --label llama.cpp --concurrency 1,4

The table goes to stdout (markdown); --json OUT writes every figure, with the settings.
Run it on a machine nothing else is loading: the figures are only as quiet as the machine.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank. "
SENTENCE_TOKENS = 15  # about, for the usual BPE vocabularies; the frame adds about 9


# Distinct per run and per request, so no request finds another's prompt (from this run or
# an earlier one) in a server's prompt cache.
RUN_ID = f"{time.time_ns() % 1_000_000_007:x}"
REQUEST_NO = iter(range(1 << 62))


def make_prompt(i, prompt_tokens, shared_prefix=False):
    n = max(1, round((prompt_tokens - 9) / SENTENCE_TOKENS))
    if shared_prefix:
        # The same long start for every request (a shared system prompt or an earlier
        # conversation); only the last words differ.
        return SENTENCE * n + f"Now continue the story, part {i}:"
    return f"Request {RUN_ID}-{next(REQUEST_NO)}. " + SENTENCE * n + "Now continue the story:"


class Result:
    __slots__ = ("ok", "error", "t_send", "t_first", "t_last", "tokens", "chunks")

    def __init__(self):
        self.ok = False
        self.error = None
        self.t_send = self.t_first = self.t_last = None
        self.tokens = None
        self.chunks = 0


def one_request(target, args, i):
    r = Result()
    payload = {
        "model": args.model,
        "prompt": make_prompt(i, args.prompt_tokens, args.shared_prefix),
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=args.timeout)
    try:
        r.t_send = time.perf_counter()
        conn.request("POST", target.path.rstrip("/") + "/v1/completions", body=body,
                     headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            r.error = f"HTTP {resp.status}: {resp.read(300).decode('utf-8', 'replace')}"
            return r
        done = False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                r.error = f"error event: {event['error']}"
                return r
            now = time.perf_counter()
            for choice in event.get("choices") or []:
                if choice.get("text"):
                    r.chunks += 1
                    if r.t_first is None:
                        r.t_first = now
                    r.t_last = now
            usage = event.get("usage")
            if usage and usage.get("completion_tokens") is not None:
                r.tokens = usage["completion_tokens"]
        if not done:
            r.error = "stream ended without [DONE]"
            return r
        if r.tokens is None:
            r.tokens = r.chunks
        r.ok = r.t_first is not None
        if not r.ok:
            r.error = "no content streamed"
    except (OSError, http.client.HTTPException, ValueError) as e:
        r.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return r


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def run_batch(target, args, n, first_id):
    results = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def client(c):
        start.wait()
        for k in range(args.requests_per_client):
            res = one_request(target, args, first_id + c * args.requests_per_client + k)
            with lock:
                results.append(res)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0

    ok = [r for r in results if r.ok]
    ttft = [r.t_first - r.t_send for r in ok]
    per_stream = [(r.tokens - 1) / (r.t_last - r.t_first)
                  for r in ok if r.tokens > 1 and r.t_last > r.t_first]
    total_tokens = sum(r.tokens for r in ok)
    errors = [r.error for r in results if not r.ok]
    return {
        "concurrency": n,
        "requests": len(results),
        "failures": len(errors),
        "errors": errors[:5],
        "wall_s": wall,
        "completion_tokens": total_tokens,
        "agg_tok_s": total_tokens / wall if wall > 0 else None,
        "ttft_p50_ms": none_or(percentile(ttft, 50), 1000),
        "ttft_p99_ms": none_or(percentile(ttft, 99), 1000),
        "stream_tok_s_p50": statistics.median(per_stream) if per_stream else None,
        "content_chunks_per_request": statistics.mean([r.chunks for r in ok]) if ok else None,
    }


def none_or(x, scale):
    return None if x is None else x * scale


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", action="append", help="server base URL (repeatable)")
    ap.add_argument("--label", action="append", help="a name for each --url, in order")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=100)
    ap.add_argument("--shared-prefix", action="store_true",
                    help="every request starts with the same prompt and differs only at the end "
                         "(measures prefix caching: compare TTFT with a --no-prefix-cache server)")
    ap.add_argument("--requests-per-client", type=int, default=1)
    ap.add_argument("--api-key")
    ap.add_argument("--timeout", type=float, default=600, help="seconds, per request")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    urls = args.url or ["http://127.0.0.1:8080"]
    labels = args.label or []
    if len(labels) > len(urls):
        ap.error("more --label than --url")
    labels += [urllib.parse.urlsplit(u).netloc for u in urls[len(labels):]]
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if not levels or min(levels) < 1 or args.requests_per_client < 1:
        ap.error("concurrency levels and --requests-per-client must be >= 1")

    rows = []
    next_id = 0
    for url, label in zip(urls, labels):
        target = urllib.parse.urlsplit(url)
        if target.scheme != "http":
            ap.error(f"only http:// URLs: {url}")
        if not args.no_warmup:
            # A short request first; a server still loading (503) gets a minute.
            deadline = time.monotonic() + 60
            while True:
                w = one_request(target, argparse.Namespace(**{**vars(args), "max_tokens": 4}),
                                -1)
                if w.ok or not (w.error or "").startswith("HTTP 503") \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if not w.ok:
                print(f"{label}: warm-up request failed: {w.error}", file=sys.stderr)
                sys.exit(1)
        for n in levels:
            row = run_batch(target, args, n, next_id)
            next_id += n * args.requests_per_client
            row["label"] = label
            row["url"] = url
            rows.append(row)
            print(f"{label} N={n}: {fmt(row['agg_tok_s'])} tok/s, "
                  f"{row['failures']} failures", file=sys.stderr, flush=True)
            for e in row["errors"]:
                print(f"  {e}", file=sys.stderr)

    print(f"max_tokens {args.max_tokens}, prompt ~{args.prompt_tokens} tokens, "
          f"{args.requests_per_client} request(s) per client, temperature 0, ignore_eos\n")
    print("| server | N | requests | failures | agg tok/s | TTFT p50 ms | TTFT p99 ms "
          "| stream tok/s p50 | tokens | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['concurrency']} | {r['requests']} | {r['failures']} "
              f"| {fmt(r['agg_tok_s'])} | {fmt(r['ttft_p50_ms'], 0)} | {fmt(r['ttft_p99_ms'], 0)} "
              f"| {fmt(r['stream_tok_s_p50'])} | {r['completion_tokens']} | {fmt(r['wall_s'], 2)} |")
    if args.json:
        settings = {k: getattr(args, k) for k in
                    ("model", "max_tokens", "prompt_tokens", "requests_per_client")}
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "results": rows}, f, indent=2)
    sys.exit(1 if any(r["failures"] for r in rows) else 0)


if __name__ == "__main__":
    main()
