//! `hearth embed`: one vector per text, as JSON; `hearth rerank`: documents scored
//! against a query by a cross-encoder, best first, as JSON.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_model::encoder::EncoderInput;
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
        (None, Some(Pooling::Rank)) => bail!(
            "{} is a reranker (pooling rank): it scores documents against a query \
             (hearth rerank), and does not embed",
            path.display()
        ),
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
    crate::init_threads(a.threads)?;
    let vectors = model.embed(&inputs, pooling)?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    println!(
        "{}",
        json!({"model": name, "pooling": pooling.name(), "embeddings": vectors})
    );
    Ok(())
}

#[derive(Args)]
pub struct RerankArgs {
    /// Model name or GGUF path: a cross-encoder (pooling rank), such as a
    /// BertForSequenceClassification reranker converted by `hearth convert`.
    #[arg(short, long)]
    pub model: String,
    /// The query.
    pub query: String,
    /// The documents to score against it.
    #[arg(required = true)]
    pub documents: Vec<String>,
    /// Cut a query-document pair longer than the model's context (the longer part
    /// first) instead of refusing it.
    #[arg(long)]
    pub truncate: bool,
    /// Compute threads [default: all cores].
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

/// Prints `{"model", "results": [{"index", "relevance_score", "logit", "document"}, ...]}`,
/// best first: each document's score against the query, the sigmoid of the model's logit
/// (as `/v1/rerank` gives it) and the logit itself.
pub fn rerank(a: RerankArgs) -> Result<()> {
    let path = models::resolve(Some(&a.model), &a.common.dir(), true)?;
    let model =
        Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
    if model.config.pooling != Some(Pooling::Rank) || !model.can_rerank() {
        bail!(
            "{} is not a reranker: reranking needs a cross-encoder (pooling rank, with a \
             one-label classification head)",
            path.display()
        );
    }
    if a.query.is_empty() {
        bail!("the query is empty");
    }
    let n_ctx = model.config.n_ctx_train;
    let q = model.tokenizer.encode(&a.query, false, false);
    let pairs: Vec<(Vec<u32>, usize)> = a
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = model.tokenizer.encode(d, false, false);
            model
                .rerank_input(&q, &d, n_ctx, a.truncate)
                .map_err(|e| match e {
                    hearth_model::ModelError::ContextOverflow { needed, .. } => anyhow::anyhow!(
                        "document {i} with the query is {needed} tokens, more than the \
                         model's context of {n_ctx}; pass --truncate to cut it"
                    ),
                    other => other.into(),
                })
        })
        .collect::<Result<_>>()?;
    let inputs: Vec<EncoderInput> = pairs
        .iter()
        .map(|(tokens, n_first)| EncoderInput {
            tokens,
            n_first: *n_first,
        })
        .collect();
    crate::init_threads(a.threads)?;
    let logits = model.rerank(&inputs)?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&i, &j| logits[j].total_cmp(&logits[i]));
    let results: Vec<_> = order
        .into_iter()
        .map(|i| {
            let l = logits[i] as f64;
            json!({
                "index": i,
                "relevance_score": 1.0 / (1.0 + (-l).exp()),
                "logit": l,
                "document": a.documents[i],
            })
        })
        .collect();
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    println!("{}", json!({"model": name, "results": results}));
    Ok(())
}
