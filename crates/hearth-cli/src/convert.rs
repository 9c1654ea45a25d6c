//! `hearth convert`: a Hugging Face model folder (safetensors) to a GGUF file, with the
//! names, keys and tokenizer fields llama.cpp's converter writes (see `hearth_convert`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use hearth_convert::OutType;

#[derive(Args)]
pub struct ConvertArgs {
    /// The model folder: config.json, model*.safetensors, and the tokenizer (tokenizer.json,
    /// tokenizer.model or vocab.txt, with tokenizer_config.json); for sentence-transformers
    /// models also modules.json and the pooling config. Architectures: BERT (embedding
    /// models and one-label cross-encoders), Llama/Mistral, Qwen 2, Qwen 3, Gemma 3 (text)
    /// and Phi-3.
    hf_dir: PathBuf,
    /// Output GGUF file; written to a temporary file and renamed into place when complete.
    output: PathBuf,
    /// Type of the weight matrices: f32, f16 or q8_0 (norms, biases and the position and
    /// token-type embeddings stay f32; q8_0 matrices whose rows are not a multiple of 32
    /// elements are f16).
    #[arg(long = "type", value_name = "TYPE", default_value = "f16")]
    out_type: String,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let out: OutType = a.out_type.parse()?;
    let t0 = Instant::now();
    let converted = hearth_convert::convert_file(&a.hf_dir, &a.output, out)
        .with_context(|| format!("cannot convert {}", a.hf_dir.display()))?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, ty) in &converted.tensors {
        *counts.entry(ty.to_string()).or_default() += 1;
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} -> {} ({}, {out}): {} tensors: {}; {:.1} M weights, {:.2} MiB in {:.1} s",
        a.hf_dir.display(),
        a.output.display(),
        converted.arch,
        converted.tensors.len(),
        types.join(", "),
        converted.n_params as f64 / 1e6,
        size as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
