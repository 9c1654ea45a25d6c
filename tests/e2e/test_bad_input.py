"""Bad input over raw HTTP: each gets a clear error, and the server keeps serving,
answering a normal request exactly as before."""

import json
import select
import socket

import openai
import pytest

from conftest import MODEL, assert_serving, check_openai_error, wait_for

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "Hello"}]


def test_malformed_json(server, baseline):
    for path in (CHAT, COMPLETIONS):
        status, text = server.request("POST", path, body='{"model": "%s", "messages": [' % MODEL)
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        check_openai_error(status, body, 400)
    assert_serving(server, baseline)


@pytest.mark.parametrize("path,payload", [
    (CHAT, {"model": MODEL, "messages": MESSAGES, "max_tokens": "ten"}),
    (CHAT, {"model": MODEL, "messages": 5}),
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": 42}]}),
    (CHAT, {"model": MODEL, "messages": [{"content": "no role"}]}),
    (CHAT, {"model": MODEL, "messages": MESSAGES, "temperature": "hot"}),
    (CHAT, {"model": MODEL, "messages": MESSAGES, "stop": 7}),
    (CHAT, {"model": MODEL}),
    (COMPLETIONS, {"model": MODEL, "prompt": {"not": "a prompt"}}),
    (COMPLETIONS, {"model": MODEL, "prompt": "hi", "max_tokens": [1]}),
    (COMPLETIONS, {"model": MODEL, "prompt": "hi", "stream": "yes"}),
], ids=["max_tokens-string", "messages-int", "content-int", "no-role", "temperature-string",
        "stop-int", "no-messages", "prompt-object", "max_tokens-list", "stream-string"])
def test_wrong_types(server, baseline, path, payload):
    status, body = server.post_json(path, payload)
    check_openai_error(status, body, 400)
    assert_serving(server, baseline)


@pytest.mark.parametrize("extra", [
    {"max_tokens": -1},
    {"max_tokens": 10**9},
    {"temperature": -1},
    {"temperature": 5},
    {"top_p": 1.5},
    {"n": 0},
], ids=["max_tokens-negative", "max_tokens-huge", "temperature-negative", "temperature-5",
        "top_p-1.5", "n-0"])
def test_out_of_range(server, baseline, extra):
    status, body = server.post_json(CHAT, {"model": MODEL, "messages": MESSAGES, **extra})
    check_openai_error(status, body, 400)
    status, body = server.post_json(COMPLETIONS, {"model": MODEL, "prompt": "Hello", **extra})
    check_openai_error(status, body, 400)
    assert_serving(server, baseline)


def test_negative_max_completion_tokens(server, baseline):
    status, body = server.post_json(CHAT, {"model": MODEL, "messages": MESSAGES,
                                           "max_completion_tokens": -5})
    check_openai_error(status, body, 400)
    assert_serving(server, baseline)


def test_empty_messages(server, baseline):
    status, body = server.post_json(CHAT, {"model": MODEL, "messages": []})
    check_openai_error(status, body, 400)
    assert_serving(server, baseline)


def test_unknown_model(server, oai, baseline):
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-nonexistent", messages=MESSAGES, max_tokens=4)
    status, body = server.post_json(COMPLETIONS, {"model": "gpt-nonexistent", "prompt": "hi"})
    check_openai_error(status, body, 404)
    assert_serving(server, baseline)


def test_wrong_method_and_path(server, baseline):
    status, _ = server.request("GET", CHAT)
    assert status in (404, 405)
    status, _ = server.request("POST", "/v1/no-such-endpoint", body="{}")
    assert status == 404
    assert_serving(server, baseline)


def raw_post_early_response(server, path, body):
    """POSTs `body` on a raw socket, sending it in pieces and stopping as soon as the
    server answers (a server may refuse an oversized body without reading it). Returns
    (status, response head and body as text)."""
    s = socket.create_connection((server.host, server.port), timeout=60)
    try:
        head = (f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n")
        for k, v in server.auth_headers().items():
            head += f"{k}: {v}\r\n"
        s.sendall((head + "\r\n").encode())
        view = memoryview(body)
        try:
            for i in range(0, len(body), 1 << 16):
                if select.select([s], [], [], 0)[0]:
                    break
                s.sendall(view[i:i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while True:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and len(data) > 4096:
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    text = data.decode("utf-8", "replace")
    assert text.startswith("HTTP/1."), f"no HTTP response to the oversized body: {text[:200]!r}"
    return int(text.split(" ", 2)[1]), text


def test_body_over_limit_is_413(server, baseline):
    filler = "a" * (10 * 1024 * 1024)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": filler}],
                       "max_tokens": 4}).encode()
    status, text = raw_post_early_response(server, CHAT, body)
    assert status == 413, text[:500]
    assert_serving(server, baseline)


def open_stream(server, path, payload):
    """Starts a streaming request on a raw socket; returns the socket once the response
    head has arrived, and any body bytes read with it."""
    body = json.dumps(payload).encode()
    s = socket.create_connection((server.host, server.port), timeout=60)
    head = (f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
    for k, v in server.auth_headers().items():
        head += f"{k}: {v}\r\n"
    s.sendall((head + "\r\n").encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, rest


def read_until(s, data, marker, count):
    while data.count(marker) < count:
        chunk = s.recv(4096)
        assert chunk, "stream ended early"
        data += chunk
    return data


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_client_disconnects_mid_stream(server, baseline, api):
    """A client that goes away mid-stream has its request stopped: the server does not
    generate the rest of its 1000 tokens."""
    max_tokens = 1000
    if api == "openai":
        path, marker = COMPLETIONS, b"data: "
        payload = {"model": MODEL, "prompt": "Tell me a very long story.", "max_tokens": max_tokens,
                   "temperature": 0, "stream": True, "ignore_eos": True}
    else:
        path, marker = "/api/generate", b'"done":'
        payload = {"model": MODEL, "prompt": "Tell me a very long story.", "stream": True,
                   "options": {"temperature": 0, "num_predict": max_tokens}}
    before = server.metrics()["hearth_generation_tokens_total"]
    s, data = open_stream(server, path, payload)
    try:
        read_until(s, data, marker, 2)
    finally:
        s.close()
    settled = wait_for(lambda: server.metrics()["hearth_requests_running"] == 0, timeout=120)
    assert settled, "the disconnected request is still running"
    generated = server.metrics()["hearth_generation_tokens_total"] - before
    assert generated < max_tokens, \
        f"the server generated {generated} tokens for a client that left after 2 chunks"
    assert_serving(server, baseline)
