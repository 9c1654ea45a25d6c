"""Anthropic's Messages API through the official `anthropic` client: plain and streamed
messages, stop sequences, tools (tool_use, then tool_result), count_tokens, errors."""

import json

import anthropic
import pytest

from conftest import HTTP_TIMEOUT_S, MODEL

QUESTION = [{"role": "user", "content": "Name three colors."}]
# This client takes no sampling arguments; the API still does.
GREEDY = {"temperature": 0}
WEATHER = {"name": "get_weather", "description": "The current weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                            "required": ["city"]}}


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0, timeout=HTTP_TIMEOUT_S)


def test_message_plain_and_streamed_agree(claude, oai):
    m = claude.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=QUESTION)
    assert m.type == "message" and m.role == "assistant" and m.model == MODEL
    assert [b.type for b in m.content] == ["text"]
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert 0 < m.usage.output_tokens <= 24 and m.usage.input_tokens > 0
    # The same greedy answer as OpenAI's chat gives.
    o = oai.chat.completions.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=QUESTION)
    assert m.content[0].text == o.choices[0].message.content
    with claude.messages.stream(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=QUESTION) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == m.content[0].text
    assert final.stop_reason == m.stop_reason and final.usage.output_tokens == m.usage.output_tokens


def test_system_and_stop_sequences(claude):
    m = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=QUESTION)
    text = m.content[0].text
    stop = text[5:9]
    m2 = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=QUESTION,
                                stop_sequences=[stop, "zzzz"])
    assert m2.stop_reason == "stop_sequence" and m2.stop_sequence == stop
    assert m2.content[0].text == text[:text.index(stop)]
    s = claude.messages.create(model=MODEL, max_tokens=8, extra_body=GREEDY, messages=QUESTION,
                               system="You answer in French.")
    assert s.content[0].text


def test_tool_use_then_tool_result(claude):
    m = claude.messages.create(model=MODEL, max_tokens=200, extra_body={"temperature": 0.8, "seed": 1},
                               messages=[{"role": "user", "content": "Weather in Paris?"}],
                               tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert m.stop_reason == "tool_use"
    (use,) = [b for b in m.content if b.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input["city"], str) and use.id
    follow = claude.messages.create(model=MODEL, max_tokens=30, extra_body=GREEDY, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}]},
    ], tool_choice={"type": "none"})
    assert follow.content[0].type == "text" and follow.content[0].text
    # Streamed: the tool_use block's input arrives as input_json_delta.
    with claude.messages.stream(model=MODEL, max_tokens=200, extra_body={"temperature": 0.8, "seed": 2},
                                messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather",
                                                              "disable_parallel_tool_use": True}) as s:
        final = s.get_final_message()
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and isinstance(use.input["city"], str)


def test_output_config_json_schema(claude):
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                               "hex": {"type": "string", "maxLength": 7}},
              "required": ["color", "hex"], "additionalProperties": False}
    for seed in range(5):
        m = claude.messages.create(model=MODEL, max_tokens=100, messages=QUESTION,
                                   output_config={"format": {"type": "json_schema", "schema": schema}},
                                   extra_body={"temperature": 0.8, "seed": seed})
        v = json.loads(m.content[0].text)
        assert v["color"] in ("red", "green", "blue") and len(v["hex"]) <= 7


def test_count_tokens_matches_usage(claude):
    m = claude.messages.create(model=MODEL, max_tokens=2, messages=QUESTION, system="Be brief.")
    n = claude.messages.count_tokens(model=MODEL, messages=QUESTION, system="Be brief.")
    assert n.input_tokens == m.usage.input_tokens


def test_errors_in_anthropics_shape(claude, server):
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=MODEL, max_tokens=4, messages=QUESTION, thinking={"type": "enabled", "budget_tokens": 1024})
    status, body = server.post_json("/v1/messages", {"model": MODEL, "messages": QUESTION})
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"]
