"""LangChain on Hearth: ChatOpenAI's structured output and bound tools, and ChatOllama's
structured output and tools, each constrained request run 20 times at temperature 0.8."""

from concurrent.futures import ThreadPoolExecutor
from typing import List

from pydantic import BaseModel, Field

from conftest import MODEL

RUNS = 20


class Fruit(BaseModel):
    """A fruit and its color."""
    name: str = Field(max_length=30)
    color: str = Field(max_length=20)
    sweet: bool


class Basket(BaseModel):
    fruits: List[Fruit] = Field(min_length=1, max_length=3)


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {city}"


def many(fn):
    with ThreadPoolExecutor(RUNS) as pool:
        return list(pool.map(fn, range(RUNS)))


def chat_openai(server, seed, **kw):
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(model=MODEL, base_url=server.url + "/v1", api_key="none", temperature=0.8,
                      seed=seed, max_tokens=400, max_retries=0, timeout=120, **kw)


def test_chat_openai_structured_output(server):
    def one(seed):
        llm = chat_openai(server, seed).with_structured_output(Basket)
        return llm.invoke("Fill a basket with fruits.")

    for b in many(one):
        assert isinstance(b, Basket) and 1 <= len(b.fruits) <= 3


def test_chat_openai_bind_tools(server):
    def one(seed):
        llm = chat_openai(server, seed).bind_tools([get_weather], tool_choice="required",
                                                   parallel_tool_calls=False)
        msg = llm.invoke("What is the weather in Lisbon?")
        (call,) = msg.tool_calls
        assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
        assert call["id"]
        return call

    calls = many(one)
    assert len({c["id"] for c in calls}) == RUNS


def test_chat_ollama_structured_output_and_tools(server):
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_ollama import ChatOllama

    def one(seed):
        llm = ChatOllama(model=MODEL, base_url=server.url, temperature=0.8, seed=seed,
                         num_predict=400).with_structured_output(Basket)
        return llm.invoke("Fill a basket with fruits.")

    for b in many(one):
        assert isinstance(b, Basket)
    # Tools: as in test_ollama_tools, this model calls after seeing calls in the history.
    history = []
    for city in ("Rome", "Oslo"):
        history += [HumanMessage(f"What is the weather in {city}?"),
                    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": city}, "id": city}])]
    history.append(HumanMessage("What is the weather in Paris?"))
    llm = ChatOllama(model=MODEL, base_url=server.url, temperature=0, num_predict=200).bind_tools([get_weather])
    msg = llm.invoke(history)
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
