"""Fixtures for Hearth's end-to-end suite: the real `hearth serve` binary on loopback.

The binary is target/release/hearth (override with HEARTH_BIN). Each server is started
with `--port 0`; its port is read from the `hearth: loading 'MODEL' on http://HOST:PORT` line it
prints to stderr, then /health is polled until it answers 200.
"""

import json
import os
import re
import subprocess
import threading
import time
import http.client
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEARTH_BIN = os.environ.get("HEARTH_BIN", str(REPO / "target" / "release" / "hearth"))
MODEL = "smollm2-135m-instruct"


def default_model_path():
    """The default model's file, for tests that serve an edited copy of it."""
    d = os.environ.get("HEARTH_MODELS") or os.path.expanduser("~/.cache/hearth/models")
    return os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
API_KEY = "hearth-e2e-secret"
STARTUP_TIMEOUT_S = 60
# Every HTTP call in the suite has a timeout, so a hung server fails the test instead of
# hanging the run.
HTTP_TIMEOUT_S = 120

# The first line names the bound address while the model loads; "listening" follows once
# it is ready.
LISTEN_RE = re.compile(r"hearth: loading '[^']*' on http://([^\s:/]+):(\d+)")


class Server:
    """A running `hearth serve` process."""

    def __init__(self, args, api_key=None):
        self.args = list(args)
        self.api_key = api_key
        self.lines = []
        self.host = None
        self.port = None
        self._listening = threading.Event()
        cmd = [HEARTH_BIN, "serve", "--host", "127.0.0.1", "--port", "0", "-t", "2", *self.args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.cmd = cmd
        try:
            # The key comes only from --api-key here: none inherited from the environment.
            env = {k: v for k, v in os.environ.items() if k != "HEARTH_API_KEY"}
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, errors="replace",
            )
        except OSError as e:
            pytest.fail(f"cannot start {cmd}: {e} (build it with `cargo build --release` "
                        "or point HEARTH_BIN at the binary)", pytrace=False)
        # Drain stderr for the whole life of the process, so the server never blocks on a
        # full pipe, and keep it for failure messages.
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._wait_ready()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = LISTEN_RE.search(line)
            if m and not self._listening.is_set():
                self.host, self.port = m.group(1), int(m.group(2))
                self._listening.set()

    def stderr_text(self, last=60):
        return "\n".join(self.lines[-last:])

    def _fail(self, why):
        self.stop()
        pytest.fail(f"{why}\ncommand: {' '.join(self.cmd)}\n--- server stderr ---\n"
                    f"{self.stderr_text()}", pytrace=False)

    def _wait_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._listening.wait(0.1):
            if self.proc.poll() is not None:
                self._reader.join(2)
                self._fail(f"hearth serve exited with code {self.proc.returncode} "
                           "before printing its loading line")
            if time.monotonic() > deadline:
                self._fail(f"no 'hearth: loading ... on http://...' line within {STARTUP_TIMEOUT_S} s")
        last = None
        while True:
            if self.proc.poll() is not None:
                self._reader.join(2)
                self._fail(f"hearth serve exited with code {self.proc.returncode} while loading")
            try:
                status, body = self.request("GET", "/health", timeout=5)
                last = f"{status} {body[:200]!r}"
                if status == 200:
                    assert json.loads(body) == {"status": "ok"}, body
                    return
                if status != 503:
                    self._fail(f"/health answered {last}; expected 503 while loading, then 200")
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                self._fail(f"/health not 200 within {STARTUP_TIMEOUT_S} s (last: {last})")
            time.sleep(0.1)

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT_S):
        """One plain HTTP request. `body` may be bytes, str or a JSON-able object.
        Returns (status, body text)."""
        hdrs = dict(self.auth_headers())
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def post_json(self, path, payload, headers=None):
        """POST a JSON body; returns (status, parsed JSON or None if not JSON)."""
        status, text = self.request("POST", path, payload, headers=headers)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    def metrics(self):
        """GET /metrics parsed into {name: summed value over its label sets}."""
        status, text = self.request("GET", "/metrics")
        assert status == 200, text
        return parse_prometheus(text)

    def openai(self, api_key=None):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key or self.api_key or "none",
                             max_retries=0, timeout=HTTP_TIMEOUT_S)

    def ollama(self, headers=None):
        import ollama
        return ollama.Client(host=self.url, timeout=HTTP_TIMEOUT_S,
                             headers=headers if headers is not None else self.auth_headers())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def parse_prometheus(text):
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, f"not a Prometheus sample line: {line!r}"
        values[m.group(1)] = values.get(m.group(1), 0.0) + float(m.group(3))
    return values


@pytest.fixture(scope="session")
def server():
    """The main server: default model, 32 sequences in parallel."""
    s = Server(["--parallel", "32"])
    yield s
    s.stop()


@pytest.fixture(scope="session")
def oai(server):
    return server.openai()


@pytest.fixture(scope="session")
def oll(server):
    return server.ollama()


# The request used to check that the server still serves correctly after bad input.
BASELINE_MESSAGES = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="session")
def baseline(server):
    """Greedy answer to a fixed chat request, taken once at the start of the session."""
    r = server.openai().chat.completions.create(
        model=MODEL, messages=BASELINE_MESSAGES, temperature=0, max_tokens=12)
    text = r.choices[0].message.content
    assert text, "the baseline greedy answer is empty"
    return text


def check_openai_error(status, body, expected_status):
    assert status == expected_status, body
    assert isinstance(body, dict), f"error body is not JSON: {body!r}"
    err = body.get("error")
    assert isinstance(err, dict), body
    assert isinstance(err.get("message"), str) and err["message"], body
    assert isinstance(err.get("type"), str) and err["type"], body
    assert "param" in err and "code" in err, body


def assert_serving(server, baseline_text):
    """The server answers a normal request, and answers it exactly as before."""
    r = server.openai().chat.completions.create(
        model=MODEL, messages=BASELINE_MESSAGES, temperature=0, max_tokens=12)
    assert r.choices[0].message.content == baseline_text
    status, body = server.request("GET", "/health")
    assert status == 200, body



def wait_for(predicate, timeout=30, interval=0.05):
    """Polls until predicate() is truthy; returns its last value (falsy if it never was).
    A wait with a generous bound, for state that settles just after a response is sent;
    tests assert the state, never the time it took."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
