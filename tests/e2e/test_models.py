"""Many models in one server: each loads on its first request, requests alternate between
them, `/api/ps` shows what is loaded, `keep_alive` unloads (returning the memory), a
request reloads, `--max-loaded` evicts the least recently used idle model, a model that
cannot fit the memory budget is refused before anything is allocated, and /metrics
labels every series by model."""

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
