"""Prefix caching changes no output: requests that share a system prompt, and the later
turns of a chat, give the same greedy text on the main server (which reuses cached KV
blocks) as on a server started with --no-prefix-cache."""

import pytest

from conftest import MODEL, Server

SYSTEM = ("You are a careful assistant for a museum. You answer visitors' questions in "
          "short, clear sentences, you never invent facts, and when you do not know "
          "something you say so and suggest asking the staff at the front desk. ") * 2
QUESTIONS = ["When was the museum built?", "Where can I leave my coat?",
             "Is photography allowed?", "What is the oldest object here?"]


@pytest.fixture(scope="module")
def uncached():
    s = Server(["--parallel", "4", "--no-prefix-cache"])
    yield s
    s.stop()


def chat(server, messages, with_cached=False):
    r = server.openai().chat.completions.create(model=MODEL, messages=messages,
                                                temperature=0, max_tokens=12)
    if with_cached:
        details = r.usage.prompt_tokens_details
        return r.choices[0].message.content, (details.cached_tokens or 0) if details else 0
    return r.choices[0].message.content


def conversations():
    for q in QUESTIONS:
        yield [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]


def test_shared_system_prompt(server, uncached):
    expected = [chat(uncached, m, with_cached=True) for m in conversations()]
    assert all(cached == 0 for _, cached in expected), expected
    expected = [text for text, _ in expected]
    # Twice on the caching server: the second round finds every prompt's blocks cached
    # (OpenAI's usage.prompt_tokens_details.cached_tokens says so).
    assert [chat(server, m) for m in conversations()] == expected
    second = [chat(server, m, with_cached=True) for m in conversations()]
    assert [text for text, _ in second] == expected
    assert all(cached > 0 for _, cached in second), second


def test_later_chat_turns(server, uncached):
    messages = [{"role": "system", "content": SYSTEM}]
    for q in QUESTIONS[:3]:
        messages.append({"role": "user", "content": q})
        answer = chat(uncached, messages)
        assert chat(server, messages) == answer
        messages.append({"role": "assistant", "content": answer})
