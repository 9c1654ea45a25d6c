"""llama-server's native endpoints: /completion (plain and streamed, stop words, grammar,
n_predict), /props, /apply-template, and refusals of what Hearth does not implement."""

import http.client
import json

from conftest import MODEL

PROMPT = "The capital of France is"


def stream_lines(server, body):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
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
