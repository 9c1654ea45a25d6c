"""Reranking through the real server: a small random-weight BertForSequenceClassification
cross-encoder (tests/data/rerank), converted by `hearth convert` and served, scored over
plain HTTP in llama-server's / Jina's request shape and in Cohere's, and checked against
the float64 numpy oracle (tests/data/rerank/tiny_numpy.json); and clear 400s for what
cannot be reranked, with the server serving on."""

import json
import math
import subprocess
from pathlib import Path

import pytest

from conftest import HEARTH_BIN, Server

DATA = Path(__file__).resolve().parents[1] / "data" / "rerank"
ORACLE = json.loads((DATA / "tiny_numpy.json").read_text())
PAIRS, SCORES, IDS = ORACLE["pairs"], ORACLE["scores"], ORACLE["token_ids"]
NAME = "tiny-cross-encoder"
# f32 weights: Hearth's logits are within 1e-5 of the oracle's (crates/hearth-model/tests/rerank.rs).
BOUND = 1e-4


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def reranker(tmp_path_factory):
    out = tmp_path_factory.mktemp("rerank") / f"{NAME}.gguf"
    subprocess.run([HEARTH_BIN, "convert", str(DATA / NAME), str(out), "--type", "f32"],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    s = Server(["-m", str(out), "--parallel", "4"])
    yield s
    s.stop()


def group(query):
    """The oracle's pairs for one query: (indices, documents, logits)."""
    idx = [i for i, (q, _) in enumerate(PAIRS) if q == query]
    return idx, [PAIRS[i][1] for i in idx], [SCORES[i] for i in idx]


def test_llama_cpp_and_jina_shape_matches_the_oracle(reranker):
    query = PAIRS[0][0]
    idx, docs, logits = group(query)
    for path in ("/v1/rerank", "/rerank"):
        status, v = reranker.post_json(path, {"model": NAME, "query": query, "documents": docs})
        assert status == 200, v
        assert v["object"] == "list" and v["id"].startswith("rerank-"), v
        res = v["results"]
        assert sorted(r["index"] for r in res) == list(range(len(docs)))
        # Best first, each the sigmoid of the oracle's logit.
        assert [r["index"] for r in res] == sorted(range(len(docs)), key=lambda i: -logits[i])
        for r in res:
            assert abs(r["relevance_score"] - sigmoid(logits[r["index"]])) < BOUND, r
            assert "document" not in r
        n = sum(len(IDS[i]) for i in idx)
        assert v["usage"] == {"prompt_tokens": n, "total_tokens": n}, v
    # llama-server's raw logits, top_n, and the documents returned (Jina's shape).
    status, v = reranker.post_json("/v1/rerank", {
        "model": NAME, "query": query, "documents": docs, "top_n": 2,
        "return_documents": True, "raw_scores": True})
    assert status == 200, v
    best = sorted(range(len(docs)), key=lambda i: -logits[i])[:2]
    assert [r["index"] for r in v["results"]] == best
    for r in v["results"]:
        assert abs(r["relevance_score"] - logits[r["index"]]) < BOUND, r
        assert r["document"] == {"text": docs[r["index"]]}


def test_every_oracle_pair_scores_alike_alone_and_together(reranker):
    # Each pair alone, and each query's documents in one request: the same scores.
    for i, (q, d) in enumerate(PAIRS):
        status, v = reranker.post_json("/v1/rerank", {
            "model": NAME, "query": q, "documents": [d], "raw_scores": True})
        assert status == 200, v
        assert abs(v["results"][0]["relevance_score"] - SCORES[i]) < BOUND, (i, v)
        assert v["usage"]["prompt_tokens"] == len(IDS[i])


def test_cohere_shape_with_document_objects(reranker):
    query = PAIRS[4][0]
    idx, docs, logits = group(query)
    # Cohere v1 / Jina: documents as objects with their text; top_n beyond the count.
    status, v = reranker.post_json("/v1/rerank", {
        "model": NAME, "query": query, "documents": [{"text": d} for d in docs],
        "top_n": 100, "return_documents": True})
    assert status == 200, v
    assert len(v["results"]) == len(docs)
    for r in v["results"]:
        assert abs(r["relevance_score"] - sigmoid(logits[r["index"]])) < BOUND
        assert r["document"]["text"] == docs[r["index"]]
    scores = [r["relevance_score"] for r in v["results"]]
    assert scores == sorted(scores, reverse=True)


def test_text_embeddings_inference_shape(reranker):
    query = PAIRS[0][0]
    idx, docs, logits = group(query)
    # TEI: no model (the server's one), `texts`, `return_text`; a bare list answers.
    status, v = reranker.post_json("/rerank", {"query": query, "texts": docs,
                                              "return_text": True})
    assert status == 200, v
    assert isinstance(v, list) and len(v) == len(docs), v
    assert [r["index"] for r in v] == sorted(range(len(docs)), key=lambda i: -logits[i])
    for r in v:
        assert abs(r["score"] - sigmoid(logits[r["index"]])) < BOUND, r
        assert r["text"] == docs[r["index"]]
    status, v = reranker.post_json("/rerank", {"query": query, "texts": docs,
                                              "raw_scores": True})
    assert status == 200, v
    for r in v:
        assert abs(r["score"] - logits[r["index"]]) < BOUND and "text" not in r, r
    # Mixed shapes are refused by name.
    for body, param in [
        ({"texts": docs, "documents": docs}, "texts"),
        ({"texts": docs, "return_documents": True}, "return_documents"),
        ({"documents": docs, "return_text": True}, "return_text"),
        ({"texts": docs, "truncation_direction": "left"}, "truncation_direction"),
    ]:
        status, v = reranker.post_json("/rerank", {"query": query, **body})
        assert status == 400 and v["error"]["param"] == param, (body, v)


def test_long_pairs_are_refused_or_truncated(reranker):
    long_doc = " ".join(["school"] * 200)  # 200 tokens: more than the context of 128
    status, v = reranker.post_json("/v1/rerank", {
        "model": NAME, "query": "school", "documents": ["a", long_doc]})
    assert status == 400 and v["error"]["param"] == "documents[1]", v
    assert v["error"]["code"] == "context_length_exceeded", v
    status, v = reranker.post_json("/v1/rerank", {
        "model": NAME, "query": "school", "documents": ["a", long_doc], "truncate": True})
    assert status == 200, v
    assert v["usage"]["prompt_tokens"] == 5 + 128, v


def test_bad_requests_are_clear_400s_and_the_server_keeps_serving(reranker):
    q, d = PAIRS[0]
    for body, param in [
        ({"query": q, "documents": []}, "documents"),
        ({"query": q, "documents": ["x"] * 1001}, "documents"),
        ({"query": "", "documents": [d]}, "query"),
        ({"query": 3, "documents": [d]}, "query"),
        ({"query": q, "documents": [d], "top_n": 0}, "top_n"),
        ({"query": q, "documents": [{"text": d, "title": "t"}]}, "documents[0].title"),
        ({"query": q, "documents": [{"title": "t"}]}, "documents[0].text"),
        ({"query": q, "documents": [d], "rank_fields": ["text"]}, "rank_fields"),
        ({"query": q, "documents": [d], "max_tokens_per_doc": 10}, "max_tokens_per_doc"),
    ]:
        status, v = reranker.post_json("/v1/rerank", {"model": NAME, **body})
        assert status == 400 and v["error"]["param"] == param, (body, v)
    status, v = reranker.post_json("/v1/rerank", {"model": NAME, "documents": [d]})
    assert status == 400 and "query" in v["error"]["message"], v
    # A reranker does not embed, and does not generate.
    status, v = reranker.post_json("/v1/embeddings", {"model": NAME, "input": "hi"})
    assert status == 400 and v["error"]["param"] == "model", v
    assert NAME in v["error"]["message"] and "rerank" in v["error"]["message"], v
    status, v = reranker.post_json("/v1/chat/completions", {
        "model": NAME, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400, v
    # Still serving.
    status, v = reranker.post_json("/v1/rerank", {
        "model": NAME, "query": q, "documents": [d], "raw_scores": True})
    assert status == 200 and abs(v["results"][0]["relevance_score"] - SCORES[0]) < BOUND, v


def test_cli_reranks(reranker, tmp_path):
    gguf = reranker.args[1]
    query = PAIRS[0][0]
    idx, docs, logits = group(query)
    out = subprocess.run([HEARTH_BIN, "rerank", "-m", gguf, "-t", "2", query, *docs],
                         check=True, capture_output=True, text=True, timeout=120)
    v = json.loads(out.stdout)
    assert [r["index"] for r in v["results"]] == sorted(range(len(docs)), key=lambda i: -logits[i])
    for r in v["results"]:
        assert abs(r["logit"] - logits[r["index"]]) < BOUND
        assert abs(r["relevance_score"] - sigmoid(logits[r["index"]])) < BOUND
        assert r["document"] == docs[r["index"]]
