"""Health, tokenizer endpoints and Prometheus metrics."""

import json
import re

from conftest import MODEL, wait_for

METRICS = [
    "hearth_requests_running",
    "hearth_requests_waiting",
    "hearth_prompt_tokens_total",
    "hearth_generation_tokens_total",
    "hearth_kv_cache_usage_ratio",
]
HISTOGRAMS = [
    "hearth_time_to_first_token_seconds",
    "hearth_inter_token_latency_seconds",
    "hearth_e2e_request_latency_seconds",
]


def test_health(server):
    status, body = server.request("GET", "/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_tokenize_detokenize_round_trip(server):
    text = "Hello, world! Ünïcödé text, emoji 🌍, and numbers 12345."
    status, body = server.post_json("/tokenize", {"content": text})
    assert status == 200, body
    tokens = body["tokens"]
    assert tokens and all(isinstance(t, int) and t >= 0 for t in tokens)
    assert len(tokens) < len(text.encode())
    status, body = server.post_json("/detokenize", {"tokens": tokens})
    assert status == 200, body
    assert body["content"] == text


def test_tokenize_matches_usage(server, oai):
    """The prompt of a raw completion is exactly its tokenization."""
    prompt = "The quick brown fox jumps over the lazy dog"
    status, body = server.post_json("/tokenize", {"content": prompt})
    assert status == 200, body
    r = oai.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=1)
    assert r.usage.prompt_tokens == len(body["tokens"])


def test_metrics_names_and_types(server):
    status, text = server.request("GET", "/metrics")
    assert status == 200
    for name in METRICS:
        assert any(line.startswith(name) for line in text.splitlines()), name
    for name in HISTOGRAMS:
        assert f"# TYPE {name} histogram" in text, name
        assert f"{name}_bucket" in text, name
        assert f"{name}_count" in text, name
        assert f"{name}_sum" in text, name
    values = server.metrics()
    assert values["hearth_requests_running"] >= 0
    assert values["hearth_requests_waiting"] >= 0
    assert 0 <= values["hearth_kv_cache_usage_ratio"] <= 1


def test_metrics_counters_grow(server, oai):
    before = server.metrics()
    # A prompt no earlier request used, so no cached prefix covers all of it.
    r = oai.completions.create(model=MODEL, prompt="Metrics probe: zebra quantum marmalade",
                               temperature=0, max_tokens=5, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5

    def grown():
        after = server.metrics()
        return all(after[h + "_count"] > before[h + "_count"] for h in HISTOGRAMS) and after

    after = wait_for(grown) or server.metrics()
    assert after["hearth_generation_tokens_total"] - before["hearth_generation_tokens_total"] >= 5
    assert after["hearth_prompt_tokens_total"] > before["hearth_prompt_tokens_total"]
    for name in HISTOGRAMS:
        assert after[name + "_count"] > before[name + "_count"], name
        assert after[name + "_sum"] >= before[name + "_sum"], name


def test_gateway_metrics_rise_under_load_and_fall_back(server):
    """The vLLM-named series inference gateways read: running and waiting counts and KV
    utilization (a fraction) rise with 40 streams on 32 places, and fall back to 0."""
    import threading
    import time as _time

    def raw():
        status, text = server.request("GET", "/metrics")
        assert status == 200
        return text

    # Every series carries the model's label beside its own.
    assert re.search(r'vllm:cache_config_info\{model="[^"]+",block_size="16"\} 1', raw()), raw()
    done = threading.Event()
    peak = {"running": 0, "waiting": 0, "usage": 0.0}

    def watch():
        while not done.is_set():
            m = server.metrics()
            peak["running"] = max(peak["running"], m["vllm:num_requests_running"])
            peak["waiting"] = max(peak["waiting"], m["vllm:num_requests_waiting"])
            peak["usage"] = max(peak["usage"], m["vllm:kv_cache_usage_perc"])
            _time.sleep(0.02)

    def one(i):
        server.post_json("/v1/completions", {"model": MODEL, "prompt": f"Story {i}:",
                                             "max_tokens": 96, "ignore_eos": True})

    w = threading.Thread(target=watch)
    w.start()
    clients = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(300)
    done.set()
    w.join(30)
    assert peak["running"] == 32, peak
    assert peak["waiting"] >= 1, peak
    assert 0 < peak["usage"] <= 1, peak
    m = server.metrics()
    assert m["vllm:num_requests_running"] == 0 and m["vllm:num_requests_waiting"] == 0, m
    assert m["vllm:kv_cache_usage_perc"] == 0, m
    assert m["vllm:kv_cache_usage_perc"] == m["hearth_kv_cache_usage_ratio"]
