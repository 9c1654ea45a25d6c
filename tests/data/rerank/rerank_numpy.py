#!/usr/bin/env python3
"""Independent float64 numpy oracle for a Hugging Face BertForSequenceClassification
cross-encoder (one label): what transformers computes, without torch.

  tokens      : tokenizers.Tokenizer(tokenizer.json).encode(query, document): [CLS] query
                [SEP] document [SEP], token_type_ids 0 for [CLS] query [SEP] and 1 for
                document [SEP] (the post-processor's pair template); no truncation
  encoder     : BERT, post-LayerNorm, bidirectional attention, exact erf GELU, absolute
                positions, token-type embeddings by those ids; pairs padded per batch and
                the padding masked out of attention
  head        : pooled = tanh(pooler.dense(h[CLS])); score = classifier(pooled), the raw
                logit (sentence-transformers' CrossEncoder applies a sigmoid on top)

Needs numpy, safetensors and tokenizers.
Usage: python rerank_numpy.py MODEL_DIR PAIRS.json OUT.json [--batch N]
(PAIRS.json: {"pairs": [[query, document], ...]}.)
"""
import hashlib
import json
import math
import os
import sys

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class CrossEncoder:
    def __init__(self, model_dir):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        assert self.cfg["architectures"] == ["BertForSequenceClassification"]
        self.W = {k.removeprefix("bert."): v.astype(np.float64)
                  for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()

    def tokenize(self, query, doc):
        enc = self.tok.encode(query, doc)
        return enc.ids, enc.type_ids

    def forward(self, ids_list, types_list):
        c, W = self.cfg, self.W
        B, T = len(ids_list), max(len(x) for x in ids_list)
        H, nh, eps = c["hidden_size"], c["num_attention_heads"], c["layer_norm_eps"]
        hd = H // nh
        ids = np.full((B, T), c["pad_token_id"], dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        mask = np.zeros((B, T))
        for i, (x, t) in enumerate(zip(ids_list, types_list)):
            ids[i, :len(x)] = x
            types[i, :len(t)] = t
            mask[i, :len(x)] = 1.0
        e = "embeddings."
        x = (W[e + "word_embeddings.weight"][ids]
             + W[e + "position_embeddings.weight"][np.arange(T)][None]
             + W[e + "token_type_embeddings.weight"][types])
        x = layer_norm(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"], eps)
        att_bias = (1.0 - mask)[:, None, None, :] * -1e30

        def lin(h, name):
            return h @ W[name + ".weight"].T + W[name + ".bias"]

        for l in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            q, k, v = (lin(x, p + "attention.self." + n).reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
                       for n in ("query", "key", "value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + att_bias
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            a = a.transpose(0, 2, 1, 3).reshape(B, T, H)
            x = layer_norm(x + lin(a, p + "attention.output.dense"),
                           W[p + "attention.output.LayerNorm.weight"],
                           W[p + "attention.output.LayerNorm.bias"], eps)
            f = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
            x = layer_norm(x + f, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
        pooled = np.tanh(lin(x[:, 0], "pooler.dense"))  # BertPooler: the [CLS] token
        return lin(pooled, "classifier")[:, 0]  # one label: the relevance logit


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


if __name__ == "__main__":
    model_dir, pairs_path, out_path = sys.argv[1:4]
    batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 4
    pairs = json.load(open(pairs_path, encoding="utf-8"))["pairs"]
    m = CrossEncoder(model_dir)
    toks = [m.tokenize(q, d) for q, d in pairs]
    scores = np.zeros(len(pairs))
    for s in range(0, len(pairs), batch):
        chunk = toks[s:s + batch]
        scores[s:s + batch] = m.forward([t[0] for t in chunk], [t[1] for t in chunk])
    json.dump({
        "model": "tiny-cross-encoder (make_reranker.py)",
        "model_safetensors_sha256": sha256(os.path.join(model_dir, "model.safetensors")),
        "method": ("rerank_numpy.py: float64 numpy BertForSequenceClassification forward "
                   "(token_type_ids from the tokenizer's pair template, padding masked, "
                   "tanh pooler on [CLS], classifier): raw logits"),
        "pairs": pairs,
        "token_ids": [t[0] for t in toks],
        "type_ids": [t[1] for t in toks],
        "scores": [float(x) for x in scores],
    }, open(out_path, "w", encoding="utf-8"), ensure_ascii=False, indent=1)
    print(f"wrote {out_path}: {len(pairs)} scores, {scores.min():.3f} to {scores.max():.3f}")
