"""OpenAI-compatible API through the official `openai` package."""

import openai
import pytest

from conftest import MODEL

CHAT = [{"role": "user", "content": "Write a short poem about the sea."}]
PROMPT = "The history of the city of Rome begins"
LONG_ANSWER = [{"role": "user", "content": "Explain in detail how photosynthesis works."}]


def check_usage(usage, max_tokens=None):
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if max_tokens is not None:
        assert usage.completion_tokens <= max_tokens


def stream_chat(oai, **kw):
    """Streams a chat completion; returns (text, finish_reason, usage, content chunk count)."""
    text, finish, usage, n_content = "", None, None, 0
    for chunk in oai.chat.completions.create(stream=True, **kw):
        assert chunk.object == "chat.completion.chunk"
        assert chunk.model == MODEL
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        assert usage is None, "a chunk with choices came after the usage chunk"
        (c,) = chunk.choices
        assert c.index == 0
        if c.delta.content:
            text += c.delta.content
            n_content += 1
        if c.finish_reason is not None:
            assert finish is None, "two finish reasons"
            finish = c.finish_reason
    return text, finish, usage, n_content


def stream_completion(oai, **kw):
    text, finish, usage, n_content = "", None, None, 0
    for chunk in oai.completions.create(stream=True, **kw):
        assert chunk.object == "text_completion"
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        assert usage is None, "a chunk with choices came after the usage chunk"
        (c,) = chunk.choices
        assert c.index == 0
        if c.text:
            text += c.text
            n_content += 1
        if c.finish_reason is not None:
            assert finish is None, "two finish reasons"
            finish = c.finish_reason
    return text, finish, usage, n_content


def test_models_lists_the_default_model(oai):
    ids = [m.id for m in oai.models.list().data]
    assert MODEL in ids


def test_chat_non_streaming(oai):
    r = oai.chat.completions.create(model=MODEL, messages=CHAT, temperature=0, max_tokens=16)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert r.id
    (c,) = r.choices
    assert c.index == 0
    assert c.message.role == "assistant"
    assert c.message.content.strip()
    assert c.finish_reason in ("stop", "length")
    check_usage(r.usage, 16)


def test_chat_streaming_matches_non_streaming(oai):
    kw = dict(model=MODEL, messages=CHAT, temperature=0, max_tokens=12,
              extra_body={"ignore_eos": True})
    whole = oai.chat.completions.create(**kw)
    text, finish, usage, n_content = stream_chat(
        oai, stream_options={"include_usage": True}, **kw)
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason == "length"
    assert usage is not None, "include_usage was set but no usage chunk came"
    check_usage(usage)
    # ignore_eos: exactly max_tokens tokens, each streamed (a chunk may carry more than
    # one token when a character spans tokens, never less than one).
    assert usage.completion_tokens == whole.usage.completion_tokens == 12
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert 0 < n_content <= 12


def test_chat_stream_without_include_usage_has_no_usage_chunk(oai):
    for chunk in oai.chat.completions.create(model=MODEL, messages=CHAT, temperature=0,
                                             max_tokens=4, stream=True):
        assert chunk.choices, "a chunk without choices although include_usage was not set"
        assert chunk.usage is None


def test_max_completion_tokens(oai):
    r = oai.chat.completions.create(model=MODEL, messages=LONG_ANSWER, temperature=0,
                                    max_completion_tokens=5, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length"


def test_completions_non_streaming_and_streaming(oai):
    kw = dict(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=10,
              extra_body={"ignore_eos": True})
    r = oai.completions.create(**kw)
    assert r.object == "text_completion"
    assert r.model == MODEL
    (c,) = r.choices
    assert c.text.strip()
    assert c.finish_reason == "length"
    check_usage(r.usage)
    assert r.usage.completion_tokens == 10
    text, finish, usage, n_content = stream_completion(
        oai, stream_options={"include_usage": True}, **kw)
    assert text == c.text
    assert finish == "length"
    assert usage.completion_tokens == 10
    assert usage.prompt_tokens == r.usage.prompt_tokens
    assert 0 < n_content <= 10


def test_greedy_is_deterministic(oai):
    kw = dict(model=MODEL, messages=CHAT, temperature=0, max_tokens=24)
    a = oai.chat.completions.create(**kw).choices[0].message.content
    b = oai.chat.completions.create(**kw).choices[0].message.content
    assert a == b


def pick_stop(text):
    """A 5-character piece from the second third of `text` (such a piece nearly always
    spans a token boundary), with the text before its first occurrence."""
    assert len(text) >= 15, f"greedy output too short to pick a stop string: {text!r}"
    k = len(text) // 3
    while k < len(text) - 5 and not text[k:k + 5].strip():
        k += 1
    stop = text[k:k + 5]
    return stop, text[:text.index(stop)]


def test_stop_string_completions(oai):
    kw = dict(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=24,
              extra_body={"ignore_eos": True})
    full = oai.completions.create(**kw).choices[0].text
    stop, before = pick_stop(full)
    r = oai.completions.create(stop=stop, **kw)
    assert r.choices[0].text == before
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 24
    # Streaming, with the stop string in a list beside one that never occurs.
    text, finish, _, _ = stream_completion(oai, stop=["@@never@@", stop], **kw)
    assert text == before
    assert finish == "stop"


def test_stop_string_chat(oai):
    kw = dict(model=MODEL, messages=LONG_ANSWER, temperature=0, max_tokens=24)
    full = oai.chat.completions.create(**kw).choices[0].message.content
    stop, before = pick_stop(full)
    r = oai.chat.completions.create(stop=[stop], **kw)
    assert r.choices[0].message.content == before
    assert r.choices[0].finish_reason == "stop"
    text, finish, _, _ = stream_chat(oai, stop=stop, **kw)
    assert text == before
    assert finish == "stop"


def test_seed_reproducible(oai):
    kw = dict(model=MODEL, prompt="Once upon a time", temperature=0.8, max_tokens=16,
              seed=1234, extra_body={"ignore_eos": True})
    a = oai.completions.create(**kw).choices[0].text
    b = oai.completions.create(**kw).choices[0].text
    assert a == b


def test_different_seeds_differ(oai):
    # Four seeds at temperature 1 over 16 tokens: all four samples agreeing would take a
    # model that puts nearly all its mass on one continuation, which this prompt does not.
    texts = {
        oai.completions.create(model=MODEL, prompt="Once upon a time", temperature=1.0,
                               max_tokens=16, seed=seed,
                               extra_body={"ignore_eos": True}).choices[0].text
        for seed in (1, 2, 3, 4)
    }
    assert len(texts) >= 2


def test_sampling_parameters_accepted(oai):
    r = oai.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=8, temperature=0.7, top_p=0.9, seed=7,
        presence_penalty=0.5, frequency_penalty=0.5,
        extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1})
    assert r.choices[0].message.content
    check_usage(r.usage, 8)


def test_chat_logprobs(oai):
    r = oai.chat.completions.create(model=MODEL, messages=LONG_ANSWER, temperature=0,
                                    max_tokens=6, logprobs=True, top_logprobs=3)
    c = r.choices[0]
    assert c.finish_reason == "length"
    entries = c.logprobs.content
    assert len(entries) == r.usage.completion_tokens == 6
    assert "".join(e.token for e in entries) == c.message.content
    for e in entries:
        assert e.logprob <= 0
        assert len(e.top_logprobs) == 3
        tops = [t.logprob for t in e.top_logprobs]
        assert all(t <= 0 for t in tops)
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert e.token == e.top_logprobs[0].token
        assert e.logprob == pytest.approx(tops[0], abs=1e-4)
        assert e.logprob >= max(tops) - 1e-4


def test_completion_logprobs(oai):
    r = oai.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=6,
                               logprobs=2, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, chosen, tops in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0
        assert 1 <= len(tops) <= 2
        assert all(v <= 0 for v in tops.values())
        assert chosen >= max(tops.values()) - 1e-4
        assert tok in tops


def test_n_choices(oai):
    one = oai.chat.completions.create(model=MODEL, messages=CHAT, temperature=0, max_tokens=8,
                                      extra_body={"ignore_eos": True})
    two = oai.chat.completions.create(model=MODEL, messages=CHAT, temperature=0, max_tokens=8,
                                      n=2, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in two.choices) == [0, 1]
    for c in two.choices:
        assert c.message.content == one.choices[0].message.content
    # OpenAI counts the tokens of every choice.
    assert two.usage.completion_tokens == 16
    assert two.usage.prompt_tokens == one.usage.prompt_tokens


def test_n_choices_sampled(oai):
    r = oai.completions.create(model=MODEL, prompt="Once upon a time", temperature=1.0,
                               max_tokens=16, n=2, seed=5, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.text for c in r.choices)


def test_logit_bias(server, oai):
    status, body = server.post_json("/tokenize", {"content": " the"})
    assert status == 200, body
    (the,) = body["tokens"]
    status, body = server.post_json("/detokenize", {"tokens": [the] * 3})
    assert status == 200, body
    r = oai.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=3,
                               logit_bias={str(the): 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == body["content"]
    # A -100 bias on the greedy first token moves the choice elsewhere.
    first = oai.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=1,
                                   logprobs=1, extra_body={"ignore_eos": True})
    tok = first.choices[0].logprobs.tokens[0]
    status, body = server.post_json("/tokenize", {"content": tok})
    assert status == 200, body
    ids = body["tokens"]
    assert len(ids) == 1, f"{tok!r} does not tokenize back to one token: {ids}"
    banned = oai.completions.create(model=MODEL, prompt=PROMPT, temperature=0, max_tokens=1,
                                    logprobs=1, logit_bias={str(ids[0]): -100},
                                    extra_body={"ignore_eos": True})
    assert banned.choices[0].logprobs.tokens[0] != tok


def test_unknown_model_is_404(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=4)
    assert e.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="no-such-model", prompt="hi", max_tokens=4)
