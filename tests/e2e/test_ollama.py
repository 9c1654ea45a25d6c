"""Ollama-compatible API through the official `ollama` package."""

import json

import ollama
import pytest

from conftest import MODEL

GREEDY = {"temperature": 0, "num_predict": 10}
MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]
PROMPT = "Why is the sky blue?"


def check_final(r, max_tokens):
    assert r.done is True
    assert r.done_reason in ("stop", "length")
    assert r.model in (MODEL, MODEL + ":latest")
    assert r.created_at
    assert r.prompt_eval_count > 0
    assert 0 < r.eval_count <= max_tokens
    for name in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(r[name], int) and r[name] > 0, name
    assert isinstance(r.load_duration, int) and r.load_duration >= 0
    assert r.total_duration >= r.eval_duration
    assert r.total_duration >= r.prompt_eval_duration


def test_generate_non_streaming(oll):
    r = oll.generate(model=MODEL, prompt=PROMPT, options=GREEDY)
    assert r.response.strip()
    check_final(r, 10)


def test_generate_streaming_matches_non_streaming(oll):
    whole = oll.generate(model=MODEL, prompt=PROMPT, options=GREEDY)
    parts = list(oll.generate(model=MODEL, prompt=PROMPT, options=GREEDY, stream=True))
    assert len(parts) >= 2
    for p in parts[:-1]:
        assert p.done is False
    check_final(parts[-1], 10)
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].eval_count == whole.eval_count
    assert parts[-1].done_reason == whole.done_reason


def test_chat_non_streaming(oll):
    r = oll.chat(model=MODEL, messages=MESSAGES, options=GREEDY)
    assert r.message.role == "assistant"
    assert r.message.content.strip()
    check_final(r, 10)


def test_chat_streaming_matches_non_streaming(oll):
    whole = oll.chat(model=MODEL, messages=MESSAGES, options=GREEDY)
    parts = list(oll.chat(model=MODEL, messages=MESSAGES, options=GREEDY, stream=True))
    assert len(parts) >= 2
    for p in parts[:-1]:
        assert p.done is False
        assert p.message.role == "assistant"
    check_final(parts[-1], 10)
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count


def test_num_predict_gives_length(oll):
    r = oll.generate(model=MODEL, prompt="Count from one to one hundred in words:",
                     options={"temperature": 0, "num_predict": 5})
    assert r.eval_count == 5
    assert r.done_reason == "length"


def test_chat_matches_openai_chat(oll, oai):
    """Both APIs render the same chat template and decode greedily the same way (with
    repeat_penalty 1: Ollama's default is 1.1, OpenAI's none)."""
    r = oll.chat(model=MODEL, messages=MESSAGES,
                 options={"temperature": 0, "num_predict": 12, "repeat_penalty": 1.0})
    o = oai.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=12)
    assert r.message.content == o.choices[0].message.content


def test_raw_generate_matches_openai_completion(oll, oai):
    prompt = "The history of the city of Rome begins"
    r = oll.generate(model=MODEL, prompt=prompt, raw=True,
                     options={"temperature": 0, "num_predict": 8, "repeat_penalty": 1.0})
    o = oai.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=8)
    assert r.response == o.choices[0].text


def test_generate_system_matches_openai_chat(oll, oai):
    """`system` on /api/generate is the system message of a chat."""
    system = "You are a pirate. Always answer like a pirate."
    r = oll.generate(model=MODEL, prompt=PROMPT, system=system,
                     options={**GREEDY, "repeat_penalty": 1.0})
    o = oai.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=10,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": PROMPT}])
    assert r.response == o.choices[0].message.content
    plain = oll.generate(model=MODEL, prompt=PROMPT, options={**GREEDY, "repeat_penalty": 1.0})
    assert plain.response != r.response


def test_stop_option(oll):
    opts = {"temperature": 0, "num_predict": 24}
    full = oll.generate(model=MODEL, prompt=PROMPT, options=opts).response
    assert len(full) >= 15, full
    k = len(full) // 3
    while k < len(full) - 5 and not full[k:k + 5].strip():
        k += 1
    stop = full[k:k + 5]
    r = oll.generate(model=MODEL, prompt=PROMPT, options={**opts, "stop": [stop]})
    assert r.response == full[:full.index(stop)]
    assert r.done_reason == "stop"


def test_seed_option_reproducible(oll):
    opts = {"temperature": 0.8, "seed": 42, "num_predict": 12, "top_k": 40, "top_p": 0.95,
            "min_p": 0.05, "repeat_penalty": 1.1, "num_ctx": 2048}
    a = oll.generate(model=MODEL, prompt="Once upon a time", options=opts).response
    b = oll.generate(model=MODEL, prompt="Once upon a time", options=opts).response
    assert a and a == b


def test_keep_alive_accepted(oll):
    r = oll.chat(model=MODEL, messages=MESSAGES, options=GREEDY, keep_alive="5m")
    assert r.message.content


def test_latest_tag_accepted(oll):
    r = oll.generate(model=MODEL + ":latest", prompt=PROMPT, options=GREEDY)
    assert r.response


def test_list(oll):
    models = oll.list().models
    names = [m.model for m in models]
    assert any(n in (MODEL, MODEL + ":latest") for n in names), names
    m = next(m for m in models if m.model in (MODEL, MODEL + ":latest"))
    assert m.size > 0
    assert m.modified_at is not None
    assert m.details.format == "gguf"


def test_show(oll):
    r = oll.show(MODEL)
    assert r.details.format == "gguf"
    assert r.details.family == "llama"
    assert r.modelinfo["general.architecture"] == "llama"
    assert r.template


def test_ps_lists_the_loaded_model(oll):
    oll.generate(model=MODEL, prompt=PROMPT, options={"temperature": 0, "num_predict": 2})
    names = [m.model for m in oll.ps().models]
    assert any(n in (MODEL, MODEL + ":latest") for n in names), names


def test_version(server):
    status, body = server.request("GET", "/api/version")
    assert status == 200
    v = json.loads(body)["version"]
    assert isinstance(v, str) and v


def test_root(server):
    status, body = server.request("GET", "/")
    assert status == 200
    assert "Hearth is running" in body
    status, body = server.request("HEAD", "/")
    assert status == 200
    assert body == ""


def test_unknown_model(oll):
    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model="no-such-model", messages=MESSAGES)
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        oll.generate(model="no-such-model", prompt=PROMPT)
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        oll.show("no-such-model")
    assert e.value.status_code == 404


def test_error_shape(server):
    status, body = server.post_json("/api/generate", {"model": "no-such-model", "prompt": "hi"})
    assert status == 404
    assert isinstance(body["error"], str) and body["error"]
    status, text = server.request("POST", "/api/chat", body='{"model": ')
    assert status == 400
    assert isinstance(json.loads(text)["error"], str)


def test_ndjson_lines(server):
    """Every streamed line is one JSON object; no blank lines (the client parses each)."""
    status, text = server.request("POST", "/api/generate",
                                  {"model": MODEL, "prompt": PROMPT, "options": GREEDY})
    assert status == 200
    lines = text.split("\n")
    assert lines[-1] == ""
    objs = [json.loads(line) for line in lines[:-1]]
    assert objs[-1]["done"] is True
    assert all(o["done"] is False for o in objs[:-1])
