//! `hearth perplexity`: llama.cpp's method, so the figures compare directly.
//!
//! The whole file is tokenized, cut into floor(n_tokens / ctx) non-overlapping chunks,
//! each evaluated from an empty KV cache; only the second half of each chunk is scored
//! (positions ctx/2 .. ctx-2 predict the next token). PPL = exp(mean NLL).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_kernels::ops::log_sum_exp;
use hearth_model::{Batch, KvType, Model};

use crate::{models, Common};

#[derive(Args)]
pub struct PerplexityArgs {
    /// Model name or GGUF path.
    #[arg(short, long)]
    model: Option<String>,
    /// The text to score.
    #[arg(short, long)]
    file: PathBuf,
    /// Chunk (context) size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Tokens per forward batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    batch_size: usize,
    #[arg(short = 't', long)]
    threads: Option<usize>,
    #[arg(long, default_value = "f16")]
    kv_cache_type: KvType,
    /// Score at most this many chunks.
    #[arg(long)]
    chunks: Option<usize>,
    #[command(flatten)]
    common: Common,
}

pub fn perplexity(a: PerplexityArgs) -> Result<()> {
    crate::init_threads(a.threads)?;
    let path = models::resolve(a.model.as_deref(), &a.common.dir(), true)?;
    let model =
        Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let ctx = a.ctx_size;
    if ctx < 4 || a.batch_size == 0 {
        bail!("--ctx-size must be at least 4 and --batch-size at least 1");
    }
    let tokens = model.tokenizer.encode(&text, true, false);
    let mut n_chunk = tokens.len() / ctx;
    if let Some(c) = a.chunks {
        n_chunk = n_chunk.min(c);
    }
    if n_chunk == 0 {
        bail!(
            "{} has {} tokens, fewer than one chunk of {ctx}; use a smaller --ctx-size",
            a.file.display(),
            tokens.len()
        );
    }
    eprintln!(
        "perplexity: {} tokens, {n_chunk} chunks of {ctx}, scoring the second half of each",
        tokens.len()
    );

    let first = ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    model.check_kv_type(a.kv_cache_type)?;
    let mut kv = model.new_kv_cache(ctx, a.kv_cache_type);
    let t0 = Instant::now();
    for i in 0..n_chunk {
        let mut chunk = tokens[i * ctx..(i + 1) * ctx].to_vec();
        if model.tokenizer.add_bos() {
            if let Some(bos) = model.tokenizer.bos_id() {
                chunk[0] = bos;
            }
        }
        for start in (0..ctx).step_by(a.batch_size) {
            let end = (start + a.batch_size).min(ctx);
            let mut batch = Batch::contiguous(&chunk[start..end], start, true);
            for (j, o) in batch.output.iter_mut().enumerate() {
                *o = start + j >= first && start + j + 1 < ctx;
            }
            if !batch.output.iter().any(|&o| o) {
                batch.output[end - start - 1] = true; // forward needs one output row
            }
            let logits = model.forward(&batch, &mut kv)?;
            for (r, &row) in logits.rows.iter().enumerate() {
                let pos = start + row;
                if pos < first || pos + 1 >= ctx {
                    continue;
                }
                let l = logits.row(r);
                let v = (log_sum_exp(l) - l[chunk[pos + 1] as usize]) as f64;
                nll += v;
                nll2 += v * v;
                count += 1;
            }
        }
        eprint!("[{}]{:.4},", i + 1, (nll / count as f64).exp());
        if i == 0 {
            let per = t0.elapsed().as_secs_f64();
            eprint!(
                " ({per:.2} s per chunk, about {:.1} s in all) ",
                per * n_chunk as f64
            );
        }
    }
    eprintln!();
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let err = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    println!(
        "scored {count} tokens in {n_chunk} chunks of {ctx} ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    println!("PPL = {ppl:.4} +/- {err:.5}");
    Ok(())
}
