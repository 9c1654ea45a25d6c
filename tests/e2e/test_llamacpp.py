"""llama-server's native endpoints: /completion (plain and streamed, stop words, grammar,
n_predict), /infill, /props, /apply-template, and refusals of what Hearth does not
implement."""

import http.client
import json

import pytest

from conftest import MODEL, Server, default_model_path
import gguf_edit

PROMPT = "The capital of France is"


def stream_lines(server, body, path="/completion"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    out = [json.loads(l[6:]) for l in r.read().decode().splitlines() if l.startswith("data: ")]
    conn.close()
    return out


def test_completion_plain_and_streamed(server, oai):
    status, v = server.post_json("/completion", {"prompt": PROMPT, "n_predict": 12, "temperature": 0})
    assert status == 200, v
    assert v["stop"] is True and v["tokens_predicted"] <= 12 and v["tokens_evaluated"] > 0
    assert v["stop_type"] in ("eos", "limit") and v["timings"]["predicted_n"] == v["tokens_predicted"]
    # The same greedy text as OpenAI's completion.
    o = oai.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0)
    assert v["content"] == o.choices[0].text
    lines = stream_lines(server, {"prompt": PROMPT, "n_predict": 12, "temperature": 0, "stream": True})
    assert lines[-1]["stop"] is True and all(not l["stop"] for l in lines[:-1])
    assert "".join(l["content"] for l in lines) == v["content"]
    # Token prompts and stop words.
    status, toks = server.post_json("/tokenize", {"content": PROMPT, "add_special": True})
    status, t = server.post_json("/completion", {"prompt": toks["tokens"], "n_predict": 12, "temperature": 0})
    assert t["content"] == v["content"]
    word = v["content"][3:6]
    status, w = server.post_json("/completion", {"prompt": PROMPT, "n_predict": 12, "temperature": 0,
                                                 "stop": [word]})
    assert w["stop_type"] == "word" and w["stopping_word"] == word
    assert w["content"] == v["content"][:v["content"].index(word)]


def test_completion_grammar_and_refusals(server):
    status, v = server.post_json("/completion", {"prompt": "Is the sky blue? Answer:", "n_predict": 8,
                                                 "grammar": 'root ::= " yes" | " no"', "seed": 3})
    assert status == 200 and v["content"] in (" yes", " no"), v
    for body in ({"samplers": ["top_k"]}, {"mirostat": 2}, {"n_probs": 3}, {"grammar": "root ::= nothing"}):
        status, e = server.post_json("/completion", {"prompt": "Hi", "n_predict": 2, **body})
        assert status == 400, (body, e)
    status, _ = server.post_json("/completion", {"prompt": "Hi", "n_predict": 2, "n_probs": 0,
                                                 "cache_prompt": True})
    assert status == 200


def test_props_and_apply_template(server):
    status, body = server.request("GET", "/props")
    p = json.loads(body)
    assert status == 200 and p["total_slots"] == 32 and p["default_generation_settings"]["n_ctx"] > 0
    assert "im_start" in p["chat_template"]
    status, t = server.post_json("/apply-template", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and t["prompt"].endswith("<|im_start|>assistant\n") and "Hi" in t["prompt"]


# SmolLM2 has no fill-in-the-middle tokens. This copy declares four of its unused special
# tokens as FIM_PRE, FIM_SUF, FIM_MID and FIM_SEP (its <reponame> is FIM_REP by its text),
# which exercises the prompt layout and the endpoint; the model was not trained for it.
FIM = {"pre": (11, "<jupyter_start>"), "suf": (12, "<jupyter_text>"), "mid": (13, "<jupyter_code>"),
       "sep": (5, "<file_sep>")}


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("fim") / "fim.gguf"
    gguf_edit.with_metadata(default_model_path(), path, {
        f"tokenizer.ggml.fim_{k}_token_id": i for k, (i, _) in FIM.items()})
    s = Server(["-m", str(path), "--parallel", "2"])
    yield s
    s.stop()


def count(server, text):
    status, v = server.post_json("/tokenize", {"content": text})
    assert status == 200, v
    return len(v["tokens"])


def test_infill_lays_out_the_fim_prompt(fim_server):
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    extra = [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}]
    body = {"input_prefix": prefix, "input_suffix": suffix, "input_extra": extra, "prompt": "a",
            "n_predict": 6, "temperature": 0}
    status, v = fim_server.post_json("/infill", body)
    assert status == 200, v
    assert v["stop"] is True and v["truncated"] is False and 0 < v["tokens_predicted"] <= 6
    # The repo-level layout, spelled with the tokens' texts: /tokenize parses them back.
    pre, suf, mid, sep = (FIM[k][1] for k in ("pre", "suf", "mid", "sep"))
    layout = (f"<reponame>myproject\n{sep}util.py\n{extra[0]['text']}{sep}filename\n"
              f"{pre}{prefix}{suf}{suffix}{mid}a")
    assert v["tokens_evaluated"] == count(fim_server, layout)
    # The same greedy text as /completion on that prompt, and streamed.
    status, c = fim_server.post_json("/completion", {"prompt": layout, "n_predict": 6, "temperature": 0})
    assert c["content"] == v["content"], (c, v)
    lines = stream_lines(fim_server, {**body, "stream": True}, "/infill")
    assert lines[-1]["stop"] is True and "".join(l["content"] for l in lines) == v["content"]


def test_infill_truncates_what_does_not_fit(fim_server):
    status, props = fim_server.request("GET", "/props")
    n_ctx = json.loads(props)["default_generation_settings"]["n_ctx"]
    words = " ".join(f"w{i}" for i in range(n_ctx))
    status, v = fim_server.post_json("/infill", {"input_prefix": words, "input_suffix": words,
                                                 "n_predict": 4, "temperature": 0})
    assert status == 200, v
    assert v["truncated"] is True and v["tokens_evaluated"] <= n_ctx - 4


def test_infill_without_fim_tokens_is_refused(server):
    status, v = server.post_json("/infill", {"input_prefix": "a", "input_suffix": "b", "n_predict": 2})
    assert status == 501 and "fill-in-the-middle" in v["error"]["message"], v
    status, v = server.post_json("/infill", {"input_prefix": "a", "n_probs": 5})
    assert status == 400 and v["error"]["param"] == "n_probs", v
    status, v = server.post_json("/infill", {"input_prefix": "a", "input_extra": [
        {"filename": "f.py", "text": "x", "language": "python"}]})
    assert status == 400 and "language" in v["error"]["message"], v
