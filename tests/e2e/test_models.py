"""Many models in one server: each loads on its first request, requests alternate between
them, `/api/ps` shows what is loaded, `keep_alive` unloads (returning the memory), a
request reloads, `--max-loaded` evicts the least recently used idle model, a model that
cannot fit the memory budget is refused before anything is allocated, and /metrics
labels every series by model."""

import json
import os
import shutil
import subprocess

import ollama
import pytest

from conftest import HEARTH_BIN, MODEL, Server, default_model_path, wait_for

GEMMA = "gemma3-270m"


def models_dir():
    return os.environ.get("HEARTH_MODELS") or os.path.expanduser("~/.cache/hearth/models")


def rss(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def loaded(oll):
    return sorted(m.model.removesuffix(":latest") for m in oll.ps().models)


@pytest.fixture(scope="module")
def two():
    s = Server(["-m", MODEL, "-m", GEMMA, "--keep-alive", "-1", "--parallel", "4",
                "--kv-memory", "64"])
    yield s
    s.stop()


def test_requests_alternate_between_two_models(two):
    oai, oll = two.openai(), two.ollama()
    ids = [m.id for m in oai.models.list().data]
    assert ids[:2] == [MODEL, GEMMA], ids
    assert loaded(oll) == [MODEL]
    for i in range(4):
        name = (MODEL, GEMMA)[i % 2]
        r = oai.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}],
                                        max_tokens=4, temperature=0)
        assert r.model == name and r.choices[0].message.content
        g = oll.generate(model=name, prompt="Hello", options={"num_predict": 3, "temperature": 0})
        assert g.model == name and g.done
    assert loaded(oll) == sorted([MODEL, GEMMA])
    assert two.metrics()["hearth_requests_total"] >= 8
    status, text = two.request("GET", "/metrics")
    for name in (MODEL, GEMMA):
        assert f'hearth_requests_total{{model="{name}"}}' in text


def test_keep_alive_zero_unloads_and_returns_the_memory(two):
    oll = two.ollama()
    oll.generate(model=GEMMA, prompt="Hello", options={"num_predict": 2})
    assert GEMMA in loaded(oll)
    before = rss(two)
    oll.generate(model=GEMMA, prompt="Hello", options={"num_predict": 2}, keep_alive=0)
    assert wait_for(lambda: GEMMA not in loaded(oll), timeout=10)
    size = os.path.getsize(os.path.join(models_dir(), "gemma-3-270m-q4_k_m.gguf"))
    dropped = before - rss(two)
    assert dropped >= 0.8 * size, (before, dropped, size)
    # A request loads it again.
    r = oll.generate(model=GEMMA, prompt="Hello", options={"num_predict": 2})
    assert r.done and GEMMA in loaded(oll)


def test_max_loaded_evicts_the_least_recently_used_idle_model():
    s = Server(["-m", MODEL, "-m", GEMMA, "--max-loaded", "1", "--parallel", "4",
                "--kv-memory", "64"])
    try:
        oll = s.ollama()
        assert loaded(oll) == [MODEL]
        oll.generate(model=GEMMA, prompt="Hi", options={"num_predict": 2})
        assert loaded(oll) == [GEMMA]
        oll.generate(model=MODEL, prompt="Hi", options={"num_predict": 2})
        assert loaded(oll) == [MODEL]
    finally:
        s.stop()


def test_a_model_beyond_the_memory_budget_is_refused_before_loading():
    s = Server(["-m", MODEL, "-m", GEMMA, "--max-memory", "350", "--parallel", "4",
                "--kv-memory", "64"])
    try:
        before = rss(s)
        status, v = s.post_json("/v1/chat/completions", {
            "model": GEMMA, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        assert status == 400 and v["error"]["code"] == "insufficient_memory", v
        assert "needs about" in v["error"]["message"] and "--max-memory" in v["error"]["message"]
        assert rss(s) - before < 50 << 20  # nothing of it was loaded
        assert loaded(s.ollama()) == [MODEL]
        status, _ = s.post_json("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
        assert status == 200
    finally:
        s.stop()


def hearth(*args):
    p = subprocess.run([HEARTH_BIN, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def test_model_management_from_the_cli_and_the_ollama_client(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(default_model_path(), d / "SmolLM2-135M-Instruct.Q4_1.gguf")
    dirs = ["--models-dir", str(d)]
    hearth("cp", MODEL, "mycopy", *dirs)
    assert (d / "mycopy.gguf").is_file()
    shown = hearth("show", "mycopy", *dirs)
    assert "architecture        llama" in shown and "KV cache" in shown, shown
    s = Server([*dirs, "--parallel", "2"])
    try:
        oll = s.ollama()
        assert "mycopy:latest" in [m.model for m in oll.list().models]
        oll.copy("mycopy", "second")
        assert "second:latest" in [m.model for m in oll.list().models]
        assert oll.generate(model="second", prompt="Hi", options={"num_predict": 2}).done
        assert oll.show("second").details.family == "llama"
        listed = hearth("ps", "--host", s.url)
        assert "second" in listed and MODEL in listed, listed
        hearth("stop", "second", "--host", s.url)
        assert wait_for(lambda: "second" not in loaded(oll), timeout=10)
        oll.delete("second")
        assert not (d / "second.gguf").exists()
        assert "second:latest" not in [m.model for m in oll.list().models]
        with pytest.raises(ollama.ResponseError):
            oll.delete(MODEL)  # the default model stays
    finally:
        s.stop()
    hearth("rm", "mycopy", *dirs)
    assert not (d / "mycopy.gguf").exists()


def raw_show(server, name):
    """/api/show's JSON (the client's ShowResponse has no `system`)."""
    status, v = server.post_json("/api/show", {"model": name})
    assert status == 200, v
    return v


def delete_when_idle(oll, name):
    """Deletes a model just used: a model is busy (409) until its last request has let go
    of it, which may be a moment after the client has the answer."""
    def attempt():
        try:
            oll.delete(name)
            return True
        except ollama.ResponseError as e:
            assert e.status_code == 409, e
            return False
    assert wait_for(attempt, timeout=10, interval=0.1), f"{name} stayed busy"


def serve_dir(tmp_path):
    """A models directory holding the default model (a link, not a copy)."""
    d = tmp_path / "models"
    d.mkdir()
    os.symlink(default_model_path(), d / "SmolLM2-135M-Instruct.Q4_1.gguf")
    return d


def test_create_copy_show_ps_delete_with_the_ollama_client(tmp_path):
    d = serve_dir(tmp_path)
    # Without the prefix cache, prompt_eval_count is the whole prompt's length.
    s = Server(["--models-dir", str(d), "--parallel", "2", "--keep-alive", "-1",
                "--no-prefix-cache"])
    try:
        oll, oai = s.ollama(), s.openai()
        system = "You are a pirate. Answer in one line."
        r = oll.create(model="pirate", from_=MODEL, system=system,
                       parameters={"temperature": 0, "num_predict": 6, "stop": ["\n\n"]})
        assert r.status == "success"
        # A manifest beside the models, not a copy of the weights.
        m = json.loads((d / "pirate.hearth.json").read_text())
        assert m["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and m["system"] == system
        assert m["parameters"] == {"temperature": 0, "num_predict": 6, "stop": ["\n\n"]}
        assert sorted(p.name for p in d.iterdir()) == [
            "SmolLM2-135M-Instruct.Q4_1.gguf", "pirate.hearth.json"]
        assert "pirate:latest" in [x.model for x in oll.list().models]
        listed = {x.id: x for x in oai.models.list().data}
        assert listed["pirate"].capabilities == ["completion"], listed["pirate"]
        assert "pirate" in hearth("list", "--models-dir", str(d))

        # /api/show reads the header: the created model is not loaded by it.
        shown = oll.show("pirate")
        assert "pirate" not in loaded(oll)
        assert shown.details.family == "llama" and shown.details.format == "gguf"
        assert shown.modelinfo["general.architecture"] == "llama"
        assert shown.capabilities == ["completion"]
        assert "num_predict" in shown.parameters and "temperature" in shown.parameters
        assert "FROM " in shown.modelfile and 'PARAMETER stop "\\n\\n"' in shown.modelfile
        assert shown.template  # the base model's chat template
        status, raw = s.post_json("/api/show", {"model": "pirate"})
        assert raw["system"] == system

        # Its SYSTEM and PARAMETERs are the request's defaults: the same as the base
        # model given them explicitly, token for token.
        hi = [{"role": "user", "content": "Who are you?"}]
        mine = oll.chat(model="pirate", messages=hi)
        base = oll.chat(model=MODEL, messages=[{"role": "system", "content": system}, *hi],
                        options={"temperature": 0, "num_predict": 6, "stop": ["\n\n"]})
        plain = oll.chat(model=MODEL, messages=hi, options={"temperature": 0, "num_predict": 6})
        assert mine.prompt_eval_count == base.prompt_eval_count != plain.prompt_eval_count
        assert mine.message.content == base.message.content
        assert mine.eval_count <= 6
        # A request's own values win.
        short = oll.chat(model="pirate", messages=hi, options={"num_predict": 2})
        assert short.eval_count == 2 and short.prompt_eval_count == mine.prompt_eval_count
        own = oll.chat(model="pirate", messages=[{"role": "system", "content": "Be brief."}, *hi])
        assert own.prompt_eval_count != mine.prompt_eval_count
        # Every route: OpenAI's too.
        c = oai.chat.completions.create(model="pirate", messages=hi)
        assert c.usage.prompt_tokens == mine.prompt_eval_count
        assert c.usage.completion_tokens <= 6 and c.choices[0].message.content == mine.message.content
        g = oll.generate(model="pirate", prompt="Who are you?")
        assert g.prompt_eval_count == mine.prompt_eval_count and g.response == mine.message.content
        assert "pirate" in loaded(oll)
        assert "pirate" in hearth("ps", "--host", s.url)

        # A TEMPLATE replaces the chat template (Jinja; Go templates are refused).
        tpl = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
        stream = list(oll.create(model="plain", from_="pirate", template=tpl, stream=True))
        assert [p.status for p in stream][-1] == "success" and len(stream) >= 2
        assert oll.show("plain").template == tpl
        assert raw_show(s, "plain")["system"] == system  # inherited from pirate
        p = oll.chat(model="plain", messages=hi, options={"num_predict": 1})
        status, t = s.post_json("/tokenize", {"add_special": True, "content":
                                              f"system: {system}\nuser: Who are you?\nassistant:"})
        assert p.prompt_eval_count == len(t["tokens"]), (p.prompt_eval_count, t)
        status, v = s.post_json("/api/create", {"model": "bad", "from": MODEL,
                                                "template": "{{ .System }} {{ .Prompt }}"})
        assert status == 400 and "TEMPLATE" in v["error"] and "Go template" in v["error"], v

        # copy makes a second manifest; delete removes a manifest, never the base.
        oll.copy("pirate", "parrot")
        assert (d / "parrot.hearth.json").is_file() and not (d / "parrot.gguf").exists()
        assert raw_show(s, "parrot")["system"] == system
        assert oll.chat(model="parrot", messages=hi).message.content == mine.message.content
        delete_when_idle(oll, "parrot")
        assert not (d / "parrot.hearth.json").exists()
        assert (d / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()
        assert "parrot:latest" not in [x.model for x in oll.list().models]
        # Creating a name again replaces it.
        oll.create(model="pirate", from_=MODEL, system="You are a parrot.")
        assert raw_show(s, "pirate")["system"] == "You are a parrot."
        assert oll.show("pirate").parameters == ""
        delete_when_idle(oll, "pirate")
        assert not (d / "pirate.hearth.json").exists()
    finally:
        s.stop()


def test_create_refuses_what_it_does_not_do(tmp_path):
    d = serve_dir(tmp_path)
    s = Server(["--models-dir", str(d), "--parallel", "2"])
    try:
        oll = s.ollama()
        for extra, name in [({"license": "MIT"}, "license"),
                            ({"messages": [{"role": "user", "content": "hi"}]}, "messages"),
                            ({"quantize": "q4_0"}, "quantize"),
                            ({"adapters": {"a.gguf": "sha256:00"}}, "adapters"),
                            ({"files": {"m.gguf": "sha256:00"}}, "files")]:
            status, v = s.post_json("/api/create", {"model": "x", "from": MODEL, **extra})
            assert status == 400 and name in v["error"], (extra, v)
        status, v = s.post_json("/api/create", {"model": "x", "from": MODEL,
                                                "parameters": {"mirostat": 2}})
        assert status == 400 and "unknown parameter 'mirostat'" in v["error"], v
        status, v = s.post_json("/api/create", {"model": "x", "from": MODEL,
                                                "parameters": {"top_k": "many"}})
        assert status == 400 and "top_k" in v["error"], v
        status, v = s.post_json("/api/create", {"model": "x", "from": "no-such-model"})
        assert status == 404 and "no-such-model" in v["error"], v
        status, v = s.post_json("/api/create", {"model": "x"})
        assert status == 400 and "from" in v["error"], v
        status, v = s.post_json("/api/create", {"model": "../x", "from": MODEL})
        assert status == 400 and "not a model name" in v["error"], v
        status, v = s.post_json("/api/create", {"model": MODEL, "from": MODEL})
        assert status == 409 and "GGUF" in v["error"], v
        with pytest.raises(ollama.ResponseError):
            oll.create(model="y", from_=MODEL, license="MIT")
        assert sorted(p.name for p in d.iterdir()) == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    finally:
        s.stop()


class FakeHub:
    """A Hugging Face-style server on loopback: the tree API's listing and
    `/resolve/main/` answering with the file, its size and sha256 in `X-Linked-Size`,
    `X-Linked-Etag` and `ETag`, as the Hub does (crates/hearth-cli/src/hf.rs)."""

    def __init__(self, repos):
        import hashlib
        import http.server
        import threading

        self.repos = repos  # "owner/repo" -> {path: bytes}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, code, body, headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
                    files = hub.repos.get(f"{parts[2]}/{parts[3]}")
                    if files is None:
                        return self.send(404, b'{"error":"Repository not found"}')
                    listing = [{"type": "file", "path": p, "size": len(b),
                                "oid": hashlib.sha1(b).hexdigest(),
                                "lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b),
                                        "pointerSize": 134}} for p, b in files.items()]
                    return self.send(200, json.dumps(listing).encode(),
                                     [("Content-Type", "application/json")])
                if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
                    body = hub.repos.get(f"{parts[0]}/{parts[1]}", {}).get("/".join(parts[4:]))
                    if body is None:
                        return self.send(404, b"Entry not found")
                    sha = hashlib.sha256(body).hexdigest()
                    return self.send(200, body, [("ETag", f'"{sha}"'), ("X-Linked-Etag", f'"{sha}"'),
                                                 ("X-Linked-Size", str(len(body))),
                                                 ("Accept-Ranges", "bytes")])
                self.send(404, b"not found")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_pull_streams_progress_from_a_hugging_face_style_server(tmp_path, monkeypatch):
    model = open(default_model_path(), "rb").read()
    hub = FakeHub({"test/smolpull": {"SmolPull-Q4_1.gguf": model, "README.md": b"hi"}})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    d = serve_dir(tmp_path)
    s = Server(["--models-dir", str(d), "--parallel", "2"])
    try:
        oll = s.ollama()
        name = "hf.co/test/smolpull:Q4_1"
        parts = list(oll.pull(name, stream=True))
        statuses = [p.status for p in parts]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
        assert "verifying sha256 digest" in statuses, statuses
        downloads = [p for p in parts if p.status.startswith("downloading")]
        assert downloads and downloads[-1].status == "downloading SmolPull-Q4_1.gguf"
        import hashlib
        assert downloads[-1].digest == "sha256:" + hashlib.sha256(model).hexdigest()
        assert all(p.total == len(model) for p in downloads)
        assert downloads[-1].completed == len(model)
        assert statuses.index("verifying sha256 digest") > statuses.index(downloads[-1].status)
        assert (d / "SmolPull-Q4_1.gguf").read_bytes() == model
        # Served at once, by the file's name and by the name it was pulled as.
        assert "SmolPull-Q4_1:latest" in [m.model for m in oll.list().models]
        r = oll.generate(model=name, prompt="Hi", options={"num_predict": 2})
        assert r.done and r.model == "SmolPull-Q4_1"
        # Pulling again finds it up to date; stream: false answers with the last line.
        status, v = s.post_json("/api/pull", {"model": name, "stream": False})
        assert status == 200 and v == {"status": "success"}, v
        # Errors: a missing repository (a streamed error line, or a 404), unknown fields.
        with pytest.raises(ollama.ResponseError) as e:
            list(oll.pull("hf.co/test/missing", stream=True))
        assert "not found" in str(e.value), e.value
        status, v = s.post_json("/api/pull", {"model": "hf.co/test/missing", "stream": False})
        assert status == 404 and "not found" in v["error"], v
        status, v = s.post_json("/api/pull", {"model": "no-such-model", "stream": False})
        assert status == 404 and "unknown model 'no-such-model'" in v["error"], v
        status, v = s.post_json("/api/pull", {"model": name, "insecure": True})
        assert status == 400 and "insecure" in v["error"], v
        status, v = s.post_json("/api/pull", {"model": name, "username": "x"})
        assert status == 400 and "username" in v["error"], v
    finally:
        s.stop()
        hub.close()
