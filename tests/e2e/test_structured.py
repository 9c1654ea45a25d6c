"""Structured output and tool calling through the official clients: OpenAI's
response_format and parse(), tools with tool_choice, streamed tool calls, Ollama's format
and tools, llama.cpp's grammar and json_schema, and the 400s for bad ones.

Constrained requests run 20 times at temperature 0.8 (concurrently, so they share the
server's batches), and every output must parse and validate."""

import json
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Annotated, List, Optional

import openai
import pytest
from pydantic import BaseModel, Field

from conftest import MODEL

RUNS = 20


def many(fn):
    """fn(seed) for seeds 0..RUNS-1, concurrently; the results in order."""
    with ThreadPoolExecutor(RUNS) as pool:
        return list(pool.map(fn, range(RUNS)))


class Color(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    street: str = Field(max_length=40)
    city: str = Field(max_length=30)


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int
    favorite: Color
    address: Address
    nicknames: List[Annotated[str, Field(max_length=20)]] = Field(max_length=3)
    email: Optional[str] = Field(default=None, max_length=40)


def test_parse_with_a_pydantic_model(oai):
    def one(seed):
        r = oai.beta.chat.completions.parse(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=400,
            messages=[{"role": "user", "content": "Invent a person and give their details."}],
            response_format=Person,
        )
        c = r.choices[0]
        assert c.finish_reason == "stop", c.message.content
        return c.message.parsed

    people = many(one)
    for p in people:
        assert isinstance(p, Person)
        assert isinstance(p.favorite, Color)
        assert len(p.nicknames) <= 3
    # Sampled, not one fixed answer.
    assert len({p.model_dump_json() for p in people}) > 1


def test_json_object(oai):
    def one(seed):
        r = oai.chat.completions.create(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=300,
            messages=[{"role": "user", "content": "Give me a JSON object with the name and color of one fruit."}],
            response_format={"type": "json_object"},
        )
        assert r.choices[0].finish_reason == "stop"
        return json.loads(r.choices[0].message.content)

    for v in many(one):
        assert isinstance(v, dict)


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
        "genres": {"type": "array", "items": {"enum": ["drama", "comedy", "action"]},
                   "minItems": 1, "maxItems": 3},
    },
    "required": ["title", "year", "genres"],
    "additionalProperties": False,
}


def check_movie(v):
    assert set(v) == {"title", "year", "genres"}, v
    assert isinstance(v["title"], str) and len(v["title"]) <= 40
    assert isinstance(v["year"], int) and 1900 <= v["year"] <= 2030
    assert 1 <= len(v["genres"]) <= 3 and set(v["genres"]) <= {"drama", "comedy", "action"}


def test_json_schema_streamed(oai):
    def one(seed):
        text = ""
        for chunk in oai.chat.completions.create(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=300, stream=True,
            messages=[{"role": "user", "content": "Describe a movie."}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "movie", "schema": SCHEMA, "strict": True}},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        return json.loads(text)

    for v in many(one):
        check_movie(v)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30},
                           "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time in a timezone.",
                 "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}},
                                "required": ["tz"]}},
}


def check_call(call, names=("get_weather", "get_time")):
    assert call.type == "function"
    assert call.id
    assert call.function.name in names
    args = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert set(args) <= {"city", "unit"} and isinstance(args["city"], str)
        assert args["unit"] in ("celsius", "fahrenheit")
    else:
        assert isinstance(args["tz"], str)
    return args


def test_required_tool_call_then_the_result_and_a_final_answer(oai):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]

    def one(seed):
        r = oai.chat.completions.create(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=400, messages=question,
            tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
        )
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c.message
        assert len(c.message.tool_calls) == 1
        check_call(c.message.tool_calls[0])
        return c.message

    messages = many(one)
    # Send one call's result back; the model answers in words.
    msg = messages[0]
    call = msg.tool_calls[0]
    history = question + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    r = oai.chat.completions.create(model=MODEL, temperature=0, max_tokens=60, messages=history,
                                    tools=[WEATHER, TIME], tool_choice="none")
    c = r.choices[0]
    assert c.message.tool_calls is None
    assert c.message.content and c.finish_reason in ("stop", "length")


def test_named_tool_choice_and_parallel_calls(oai):
    r = oai.chat.completions.create(
        model=MODEL, temperature=0.8, seed=3, max_tokens=500,
        messages=[{"role": "user", "content": "What time is it in Tokyo and in Lima?"}],
        tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert 1 <= len(c.message.tool_calls) <= 8
    for call in c.message.tool_calls:
        check_call(call, names=("get_time",))
    assert len({call.id for call in c.message.tool_calls}) == len(c.message.tool_calls)


def test_streamed_tool_call(oai):
    def one(seed):
        calls, finish, content = {}, None, ""
        for chunk in oai.chat.completions.create(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=400, stream=True,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
        ):
            (c,) = chunk.choices
            content += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                slot = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = slot["id"] or d.id
                if d.function.name:
                    slot["name"] += d.function.name
                slot["arguments"] += d.function.arguments or ""
            if c.finish_reason:
                finish = c.finish_reason
        assert finish == "tool_calls"
        assert content == ""
        (call,) = calls.values()
        assert call["id"] and call["name"] == "get_weather"
        args = json.loads(call["arguments"])
        assert args["unit"] in ("celsius", "fahrenheit")

    many(one)


def test_llama_cpp_grammar_and_json_schema_fields(oai):
    grammar = 'root ::= answer " because " reason\nanswer ::= "yes" | "no"\nreason ::= [a-z ]{3,40} "."'

    def one(seed):
        r = oai.chat.completions.create(
            model=MODEL, temperature=0.8, seed=seed, max_tokens=60,
            messages=[{"role": "user", "content": "Is the sea salty?"}],
            extra_body={"grammar": grammar},
        )
        text = r.choices[0].message.content
        answer, reason = text.split(" because ")
        assert answer in ("yes", "no") and reason.endswith("."), text
        assert all(ch.islower() or ch == " " for ch in reason[:-1]), text

    many(one)
    r = oai.completions.create(model=MODEL, prompt="A movie:", temperature=0.8, seed=1,
                               max_tokens=300, extra_body={"json_schema": SCHEMA})
    check_movie(json.loads(r.choices[0].text))


def test_ollama_format_schema_and_json(oll):
    def one(seed):
        r = oll.chat(model=MODEL, messages=[{"role": "user", "content": "Describe a movie."}],
                     format=SCHEMA, options={"temperature": 0.8, "seed": seed, "num_predict": 300})
        return json.loads(r.message.content)

    for v in many(one):
        check_movie(v)
    r = oll.generate(model=MODEL, prompt="Two fruits as JSON:", format="json",
                     options={"temperature": 0.8, "seed": 1, "num_predict": 300})
    assert isinstance(json.loads(r.response), dict)
    # Streamed: the pieces make the same valid JSON.
    text = "".join(p.message.content for p in oll.chat(
        model=MODEL, messages=[{"role": "user", "content": "Describe a movie."}], format=SCHEMA,
        options={"temperature": 0, "num_predict": 300}, stream=True))
    check_movie(json.loads(text))


def test_ollama_tools(oll):
    # Ollama has no tool_choice: the model decides whether to call. This 135M model calls
    # only after seeing calls in the conversation, so the history carries two (written
    # into the prompt as calls, which is part of what this checks).
    tools = [WEATHER, TIME]

    def asked(city):
        return [{"role": "user", "content": f"What is the weather in {city}?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": city}}}]}]

    question = asked("Rome") + asked("Oslo") + [{"role": "user", "content": "What is the weather in Paris?"}]
    r = oll.chat(model=MODEL, messages=question, tools=tools, options={"temperature": 0, "num_predict": 200})
    calls = r.message.tool_calls
    assert calls, r.message
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}
    streamed = [c for part in oll.chat(model=MODEL, messages=question, tools=tools, stream=True,
                                       options={"temperature": 0, "num_predict": 200})
                for c in (part.message.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in streamed] == \
           [(c.function.name, c.function.arguments) for c in calls]
    # The call and its result go back; the answer is text.
    history = question + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"},
    ]
    r = oll.chat(model=MODEL, messages=history, options={"temperature": 0, "num_predict": 40})
    assert r.message.content


@pytest.mark.parametrize("body,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}}},
     "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"grammar": "root ::= undefined"}, "grammar"),
    ({"grammar": "root ::= \"unterminated"}, "grammar"),
    ({"grammar": "root ::= " + "(" * 20000 + "\"a\"" + ")" * 20000}, "grammar"),
    ({"grammar": "root ::= (\"ab\"){1000000}"}, "grammar"),
    ({"json_schema": {"$ref": "#/$defs/nothing"}}, "json_schema"),
    ({"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}, "grammar"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    # This model's template has no thinking to set an effort for.
    ({"reasoning_effort": "low"}, "reasoning_effort"),
])
def test_bad_constraints_are_clear_400s(server, body, param):
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **body}
    status, v = server.post_json("/v1/chat/completions", payload)
    assert status == 400, v
    assert v["error"]["param"] == param, v
    assert v["error"]["message"], v
    status, _ = server.post_json("/v1/chat/completions", {"model": MODEL, "max_tokens": 2,
                                                          "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200


@pytest.mark.parametrize("body", [
    {"format": {"type": "frob"}},
    {"format": 3},
    {"tools": [{"type": "function", "function": {}}]},
    {"think": True},
    {"think": "high"},
    {"think": "sometimes"},
])
def test_ollama_bad_constraints_are_clear_400s(server, body):
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False, **body}
    status, v = server.post_json("/api/chat", payload)
    assert status == 400, v
    assert isinstance(v["error"], str) and v["error"], v


def test_template_kwargs_reach_the_template(oai, oll):
    # SmolLM2's template reads no such variable: the same prompt either way, and no error
    # (Hugging Face's apply_chat_template behaves the same with unused keyword arguments).
    a = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                    max_tokens=1, temperature=0)
    b = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                    max_tokens=1, temperature=0,
                                    extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
    # think: false on a model that does not think has nothing to turn off.
    r = oll.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], think=False,
                 options={"num_predict": 2})
    assert r.message.thinking is None
