//! `hearth-synth ARCH OUT.gguf [options]`: writes a deterministic random-weight model of
//! architecture ARCH (a preset's shape, with any option changing it). Benchmarks use it
//! to make models of a chosen size; see docs/perf.md.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use hearth_model::quantize::FileType;

#[derive(Parser)]
#[command(about = "Writes a deterministic random-weight GGUF model")]
struct Args {
    /// llama, qwen2, qwen3, gemma3, phi3, qwen3moe, mixtral, qwen2moe or olmoe.
    arch: String,
    out: PathBuf,
    #[arg(long)]
    n_layer: Option<usize>,
    #[arg(long)]
    n_embd: Option<usize>,
    #[arg(long)]
    n_head: Option<usize>,
    #[arg(long)]
    n_head_kv: Option<usize>,
    #[arg(long)]
    head_dim: Option<usize>,
    /// Dense FFN width, or each expert's.
    #[arg(long)]
    n_ff: Option<usize>,
    #[arg(long)]
    n_expert: Option<usize>,
    #[arg(long)]
    n_expert_used: Option<usize>,
    /// Weight type after conversion (as `hearth quantize` names them, or f32).
    #[arg(long, default_value = "q8_0")]
    r#type: String,
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut s = hearth_synth::preset(&a.arch).with_context(|| {
        format!(
            "no preset '{}' (have: {})",
            a.arch,
            hearth_synth::presets()
                .iter()
                .map(|s| s.arch.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let set = |v: Option<usize>, f: &mut usize| *f = v.unwrap_or(*f);
    set(a.n_layer, &mut s.n_layer);
    set(a.n_embd, &mut s.n_embd);
    set(a.n_head, &mut s.n_head);
    set(a.n_head_kv, &mut s.n_head_kv);
    set(a.head_dim, &mut s.head_dim);
    set(a.n_ff, &mut s.n_ff);
    set(a.n_expert, &mut s.n_expert);
    set(a.n_expert_used, &mut s.n_expert_used);
    s.seed = a.seed.unwrap_or(s.seed);
    s.ftype = if a.r#type.eq_ignore_ascii_case("f32") {
        FileType::F32
    } else {
        a.r#type.parse().map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let bytes = hearth_synth::generate(&s)?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} ({} bytes): {s:?}", a.out.display(), bytes.len());
    Ok(())
}
