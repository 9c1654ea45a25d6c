#!/usr/bin/env python3
"""Makes tests/data/rerank/tiny-cross-encoder/: a small random-weight Hugging Face
`BertForSequenceClassification` with one label (the shape of
cross-encoder/ms-marco-MiniLM-L-6-v2, scaled down), with all-MiniLM-L6-v2's WordPiece
tokenizer cut to its first N_VOCAB tokens.

Deterministic: numpy's PCG64 with a fixed seed. Needs numpy, safetensors and tokenizers.
Usage: python make_reranker.py MINILM_DIR OUT_DIR
(MINILM_DIR: the all-MiniLM-L6-v2 folder `hearth pull all-minilm` unpacks, for
vocab.txt, tokenizer.json and tokenizer_config.json.)
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

N_VOCAB = 4000  # MiniLM's first 4,000 tokens: specials, characters, the commonest words
HIDDEN, HEADS, LAYERS, FF, N_POS, N_TYPES = 32, 4, 2, 64, 128, 2
SEED = 20261208


def main(minilm, out):
    os.makedirs(out, exist_ok=True)
    vocab = open(os.path.join(minilm, "vocab.txt"), encoding="utf-8").read().split("\n")[:N_VOCAB]
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    tok = json.load(open(os.path.join(minilm, "tokenizer.json"), encoding="utf-8"))
    tok["model"]["vocab"] = {t: i for i, t in enumerate(vocab)}
    tok["truncation"] = None  # a cross-encoder truncates at its own max_length; the tests
    tok["padding"] = None  # never reach it, and pad per batch
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    tc = json.load(open(os.path.join(minilm, "tokenizer_config.json"), encoding="utf-8"))
    tc["model_max_length"] = N_POS
    tc["name_or_path"] = "hearth-test/tiny-cross-encoder"
    json.dump(tc, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    json.dump({
        "_name_or_path": "hearth-test/tiny-cross-encoder",
        "architectures": ["BertForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "initializer_range": 0.02,
        "intermediate_size": FF,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": N_POS,
        "model_type": "bert",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": N_TYPES,
        "vocab_size": N_VOCAB,
    }, open(os.path.join(out, "config.json"), "w"), indent=1)

    rng = np.random.Generator(np.random.PCG64(SEED))

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = {}
    e = "bert.embeddings."
    w[e + "word_embeddings.weight"] = normal((N_VOCAB, HIDDEN), 0.5)
    w[e + "position_embeddings.weight"] = normal((N_POS, HIDDEN), 0.3)
    # The two segments far apart, so a wrong token type moves the score visibly.
    w[e + "token_type_embeddings.weight"] = normal((N_TYPES, HIDDEN), 0.8)

    def norm(name):
        w[name + ".weight"] = (1.0 + normal((HIDDEN,), 0.1)).astype(np.float32)
        w[name + ".bias"] = normal((HIDDEN,), 0.05)

    def linear(name, n_in, n_out, gain=1.0):
        w[name + ".weight"] = normal((n_out, n_in), gain / np.sqrt(n_in))
        w[name + ".bias"] = normal((n_out,), 0.05)

    norm(e + "LayerNorm")
    for l in range(LAYERS):
        p = f"bert.encoder.layer.{l}."
        for n in ("query", "key"):
            linear(p + "attention.self." + n, HIDDEN, HIDDEN, gain=2.0)  # peaked attention
        linear(p + "attention.self.value", HIDDEN, HIDDEN)
        linear(p + "attention.output.dense", HIDDEN, HIDDEN)
        norm(p + "attention.output.LayerNorm")
        linear(p + "intermediate.dense", HIDDEN, FF)
        linear(p + "output.dense", FF, HIDDEN)
        norm(p + "output.LayerNorm")
    linear("bert.pooler.dense", HIDDEN, HIDDEN)
    linear("classifier", HIDDEN, 1, gain=3.0)  # logits of a few units, like ms-marco's
    w["classifier.bias"] = np.array([2.5], dtype=np.float32)  # centred near 0
    # HF's order: embeddings, layers, pooler, classifier (safetensors sorts by name anyway).
    save_file(w, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {out}: {sum(v.size for v in w.values())} weights")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
