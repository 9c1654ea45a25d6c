//! `hearth list`, `inspect` and `tokenize`.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use hearth_gguf::{Array, GgufFile, Value};
use hearth_model::Tokenizer;

use crate::models::{self, KNOWN_MODELS};
use crate::Common;

pub fn list(dir: &Path) -> Result<()> {
    println!("{:<40} {:>10}  PATH", "NAME", "SIZE");
    let mut seen = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for p in files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        {
            let file_name = p
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_string();
            let name =
                models::find_known(&file_name).map_or(file_name.clone(), |m| m.name.to_string());
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            println!("{name:<40} {:>7.1} MB  {}", size as f64 / 1e6, p.display());
            seen.push(file_name);
        }
    }
    // Models made by `hearth create`: a manifest over a base file.
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for p in files {
            let Some(name) = hearth_server::modelfile::manifest_name(&p) else {
                continue;
            };
            match hearth_server::modelfile::Manifest::read(&p) {
                Ok(m) => {
                    let base = m.gguf_path(&p);
                    let size = std::fs::metadata(&base).map(|m| m.len()).unwrap_or(0);
                    println!(
                        "{name:<40} {:>7.1} MB  {} (created from {})",
                        size as f64 / 1e6,
                        p.display(),
                        base.display()
                    );
                }
                Err(e) => println!("{name:<40} {:>10}  {} ({e})", "?", p.display()),
            }
        }
    }
    for m in KNOWN_MODELS
        .iter()
        .filter(|m| !seen.iter().any(|s| s == m.file_name))
    {
        println!(
            "{:<40} {:>7.1} MB  (not pulled: `hearth pull {}`)",
            m.name,
            m.size as f64 / 1e6,
            m.name
        );
    }
    Ok(())
}

/// A metadata value on one line: scalars as they are, strings quoted, arrays as their
/// element type and length with the first few elements.
fn show(v: &Value) -> String {
    const SHOWN: usize = 6;
    fn first<T: std::fmt::Debug>(v: &[T]) -> String {
        let items: Vec<String> = v.iter().take(SHOWN).map(|x| format!("{x:?}")).collect();
        let more = if v.len() > SHOWN { ", …" } else { "" };
        format!("[{}{more}]", items.join(", "))
    }
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => {
            let items = match a {
                Array::U8(v) => first(v),
                Array::I8(v) => first(v),
                Array::U16(v) => first(v),
                Array::I16(v) => first(v),
                Array::U32(v) => first(v),
                Array::I32(v) => first(v),
                Array::F32(v) => first(v),
                Array::Bool(v) => first(v),
                Array::String(v) => first(v),
                Array::Array(v) => format!("[{} nested arrays]", v.len()),
                Array::U64(v) => first(v),
                Array::I64(v) => first(v),
                Array::F64(v) => first(v),
            };
            format!("{}[{}] {items}", a.element_type(), a.len())
        }
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    };
    match s.char_indices().nth(160) {
        Some((cut, _)) => format!("{}… ({} chars)", &s[..cut], s.len()),
        None => s,
    }
}

pub fn inspect(model: Option<&str>, dir: &Path) -> Result<()> {
    let path = models::resolve(model, dir, false)?;
    let f = GgufFile::open(&path).with_context(|| format!("cannot load {}", path.display()))?;
    println!(
        "file: {}\nGGUF version {}, alignment {}, {} metadata keys, {} tensors",
        path.display(),
        f.version(),
        f.alignment(),
        f.metadata().len(),
        f.tensors().len()
    );
    println!("\nmetadata:");
    for (k, v) in f.metadata() {
        println!("  {k:<45} {}", show(v));
    }
    println!(
        "\n{:<32} {:<6} {:>20} {:>12}",
        "tensor", "type", "shape", "bytes"
    );
    for t in f.tensors() {
        println!(
            "{:<32} {:<6} {:>20} {:>12}",
            t.name,
            t.ggml_type.name(),
            format!("{:?}", t.shape),
            t.n_bytes
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model name or GGUF path.
    #[arg(short, long)]
    model: Option<String>,
    /// Print a JSON object with `ids` and `pieces`.
    #[arg(long)]
    json: bool,
    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    no_parse_special: bool,
    /// Add the model's BOS/EOS tokens if it wants them.
    #[arg(long)]
    add_special: bool,
    text: String,
    #[command(flatten)]
    common: Common,
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let path = models::resolve(a.model.as_deref(), &a.common.dir(), true)?;
    let f = GgufFile::open(&path).with_context(|| format!("cannot load {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&f)?;
    let ids = tok.encode(&a.text, a.add_special, !a.no_parse_special);
    if a.json {
        let pieces: Vec<String> = ids
            .iter()
            .map(|&i| String::from_utf8_lossy(tok.token_to_piece(i, true)).into_owned())
            .collect();
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        println!("{ids:?}");
    }
    Ok(())
}
