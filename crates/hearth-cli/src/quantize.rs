//! `hearth quantize`: write a copy of a model with its weights converted to another type,
//! by llama.cpp's recipes (see `hearth_model::quantize`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use hearth_model::quantize::{quantize_file, FileType, QuantizeOptions};

use crate::{models, Common};

#[derive(Args)]
pub struct QuantizeArgs {
    /// Input GGUF file (or known model name).
    input: String,
    /// Output GGUF file; written to a temporary file and renamed into place when complete.
    output: PathBuf,
    /// Target type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S,
    /// Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, F16, BF16 or F32 (Q3_K, Q4_K, Q5_K mean the _M mixes).
    #[arg(value_name = "TYPE")]
    ftype: String,
    /// Convert weights that are already quantized (dequantized to f32 first; loses accuracy).
    #[arg(long)]
    allow_requantize: bool,
    /// Threads [default: the number of CPUs].
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Print each tensor's conversion.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    common: Common,
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let ftype: FileType = a.ftype.parse()?;
    crate::init_threads(a.threads)?;
    let input = models::resolve(Some(&a.input), &a.common.dir(), false)?;
    let opts = QuantizeOptions {
        ftype,
        allow_requantize: a.allow_requantize,
    };
    let t0 = Instant::now();
    let verbose = a.verbose;
    let report = quantize_file(&input, &a.output, &opts, |i, n, p| {
        if verbose {
            let shape: Vec<String> = p.shape.iter().map(|d| d.to_string()).collect();
            let what = if p.converts() {
                format!("{} -> {}", p.from, p.to)
            } else {
                format!("{} (copied)", p.from)
            };
            let fallback = if p.fallback {
                "  (fallback: row length)"
            } else {
                ""
            };
            eprintln!(
                "[{:>4}/{n}] {:<36} [{}] {what}{fallback}",
                i + 1,
                p.name,
                shape.join(", ")
            );
        }
    })
    .with_context(|| format!("cannot quantize {}", input.display()))?;

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &report.tensors {
        *counts.entry(p.to.name()).or_default() += 1;
    }
    let types: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    let n_fallback = report.tensors.iter().filter(|p| p.fallback).count();
    let bpw = |bytes: u64| bytes as f64 * 8.0 / report.n_elements.max(1) as f64;
    println!(
        "{} -> {} ({ftype}): {} tensors: {}",
        input.display(),
        a.output.display(),
        report.tensors.len(),
        types.join(", ")
    );
    if n_fallback > 0 {
        println!("{n_fallback} tensors fell back to a 32-element type (row length not a multiple of 256)");
    }
    println!(
        "size {:.2} MiB ({:.2} bits per weight) -> {:.2} MiB ({:.2} bits per weight) in {:.1} s",
        report.bytes_in as f64 / (1 << 20) as f64,
        bpw(report.bytes_in),
        report.bytes_out as f64 / (1 << 20) as f64,
        bpw(report.bytes_out),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
