"""32 clients at once: every greedy output is identical to the same request sent alone."""

import threading

from conftest import MODEL

N = 32
TOPICS = ["the sea", "mountains", "a city at night", "coffee", "trains", "winter", "bees",
          "the moon", "a library", "rain", "bicycles", "volcanoes", "the desert", "owls",
          "bread", "music", "a lighthouse", "autumn", "robots", "the river", "chess",
          "a garden", "thunder", "maps", "glass", "the forest", "clocks", "whales",
          "a market", "snow", "lanterns", "bridges"]


def request(i):
    """Request i: four kinds (chat or completion, streamed or not), various lengths, half
    of them made to run to their full length."""
    kind = ("chat", "chat-stream", "completion", "completion-stream")[i % 4]
    kw = dict(model=MODEL, temperature=0, max_tokens=16 + i % 9)
    if i % 2 == 0:
        kw["extra_body"] = {"ignore_eos": True}
    if kind.startswith("chat"):
        kw["messages"] = [{"role": "user", "content": f"Write two sentences about {TOPICS[i]}."}]
    else:
        kw["prompt"] = f"Here is a short description of {TOPICS[i]}:"
    return kind, kw


def run(oai, i):
    kind, kw = request(i)
    if kind == "chat":
        r = oai.chat.completions.create(**kw)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens
    if kind == "completion":
        r = oai.completions.create(**kw)
        return r.choices[0].text, r.choices[0].finish_reason, r.usage.completion_tokens
    create = oai.chat.completions.create if kind == "chat-stream" else oai.completions.create
    text, finish, usage = "", None, None
    for chunk in create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for c in chunk.choices:
            piece = c.delta.content if kind == "chat-stream" else c.text
            text += piece or ""
            finish = c.finish_reason or finish
    return text, finish, usage


def test_32_concurrent_greedy_requests_match_sequential(server):
    oai = server.openai()
    alone = [run(oai, i) for i in range(N)]
    for i, (text, finish, tokens) in enumerate(alone):
        assert text, f"request {i} alone gave no text"
        assert finish in ("stop", "length")
        assert 0 < tokens <= request(i)[1]["max_tokens"]

    results = [None] * N
    errors = []
    start = threading.Barrier(N)

    def worker(i):
        client = server.openai()
        try:
            start.wait()
            results[i] = run(client, i)
        except Exception as e:  # reported below with the request number
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "some concurrent requests never finished"
    assert not errors, errors
    mismatches = [(i, alone[i], results[i]) for i in range(N) if results[i] != alone[i]]
    assert not mismatches, f"{len(mismatches)} of {N} differ when run together: {mismatches[:3]}"
