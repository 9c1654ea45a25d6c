//! Model management: `hearth ps` and `hearth stop` ask a running server; `hearth show`,
//! `hearth rm`, `hearth cp` and `hearth create` work on the models directory (a created
//! model is a manifest there, read and written by `hearth_server::modelfile`, as the
//! server's `/api/create` does).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_gguf::GgufFile;
use hearth_model::ModelConfig;
use hearth_server::modelfile::{self, Manifest, Modelfile, MANIFEST_SUFFIX};
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
    let served = models::resolve_served(model, &common.dir(), false)?;
    let recipe = match modelfile::manifest_name(&served) {
        Some(_) => Some(Manifest::read(&served)?),
        None => None,
    };
    let path = match &recipe {
        Some(m) => m.gguf_path(&served),
        None => served.clone(),
    };
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
    let template = recipe.as_ref().and_then(|m| m.template.as_deref());
    let caps = modelfile::capabilities(&file, template);
    println!("    capabilities        {}", caps.join(", "));
    if let Some(m) = &recipe {
        println!("  Created model ({})", served.display());
        if !m.parameters.is_empty() {
            println!("  Parameters");
            for line in m.parameters_text().lines() {
                println!("    {line}");
            }
        }
        if let Some(s) = &m.system {
            println!("  System");
            for line in s.lines() {
                println!("    {line}");
            }
        }
        if let Some(t) = &m.template {
            println!("  Template");
            for line in t.lines() {
                println!("    {line}");
            }
        }
        println!("  Modelfile");
        for line in m.modelfile(&served).lines() {
            println!("    {line}");
        }
    }
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

/// `hearth rm MODEL`: deletes a model file from the models directory (a created model's
/// manifest only, never its base).
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
    let from = models::resolve_served(Some(src), &dir, false)?;
    modelfile::check_name(dest)?;
    for taken in [
        dir.join(format!("{dest}.gguf")),
        dir.join(format!("{dest}{MANIFEST_SUFFIX}")),
    ] {
        if taken.exists() {
            bail!("'{dest}' already exists ({})", taken.display());
        }
    }
    if modelfile::manifest_name(&from).is_some() {
        // A created model: a copy of its manifest, naming the same base.
        let to = dir.join(format!("{dest}{MANIFEST_SUFFIX}"));
        Manifest::read(&from)?.relocated(&from, &dir).write(&to)?;
        println!("copied '{src}' to '{dest}'");
        return Ok(());
    }
    let to = dir.join(format!("{dest}.gguf"));
    std::fs::hard_link(&from, &to)
        .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
        .with_context(|| format!("cannot write {}", to.display()))?;
    println!("copied '{src}' to '{dest}'");
    Ok(())
}

/// The file of `model` inside `dir` (by name, known name, or file name); a file outside
/// the models directory is not `hearth rm`'s to delete.
fn in_dir(model: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let path = models::resolve_served(Some(model), dir, false)?;
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

/// `hearth create NAME -f Modelfile`: a model made of a base and the Modelfile's
/// parameters, system prompt and template, stored as `NAME.hearth.json` in the models
/// directory (the weights are not copied). `FROM` is a GGUF path (relative to the
/// Modelfile's folder), a created model (its settings are inherited) or a model name.
/// Creating a created model's name again replaces it.
pub fn create(name: &str, modelfile_path: &Path, common: &Common) -> Result<()> {
    let dir = common.dir();
    let name = name.strip_suffix(":latest").unwrap_or(name);
    modelfile::check_name(name)?;
    if models::find_known(name).is_some() {
        bail!("'{name}' is the name of a known model; pick another name");
    }
    for taken in [dir.join(name), dir.join(format!("{name}.gguf"))] {
        if taken.is_file() {
            bail!(
                "'{name}' already exists as a GGUF file ({}); pick another name",
                taken.display()
            );
        }
    }
    let text = std::fs::read_to_string(modelfile_path)
        .with_context(|| format!("cannot read {}", modelfile_path.display()))?;
    let mf = Modelfile::parse(&text).with_context(|| format!("{}", modelfile_path.display()))?;
    let from = mf.from.clone().unwrap_or_default();
    let folder = modelfile_path.parent().unwrap_or(Path::new("."));
    let as_path = folder.join(&from);
    let (base, parent): (PathBuf, Option<Manifest>) = if as_path.is_file() {
        (as_path, None)
    } else if let Some(m) = models::created(&from, &dir) {
        let parent = Manifest::read(&m)?;
        (parent.gguf_path(&m), Some(parent))
    } else {
        let p =
            models::resolve(Some(&from), &dir, false).with_context(|| format!("FROM {from}"))?;
        (p, None)
    };
    GgufFile::open(&base)
        .with_context(|| format!("FROM {from}: cannot read {}", base.display()))?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create models directory {}", dir.display()))?;
    let manifest = Manifest::new(&mf, &base, parent.as_ref(), &dir)?;
    let path = dir.join(format!("{name}{MANIFEST_SUFFIX}"));
    manifest.write(&path)?;
    println!(
        "created '{name}' from {} ({})",
        base.display(),
        path.display()
    );
    Ok(())
}
