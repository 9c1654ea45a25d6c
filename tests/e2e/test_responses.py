"""OpenAI's Responses API through the official client: plain and streamed, instructions,
message-list input, max_output_tokens, and refusals of what is not implemented."""

import openai
import pytest

from conftest import MODEL

QUESTION = "Name three colors."


def test_responses_plain_and_streamed(oai):
    r = oai.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=24)
    assert r.object == "response" and r.status in ("completed", "incomplete")
    assert r.output_text and r.usage.output_tokens <= 24 and r.usage.input_tokens > 0
    chat = oai.chat.completions.create(model=MODEL, temperature=0, max_tokens=24,
                                       messages=[{"role": "user", "content": QUESTION}])
    assert r.output_text == chat.choices[0].message.content
    deltas, final, kinds = [], None, []
    for ev in oai.responses.create(model=MODEL, input=QUESTION, temperature=0,
                                   max_output_tokens=24, stream=True):
        kinds.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
        if ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    assert "".join(deltas) == r.output_text == final.output_text


def test_instructions_messages_and_limits(oai):
    r = oai.responses.create(model=MODEL, instructions="Answer in one word.", temperature=0,
                             input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
                             max_output_tokens=4)
    assert r.usage.output_tokens <= 4
    if r.usage.output_tokens == 4:
        assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=MODEL, input=QUESTION, previous_response_id="resp_1")
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=MODEL, input=QUESTION, tools=[{"type": "web_search"}])
