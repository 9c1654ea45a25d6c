//! `hearth embed`: one vector per text, as JSON.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_model::{Model, Pooling};
use serde_json::json;

use crate::models;
use crate::Common;

#[derive(Args)]
pub struct EmbedArgs {
    /// Model name or GGUF path (an embedding model such as all-minilm, or a generative
    /// model with --pooling).
    #[arg(short, long)]
    pub model: String,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// How token vectors are pooled: mean, cls or last [default: the model's].
    #[arg(long, value_parser = ["mean", "cls", "last"])]
    pub pooling: Option<String>,
    /// Compute threads [default: all cores].
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

/// Prints `{"model", "pooling", "embeddings": [[...], ...]}`: the texts' L2-normalized
/// vectors in order.
pub fn embed(a: EmbedArgs) -> Result<()> {
    let path = models::resolve(Some(&a.model), &a.common.dir(), true)?;
    let model =
        Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
    let pooling = match (a.pooling.as_deref(), model.config.pooling) {
        (Some(p), _) => Pooling::from_name(p).expect("clap checked it"),
        (None, Some(p @ (Pooling::Mean | Pooling::Cls | Pooling::Last))) => p,
        (None, _) => bail!(
            "{} has no pooling for embeddings: pass --pooling mean, cls or last",
            path.display()
        ),
    };
    if let Some(t) = a.texts.iter().find(|t| t.is_empty()) {
        bail!("text {t:?} is empty: nothing to embed");
    }
    let ids: Vec<Vec<u32>> = a
        .texts
        .iter()
        .map(|t| model.tokenizer.encode(t, true, false))
        .collect();
    let inputs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let n_threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n_threads == 0 {
        bail!("--threads must be at least 1");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()?;
    let vectors = pool.install(|| model.embed(&inputs, pooling))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    println!(
        "{}",
        json!({"model": name, "pooling": pooling.name(), "embeddings": vectors})
    );
    Ok(())
}
