#!/usr/bin/env python3
"""Soak test (not in CI): `hearth serve` under 16 clients for 10 minutes, mixed routes and
dialects (OpenAI chat and completions, Ollama chat and generate, Anthropic messages,
streamed and not), with cancellations (a stream dropped after a few chunks) and slow
readers (a pause between chunks). Reports requests, errors, the server's RSS over time,
and the engine's state at the end, which must be idle.

    cargo build --release
    scripts/soak.py [--minutes 10] [--clients 16] [--bin target/release/hearth]
"""

import argparse
import http.client
import json
import random
import re
import subprocess
import threading
import time

MODEL = "smollm2-135m-instruct"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def request(port, rng):
    """One random request; returns 'ok', 'cancelled' or an error description."""
    n = rng.randint(8, 128)
    stream = rng.random() < 0.6
    q = [{"role": "user", "content": rng.choice(["Tell me a story.", "Name three colors.",
                                                 "Explain rain.", "Write a haiku."])}]
    kind = rng.choice(["chat", "completions", "ollama_chat", "ollama_generate", "anthropic"])
    path, body = {
        "chat": ("/v1/chat/completions", {"model": MODEL, "messages": q, "max_tokens": n, "stream": stream}),
        "completions": ("/v1/completions", {"model": MODEL, "prompt": q[0]["content"], "max_tokens": n, "stream": stream}),
        "ollama_chat": ("/api/chat", {"model": MODEL, "messages": q, "stream": stream, "options": {"num_predict": n}}),
        "ollama_generate": ("/api/generate", {"model": MODEL, "prompt": q[0]["content"], "stream": stream,
                                              "options": {"num_predict": n}}),
        "anthropic": ("/v1/messages", {"model": MODEL, "messages": q, "max_tokens": n, "stream": stream}),
    }[kind]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return f"{kind}: HTTP {r.status} {r.read()[:200]!r}"
        if not stream:
            r.read()
            return "ok"
        cancel = rng.random() < 0.15
        slow = rng.random() < 0.15
        for i, line in enumerate(r):
            if b'"error"' in line and b"event: error" not in line:
                return f"{kind}: error in stream {line[:200]!r}"
            if cancel and i > 3:
                return "cancelled"  # closing the connection cancels the sequence
            if slow:
                time.sleep(0.05)
        return "ok"
    except (OSError, http.client.HTTPException) as e:
        return f"{kind}: {e!r}"
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--bin", default="target/release/hearth")
    ap.add_argument("--port", type=int, default=18080)
    a = ap.parse_args()
    server = subprocess.Popen([a.bin, "serve", "--port", str(a.port), "--parallel", "16", "-t", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        end = time.monotonic() + a.minutes * 60
        counts, errors, lock = {"ok": 0, "cancelled": 0}, [], threading.Lock()

        def client(i):
            rng = random.Random(i)
            while time.monotonic() < end:
                out = request(a.port, rng)
                with lock:
                    if out in counts:
                        counts[out] += 1
                    else:
                        errors.append(out)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        for t in threads:
            t.start()
        rss = []
        while any(t.is_alive() for t in threads):
            rss.append(rss_mib(server.pid))
            time.sleep(10)
        for t in threads:
            t.join()
        time.sleep(2)
        m = metrics(a.port)
        rss.append(rss_mib(server.pid))
        print(f"minutes {a.minutes}, clients {a.clients}: {counts['ok']} requests completed, "
              f"{counts['cancelled']} cancelled on purpose, {len(errors)} errors")
        for e in errors[:10]:
            print("  error:", e)
        print(f"RSS MiB: first {rss[0]:.1f}, after a minute {rss[min(6, len(rss) - 1)]:.1f}, "
              f"max {max(rss):.1f}, last {rss[-1]:.1f}")
        print(f"at the end: running {m['hearth_requests_running']:.0f}, waiting {m['hearth_requests_waiting']:.0f}, "
              f"KV blocks used {m['hearth_kv_cache_blocks_used']:.0f}, "
              f"generated tokens {m['hearth_generation_tokens_total']:.0f}, "
              f"cancelled {m['hearth_requests_cancelled_total']:.0f}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
