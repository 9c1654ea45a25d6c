"""Writes the byte-level BPE tokenizers of hearth-convert's tests and the ids that
Hugging Face's `tokenizers` gives for some texts (see README.md).

    python make.py   # with `tokenizers` installed; writes qwen2.json, llama3.json, expected.json
"""

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = Path(__file__).parent

# The split regexes of Qwen 2 (single digits) and Llama 3 (up to three digits), as their
# tokenizer.json files write them.
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "Hello world, hello there. The world is wide and the sea is deep.",
    "This program is free software: you can redistribute it and/or modify it",
    "under the terms of the GNU General Public License as published by",
    "the Free Software Foundation, either version 3 of the License, or",
    "numbers 1234567890 and 2024 and 42, values 3.14 and 2.71",
    "I've been told he's there; we'll see, they'd say, you're right",
    "tabs\tand  spaces\n\nand newlines\r\n",
    "ünïcödé naïve café über straße",
] * 4

TEXTS = [
    "Hello world",
    "the quick brown fox's 12345 numbers",
    "  spaces\n\nnewlines\t tabs",
    "ünïcödé and emoji 🦙",
    "<|im_start|>user\nhi<|im_end|>",
    "call <tool_call> now",
    "I've been 'told' he's there, WE'LL see",
]


def build(regex: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def main() -> None:
    base = build(LLAMA3)  # so that digit runs merge, which only Llama 3 splits keep
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base.train_from_iterator(CORPUS, trainer)
    base.add_special_tokens([
        AddedToken("<|endoftext|>", special=True, normalized=False),
        AddedToken("<|im_start|>", special=True, normalized=False),
        AddedToken("<|im_end|>", special=True, normalized=False),
    ])
    base.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    expected = {}
    for name, regex in [("qwen2", QWEN2), ("llama3", LLAMA3)]:
        data = json.loads(base.to_str())
        data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = regex
        tok = Tokenizer.from_str(json.dumps(data))
        (HERE / f"{name}.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
        expected[name] = [
            {"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS
        ]
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
