"""Gemma 3 270M (`hearth pull gemma3-270m`; the README's test command pulls it) served
through the official openai and ollama clients: greedy completions equal llama.cpp's
first tokens from tests/data, streaming equals the whole answer, concurrent requests equal
each alone, and the Ollama endpoints answer."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, Server

GEMMA = "gemma3-270m"


@pytest.fixture(scope="module")
def gemma():
    s = Server(["-m", GEMMA, "--parallel", "8"])
    yield s
    s.stop()


def golden_case(i):
    data = json.loads((REPO / "tests" / "data" / "greedy_gemma3_270m_q4_k_m.json").read_text())
    return data["cases"][i]


def test_models_lists_gemma(gemma):
    ids = [m.id for m in gemma.openai().models.list().data]
    assert ids[0] == GEMMA


def test_completion_matches_the_reference_tokens(gemma):
    # Case 2 matches llama.cpp for all its 64 tokens in the model test.
    case = golden_case(2)
    oai = gemma.openai()
    r = oai.completions.create(model=GEMMA, prompt=case["prompt_text"], max_tokens=16, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 16
    assert case["generated_text"].startswith(r.choices[0].text)
    # Streaming gives the same text, piece by piece.
    pieces = [c.choices[0].text for c in oai.completions.create(
        model=GEMMA, prompt=case["prompt_text"], max_tokens=16, temperature=0, stream=True)]
    assert "".join(pieces) == r.choices[0].text and len(pieces) > 1


def test_concurrent_requests_equal_each_alone(gemma):
    oai = gemma.openai()
    prompts = [golden_case(i)["prompt_text"] for i in range(4)]
    def one(p):
        return oai.completions.create(model=GEMMA, prompt=p, max_tokens=12, temperature=0).choices[0].text
    alone = [one(p) for p in prompts]
    with ThreadPoolExecutor(4) as ex:
        together = list(ex.map(one, prompts))
    assert together == alone


def test_ollama_generate_and_chat(gemma):
    oll = gemma.ollama()
    case = golden_case(2)
    r = oll.generate(model=GEMMA, prompt=case["prompt_text"], raw=True, options={"temperature": 0, "num_predict": 16})
    assert r["done"] and r["eval_count"] == 16
    assert case["generated_text"].startswith(r["response"])
    streamed = "".join(p["response"] for p in oll.generate(
        model=GEMMA, prompt=case["prompt_text"], raw=True, stream=True, options={"temperature": 0, "num_predict": 16}))
    assert streamed == r["response"]
    c = oll.chat(model=GEMMA, messages=[{"role": "user", "content": "Say hello."}], options={"num_predict": 8})
    assert c["message"]["role"] == "assistant" and c["eval_count"] <= 8


def test_structured_output_and_a_required_tool_call(gemma):
    # Gemma 3's template renders no tools: the generic syntax teaches them in the system
    # turn (which Gemma's template folds into the first user turn).
    from test_structured import Person, SCHEMA, WEATHER, check_call, check_movie
    oai = gemma.openai()
    oll = gemma.ollama()

    def one(seed):
        r = oai.beta.chat.completions.parse(
            model=GEMMA, temperature=0.8, seed=seed, max_tokens=400, response_format=Person,
            messages=[{"role": "user", "content": "Invent a person and give their details."}])
        assert isinstance(r.choices[0].message.parsed, Person)
        r = oai.chat.completions.create(
            model=GEMMA, temperature=0.8, seed=seed, max_tokens=400, tools=[WEATHER],
            tool_choice="required", parallel_tool_calls=False,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        assert r.choices[0].finish_reason == "tool_calls"
        check_call(r.choices[0].message.tool_calls[0])
        r = oll.chat(model=GEMMA, messages=[{"role": "user", "content": "Describe a movie."}],
                     format=SCHEMA, options={"temperature": 0.8, "seed": seed, "num_predict": 300})
        check_movie(json.loads(r.message.content))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(20)))
