"""Embeddings through the real server: all-MiniLM-L6-v2 (converted by `hearth pull
all-minilm`) with the official openai and ollama clients and LangChain, checked against
the float64 oracle (tests/data/embeddings); the default model pooled by its last token;
and clear errors for what cannot be embedded."""

import base64
import json
import math
import struct
from pathlib import Path

import pytest

from conftest import MODEL, Server

MINILM = "all-minilm-l6-v2"
DATA = Path(__file__).resolve().parents[1] / "data" / "embeddings"
ORACLE = json.loads((DATA / "minilm_numpy.json").read_text())
TEXTS, VECTORS, IDS = ORACLE["texts"], ORACLE["vectors"], ORACLE["token_ids"]


def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def close(got, i, bound=0.9999):
    c = cos(got, VECTORS[i])
    assert c >= bound, (i, TEXTS[i], c)


@pytest.fixture(scope="module")
def minilm():
    s = Server(["-m", "all-minilm", "--parallel", "8"])
    yield s
    s.stop()


def test_openai_client_embeds_texts_lists_tokens_and_base64(minilm):
    client = minilm.openai()
    r = client.embeddings.create(model=MINILM, input=TEXTS[1])
    assert len(r.data) == 1 and r.model == MINILM
    close(r.data[0].embedding, 1)
    assert r.usage.prompt_tokens == len(IDS[1]) == r.usage.total_tokens
    # Every reference text in one request, in order (Korean and Hindi included).
    r = client.embeddings.create(model=MINILM, input=TEXTS)
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    for i, d in enumerate(r.data):
        close(d.embedding, i)
    assert r.usage.prompt_tokens == sum(len(t) for t in IDS)
    # Token arrays.
    r = client.embeddings.create(model=MINILM, input=IDS[:3])
    for i, d in enumerate(r.data):
        close(d.embedding, i)
    # base64 as sent on the wire: little-endian f32s.
    status, v = minilm.post_json("/v1/embeddings", {"model": MINILM, "input": TEXTS[2],
                                                    "encoding_format": "base64"})
    assert status == 200, v
    raw = base64.b64decode(v["data"][0]["embedding"])
    close(struct.unpack(f"<{len(raw) // 4}f", raw), 2)
    # Fewer dimensions: cut and renormalized.
    r = client.embeddings.create(model=MINILM, input=TEXTS[3], dimensions=64)
    e = r.data[0].embedding
    assert len(e) == 64 and abs(math.sqrt(sum(x * x for x in e)) - 1) < 1e-5
    assert cos(e, VECTORS[3][:64]) > 0.99999


def test_ollama_client_embeds(minilm):
    client = minilm.ollama()
    r = client.embed(model=MINILM, input=TEXTS[:4])
    assert len(r.embeddings) == 4 and r.prompt_eval_count == sum(len(t) for t in IDS[:4])
    for i, e in enumerate(r.embeddings):
        close(e, i)
    close(client.embeddings(model=MINILM, prompt=TEXTS[5]).embedding, 5)


def test_langchain_embeddings_round_trip(minilm):
    from langchain_ollama import OllamaEmbeddings
    from langchain_openai import OpenAIEmbeddings

    # The ctx-length check would fetch a tiktoken vocabulary from the internet.
    oai = OpenAIEmbeddings(model=MINILM, base_url=minilm.url + "/v1", api_key="none",
                           check_embedding_ctx_length=False)
    for i, e in enumerate(oai.embed_documents(TEXTS[:3])):
        close(e, i)
    close(oai.embed_query(TEXTS[4]), 4)
    oll = OllamaEmbeddings(model=MINILM, base_url=minilm.url)
    for i, e in enumerate(oll.embed_documents(TEXTS[:3])):
        close(e, i)


def test_what_cannot_be_embedded_is_a_clear_400(minilm, server):
    long = " ".join(["word"] * 600)
    for body, param in [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["x"] * 10_000}, "input"),
        ({"input": long}, "input"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "frobnicate": 1}, "frobnicate"),
    ]:
        status, v = minilm.post_json("/v1/embeddings", {"model": MINILM, **body})
        assert status == 400 and v["error"]["param"] == param, (body, v)
    # Ollama cuts a long input by default, and refuses it when told not to.
    status, v = minilm.post_json("/api/embed", {"model": MINILM, "input": long})
    assert status == 200 and v["prompt_eval_count"] == 512, v
    status, v = minilm.post_json("/api/embed", {"model": MINILM, "input": long, "truncate": False})
    assert status == 400 and "context" in v["error"], v
    # An encoder does not generate.
    status, v = minilm.post_json("/v1/chat/completions", {
        "model": MINILM, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and "encoder" in v["error"]["message"], v
    # A generative model served without --pooling cannot embed; reranking needs a
    # cross-encoder.
    status, v = server.post_json("/v1/embeddings", {"model": MODEL, "input": "Hi"})
    assert status == 400 and "--pooling" in v["error"]["message"], v
    status, v = minilm.post_json("/v1/rerank", {"model": MINILM, "query": "a", "documents": ["b"]})
    assert status == 400 and v["error"]["param"] == "model", v
    assert MINILM in v["error"]["message"] and "reranker" in v["error"]["message"], v
    # Both servers still serve.
    close(minilm.openai().embeddings.create(model=MINILM, input=TEXTS[0]).data[0].embedding, 0)
    status, _ = server.post_json("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 1})
    assert status == 200


def test_a_generative_model_embeds_with_pooling():
    ref = json.loads((DATA / "smollm2_decoder_pooling.json").read_text())
    s = Server(["--pooling", "last", "--parallel", "4"])
    try:
        r = s.openai().embeddings.create(model=MODEL, input=ref["texts"])
        for i, d in enumerate(r.data):
            c = cos(d.embedding, ref["vectors"]["last"][i])
            assert c >= 0.999, (i, c)
    finally:
        s.stop()
