//! A byte-level BPE vocabulary (`tokenizer.json` with a `BPE` model) written as
//! llama.cpp writes it: tokenizer model `gpt2`, the tokens in id order, their types and
//! the merges (`special.rs`).
//!
//! - `vocab_size` entries (`config.json`'s, else one past the largest id); an id with no
//!   token is `[PAD<id>]`, type UNUSED (5). A token id at or past `vocab_size` is an error.
//! - The model's own tokens are NORMAL (1). An added token is CONTROL (3) when it is
//!   `special` or looks like a control token (`<|...|>`, ...), else USER_DEFINED (4) with
//!   `▁` spelled as a space.
//!
//! `tokenizer.ggml.pre` names the regexes that split text into words before merging.
//! llama.cpp's converter decides it by running the model's tokenizer on a probe text and
//! looking the hash of the ids up in a table. Hearth decides it from what decides those
//! ids, the `pre_tokenizer` of `tokenizer.json`, by this rule:
//!
//! | `pre_tokenizer`                                              | `tokenizer.ggml.pre` |
//! |--------------------------------------------------------------|----------------------|
//! | `Split` on Llama 3's regex (`\p{N}{1,3}`), then `ByteLevel`   | `llama-bpe`          |
//! | `Split` on Qwen 2's regex (`\p{N}`), then `ByteLevel`         | `qwen2`              |
//! | `ByteLevel` with its own (GPT-2) regex                        | `gpt-2`              |
//!
//! The regexes are compared as written. Any other pre-tokenizer is refused with an error
//! that shows it: guessing would make a file that tokenizes differently from the model.

use serde_json::Value as Json;

use crate::special::looks_special;
use crate::spm::{CONTROL, NORMAL, UNUSED, USER_DEFINED};
use crate::ConvertError;

/// Llama 3's split regex, as Hugging Face's `tokenizer.json` writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's (Qwen 2.5's, Qwen 3's): Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE vocabulary ready to write (the merges come with the special tokens).
pub struct BpeVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub pre: &'static str,
}

fn err(msg: impl Into<String>) -> ConvertError {
    ConvertError::Tokenizer(msg.into())
}

/// The `tokenizer.ggml.pre` name of a `tokenizer.json` pre-tokenizer (the module's rule).
pub fn pre_name(pre: Option<&Json>) -> Result<&'static str, ConvertError> {
    let show = |p: Option<&Json>| p.map_or_else(|| "null".to_owned(), |p| p.to_string());
    let refuse = || {
        let mut shown = show(pre);
        if shown.len() > 400 {
            let mut cut = 400;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        err(format!(
            "cannot tell which llama.cpp pre-tokenizer matches tokenizer.json's \
             pre_tokenizer {shown}; hearth convert knows Llama 3's (llama-bpe), Qwen 2's \
             (qwen2) and GPT-2's (gpt-2)"
        ))
    };
    let Some(p) = pre.filter(|p| !p.is_null()) else {
        return Err(refuse());
    };
    let typ = |j: &Json| j.get("type").and_then(Json::as_str).map(str::to_owned);
    let byte_level_regex = |j: &Json| j.get("use_regex").and_then(Json::as_bool).unwrap_or(true);
    match typ(p).as_deref() {
        Some("ByteLevel") if byte_level_regex(p) => Ok("gpt-2"),
        Some("Sequence") => {
            let list = p
                .get("pretokenizers")
                .and_then(Json::as_array)
                .ok_or_else(refuse)?;
            let [split, byte_level] = list.as_slice() else {
                return Err(refuse());
            };
            if typ(split).as_deref() != Some("Split")
                || typ(byte_level).as_deref() != Some("ByteLevel")
                || byte_level_regex(byte_level)
                || split.get("invert").and_then(Json::as_bool) == Some(true)
            {
                return Err(refuse());
            }
            let regex = split
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Json::as_str);
            match regex {
                Some(LLAMA3_REGEX) => Ok("llama-bpe"),
                Some(QWEN2_REGEX) => Ok("qwen2"),
                _ => Err(refuse()),
            }
        }
        _ => Err(refuse()),
    }
}

/// Reads the BPE vocabulary of `tokenizer.json` (`tj`) for `vocab_size` entries
/// (`config.json`'s, if it has one).
pub fn load(tj: &Json, vocab_size: Option<usize>) -> Result<BpeVocab, ConvertError> {
    let model = tj
        .get("model")
        .ok_or_else(|| err("tokenizer.json has no 'model'"))?;
    let kind = model.get("type").and_then(Json::as_str).unwrap_or("(none)");
    if kind != "BPE" {
        return Err(err(format!(
            "tokenizer.json has a {kind} model and no tokenizer.model; hearth convert reads \
             byte-level BPE from tokenizer.json and SentencePiece from tokenizer.model"
        )));
    }
    let pre = pre_name(tj.get("pre_tokenizer"))?;
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| err("tokenizer.json's model has no 'vocab' object"))?;
    let empty = Vec::new();
    let added = tj
        .get("added_tokens")
        .and_then(Json::as_array)
        .unwrap_or(&empty);
    // (text, id, Some(special) for an added token)
    let mut entries: Vec<(&str, u64, Option<bool>)> = Vec::with_capacity(vocab.len());
    for (t, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(format!("tokenizer.json: token '{t}' has no id")))?;
        entries.push((t, id, None));
    }
    for a in added {
        let text = a
            .get("content")
            .and_then(Json::as_str)
            .ok_or_else(|| err("tokenizer.json: an added token has no content"))?;
        let id = a
            .get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| err(format!("tokenizer.json: added token '{text}' has no id")))?;
        let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
        entries.push((text, id, Some(special)));
    }
    let max_id = entries.iter().map(|e| e.1).max().unwrap_or(0);
    let n = vocab_size.unwrap_or(max_id as usize + 1);
    if max_id >= n as u64 {
        return Err(err(format!(
            "tokenizer.json has token id {max_id}, outside config.json's vocab_size {n}"
        )));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![UNUSED; n];
    for (text, id, special) in entries {
        let id = id as usize;
        // An added token overrides a model token of the same id.
        match special {
            None if tokens[id].is_some() => {}
            None => {
                tokens[id] = Some(text.to_owned());
                types[id] = NORMAL;
            }
            Some(special) if special || looks_special(text) => {
                tokens[id] = Some(text.to_owned());
                types[id] = CONTROL;
            }
            Some(_) => {
                tokens[id] = Some(text.replace('\u{2581}', " "));
                types[id] = USER_DEFINED;
            }
        }
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    Ok(BpeVocab { tokens, types, pre })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(regex: &str) -> Json {
        serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]})
    }

    #[test]
    fn pre_tokenizers_are_named_by_their_regex() {
        assert_eq!(pre_name(Some(&split(LLAMA3_REGEX))).unwrap(), "llama-bpe");
        assert_eq!(pre_name(Some(&split(QWEN2_REGEX))).unwrap(), "qwen2");
        let gpt2 = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false});
        assert_eq!(pre_name(Some(&gpt2)).unwrap(), "gpt-2");
        let e = pre_name(Some(&split(r"\p{N}+"))).unwrap_err().to_string();
        assert!(e.contains("cannot tell") && e.contains(r"\\p{N}+"), "{e}");
        assert!(pre_name(None).is_err());
    }
}
