//! Models made by `hearth create NAME -f Modelfile` and Ollama's `POST /api/create`: a base
//! GGUF with request defaults, kept as a small manifest beside the models
//! (`NAME.hearth.json`), never a copy of the weights. The CLI and the server both read and
//! write manifests through this module, so there is one parser and one format.
//!
//! A Modelfile takes Ollama's syntax for the instructions Hearth implements:
//! - `FROM` a GGUF path or a model name (a known model, a file in the models directory, or
//!   another created model, whose settings are inherited);
//! - `PARAMETER name value`, for the Ollama options Hearth's sampler implements
//!   ([`PARAMETERS`]); `stop` may repeat. They become request defaults: a request's own
//!   value wins;
//! - `SYSTEM`: the system prompt used when a request brings none;
//! - `TEMPLATE`: replaces the model's chat template. Only Jinja templates (the language of
//!   a GGUF's `tokenizer.chat_template`) are taken, checked by rendering a conversation;
//!   Ollama's Go templates (`{{ .Prompt }}`) are refused with an error that says so.
//!
//! Arguments are a word, a `"quoted string"` or a `"""multi-line string"""`; `#` starts a
//! comment line. Any other instruction (`ADAPTER`, `LICENSE`, `MESSAGE`, ...) is an error
//! naming it and its line, as is an unknown parameter.

use std::path::{Path, PathBuf};

use hearth_gguf::GgufFile;
use hearth_model::{ChatMessage, ChatTemplate, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A manifest's file name is the model's name and this.
pub const MANIFEST_SUFFIX: &str = ".hearth.json";

/// Why a Modelfile, a manifest or a create request was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ModelfileError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ModelfileError> {
    Err(ModelfileError(msg.into()))
}

/// The kind of a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Float,
    Int,
    /// A string; repeated, they make a list.
    Strings,
}

/// The Ollama options a `PARAMETER` may set: those Hearth's sampler and limits implement.
pub const PARAMETERS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "num_predict",
    "num_ctx",
    "seed",
    "stop",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
];

fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "temperature" | "top_p" | "min_p" | "repeat_penalty" | "presence_penalty"
        | "frequency_penalty" => Kind::Float,
        "top_k" | "num_predict" | "num_ctx" | "seed" | "repeat_last_n" => Kind::Int,
        "stop" => Kind::Strings,
        _ => return None,
    })
}

fn unknown_parameter(name: &str) -> ModelfileError {
    ModelfileError(format!(
        "unknown parameter '{name}' (Hearth implements {})",
        PARAMETERS.join(", ")
    ))
}

/// `value` (as written after `PARAMETER name`) as the JSON value of parameter `name`.
fn parameter_value(name: &str, value: &str) -> Result<Value, ModelfileError> {
    match kind(name).ok_or_else(|| unknown_parameter(name))? {
        Kind::Float => match value.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(json!(f)),
            _ => err(format!("parameter {name} takes a number, not '{value}'")),
        },
        Kind::Int => match value.parse::<i64>() {
            Ok(i) => Ok(json!(i)),
            Err(_) => err(format!(
                "parameter {name} takes a whole number, not '{value}'"
            )),
        },
        Kind::Strings if value.is_empty() => err(format!("parameter {name} must not be empty")),
        Kind::Strings => Ok(json!([value])),
    }
}

/// Checks a parameter given as JSON (`/api/create`'s `parameters`, a manifest's) and
/// returns it in the manifest's form (`stop` always a list).
pub fn check_parameter(name: &str, value: &Value) -> Result<Value, ModelfileError> {
    let k = kind(name).ok_or_else(|| unknown_parameter(name))?;
    let ok = match (k, value) {
        (Kind::Float, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (Kind::Int, Value::Number(n)) => n.as_i64().is_some(),
        (Kind::Strings, Value::String(s)) => return parameter_value(name, s),
        (Kind::Strings, Value::Array(a)) => {
            a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        }
        _ => false,
    };
    if !ok {
        let want = match k {
            Kind::Float => "a number",
            Kind::Int => "a whole number",
            Kind::Strings => "a non-empty string or a list of them",
        };
        return err(format!("parameter {name} takes {want}, not {value}"));
    }
    Ok(value.clone())
}

/// What a Modelfile (or a create request) says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modelfile {
    pub from: Option<String>,
    /// Checked parameters, by Ollama's names (`stop` a list).
    pub parameters: Map<String, Value>,
    pub system: Option<String>,
    pub template: Option<String>,
}

impl Modelfile {
    /// Parses a Modelfile's text. Errors name the line and the instruction.
    pub fn parse(text: &str) -> Result<Modelfile, ModelfileError> {
        let mut mf = Modelfile::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line_no = i + 1;
            let line = lines[i].trim();
            i += 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = match line.split_once(char::is_whitespace) {
                Some((w, r)) => (w, r.trim_start()),
                None => (line, ""),
            };
            let instr = word.to_ascii_uppercase();
            let at = |msg: String| ModelfileError(format!("Modelfile line {line_no}: {msg}"));
            // The argument: up to the closing `"""` of a multi-line string, which may be
            // lines below.
            let arg = if let Some(open) = rest.strip_prefix("\"\"\"") {
                let mut text = String::new();
                let mut cur = open.to_string();
                loop {
                    if let Some(end) = cur.find("\"\"\"") {
                        text.push_str(&cur[..end]);
                        if !cur[end + 3..].trim().is_empty() {
                            return Err(at(format!(
                                "{instr}: text after the closing \"\"\": '{}'",
                                cur[end + 3..].trim()
                            )));
                        }
                        break;
                    }
                    text.push_str(&cur);
                    text.push('\n');
                    let Some(next) = lines.get(i) else {
                        return Err(at(format!(
                            "{instr}: the \"\"\" opened here is never closed"
                        )));
                    };
                    cur = next.to_string();
                    i += 1;
                }
                text
            } else {
                unquote(rest).map_err(|e| at(format!("{instr}: {e}")))?
            };
            match instr.as_str() {
                "FROM" if arg.is_empty() => {
                    return Err(at("FROM needs a model name or a GGUF path".into()));
                }
                "FROM" => set_once(&mut mf.from, arg, "FROM").map_err(|e| at(e.0))?,
                "SYSTEM" => set_once(&mut mf.system, arg, "SYSTEM").map_err(|e| at(e.0))?,
                "TEMPLATE" => set_once(&mut mf.template, arg, "TEMPLATE").map_err(|e| at(e.0))?,
                "PARAMETER" => {
                    let (name, value) = match arg.split_once(char::is_whitespace) {
                        Some((n, v)) if !rest.starts_with('"') => (n.to_string(), v.trim()),
                        _ => return Err(at("PARAMETER needs a name and a value".into())),
                    };
                    let name = name.to_ascii_lowercase();
                    let value = unquote(value).map_err(|e| at(format!("PARAMETER {name}: {e}")))?;
                    let v = parameter_value(&name, &value)
                        .map_err(|e| at(format!("PARAMETER: {}", e.0)))?;
                    match (mf.parameters.get_mut(&name), v) {
                        (Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
                        (Some(_), _) => {
                            return Err(at(format!("PARAMETER {name} is given twice")));
                        }
                        (None, v) => {
                            mf.parameters.insert(name, v);
                        }
                    }
                }
                "ADAPTER" | "LICENSE" | "MESSAGE" | "REQUIRES" => {
                    return Err(at(format!(
                        "{instr} is not supported by Hearth (it implements FROM, PARAMETER, SYSTEM and TEMPLATE)"
                    )));
                }
                _ => {
                    return Err(at(format!(
                        "unknown instruction '{word}' (Hearth implements FROM, PARAMETER, SYSTEM and TEMPLATE)"
                    )));
                }
            }
        }
        if mf.from.is_none() {
            return err("the Modelfile has no FROM line: name the base model or GGUF file");
        }
        Ok(mf)
    }
}

fn set_once(slot: &mut Option<String>, v: String, what: &str) -> Result<(), ModelfileError> {
    if slot.is_some() {
        return err(format!("{what} is given twice"));
    }
    *slot = Some(v);
    Ok(())
}

/// A one-line argument: as written, or the inside of `"..."` with `\"` and `\\` escapes.
fn unquote(s: &str) -> Result<String, String> {
    let s = s.trim();
    let Some(inner) = s.strip_prefix('"') else {
        return Ok(s.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(e) => out.push(e),
                None => return Err("the quoted string ends in a backslash".into()),
            },
            '"' => {
                let after: String = chars.collect();
                if !after.trim().is_empty() {
                    return Err(format!("text after the closing quote: '{}'", after.trim()));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err("the quoted string is never closed".into())
}

/// A created model as stored: `NAME.hearth.json` in the models directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format's version (1).
    pub hearth_manifest: u32,
    /// The base GGUF file; a relative path is relative to the manifest's folder.
    pub model: PathBuf,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl Manifest {
    /// The manifest for `mf`, over `base` (the GGUF file `FROM` resolved to) and, when
    /// `FROM` named a created model, that model's manifest `parent`, whose parameters,
    /// system and template are kept unless `mf` sets them. The template is checked
    /// against the base file. `dir` is where the manifest will live: a base inside it is
    /// stored by file name.
    pub fn new(
        mf: &Modelfile,
        base: &Path,
        parent: Option<&Manifest>,
        dir: &Path,
    ) -> Result<Manifest, ModelfileError> {
        let mut m = Manifest {
            hearth_manifest: 1,
            model: stored_path(base, dir),
            parameters: parent.map(|p| p.parameters.clone()).unwrap_or_default(),
            system: parent.and_then(|p| p.system.clone()),
            template: parent.and_then(|p| p.template.clone()),
        };
        for (k, v) in &mf.parameters {
            m.parameters.insert(k.clone(), check_parameter(k, v)?);
        }
        if mf.system.is_some() {
            m.system = mf.system.clone();
        }
        if let Some(t) = &mf.template {
            let file = GgufFile::open(base)
                .map_err(|e| ModelfileError(format!("cannot read {}: {e}", base.display())))?;
            check_template(t, &file)?;
            m.template = Some(t.clone());
        }
        Ok(m)
    }

    /// Reads and checks the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest, ModelfileError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ModelfileError(format!("cannot read {}: {e}", path.display())))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            ModelfileError(format!("{} is not a Hearth manifest: {e}", path.display()))
        })?;
        if m.hearth_manifest != 1 {
            return err(format!(
                "{}: manifest version {} is not one this Hearth reads (1)",
                path.display(),
                m.hearth_manifest
            ));
        }
        for (k, v) in &m.parameters {
            check_parameter(k, v)
                .map_err(|e| ModelfileError(format!("{}: {}", path.display(), e.0)))?;
        }
        Ok(m)
    }

    /// Writes the manifest to `path` (through a temporary file and a rename).
    pub fn write(&self, path: &Path) -> Result<(), ModelfileError> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a manifest serializes") + "\n";
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ModelfileError(format!("cannot write {}: {e}", path.display()))
            })
    }

    /// The manifest at `from` as a copy of it in `dir` must say it (its base named from
    /// there).
    pub fn relocated(&self, from: &Path, dir: &Path) -> Manifest {
        let mut m = self.clone();
        m.model = stored_path(&self.gguf_path(from), dir);
        m
    }

    /// The base GGUF file of the manifest at `manifest_path`.
    pub fn gguf_path(&self, manifest_path: &Path) -> PathBuf {
        match manifest_path.parent() {
            Some(dir) if self.model.is_relative() => dir.join(&self.model),
            _ => self.model.clone(),
        }
    }

    /// The parameters as Ollama's `/api/show` lists them: `name value` lines, strings
    /// quoted.
    pub fn parameters_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.parameters {
            match v {
                Value::Array(a) => {
                    for s in a {
                        out.push_str(&format!("{k:<16}{s}\n")); // JSON: quoted
                    }
                }
                v => out.push_str(&format!("{k:<16}{v}\n")),
            }
        }
        out.trim_end().to_string()
    }

    /// The manifest as a Modelfile (`/api/show`'s `modelfile`, `hearth show`); parsing it
    /// gives the manifest back.
    pub fn modelfile(&self, manifest_path: &Path) -> String {
        let mut out = format!(
            "# Made by hearth create\nFROM {}\n",
            self.gguf_path(manifest_path).display()
        );
        for (k, v) in &self.parameters {
            match v {
                Value::Array(a) => {
                    for s in a {
                        out.push_str(&format!("PARAMETER {k} {s}\n"));
                    }
                }
                v => out.push_str(&format!("PARAMETER {k} {v}\n")),
            }
        }
        if let Some(s) = &self.system {
            out.push_str(&format!("SYSTEM \"\"\"{s}\"\"\"\n"));
        }
        if let Some(t) = &self.template {
            out.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
        }
        out
    }
}

/// `base` as a manifest in `dir` names it: by file name when it is inside `dir`, else by
/// its absolute path.
fn stored_path(base: &Path, dir: &Path) -> PathBuf {
    let parent = match base.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    match (
        parent.canonicalize().ok(),
        dir.canonicalize().ok(),
        base.file_name(),
    ) {
        (Some(p), Some(d), Some(f)) if p == d => PathBuf::from(f),
        (Some(p), _, Some(f)) => p.join(f),
        _ => std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()),
    }
}

/// The model name of a manifest's file name (`NAME.hearth.json`), if it is one.
pub fn manifest_name(path: &Path) -> Option<&str> {
    let n = path.file_name()?.to_str()?.strip_suffix(MANIFEST_SUFFIX)?;
    (!n.is_empty()).then_some(n)
}

/// Checks a name for a model in the models directory: letters, digits, `.`, `_` and `-`,
/// not starting with a dot.
pub fn check_name(name: &str) -> Result<(), ModelfileError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return err(format!(
            "'{name}' is not a model name: use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Whether `source` reads like one of Ollama's Go templates.
fn is_go_template(source: &str) -> bool {
    let squeezed: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    ["{{.", "{{-.", "{{if.", "{{-if.", "{{range.", "{{-range."]
        .iter()
        .any(|p| squeezed.contains(p))
}

/// Checks that `source` is a Jinja chat template Hearth renders for the model `file`: it
/// compiles, and renders a system and a user message with the assistant's turn opened.
pub fn check_template(source: &str, file: &GgufFile) -> Result<(), ModelfileError> {
    if is_go_template(source) {
        return err(
            "TEMPLATE is an Ollama Go template ({{ .Prompt }}, {{ .Messages }}), which Hearth does not render; give a Jinja chat template (the language of a GGUF's tokenizer.chat_template: {% for message in messages %}...), or leave TEMPLATE out to keep the model's own",
        );
    }
    let tokenizer = Tokenizer::from_gguf(file)
        .map_err(|e| ModelfileError(format!("cannot read the model's tokenizer: {e}")))?;
    let t = ChatTemplate::new(source, &tokenizer).map_err(|e| {
        ModelfileError(format!(
            "TEMPLATE is not a Jinja template Hearth can compile: {e}"
        ))
    })?;
    let msgs = [
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", "Hello"),
    ];
    let text = t
        .render(&msgs, true)
        .map_err(|e| ModelfileError(format!("TEMPLATE does not render a conversation: {e}")))?;
    if !text.contains("Hello") {
        return err(
            "TEMPLATE renders a conversation without its messages (it must use `messages`)",
        );
    }
    Ok(())
}

/// The capabilities of the model `file` (with `template` replacing its chat template when
/// given), as Ollama's `/api/show` names them: `embedding` for an encoder; otherwise
/// `completion`, and `tools` (the template renders tools), `thinking` (it writes
/// `</think>`) and `insert` (fill-in-the-middle tokens) where they hold. Read from the
/// metadata alone: no tokenizer is built (listing a large-vocabulary model must not cost
/// its tokenizer's memory).
pub fn capabilities(file: &GgufFile, template: Option<&str>) -> Vec<&'static str> {
    let arch = file.get_str("general.architecture").unwrap_or_default();
    if hearth_model::arch::find(arch)
        .is_some_and(|a| matches!(a.load, hearth_model::arch::Loader::Encoder(_)))
    {
        return vec!["embedding"];
    }
    let mut caps = vec!["completion"];
    let source = template.or_else(|| file.get_str("tokenizer.chat_template"));
    if let Some(t) = source.and_then(|s| ChatTemplate::with_tokens(s, "", "").ok()) {
        if t.knows_tools() {
            caps.push("tools");
        }
        if t.source().contains("</think>") {
            caps.push("thinking");
        }
    }
    if hearth_model::tokenizer::gguf_has_fim(file) {
        caps.push("insert");
    }
    caps
}

/// The API a request body is in, for [`apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OllamaGenerate,
    OllamaChat,
    OpenAiChat,
    OpenAiCompletion,
    Anthropic,
    Responses,
    LlamaCpp,
}

/// Fills a request body (a JSON object) with a created model's defaults: each parameter
/// under the dialect's name for it, where the request has none (parameters a dialect has
/// no field for, such as `num_ctx` outside Ollama's, do not apply there; `num_predict`
/// applies where positive), and its system prompt where the request has none (chat
/// routes: a leading system message; Ollama's generate: `system`, unless `raw`;
/// Anthropic's `system`; the Responses API's `instructions`; raw-text completions take
/// none).
pub fn apply(dialect: Dialect, body: &mut Value, m: &Manifest) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    use Dialect::*;
    for (name, value) in &m.parameters {
        let field = match (dialect, name.as_str()) {
            (OllamaGenerate | OllamaChat, n) => n,
            (_, "num_ctx") => continue,
            (_, "num_predict") if value.as_i64().is_none_or(|n| n < 1) => continue,
            (OpenAiChat, "num_predict") if obj.contains_key("max_completion_tokens") => continue,
            (OpenAiChat | OpenAiCompletion | Anthropic, "num_predict") => "max_tokens",
            (Responses, "num_predict") => "max_output_tokens",
            (LlamaCpp, "num_predict") => "n_predict",
            (Responses, "temperature" | "top_p") => name,
            (Responses, _) => continue,
            (Anthropic, "stop") => "stop_sequences",
            (Anthropic, "seed") if value.as_i64().is_none_or(|s| s < 0) => continue,
            (Anthropic, "temperature" | "top_p" | "top_k" | "seed") => name,
            (Anthropic, _) => continue,
            (OpenAiChat | OpenAiCompletion, "repeat_penalty") => "repetition_penalty",
            (OpenAiChat | OpenAiCompletion, "repeat_last_n") => continue,
            (_, n) => n,
        };
        let target = if matches!(dialect, OllamaGenerate | OllamaChat) {
            let options = obj.entry("options").or_insert_with(|| json!({}));
            if options.is_null() {
                *options = json!({});
            }
            match options.as_object_mut() {
                Some(o) => o,
                None => continue, // a malformed `options` is the request's own error
            }
        } else {
            &mut *obj
        };
        if target.get(field).is_none_or(Value::is_null) {
            target.insert(field.to_string(), value.clone());
        }
    }
    let Some(system) = &m.system else { return };
    let absent = |o: &Map<String, Value>, k: &str| o.get(k).is_none_or(Value::is_null);
    match dialect {
        OllamaChat | OpenAiChat => {
            let Some(Value::Array(msgs)) = obj.get_mut("messages") else {
                return;
            };
            let has_system = msgs.iter().any(|msg| {
                matches!(
                    msg.get("role").and_then(Value::as_str),
                    Some("system" | "developer")
                )
            });
            if !msgs.is_empty() && !has_system {
                msgs.insert(0, json!({"role": "system", "content": system}));
            }
        }
        OllamaGenerate => {
            let has_prompt = obj
                .get("prompt")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty());
            let raw = obj.get("raw").and_then(Value::as_bool).unwrap_or(false);
            if has_prompt && !raw && absent(obj, "system") {
                obj.insert("system".into(), json!(system));
            }
        }
        Anthropic if absent(obj, "system") => {
            obj.insert("system".into(), json!(system));
        }
        Responses if absent(obj, "instructions") => {
            obj.insert("instructions".into(), json!(system));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        Modelfile::parse(text).unwrap_err().0
    }

    #[test]
    fn parses_every_instruction() {
        let mf = Modelfile::parse(
            "# a comment\nFROM smollm2\n\nparameter temperature 0.2\nPARAMETER top_k 20\n\
             PARAMETER stop \"<|im_end|>\"\nPARAMETER stop User:\n\
             SYSTEM \"\"\"You are a pirate.\nAlways answer in rhyme.\"\"\"\n\
             TEMPLATE \"\"\"{% for m in messages %}{{ m.content }}{% endfor %}\"\"\"\n",
        )
        .unwrap();
        assert_eq!(mf.from.as_deref(), Some("smollm2"));
        assert_eq!(mf.parameters["temperature"], json!(0.2));
        assert_eq!(mf.parameters["top_k"], json!(20));
        assert_eq!(mf.parameters["stop"], json!(["<|im_end|>", "User:"]));
        assert_eq!(
            mf.system.as_deref(),
            Some("You are a pirate.\nAlways answer in rhyme.")
        );
        assert_eq!(
            mf.template.as_deref(),
            Some("{% for m in messages %}{{ m.content }}{% endfor %}")
        );
    }

    #[test]
    fn multi_line_strings_span_lines_and_one_line_strings_unquote() {
        let mf = Modelfile::parse(
            "FROM \"/models/my model.gguf\"\nSYSTEM \"\"\"\nfirst\n  second\n\"\"\"\n",
        )
        .unwrap();
        assert_eq!(mf.from.as_deref(), Some("/models/my model.gguf"));
        assert_eq!(mf.system.as_deref(), Some("\nfirst\n  second\n"));
        let mf = Modelfile::parse("FROM x\nSYSTEM \"say \\\"hi\\\"\"\n").unwrap();
        assert_eq!(mf.system.as_deref(), Some("say \"hi\""));
        let mf = Modelfile::parse("FROM x\nSYSTEM plain words here\n").unwrap();
        assert_eq!(mf.system.as_deref(), Some("plain words here"));
    }

    #[test]
    fn errors_name_the_line_and_the_instruction() {
        let e = parse_err("FROM x\nPARAMETER mirostat 1\n");
        assert!(
            e.contains("line 2") && e.contains("unknown parameter 'mirostat'"),
            "{e}"
        );
        assert!(e.contains("temperature"), "{e}");
        let e = parse_err("FROM x\n\nADAPTER ./lora.gguf\n");
        assert!(
            e.contains("line 3") && e.contains("ADAPTER is not supported"),
            "{e}"
        );
        for instr in ["LICENSE MIT", "MESSAGE user hi"] {
            let e = parse_err(&format!("FROM x\n{instr}\n"));
            let word = instr.split(' ').next().unwrap();
            assert!(
                e.contains("line 2") && e.contains(&format!("{word} is not supported")),
                "{e}"
            );
        }
        let e = parse_err("FROM x\nFOO bar\n");
        assert!(e.contains("unknown instruction 'FOO'"), "{e}");
        let e = parse_err("FROM x\nPARAMETER temperature warm\n");
        assert!(
            e.contains("line 2") && e.contains("temperature takes a number"),
            "{e}"
        );
        let e = parse_err("FROM x\nPARAMETER top_k 2.5\n");
        assert!(e.contains("top_k takes a whole number"), "{e}");
        let e = parse_err("FROM x\nPARAMETER temperature\n");
        assert!(e.contains("needs a name and a value"), "{e}");
        let e = parse_err("FROM x\nPARAMETER seed 1\nPARAMETER seed 2\n");
        assert!(
            e.contains("line 3") && e.contains("seed is given twice"),
            "{e}"
        );
        let e = parse_err("FROM x\nSYSTEM \"\"\"never\nclosed\n");
        assert!(e.contains("line 2") && e.contains("never closed"), "{e}");
        let e = parse_err("FROM x\nSYSTEM \"open\n");
        assert!(e.contains("line 2") && e.contains("SYSTEM"), "{e}");
        let e = parse_err("SYSTEM hi\n");
        assert!(e.contains("no FROM"), "{e}");
        let e = parse_err("FROM a\nFROM b\n");
        assert!(
            e.contains("line 2") && e.contains("FROM is given twice"),
            "{e}"
        );
    }

    #[test]
    fn json_parameters_are_checked_by_name_and_type() {
        assert_eq!(check_parameter("stop", &json!("x")).unwrap(), json!(["x"]));
        assert_eq!(
            check_parameter("stop", &json!(["a", "b"])).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(check_parameter("temperature", &json!(1)).unwrap(), json!(1));
        assert!(check_parameter("top_k", &json!(1.5))
            .unwrap_err()
            .0
            .contains("top_k"));
        assert!(check_parameter("num_gpu", &json!(1))
            .unwrap_err()
            .0
            .contains("unknown parameter 'num_gpu'"));
        assert!(check_parameter("stop", &json!([""])).is_err());
    }

    #[test]
    fn go_templates_are_recognized() {
        assert!(is_go_template("{{ .System }}\n{{ .Prompt }}"));
        assert!(is_go_template("{{- if .Messages }}x{{ end }}"));
        assert!(!is_go_template(
            "{% for m in messages %}{{ m.content }}{% endfor %}"
        ));
    }

    fn manifest() -> Manifest {
        let mut parameters = Map::new();
        parameters.insert("temperature".into(), json!(0.1));
        parameters.insert("num_predict".into(), json!(7));
        parameters.insert("num_ctx".into(), json!(256));
        parameters.insert("stop".into(), json!(["END"]));
        parameters.insert("repeat_penalty".into(), json!(1.2));
        Manifest {
            hearth_manifest: 1,
            model: "base.gguf".into(),
            parameters,
            system: Some("Be brief.".into()),
            template: None,
        }
    }

    #[test]
    fn defaults_fill_what_the_request_leaves_out_in_each_dialect() {
        let m = manifest();
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                           "options": {"temperature": 0.9}});
        apply(Dialect::OllamaChat, &mut v, &m);
        assert_eq!(v["options"]["temperature"], json!(0.9)); // the request's wins
        assert_eq!(v["options"]["num_predict"], json!(7));
        assert_eq!(v["options"]["num_ctx"], json!(256));
        assert_eq!(v["options"]["stop"], json!(["END"]));
        assert_eq!(
            v["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );

        let mut v = json!({"model": "m", "messages": [{"role": "system", "content": "own"},
                                                      {"role": "user", "content": "hi"}],
                           "max_tokens": 3});
        apply(Dialect::OpenAiChat, &mut v, &m);
        assert_eq!(v["max_tokens"], json!(3));
        assert_eq!(v["temperature"], json!(0.1));
        assert_eq!(v["repetition_penalty"], json!(1.2));
        assert!(v.get("num_ctx").is_none() && v.get("num_predict").is_none());
        assert_eq!(v["messages"].as_array().unwrap().len(), 2);

        let mut v = json!({"model": "m", "prompt": "hi"});
        apply(Dialect::OllamaGenerate, &mut v, &m);
        assert_eq!(v["system"], json!("Be brief."));
        let mut v = json!({"model": "m", "prompt": ""});
        apply(Dialect::OllamaGenerate, &mut v, &m);
        assert!(v.get("system").is_none(), "a load request stays one");

        let mut v = json!({"model": "m", "max_tokens": 5, "messages": []});
        apply(Dialect::Anthropic, &mut v, &m);
        assert_eq!(v["stop_sequences"], json!(["END"]));
        assert_eq!(v["system"], json!("Be brief."));
        assert!(v.get("repeat_penalty").is_none());

        let mut v = json!({"model": "m", "input": "hi"});
        apply(Dialect::Responses, &mut v, &m);
        assert_eq!(v["instructions"], json!("Be brief."));
        assert_eq!(v["max_output_tokens"], json!(7));
        assert!(v.get("stop").is_none());
    }

    #[test]
    fn manifests_round_trip_and_render_as_modelfiles() {
        let dir = std::env::temp_dir().join(format!("hearth-mf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("m{MANIFEST_SUFFIX}"));
        let m = manifest();
        m.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), m);
        assert_eq!(manifest_name(&path), Some("m"));
        assert_eq!(m.gguf_path(&path), dir.join("base.gguf"));
        let text = m.modelfile(&path);
        let back = Modelfile::parse(&text).unwrap();
        assert_eq!(back.parameters, m.parameters);
        assert_eq!(back.system, m.system);
        assert!(
            m.parameters_text().contains("stop            \"END\""),
            "{}",
            m.parameters_text()
        );
        std::fs::write(
            &path,
            r#"{"hearth_manifest": 1, "model": "x.gguf", "parameters": {"mirostat": 1}}"#,
        )
        .unwrap();
        assert!(Manifest::read(&path).unwrap_err().0.contains("mirostat"));
        std::fs::write(
            &path,
            r#"{"hearth_manifest": 1, "model": "x.gguf", "adapter": "y"}"#,
        )
        .unwrap();
        assert!(Manifest::read(&path).unwrap_err().0.contains("adapter"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-model_1.0").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
