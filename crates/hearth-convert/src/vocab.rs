//! The WordPiece vocabulary of a BERT folder, written as llama.cpp writes it (tokenizer
//! model `bert`).
//!
//! The facts of that format:
//! - One token per id up to the model's `vocab_size`; an id the tokenizer does not use is
//!   written `[PAD<id>]` with type UNUSED.
//! - Token types: CONTROL (3) for the tokenizer's special added tokens (and added tokens
//!   that look special, like `<|x|>`), USER_DEFINED (4) for its other added tokens, NORMAL
//!   (1) for the rest.
//! - "Phantom space" spelling: a CONTROL token is written as it is; a continuation piece
//!   `##x` is written `x`; every other token (a word-initial piece) gets the prefix `▁`
//!   (U+2581), so `[unused0]` becomes `▁[unused0]` and `the` becomes `▁the`.
//! - Special token ids (`bos`, `eos`, `unk`, `sep`, `pad`, `mask`): each names a token in
//!   `tokenizer_config.json` (`bos` falling back to `cls_token` and `eos` to `sep_token`),
//!   resolved through `tokenizer.json`'s added tokens, else `config.json`'s
//!   `<type>_token_id`. `add_bos`/`add_eos`/`add_sep` come from the post-processor's
//!   template (`[CLS] $A [SEP]`: BOS and EOS added; a pair template with one separator
//!   that is also the EOS: no extra SEP).
//! - `tokenizer.ggml.normalizer.lowercase` is written (true) when the normalizer
//!   lowercases (`BertNormalizer` unless `lowercase: false`, `Lowercase`, inside a
//!   `Sequence`).
//!
//! Without `tokenizer.json`, `vocab.txt` (one token a line, the line number its id) with
//! `tokenizer_config.json`'s special tokens (BERT's defaults `[UNK]`, `[SEP]`, `[PAD]`,
//! `[CLS]`, `[MASK]`) gives the same vocabulary; BOS is `[CLS]`, EOS `[SEP]`, both added,
//! and `do_lower_case` (default true) sets the lowercase key.

use std::collections::HashMap;
use std::path::Path;

use hearth_gguf::{GgufWriter, Value};
use serde_json::Value as Json;

use crate::folder::{read_json_opt, HfFolder};
use crate::special::{looks_special, template_sequence, template_special};
use crate::ConvertError;

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// The special token types, in the order their ids are resolved, and the GGUF key of each
/// one that llama.cpp writes (`cls` is resolved but has no key: BERT's BOS is its CLS).
const SPECIAL_TYPES: [(&str, Option<&str>); 7] = [
    ("bos", Some("tokenizer.ggml.bos_token_id")),
    ("eos", Some("tokenizer.ggml.eos_token_id")),
    ("unk", Some("tokenizer.ggml.unknown_token_id")),
    ("sep", Some("tokenizer.ggml.seperator_token_id")),
    ("pad", Some("tokenizer.ggml.padding_token_id")),
    ("cls", None),
    ("mask", Some("tokenizer.ggml.mask_token_id")),
];

/// A BERT vocabulary ready to write.
pub struct Vocab {
    /// `[n_vocab]`, spelled as llama.cpp's `bert` tokenizer model expects.
    pub tokens: Vec<String>,
    /// `[n_vocab]`.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.pre`.
    pub pre: &'static str,
    /// Resolved special ids, in resolution order: (type, id).
    special_ids: Vec<(&'static str, u32)>,
    /// Whether to add BOS, EOS, SEP, in the order they were decided: (type, add).
    add_special: Vec<(&'static str, bool)>,
    lowercase: bool,
}

fn tokenizer_err(msg: impl Into<String>) -> ConvertError {
    ConvertError::Tokenizer(msg.into())
}

/// The content of a `tokenizer_config.json` token entry: a string, or `{"content": ...}`.
fn token_content(v: Option<&Json>) -> Option<&str> {
    match v? {
        Json::String(s) => Some(s),
        Json::Object(m) => m.get("content")?.as_str(),
        _ => None,
    }
}

/// Whether a tokenizer.json normalizer lowercases.
fn normalizer_lowercases(n: &Json) -> bool {
    match n.get("type").and_then(Json::as_str) {
        Some("Lowercase") => true,
        Some("BertNormalizer") => n.get("lowercase").and_then(Json::as_bool).unwrap_or(true),
        Some("Sequence") => n
            .get("normalizers")
            .and_then(Json::as_array)
            .is_some_and(|v| v.iter().any(normalizer_lowercases)),
        _ => false,
    }
}

/// Resolution of special tokens and their add flags, in the order llama.cpp decides them.
#[derive(Default)]
struct Specials {
    /// Token text per type, from tokenizer_config.json (with the fallbacks applied).
    content: HashMap<&'static str, String>,
    ids: Vec<(&'static str, u32)>,
    add: Vec<(&'static str, bool)>,
}

impl Specials {
    fn set_add(&mut self, typ: &'static str, value: bool) {
        match self.add.iter_mut().find(|(t, _)| *t == typ) {
            Some(slot) => slot.1 = value,
            None => self.add.push((typ, value)),
        }
    }

    fn set_id(&mut self, typ: &'static str, id: Option<u64>, n_vocab: usize) {
        let Some(id) = id else { return };
        if id >= n_vocab as u64 || self.ids.iter().any(|(t, _)| *t == typ) {
            return;
        }
        self.ids.push((typ, id as u32));
    }

    fn content(&self, typ: &str) -> Option<&str> {
        self.content.get(typ).map(String::as_str)
    }

    /// Reads a tokenizer post-processor: which special tokens wrap one sequence and a pair.
    fn post_processor(&mut self, pp: &Json, has_config: bool) {
        let list: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
            Some(v) => v.iter().collect(),
            None => vec![pp],
        };
        for p in list {
            match p.get("type").and_then(Json::as_str) {
                Some("RobertaProcessing") => {
                    for t in ["bos", "eos", "sep"] {
                        self.set_add(t, true);
                    }
                }
                Some("TemplateProcessing") => self.template(p, has_config),
                _ => {}
            }
        }
    }

    fn template(&mut self, p: &Json, has_config: bool) {
        let empty = Vec::new();
        let single = p.get("single").and_then(Json::as_array).unwrap_or(&empty);
        let pair = p.get("pair").and_then(Json::as_array).unwrap_or(&empty);
        let mut first = None;
        let mut last = None;
        if single.len() > 1 {
            first = template_special(single.first()).map(str::to_owned);
            if let Some(f) = &first {
                if !has_config {
                    self.content.insert("bos", f.clone());
                }
                let is_bos = Some(f.as_str()) == self.content("bos")
                    || Some(f.as_str()) == self.content("cls");
                self.set_add("bos", is_bos);
            }
            last = template_special(single.last()).map(str::to_owned);
            if let Some(l) = &last {
                // The last token is the EOS, whatever tokenizer_config.json called it.
                self.content.insert("eos", l.clone());
                self.set_add("eos", true);
            }
        }
        if pair.is_empty() {
            return;
        }
        // The pair template without the single template's first and last tokens:
        // A [sep] [eos] B.
        let start =
            usize::from(first.is_some() && template_special(pair.first()) == first.as_deref());
        let stop = if last.is_some() && template_special(pair.last()) == last.as_deref() {
            pair.len() - 1
        } else {
            pair.len()
        };
        let Some(inner) = pair.get(start..stop.max(start)) else {
            return;
        };
        if template_sequence(inner.first()) != Some("A")
            || template_sequence(inner.last()) != Some("B")
            || inner.len() < 3
        {
            return;
        }
        let middle = &inner[1..inner.len() - 1];
        let is_sep =
            |tok: &str| Some(tok) == self.content("sep") || Some(tok) == self.content("eos");
        let mut add_sep = false;
        if let Some(tok) = template_special(middle.first()) {
            if is_sep(tok) && last.is_none() {
                add_sep = true;
            }
        }
        if middle.len() == 2 {
            if let Some(tok) = template_special(middle.get(1)) {
                if is_sep(tok) {
                    add_sep = true;
                }
            }
        }
        self.set_add("sep", add_sep);
    }
}

impl Vocab {
    /// Reads the vocabulary of `folder` for a model of `n_vocab` token embeddings.
    pub fn load(folder: &HfFolder, n_vocab: usize) -> Result<Vocab, ConvertError> {
        let dir = &folder.dir;
        let tokenizer_config = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let tokenizer_config = tokenizer_config.as_ref().filter(|v| v.is_object());
        let tokenizer_json = read_json_opt(&dir.join("tokenizer.json"))?;
        let mut vocab = match &tokenizer_json {
            Some(tj) => Self::from_tokenizer_json(tj, tokenizer_config, n_vocab)?,
            None => Self::from_vocab_txt(dir, tokenizer_config, n_vocab)?,
        };
        // The ids config.json names, for the types still unresolved.
        let mut specials = Specials {
            ids: std::mem::take(&mut vocab.special_ids),
            ..Specials::default()
        };
        for (typ, _) in SPECIAL_TYPES {
            let id = folder
                .config
                .get(&format!("{typ}_token_id"))
                .and_then(Json::as_u64);
            specials.set_id(typ, id, n_vocab);
        }
        vocab.special_ids = specials.ids;
        // Phantom-space spelling.
        for (tok, &ty) in vocab.tokens.iter_mut().zip(&vocab.token_types) {
            if ty == CONTROL {
                continue;
            }
            *tok = match tok.strip_prefix("##") {
                Some(rest) => rest.to_owned(),
                None => format!("\u{2581}{tok}"),
            };
        }
        Ok(vocab)
    }

    fn from_tokenizer_json(
        tj: &Json,
        config: Option<&Json>,
        n_vocab: usize,
    ) -> Result<Vocab, ConvertError> {
        let model = tj
            .get("model")
            .ok_or_else(|| tokenizer_err("tokenizer.json has no 'model'"))?;
        let kind = model.get("type").and_then(Json::as_str).unwrap_or("(none)");
        if kind != "WordPiece" {
            return Err(tokenizer_err(format!(
                "tokenizer.json has a {kind} model; BERT needs WordPiece"
            )));
        }
        let entries = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| tokenizer_err("tokenizer.json's model has no 'vocab' object"))?;
        let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
        let mut types = vec![NORMAL; n_vocab];
        let place = |tokens: &mut Vec<Option<String>>,
                     id: Option<u64>,
                     tok: &str,
                     what: &str|
         -> Result<usize, ConvertError> {
            let id = id.filter(|&i| i < n_vocab as u64).ok_or_else(|| {
                tokenizer_err(format!(
                    "{what} '{tok}' has an id outside the model's {n_vocab} token embeddings"
                ))
            })? as usize;
            tokens[id] = Some(tok.to_owned());
            Ok(id)
        };
        for (tok, id) in entries {
            place(&mut tokens, id.as_u64(), tok, "token")?;
        }
        let empty = Vec::new();
        let added = tj
            .get("added_tokens")
            .and_then(Json::as_array)
            .unwrap_or(&empty);
        for a in added {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| tokenizer_err("an added token of tokenizer.json has no content"))?;
            let id = place(
                &mut tokens,
                a.get("id").and_then(Json::as_u64),
                content,
                "added token",
            )?;
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            types[id] = if special || looks_special(content) {
                CONTROL
            } else {
                tokens[id] = Some(content.replace('\u{2581}', " "));
                USER_DEFINED
            };
        }
        let mut out_tokens = Vec::with_capacity(n_vocab);
        for (i, t) in tokens.into_iter().enumerate() {
            match t {
                Some(t) => out_tokens.push(t),
                None => {
                    out_tokens.push(format!("[PAD{i}]"));
                    types[i] = UNUSED;
                }
            }
        }

        let mut sp = Specials::default();
        if let Some(c) = config {
            for (typ, _) in SPECIAL_TYPES {
                if let Some(s) = token_content(c.get(format!("{typ}_token"))) {
                    sp.content.insert(typ, s.to_owned());
                }
            }
            if sp.content("bos").is_none() {
                if let Some(cls) = sp.content("cls").map(str::to_owned) {
                    sp.content.insert("bos", cls);
                }
            }
            if sp.content("eos").is_none() {
                if let Some(sep) = sp.content("sep").map(str::to_owned) {
                    sp.content.insert("eos", sep);
                }
            }
        }
        if let Some(pp) = tj.get("post_processor").filter(|v| v.is_object()) {
            sp.post_processor(pp, config.is_some());
        }
        if let Some(c) = config {
            for (typ, _) in SPECIAL_TYPES {
                if let Some(b) = c.get(format!("add_{typ}_token")).and_then(Json::as_bool) {
                    sp.set_add(typ, b);
                }
                let Some(content) = sp.content(typ).map(str::to_owned) else {
                    continue;
                };
                let id = added
                    .iter()
                    .find(|a| a.get("content").and_then(Json::as_str) == Some(&content))
                    .and_then(|a| a.get("id"))
                    .and_then(Json::as_u64);
                sp.set_id(typ, id, n_vocab);
            }
        }
        let lowercase = tj.get("normalizer").is_some_and(normalizer_lowercases);
        Ok(Vocab {
            tokens: out_tokens,
            token_types: types,
            // llama.cpp's converter names the pre-tokenizer by hashing the tokenization of
            // a probe text; an uncased BERT WordPiece tokenizer like all-MiniLM-L6-v2's
            // gets this name. Its `bert` tokenizer model does not read the key.
            pre: "jina-v2-en",
            special_ids: sp.ids,
            add_special: sp.add,
            lowercase,
        })
    }

    fn from_vocab_txt(
        dir: &Path,
        config: Option<&Json>,
        n_vocab: usize,
    ) -> Result<Vocab, ConvertError> {
        let path = dir.join("vocab.txt");
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                tokenizer_err(format!(
                    "{} has neither tokenizer.json nor vocab.txt",
                    dir.display()
                ))
            } else {
                ConvertError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > n_vocab {
            return Err(tokenizer_err(format!(
                "vocab.txt has {} tokens, more than the model's {n_vocab} token embeddings",
                lines.len()
            )));
        }
        let mut tokens: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let mut types = vec![NORMAL; tokens.len()];
        for i in tokens.len()..n_vocab {
            tokens.push(format!("[PAD{i}]"));
            types.push(UNUSED);
        }
        let defaults = [
            ("unk", "[UNK]"),
            ("sep", "[SEP]"),
            ("pad", "[PAD]"),
            ("cls", "[CLS]"),
            ("mask", "[MASK]"),
        ];
        let mut sp = Specials::default();
        for (typ, default) in defaults {
            let content = config
                .and_then(|c| token_content(c.get(format!("{typ}_token"))))
                .unwrap_or(default);
            if let Some(id) = lines.iter().position(|t| *t == content) {
                types[id] = CONTROL;
                sp.content.insert(typ, content.to_owned());
            }
        }
        let find = |typ: &str| -> Option<u64> {
            let c = sp.content(typ)?;
            lines.iter().position(|t| *t == c).map(|i| i as u64)
        };
        let ids: Vec<(&'static str, Option<u64>)> = vec![
            ("bos", find("cls")),
            ("eos", find("sep")),
            ("unk", find("unk")),
            ("sep", find("sep")),
            ("pad", find("pad")),
            ("mask", find("mask")),
        ];
        for (typ, id) in ids {
            sp.set_id(typ, id, n_vocab);
        }
        sp.add = vec![("bos", true), ("eos", true), ("sep", false)];
        let lowercase = config
            .and_then(|c| c.get("do_lower_case"))
            .and_then(Json::as_bool)
            .unwrap_or(true);
        Ok(Vocab {
            tokens,
            token_types: types,
            pre: "jina-v2-en",
            special_ids: sp.ids,
            add_special: sp.add,
            lowercase,
        })
    }

    /// Writes the `tokenizer.ggml.*` keys, in llama.cpp's order. `n_token_types` is the
    /// number of token-type (segment) embeddings.
    pub fn write(&self, w: &mut GgufWriter, n_token_types: u32) {
        w.add_kv("tokenizer.ggml.token_type_count", n_token_types);
        w.add_kv("tokenizer.ggml.model", "bert");
        w.add_kv("tokenizer.ggml.pre", self.pre);
        w.add_kv("tokenizer.ggml.tokens", Value::from(self.tokens.clone()));
        w.add_kv(
            "tokenizer.ggml.token_type",
            Value::from(self.token_types.clone()),
        );
        for &(typ, id) in &self.special_ids {
            if let Some((_, Some(key))) = SPECIAL_TYPES.iter().find(|(t, _)| *t == typ) {
                w.add_kv(*key, id);
            }
        }
        for &(typ, add) in &self.add_special {
            w.add_kv(format!("tokenizer.ggml.add_{typ}_token"), add);
        }
        if self.lowercase {
            w.add_kv("tokenizer.ggml.normalizer.lowercase", true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bert_template_adds_bos_and_eos_not_sep() {
        let pp: Json = serde_json::from_str(
            r#"{"type":"TemplateProcessing",
                "single":[{"SpecialToken":{"id":"[CLS]"}},{"Sequence":{"id":"A"}},{"SpecialToken":{"id":"[SEP]"}}],
                "pair":[{"SpecialToken":{"id":"[CLS]"}},{"Sequence":{"id":"A"}},{"SpecialToken":{"id":"[SEP]"}},
                        {"Sequence":{"id":"B"}},{"SpecialToken":{"id":"[SEP]"}}]}"#,
        )
        .unwrap();
        let mut sp = Specials::default();
        sp.content.insert("bos", "[CLS]".into());
        sp.content.insert("cls", "[CLS]".into());
        sp.content.insert("eos", "[SEP]".into());
        sp.content.insert("sep", "[SEP]".into());
        sp.post_processor(&pp, true);
        assert_eq!(sp.add, vec![("bos", true), ("eos", true), ("sep", false)]);
    }

    #[test]
    fn normalizers_that_lowercase() {
        let j = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        assert!(normalizer_lowercases(&j(r#"{"type":"BertNormalizer"}"#)));
        assert!(!normalizer_lowercases(&j(
            r#"{"type":"BertNormalizer","lowercase":false}"#
        )));
        assert!(normalizer_lowercases(&j(
            r#"{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"Lowercase"}]}"#
        )));
        assert!(!normalizer_lowercases(&j(r#"{"type":"NFC"}"#)));
    }
}
