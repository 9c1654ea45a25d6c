//! The special tokens of a decoder's vocabulary, the merges of a byte-level BPE one and
//! the chat template: the keys llama.cpp's converter writes after the token list, decided
//! the way it decides them.
//!
//! - Merges: `tokenizer.json`'s `model.merges`, either `"a b"` strings or `["a", "b"]`
//!   pairs (a space inside a part spelled `Ġ`, U+0120), else `merges.txt`.
//! - Special ids (`bos`, `eos`, `unk`, `sep`, `pad`, `mask`, and `eot`/`eom` when the
//!   post-processor's trailing token replaces the EOS): each `<type>_token` of
//!   `tokenizer_config.json` (a string or `{"content": ...}`; `bos` falls back to
//!   `cls_token`, `eos` to `sep_token`) looked up among `tokenizer.json`'s added tokens;
//!   then `config.json`'s `<type>_token_id` for the types still unset. Ids outside the
//!   vocabulary are ignored.
//! - `add_bos`/`add_eos`/`add_sep`: a `ByteLevel` post-processor means neither BOS nor
//!   EOS; `TemplateProcessing` adds its single template's leading and trailing special
//!   tokens (and a separator between a pair's sequences); then `tokenizer_config.json`'s
//!   `add_<type>_token` for the flags still unset.
//! - `tokenizer.chat_template`: `tokenizer_config.json`'s `chat_template`, else
//!   `chat_template.jinja`, else `chat_template.json`; a list of named templates writes
//!   `tokenizer.chat_template.<name>` and `tokenizer.chat_templates` too. Read only when
//!   `tokenizer_config.json` exists and is not empty.

use std::path::Path;

use hearth_gguf::{GgufWriter, Value};
use serde_json::{Map, Value as Json};

use crate::folder::read_json_opt;
use crate::ConvertError;

/// Whether an added token that is not marked special still looks like a control token.
pub fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// What follows the token list.
#[derive(Debug, Default)]
pub struct SpecialVocab {
    pub merges: Vec<String>,
    /// (type, id), in the order decided.
    pub ids: Vec<(String, u32)>,
    /// (type, add), in the order decided.
    pub add: Vec<(String, bool)>,
    pub chat_template: Option<Json>,
    pub lowercase: Option<bool>,
    pub strip_accents: Option<bool>,
}

fn content(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(m) => m.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// The id of a post-processor template item's special token
/// (`{"SpecialToken": {"id": "[CLS]"}}`).
pub fn template_special(item: Option<&Json>) -> Option<&str> {
    item?.get("SpecialToken")?.get("id")?.as_str()
}

/// The id of a template item's sequence (`{"Sequence": {"id": "A"}}`).
pub fn template_sequence(item: Option<&Json>) -> Option<&str> {
    item?.get("Sequence")?.get("id")?.as_str()
}

/// A JSON value that is set and not empty (Python's truthiness of a string or object).
fn truthy(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Object(m)) => !m.is_empty(),
        Some(Json::Bool(b)) => *b,
        Some(_) => true,
    }
}

impl SpecialVocab {
    fn set_id(&mut self, typ: &str, id: Option<&Json>, n_vocab: Option<usize>) {
        let Some(id) = id.and_then(Json::as_u64) else {
            return;
        };
        if n_vocab.is_some_and(|n| id >= n as u64) || id > u32::MAX as u64 {
            return;
        }
        if self.ids.iter().any(|(t, _)| t == typ) {
            return;
        }
        self.ids.push((typ.to_owned(), id as u32));
    }

    fn set_add(&mut self, typ: &str, value: bool, overwrite: bool) {
        match self.add.iter_mut().find(|(t, _)| t == typ) {
            Some(slot) if overwrite => slot.1 = value,
            Some(_) => {}
            None => self.add.push((typ.to_owned(), value)),
        }
    }

    fn normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(b) = n.get("lowercase").and_then(Json::as_bool) {
                    self.lowercase = Some(b);
                }
                if let Some(b) = n.get("strip_accents").and_then(Json::as_bool) {
                    self.strip_accents = Some(b);
                }
            }
            Some("Sequence") => {
                for m in n
                    .get("normalizers")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.normalizer(m);
                }
            }
            _ => {}
        }
    }

    /// Reads the folder's special tokens; `n_vocab` bounds their ids (`None`: any id),
    /// `merges` asks for the BPE merges.
    pub fn load(
        dir: &Path,
        config: &Map<String, Json>,
        n_vocab: Option<usize>,
        merges: bool,
    ) -> Result<SpecialVocab, ConvertError> {
        let mut sv = SpecialVocab::default();
        let mut types: Vec<String> = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
            .map(String::from)
            .to_vec();
        let tj = read_json_opt(&dir.join("tokenizer.json"))?;
        let mut tc: Option<Map<String, Json>> =
            match read_json_opt(&dir.join("tokenizer_config.json"))? {
                Some(Json::Object(m)) => Some(m),
                _ => None,
            };
        let empty = Vec::new();
        let added = tj
            .as_ref()
            .and_then(|t| t.get("added_tokens"))
            .and_then(Json::as_array)
            .unwrap_or(&empty);
        if let Some(tj) = &tj {
            if merges {
                sv.merges = read_merges(tj)?;
            }
            if let Some(n) = tj.get("normalizer").filter(|n| n.is_object()) {
                sv.normalizer(n);
            }
            sv.post_processor(tj, &mut tc, &mut types);
        }
        if merges && sv.merges.is_empty() {
            sv.merges = merges_txt(&dir.join("merges.txt"))?;
        }
        if let Some(tc) = tc.as_ref().filter(|m| !m.is_empty()) {
            sv.chat_template = match tc.get("chat_template") {
                Some(t) if !t.is_null() => Some(t.clone()),
                _ => chat_template_file(dir)?,
            };
            if sv
                .chat_template
                .as_ref()
                .is_some_and(|t| !t.is_string() && !t.is_array())
            {
                sv.chat_template = None;
            }
            for typ in &types {
                if let Some(b) = tc.get(&format!("add_{typ}_token")).and_then(Json::as_bool) {
                    sv.set_add(typ, b, false);
                }
                let Some(text) = content(tc.get(&format!("{typ}_token"))) else {
                    continue;
                };
                let id = added
                    .iter()
                    .find(|a| a.get("content").and_then(Json::as_str) == Some(&text))
                    .and_then(|a| a.get("id"));
                sv.set_id(typ, id, n_vocab);
            }
        }
        for typ in &types {
            let id = config.get(&format!("{typ}_token_id"));
            let id = match id {
                Some(v) if !v.is_null() => Some(v),
                _ => config
                    .get("text_config")
                    .and_then(|t| t.get(format!("{typ}_token_id"))),
            };
            sv.set_id(typ, id, n_vocab);
        }
        Ok(sv)
    }

    /// The post-processor's effect on the add flags and on which tokens are BOS/EOS/SEP
    /// (`tc`, the tokenizer config, is updated as llama.cpp updates its copy).
    fn post_processor(
        &mut self,
        tj: &Json,
        tc: &mut Option<Map<String, Json>>,
        types: &mut Vec<String>,
    ) {
        let has_tc = tc.as_ref().is_some_and(|m| !m.is_empty());
        let get = |tc: &Option<Map<String, Json>>, k: &str| -> Option<Json> {
            tc.as_ref().and_then(|m| m.get(k)).cloned()
        };
        let mut bos = get(tc, "bos_token");
        let mut cls = get(tc, "cls_token");
        let mut eos = get(tc, "eos_token");
        let mut sep = get(tc, "sep_token");
        let set = |tc: &mut Option<Map<String, Json>>, k: &str, v: &Json| {
            if let Some(m) = tc.as_mut() {
                m.insert(k.to_owned(), v.clone());
            }
        };
        if !truthy(bos.as_ref()) && truthy(cls.as_ref()) && has_tc {
            bos = cls.clone();
            set(tc, "bos_token", bos.as_ref().unwrap());
        }
        if !truthy(eos.as_ref()) && truthy(sep.as_ref()) && has_tc {
            eos = sep.clone();
            set(tc, "eos_token", eos.as_ref().unwrap());
        }
        let Some(pp) = tj.get("post_processor").filter(|p| truthy(Some(p))) else {
            return;
        };
        let list: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
            Some(v) => v.iter().collect(),
            None => vec![pp],
        };
        // Token texts compare as llama.cpp compares them: a dict entry never equals a
        // string.
        let is = |a: &Option<Json>, b: &str| a.as_ref().and_then(Json::as_str) == Some(b);
        for p in list {
            match p.get("type").and_then(Json::as_str) {
                Some("ByteLevel") => {
                    self.set_add("bos", false, false);
                    self.set_add("eos", false, false);
                }
                Some("RobertaProcessing") => {
                    for t in ["bos", "eos", "sep"] {
                        self.set_add(t, true, true);
                    }
                    if !truthy(cls.as_ref()) && has_tc {
                        let v = p
                            .get("cls")
                            .and_then(|c| c.get(0))
                            .cloned()
                            .or(bos.clone())
                            .unwrap_or(Json::Null);
                        set(tc, "cls_token", &v);
                        cls = Some(v);
                    }
                    if !truthy(sep.as_ref()) && has_tc {
                        let v = p
                            .get("sep")
                            .and_then(|c| c.get(0))
                            .cloned()
                            .or(eos.clone())
                            .unwrap_or(Json::Null);
                        set(tc, "sep_token", &v);
                        sep = Some(v);
                    }
                }
                Some("TemplateProcessing") => {
                    let empty = Vec::new();
                    let single = p.get("single").and_then(Json::as_array).unwrap_or(&empty);
                    let pair = p.get("pair").and_then(Json::as_array).unwrap_or(&empty);
                    let mut first = None;
                    let mut last = None;
                    if single.len() > 1 {
                        first = template_special(single.first()).map(str::to_owned);
                        if let Some(f) = &first {
                            if !has_tc {
                                bos = Some(Json::String(f.clone()));
                            } else if !is(&bos, f) && !is(&cls, f) {
                                if !truthy(bos.as_ref()) {
                                    bos = Some(Json::String(f.clone()));
                                    set(tc, "bos_token", bos.as_ref().unwrap());
                                }
                                if !truthy(cls.as_ref()) {
                                    cls = Some(Json::String(f.clone()));
                                    set(tc, "cls_token", cls.as_ref().unwrap());
                                }
                            }
                            self.set_add("bos", is(&bos, f) || is(&cls, f), true);
                        }
                        last = template_special(single.last()).map(str::to_owned);
                        if let Some(l) = &last {
                            if !has_tc {
                                eos = Some(Json::String(l.clone()));
                            } else if !is(&eos, l) {
                                let old = eos.clone().unwrap_or(Json::Null);
                                if !types.iter().any(|t| t == "eot") {
                                    types.push("eot".into());
                                    set(tc, "eot_token", &old);
                                } else if !types.iter().any(|t| t == "eom") {
                                    types.push("eom".into());
                                    set(tc, "eom_token", &old);
                                }
                                eos = Some(Json::String(l.clone()));
                                set(tc, "eos_token", eos.as_ref().unwrap());
                            }
                            self.set_add("eos", is(&eos, l), true);
                        }
                    }
                    if pair.is_empty() {
                        continue;
                    }
                    let start = usize::from(
                        first.is_some() && template_special(pair.first()) == first.as_deref(),
                    );
                    let stop = if last.is_some() && template_special(pair.last()) == last.as_deref()
                    {
                        pair.len() - 1
                    } else {
                        pair.len()
                    };
                    let inner = pair.get(start..stop.max(start)).unwrap_or(&[]);
                    if inner.is_empty() {
                        continue;
                    }
                    let (a, b) = (
                        template_sequence(inner.first()),
                        template_sequence(inner.last()),
                    );
                    if a != Some("A") || b != Some("B") || inner.len() < 3 {
                        continue;
                    }
                    let middle = &inner[1..inner.len() - 1];
                    let is_sep = |t: &str| is(&sep, t) || is(&eos, t);
                    let mut add_sep = false;
                    if let Some(t) = template_special(middle.first()) {
                        if is_sep(t) && last.is_none() {
                            add_sep = true;
                        }
                    }
                    if middle.len() == 2 {
                        if let Some(t) = template_special(middle.get(1)) {
                            if is_sep(t) {
                                add_sep = true;
                            }
                        }
                    }
                    self.set_add("sep", add_sep, true);
                    if add_sep && !truthy(sep.as_ref()) && has_tc {
                        let v = eos.clone().unwrap_or(Json::Null);
                        set(tc, "sep_token", &v);
                        sep = Some(v);
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes the keys in llama.cpp's order: merges, special ids, add flags, chat
    /// template, normalizer flags.
    pub fn write(&self, w: &mut GgufWriter) {
        if !self.merges.is_empty() {
            w.add_kv("tokenizer.ggml.merges", Value::from(self.merges.clone()));
        }
        for (typ, id) in &self.ids {
            let key = match typ.as_str() {
                "unk" => "unknown",
                "sep" => "seperator",
                "pad" => "padding",
                "cls" => continue, // llama.cpp has no key for it
                t => t,
            };
            w.add_kv(format!("tokenizer.ggml.{key}_token_id"), *id);
        }
        for (typ, add) in &self.add {
            if matches!(typ.as_str(), "bos" | "eos" | "sep") {
                w.add_kv(format!("tokenizer.ggml.add_{typ}_token"), *add);
            }
        }
        match &self.chat_template {
            Some(Json::String(t)) => w.add_kv("tokenizer.chat_template", t.as_str()),
            Some(Json::Array(list)) => {
                let mut default = None;
                let mut names: Vec<String> = Vec::new();
                for choice in list {
                    let name: String = choice
                        .get("name")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    let Some(t) = choice.get("template").and_then(Json::as_str) else {
                        continue;
                    };
                    if name.is_empty() {
                        continue;
                    }
                    if name == "default" {
                        default = Some(t);
                    } else {
                        if !names.contains(&name) {
                            names.push(name.clone());
                        }
                        w.add_kv(format!("tokenizer.chat_template.{name}"), t);
                    }
                }
                if !names.is_empty() {
                    w.add_kv("tokenizer.chat_templates", Value::from(names));
                }
                if let Some(t) = default {
                    w.add_kv("tokenizer.chat_template", t);
                }
            }
            _ => {}
        }
        if let Some(b) = self.lowercase {
            w.add_kv("tokenizer.ggml.normalizer.lowercase", b);
        }
        if let Some(b) = self.strip_accents {
            w.add_kv("tokenizer.ggml.normalizer.strip_accents", b);
        }
    }
}

/// `tokenizer.json`'s merges as `"a b"` strings.
fn read_merges(tj: &Json) -> Result<Vec<String>, ConvertError> {
    let Some(list) = tj
        .get("model")
        .and_then(|m| m.get("merges"))
        .and_then(Json::as_array)
    else {
        return Ok(Vec::new());
    };
    let bad = || ConvertError::Tokenizer("tokenizer.json: unknown merges format".into());
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        match m {
            Json::String(s) => out.push(s.clone()),
            Json::Array(pair) if pair.len() == 2 => {
                let part = |p: &Json| -> Result<String, ConvertError> {
                    let s = p.as_str().ok_or_else(bad)?;
                    Ok(s.replace(' ', "\u{0120}"))
                };
                out.push(format!("{} {}", part(&pair[0])?, part(&pair[1])?));
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// `merges.txt`: one `a b` pair a line, an optional `#` header line.
fn merges_txt(path: &Path) -> Result<Vec<String>, ConvertError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConvertError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut lines = text.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
        lines.next();
    }
    Ok(lines
        .filter_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts.len() == 2).then(|| format!("{} {}", parts[0], parts[1]))
        })
        .collect())
}

/// `chat_template.jinja` (with `additional_chat_templates/*.jinja` as named ones), else
/// `chat_template.json`'s `chat_template`.
fn chat_template_file(dir: &Path) -> Result<Option<Json>, ConvertError> {
    let io = |path: &Path, source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let t = std::fs::read_to_string(&jinja).map_err(|e| io(&jinja, e))?;
        let extra_dir = dir.join("additional_chat_templates");
        let mut extra: Vec<_> = std::fs::read_dir(&extra_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
            .collect();
        if extra.is_empty() {
            return Ok(Some(Json::String(t)));
        }
        extra.sort();
        let mut list = vec![serde_json::json!({"name": "default", "template": t})];
        for p in extra {
            let t = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            list.push(serde_json::json!({"name": name, "template": t}));
        }
        return Ok(Some(Json::Array(list)));
    }
    Ok(read_json_opt(&dir.join("chat_template.json"))?
        .and_then(|j| j.get("chat_template").cloned())
        .filter(|t| !t.is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pp(sv: &mut SpecialVocab, tj: &str, tc: &str) -> Option<Map<String, Json>> {
        let tj: Json = serde_json::from_str(tj).unwrap();
        let mut tc: Option<Map<String, Json>> = serde_json::from_str(tc).unwrap();
        let mut types = vec!["bos".to_string(), "eos".to_string()];
        sv.post_processor(&tj, &mut tc, &mut types);
        tc
    }

    #[test]
    fn byte_level_adds_nothing_and_llama3_template_adds_bos() {
        let mut sv = SpecialVocab::default();
        pp(
            &mut sv,
            r#"{"post_processor":{"type":"ByteLevel"}}"#,
            r#"{"bos_token":null}"#,
        );
        assert_eq!(sv.add, vec![("bos".into(), false), ("eos".into(), false)]);

        let mut sv = SpecialVocab::default();
        pp(
            &mut sv,
            r#"{"post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel"},
                {"type":"TemplateProcessing",
                 "single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],
                 "pair":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}},
                         {"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"B"}}]}]}}"#,
            r#"{"bos_token":"<s>","eos_token":"</s>"}"#,
        );
        assert_eq!(
            sv.add,
            vec![
                ("bos".into(), true),
                ("eos".into(), false),
                ("sep".into(), false)
            ]
        );
    }

    #[test]
    fn merges_pairs_encode_spaces() {
        let tj: Json =
            serde_json::from_str(r#"{"model":{"merges":[["a b","c"],["d","e"]]}}"#).unwrap();
        assert_eq!(read_merges(&tj).unwrap(), vec!["a\u{120}b c", "d e"]);
    }
}
