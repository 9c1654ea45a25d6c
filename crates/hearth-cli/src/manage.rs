//! Model management: `hearth ps` and `hearth stop` ask a running server; `hearth show`,
//! `hearth rm` and `hearth cp` work on the models directory.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::GgufFile;
use hearth_model::ModelConfig;
use serde_json::{json, Value};

use crate::models;
use crate::Common;

/// Where a running server is: `--host`, else `$HEARTH_HOST`, else the default address.
#[derive(Args, Clone)]
pub struct ServerAddr {
    /// The server's address [default: $HEARTH_HOST or http://127.0.0.1:8080].
    #[arg(long)]
    pub host: Option<String>,
}

impl ServerAddr {
    fn url(&self, path: &str) -> String {
        let host = self
            .host
            .clone()
            .or_else(|| std::env::var("HEARTH_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let host = if host.contains("://") {
            host
        } else {
            format!("http://{host}")
        };
        format!("{}{path}", host.trim_end_matches('/'))
    }
}

/// The server's answer as JSON, or its error message.
fn call(addr: &ServerAddr, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = addr.url(path);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        (_, Some(b)) => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(b.to_string()),
        _ => bail!("unsupported call"),
    }
    .with_context(|| format!("cannot reach the server at {url} (is `hearth serve` running?)"))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string()?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = v["error"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{msg}");
    }
    Ok(v)
}

/// `hearth ps`: the models a running server has loaded.
pub fn ps(addr: &ServerAddr) -> Result<()> {
    let v = call(addr, "GET", "/api/ps", None)?;
    println!("{:<36} {:>10}  {:>8}  UNTIL", "NAME", "SIZE", "CONTEXT");
    for m in v["models"].as_array().into_iter().flatten() {
        let until = match m["expires_at"].as_str() {
            Some(t) if t.starts_with("2318") => "forever".to_string(),
            Some(t) => t.to_string(),
            None => "-".into(),
        };
        println!(
            "{:<36} {:>7.0} MB  {:>8}  {until}",
            m["name"]
                .as_str()
                .unwrap_or("?")
                .trim_end_matches(":latest"),
            m["size"].as_f64().unwrap_or(0.0) / 1e6,
            m["context_length"].as_u64().unwrap_or(0),
        );
    }
    Ok(())
}

/// `hearth stop MODEL`: a running server unloads the model (once its requests are done).
pub fn stop(addr: &ServerAddr, model: &str) -> Result<()> {
    call(
        addr,
        "POST",
        "/api/generate",
        Some(json!({"model": model, "keep_alive": 0})),
    )?;
    println!("{model} unloads once idle");
    Ok(())
}

/// `hearth show MODEL`: what the file is, and what serving it takes.
pub fn show(model: Option<&str>, common: &Common, ctx_size: Option<usize>) -> Result<()> {
    let path = models::resolve(model, &common.dir(), false)?;
    let file = GgufFile::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let c = ModelConfig::from_gguf(&file).context("cannot read the model's hyperparameters")?;
    let n_params: u64 = file
        .tensors()
        .iter()
        .map(|t| t.shape.iter().product::<u64>())
        .sum();
    println!("  Model");
    println!("    file                {}", path.display());
    println!("    architecture        {}", c.arch);
    println!("    parameters          {:.1}M", n_params as f64 / 1e6);
    println!("    context length      {}", c.n_ctx_train);
    println!("    embedding length    {}", c.n_embd);
    println!("    layers              {}", c.n_layer);
    if c.n_expert > 0 {
        println!(
            "    experts             {} ({} used)",
            c.n_expert, c.n_expert_used
        );
    }
    if let Some(p) = c.pooling {
        println!("    pooling             {}", p.name());
    }
    let caps = if hearth_model::arch::find(&c.arch)
        .is_some_and(|a| matches!(a.load, hearth_model::arch::Loader::Encoder(_)))
    {
        "embedding"
    } else if file.get_str("tokenizer.chat_template").is_some() {
        "completion, chat"
    } else {
        "completion"
    };
    println!("    capabilities        {caps}");
    // What `hearth serve` would allocate with its defaults (f16-sized q8_0 rows aside:
    // the KV estimate uses the default q8_0 cache, 512 MiB at most).
    let n_ctx = ctx_size.unwrap_or(c.n_ctx_train.min(8192));
    let kv_row = hearth_model::KvType::Q8_0.row_bytes(c.n_embd_kv()) * 2 * c.n_layer;
    let kv = (kv_row * n_ctx).max(512 << 20);
    let weights = file.bytes().len();
    println!("  Memory (hearth serve's defaults, context {n_ctx})");
    println!(
        "    weights             {:.0} MiB (read in place)",
        mib(weights)
    );
    println!("    KV cache            {:.0} MiB (--kv-memory)", mib(kv));
    println!(
        "    total               about {:.0} MiB",
        mib(weights + kv + (64 << 20))
    );
    if let Some(avail) = hearth_model::available_memory() {
        println!("    available now       {:.0} MiB", mib(avail));
    }
    Ok(())
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// `hearth rm MODEL`: deletes a model file from the models directory.
pub fn rm(model: &str, common: &Common) -> Result<()> {
    let dir = common.dir();
    let path = in_dir(model, &dir)?;
    std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
    // What `hearth pull` recorded of a joined sharded model goes with it.
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        let _ = std::fs::remove_file(dir.join(format!(".{name}.pull.json")));
    }
    println!("deleted '{model}' ({})", path.display());
    Ok(())
}

/// `hearth cp SRC DEST`: the model under a second name in the models directory (a hard
/// link where the file system allows, else a copy).
pub fn cp(src: &str, dest: &str, common: &Common) -> Result<()> {
    let dir = common.dir();
    let from = models::resolve(Some(src), &dir, false)?;
    if dest.is_empty()
        || dest.starts_with('.')
        || !dest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("'{dest}' is not a model name: use letters, digits, '.', '_' and '-'");
    }
    let to = dir.join(format!("{dest}.gguf"));
    if to.exists() {
        bail!("'{dest}' already exists ({})", to.display());
    }
    std::fs::hard_link(&from, &to)
        .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
        .with_context(|| format!("cannot write {}", to.display()))?;
    println!("copied '{src}' to '{dest}'");
    Ok(())
}

/// The file of `model` inside `dir` (by name, known name, or file name); a file outside
/// the models directory is not `hearth rm`'s to delete.
fn in_dir(model: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let path = models::resolve(Some(model), dir, false)?;
    let inside = path.parent().and_then(|p| p.canonicalize().ok()) == dir.canonicalize().ok();
    if !inside {
        bail!(
            "{} is not in the models directory {}; delete it yourself if you mean to",
            path.display(),
            dir.display()
        );
    }
    Ok(path)
}
