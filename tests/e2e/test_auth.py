"""A server started with --api-key: every API route needs `Authorization: Bearer KEY`."""

import json

import ollama
import openai
import pytest

from conftest import API_KEY, MODEL, Server, check_openai_error

CHAT_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def keyed():
    s = Server(["--parallel", "2"], api_key=API_KEY)
    yield s
    s.stop()


@pytest.mark.parametrize("headers", [
    {"Authorization": None},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": API_KEY},
    {"Authorization": "Basic " + API_KEY},
], ids=["missing", "wrong", "no-scheme", "basic"])
@pytest.mark.parametrize("method,path,body", [
    ("POST", "/v1/chat/completions", CHAT_BODY),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 4}),
    ("GET", "/v1/models", None),
], ids=["chat", "completions", "models"])
def test_openai_routes_refuse_without_the_key(keyed, headers, method, path, body):
    status, text = keyed.request(method, path, body=body, headers=headers)
    check_openai_error(status, json.loads(text), 401)


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
    ("POST", "/api/generate", {"model": MODEL, "prompt": "Hi"}),
    ("GET", "/api/tags", None),
], ids=["chat", "generate", "tags"])
def test_ollama_routes_refuse_without_the_key(keyed, method, path, body):
    status, text = keyed.request(method, path, body=body, headers={"Authorization": None})
    assert status == 401
    assert isinstance(json.loads(text)["error"], str)


def test_openai_client_with_wrong_key(keyed):
    with pytest.raises(openai.AuthenticationError):
        keyed.openai(api_key="wrong-key").chat.completions.create(
            model=MODEL, messages=CHAT_BODY["messages"], max_tokens=4)


def test_openai_client_with_the_key(keyed):
    r = keyed.openai(api_key=API_KEY).chat.completions.create(
        model=MODEL, messages=CHAT_BODY["messages"], temperature=0, max_tokens=4)
    assert r.choices[0].message.content
    assert MODEL in [m.id for m in keyed.openai(api_key=API_KEY).models.list().data]


def test_ollama_client_with_and_without_the_key(keyed):
    r = keyed.ollama().chat(model=MODEL, messages=CHAT_BODY["messages"],
                            options={"temperature": 0, "num_predict": 4})
    assert r.message.content
    with pytest.raises(ollama.ResponseError) as e:
        keyed.ollama(headers={}).chat(model=MODEL, messages=CHAT_BODY["messages"])
    assert e.value.status_code == 401


def test_scheme_in_any_case_and_www_authenticate(keyed):
    for scheme in ("bearer", "BEARER", "Bearer"):
        status, _ = keyed.request("GET", "/v1/models", headers={"Authorization": f"{scheme} {API_KEY}"})
        assert status == 200, scheme
    import http.client
    conn = http.client.HTTPConnection(keyed.host, keyed.port, timeout=30)
    conn.request("GET", "/v1/models")
    r = conn.getresponse()
    r.read()
    assert r.status == 401 and r.getheader("WWW-Authenticate") == "Bearer"


def test_anthropic_client_sends_its_key_as_x_api_key(keyed):
    import anthropic
    good = anthropic.Anthropic(base_url=keyed.url, api_key=API_KEY, max_retries=0, timeout=60)
    assert good.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]).content
    bad = anthropic.Anthropic(base_url=keyed.url, api_key="wrong", max_retries=0, timeout=60)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])


def test_cors_preflight_before_auth():
    """With --cors-origin, a browser's preflight is answered (no key needed) for that
    origin only, and responses carry Access-Control-Allow-Origin; without it, none."""
    import http.client
    s = Server(["--parallel", "2", "--cors-origin", "http://app.example"], api_key=API_KEY)
    try:
        def call(method, path, headers):
            conn = http.client.HTTPConnection(s.host, s.port, timeout=30)
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            r.read()
            conn.close()
            return r
        pre = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        r = call("OPTIONS", "/v1/chat/completions", pre)
        assert r.status == 200
        assert r.getheader("Access-Control-Allow-Origin") == "http://app.example"
        assert "POST" in (r.getheader("Access-Control-Allow-Methods") or "") or \
            r.getheader("Access-Control-Allow-Methods") == "*"
        r = call("OPTIONS", "/v1/chat/completions", {**pre, "Origin": "http://evil.example"})
        assert r.getheader("Access-Control-Allow-Origin") is None
        r = call("GET", "/v1/models", {"Origin": "http://app.example", "Authorization": f"Bearer {API_KEY}"})
        assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") == "http://app.example"
    finally:
        s.stop()


def test_no_cors_headers_without_an_origin(keyed):
    import http.client
    conn = http.client.HTTPConnection(keyed.host, keyed.port, timeout=30)
    conn.request("GET", "/v1/models", headers={"Origin": "http://app.example",
                                               "Authorization": f"Bearer {API_KEY}"})
    r = conn.getresponse()
    r.read()
    assert r.status == 200 and r.getheader("Access-Control-Allow-Origin") is None
