"""Health, tokenizer endpoints and Prometheus metrics."""

import json

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
