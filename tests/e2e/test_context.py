"""A server with a small context (--ctx-size 256): requests that cannot fit are refused
with 400, and the server keeps serving."""

import json

import openai
import pytest

from conftest import MODEL, Server, check_openai_error

CTX = 256
LONG = "The quick brown fox jumps over the lazy dog. " * 60  # about 600 tokens


@pytest.fixture(scope="module")
def small():
    s = Server(["--ctx-size", str(CTX), "--parallel", "2"])
    yield s
    s.stop()


def answer(small):
    r = small.openai().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name three colors."}],
        temperature=0, max_tokens=8)
    assert r.choices[0].message.content
    return r.choices[0].message.content


def test_prompt_over_context(small):
    before = answer(small)
    status, body = small.post_json("/tokenize", {"content": LONG})
    assert status == 200 and len(body["tokens"]) > CTX
    status, body = small.post_json("/v1/chat/completions", {
        "model": MODEL, "messages": [{"role": "user", "content": LONG}], "max_tokens": 4})
    check_openai_error(status, body, 400)
    status, body = small.post_json("/v1/completions",
                                   {"model": MODEL, "prompt": LONG, "max_tokens": 4})
    check_openai_error(status, body, 400)
    with pytest.raises(openai.BadRequestError):
        small.openai().completions.create(model=MODEL, prompt=LONG, max_tokens=4, stream=True)
    assert answer(small) == before


def test_max_tokens_over_context(small):
    before = answer(small)
    status, body = small.post_json("/v1/completions",
                                   {"model": MODEL, "prompt": "Hello", "max_tokens": 4 * CTX})
    check_openai_error(status, body, 400)
    assert answer(small) == before


def test_fitting_request_runs_to_its_length(small):
    r = small.openai().completions.create(model=MODEL, prompt="Hello", temperature=0,
                                          max_tokens=64, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 64
    assert r.choices[0].finish_reason == "length"
