//! `hearth bench`: prompt-processing and generation throughput, in llama-bench's terms so
//! the two tables compare line for line.
//!
//! For every model, KV cache type, thread count and depth: one `ppN` test per prompt
//! length (N tokens run through the network together, from an empty cache or after
//! `depth` tokens) and one `tgN` test per generation length (N tokens fed one at a time,
//! each giving logits; no sampling). Token ids are pseudo-random from a fixed seed, with
//! BOS first when the model adds one. Each test runs once untimed to warm up (a whole
//! prompt for pp, one token for tg), then `-r` timed repetitions, each in a fresh session;
//! the depth tokens are run before the clock starts. t/s is `mean ± sample stddev` of the
//! per-repetition rates.
//!
//! With `--n-parallel P` (P > 1) a tg test decodes P sequences together, as a server's
//! batch does: each has its own `depth` tokens in one paged cache, every step is one
//! batch of P tokens (one per sequence, logits for each), and t/s counts all P sequences'
//! tokens. The test is named `tgN xP`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hearth_engine::generate::Session;
use hearth_model::quantize::FileType;
use hearth_model::{Batch, KvType, Model};
use serde_json::json;

use crate::{models, Common};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A markdown table, as llama-bench prints.
    Md,
    /// One JSON array of test objects.
    Json,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Model names or GGUF paths (comma-separated or repeated) [default: the default model].
    #[arg(short, long, value_delimiter = ',')]
    model: Vec<String>,
    /// Prompt lengths for the pp tests (comma-separated; 0 = none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths for the tg tests (comma-separated; 0 = none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Tokens already in the KV cache before each test (comma-separated).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    n_depth: Vec<usize>,
    /// Thread counts (comma-separated) [default: the number of CPUs].
    #[arg(short = 't', long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    output: Format,
    /// Sequences decoded together in the tg tests (comma-separated); t/s counts all of
    /// them.
    #[arg(
        long = "n-parallel",
        visible_alias = "np",
        value_delimiter = ',',
        default_value = "1"
    )]
    n_parallel: Vec<usize>,
    /// KV cache element types (comma-separated: f16, f32).
    #[arg(long, value_delimiter = ',', default_value = "f16")]
    kv_cache_type: Vec<KvType>,
    /// Skip the warm-up run.
    #[arg(long)]
    no_warmup: bool,
    /// Report each run on stderr.
    #[arg(long)]
    progress: bool,
    #[command(flatten)]
    common: Common,
}

/// One row of the table: a test and its timed samples.
struct TestResult {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    /// Sequences decoded together (tg tests; 1 for pp).
    n_parallel: usize,
    n_threads: usize,
    kv_type: KvType,
    samples_ns: Vec<u64>,
}

impl TestResult {
    fn name(&self) -> String {
        let mut s = if self.n_gen == 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        if self.n_parallel > 1 {
            s.push_str(&format!(" x{}", self.n_parallel));
        }
        if self.n_depth > 0 {
            s.push_str(&format!(" @ d{}", self.n_depth));
        }
        s
    }

    fn samples_ts(&self) -> Vec<f64> {
        let n = (self.n_prompt + self.n_gen * self.n_parallel) as f64;
        self.samples_ns
            .iter()
            .map(|&t| 1e9 * n / t.max(1) as f64)
            .collect()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (0 for fewer than two samples).
fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn kv_name(t: KvType) -> String {
    t.to_string()
}

/// What the table says about a model.
struct ModelInfo {
    filename: String,
    /// `arch size-label file-type`, e.g. `llama 135M Q4_1`.
    desc: String,
    size: u64,
    n_params: u64,
}

impl ModelInfo {
    fn of(path: &Path, model: &Model) -> ModelInfo {
        let f = model.gguf();
        let size: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();
        let n_params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
        let label = f
            .get_str("general.size_label")
            .map(str::to_string)
            .unwrap_or_else(|| {
                if n_params >= 1_000_000_000 {
                    format!("{:.0}B", n_params as f64 / 1e9)
                } else {
                    format!("{:.0}M", n_params as f64 / 1e6)
                }
            });
        let ftype = f
            .get_u32("general.file_type")
            .and_then(FileType::from_llama_ftype)
            .map_or("unknown type", FileType::description);
        ModelInfo {
            filename: path.display().to_string(),
            desc: format!("{} {label} {ftype}", model.config.arch),
            size,
            n_params,
        }
    }
}

/// Pseudo-random token ids (a 64-bit LCG; benchmarks need variety, not quality).
struct Tokens {
    state: u64,
    n_vocab: u32,
}

impl Tokens {
    fn next(&mut self) -> u32 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.state >> 33) % u64::from(self.n_vocab)) as u32
    }

    /// `n` ids, BOS first if the model adds one.
    fn prompt(&mut self, model: &Model, n: usize) -> Vec<u32> {
        let mut v: Vec<u32> = (0..n).map(|_| self.next()).collect();
        if let (Some(first), Some(bos)) = (v.first_mut(), bos(model)) {
            *first = bos;
        }
        v
    }
}

fn bos(model: &Model) -> Option<u32> {
    if model.tokenizer.add_bos() {
        model.tokenizer.bos_id()
    } else {
        None
    }
}

/// One repetition: a fresh session, `depth` untimed tokens, then the timed test.
fn run_once(
    model: &Model,
    t: &TestResult,
    tokens: &mut Tokens,
    n_prompt: usize,
    n_gen: usize,
) -> Result<u64> {
    if t.n_parallel > 1 {
        return run_parallel(model, t, tokens, n_gen);
    }
    let n_ctx = (t.n_depth + n_prompt + n_gen).max(1);
    let mut session = Session::new(model, n_ctx, t.kv_type);
    if t.n_depth > 0 {
        let depth = tokens.prompt(model, t.n_depth);
        session.feed(model, &depth)?;
    }
    let prompt = tokens.prompt(model, n_prompt);
    let mut token = bos(model).unwrap_or_else(|| tokens.next());
    let start = Instant::now();
    if n_prompt > 0 {
        session.feed(model, &prompt)?;
    }
    for _ in 0..n_gen {
        session.feed(model, &[token])?;
        token = tokens.next();
    }
    Ok(start.elapsed().as_nanos() as u64)
}

/// One repetition of a tg test over `t.n_parallel` sequences: a fresh paged cache, each
/// sequence's `depth` tokens (untimed), then `n_gen` timed steps of one token per sequence.
fn run_parallel(model: &Model, t: &TestResult, tokens: &mut Tokens, n_gen: usize) -> Result<u64> {
    const BLOCK: usize = 16;
    let n_seq = t.n_parallel;
    let per_seq = (t.n_depth + n_gen).max(1).div_ceil(BLOCK);
    let mut kv = model.new_paged_kv_cache(n_seq * per_seq, BLOCK, t.kv_type);
    let block_tables: Vec<Vec<u32>> = (0..n_seq)
        .map(|s| (s * per_seq..(s + 1) * per_seq).map(|b| b as u32).collect())
        .collect();
    if t.n_depth > 0 {
        for s in 0..n_seq {
            let depth = tokens.prompt(model, t.n_depth);
            for (start, chunk) in (0..)
                .step_by(hearth_engine::generate::N_BATCH)
                .zip(depth.chunks(hearth_engine::generate::N_BATCH))
            {
                let mut batch = Batch {
                    block_tables: block_tables.clone(),
                    ..Default::default()
                };
                for (i, &tok) in chunk.iter().enumerate() {
                    batch.push(tok, start + i, s, false);
                }
                model.forward(&batch, &mut kv)?;
            }
        }
    }
    let mut next: Vec<u32> = (0..n_seq)
        .map(|_| bos(model).unwrap_or_else(|| tokens.next()))
        .collect();
    let start = Instant::now();
    for step in 0..n_gen {
        let mut batch = Batch {
            block_tables: block_tables.clone(),
            ..Default::default()
        };
        for (s, &tok) in next.iter().enumerate() {
            batch.push(tok, t.n_depth + step, s, true);
        }
        model.forward(&batch, &mut kv)?;
        next.iter_mut().for_each(|x| *x = tokens.next());
    }
    Ok(start.elapsed().as_nanos() as u64)
}

fn run_test(
    model: &Model,
    t: &mut TestResult,
    reps: usize,
    warmup: bool,
    progress: bool,
) -> Result<()> {
    let mut tokens = Tokens {
        state: 0x4845_4152_5448,
        n_vocab: model.config.n_vocab as u32,
    };
    let name = t.name();
    if warmup {
        if progress {
            eprintln!("hearth bench: {name} (t={}): warm-up run", t.n_threads);
        }
        // A whole prompt for pp, a single token for tg.
        run_once(model, t, &mut tokens, t.n_prompt, t.n_gen.min(1))?;
    }
    for i in 0..reps {
        if progress {
            eprintln!(
                "hearth bench: {name} (t={}): run {}/{reps}",
                t.n_threads,
                i + 1
            );
        }
        let ns = run_once(model, t, &mut tokens, t.n_prompt, t.n_gen)?;
        t.samples_ns.push(ns);
    }
    Ok(())
}

/// Prints rows as they finish, in one of the formats.
struct Printer {
    format: Format,
    kv_column: bool,
    n_printed: usize,
}

/// The markdown columns: name, width (negative = left-aligned).
fn md_columns(kv_column: bool) -> Vec<(&'static str, i32)> {
    let mut c = vec![
        ("model", -30),
        ("size", 10),
        ("params", 10),
        ("backend", -10),
        ("threads", 7),
    ];
    if kv_column {
        c.push(("type_k", 6));
        c.push(("type_v", 6));
    }
    c.push(("test", 15));
    c.push(("t/s", 20));
    c
}

impl Printer {
    fn header(&self, out: &mut impl Write) -> Result<()> {
        match self.format {
            Format::Md => {
                let cols = md_columns(self.kv_column);
                let mut head = String::from("|");
                let mut rule = String::from("|");
                for (name, w) in &cols {
                    let wu = w.unsigned_abs() as usize;
                    if *w < 0 {
                        head.push_str(&format!(" {name:<wu$} |"));
                        rule.push_str(&format!(" {}- |", "-".repeat(wu - 1)));
                    } else {
                        head.push_str(&format!(" {name:>wu$} |"));
                        rule.push_str(&format!(" {}: |", "-".repeat(wu - 1)));
                    }
                }
                writeln!(out, "{head}\n{rule}")?;
            }
            Format::Json => writeln!(out, "[")?,
            Format::Jsonl => {}
        }
        Ok(())
    }

    fn row(&mut self, out: &mut impl Write, m: &ModelInfo, t: &TestResult) -> Result<()> {
        let ts = t.samples_ts();
        let ns: Vec<f64> = t.samples_ns.iter().map(|&x| x as f64).collect();
        match self.format {
            Format::Md => {
                let size = if m.size < 1 << 30 {
                    format!("{:.2} MiB", m.size as f64 / (1u64 << 20) as f64)
                } else {
                    format!("{:.2} GiB", m.size as f64 / (1u64 << 30) as f64)
                };
                let params = if m.n_params < 1_000_000_000 {
                    format!("{:.2} M", m.n_params as f64 / 1e6)
                } else {
                    format!("{:.2} B", m.n_params as f64 / 1e9)
                };
                let mut values = vec![
                    m.desc.clone(),
                    size,
                    params,
                    "CPU".to_string(),
                    t.n_threads.to_string(),
                ];
                if self.kv_column {
                    values.push(kv_name(t.kv_type).to_string());
                    values.push(kv_name(t.kv_type).to_string());
                }
                values.push(t.name());
                values.push(format!("{:.2} ± {:.2}", mean(&ts), stddev(&ts)));
                let mut line = String::from("|");
                for (v, (_, w)) in values.iter().zip(md_columns(self.kv_column)) {
                    let wu = w.unsigned_abs() as usize;
                    if w < 0 {
                        line.push_str(&format!(" {v:<wu$} |"));
                    } else {
                        line.push_str(&format!(" {v:>wu$} |"));
                    }
                }
                writeln!(out, "{line}")?;
            }
            Format::Json | Format::Jsonl => {
                let obj = json!({
                    "build_commit": concat!("hearth ", env!("CARGO_PKG_VERSION")),
                    "cpu_info": cpu_info(),
                    "backends": "CPU",
                    "model_filename": m.filename,
                    "model_type": m.desc,
                    "model_size": m.size,
                    "model_n_params": m.n_params,
                    "n_batch": hearth_engine::generate::N_BATCH,
                    "n_ubatch": hearth_engine::generate::N_BATCH,
                    "n_threads": t.n_threads,
                    "type_k": kv_name(t.kv_type),
                    "type_v": kv_name(t.kv_type),
                    "n_prompt": t.n_prompt,
                    "n_gen": t.n_gen,
                    "n_depth": t.n_depth,
                    "n_parallel": t.n_parallel,
                    "avg_ns": mean(&ns).round() as u64,
                    "stddev_ns": stddev(&ns).round() as u64,
                    "avg_ts": mean(&ts),
                    "stddev_ts": stddev(&ts),
                    "samples_ns": t.samples_ns,
                    "samples_ts": ts,
                });
                if self.format == Format::Json {
                    let sep = if self.n_printed > 0 { ",\n" } else { "" };
                    write!(out, "{sep}{}", serde_json::to_string_pretty(&obj)?)?;
                } else {
                    writeln!(out, "{obj}")?;
                }
            }
        }
        self.n_printed += 1;
        out.flush()?;
        Ok(())
    }

    fn footer(&self, out: &mut impl Write) -> Result<()> {
        match self.format {
            Format::Md => writeln!(out, "\nbuild: hearth {}", env!("CARGO_PKG_VERSION"))?,
            Format::Json => writeln!(out, "\n]")?,
            Format::Jsonl => {}
        }
        Ok(())
    }
}

/// The CPU's model name from /proc/cpuinfo, where there is one.
fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let threads = if a.threads.is_empty() {
        vec![std::thread::available_parallelism().map_or(1, |n| n.get())]
    } else {
        a.threads.clone()
    };
    if threads.contains(&0) {
        bail!("--threads must be at least 1");
    }
    if a.n_parallel.contains(&0) {
        bail!("--n-parallel must be at least 1");
    }
    let n_prompt: Vec<usize> = a.n_prompt.iter().copied().filter(|&n| n > 0).collect();
    let n_gen: Vec<usize> = a.n_gen.iter().copied().filter(|&n| n > 0).collect();
    if n_prompt.is_empty() && n_gen.is_empty() {
        bail!("nothing to benchmark: every -p and -n is 0");
    }
    let names: Vec<Option<&str>> = if a.model.is_empty() {
        vec![None]
    } else {
        a.model.iter().map(|m| Some(m.as_str())).collect()
    };
    let mut printer = Printer {
        format: a.output,
        kv_column: a.kv_cache_type.iter().any(|&t| t != KvType::F16),
        n_printed: 0,
    };
    // Load every model (a memory map each) before printing anything, so that a bad name
    // fails with nothing but its error.
    let mut loaded = Vec::new();
    for name in names {
        let path = models::resolve(name, &a.common.dir(), true)?;
        let model =
            Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
        for &kv_type in &a.kv_cache_type {
            model.check_kv_type(kv_type)?;
        }
        let info = ModelInfo::of(&path, &model);
        loaded.push((model, info));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    printer.header(&mut out)?;
    for (model, info) in &loaded {
        for &kv_type in &a.kv_cache_type {
            for &n_threads in &threads {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n_threads)
                    .build()
                    .with_context(|| format!("cannot start {n_threads} threads"))?;
                for &n_depth in &a.n_depth {
                    let tests = n_prompt.iter().map(|&p| (p, 0, 1)).chain(
                        n_gen
                            .iter()
                            .flat_map(|&g| a.n_parallel.iter().map(move |&np| (0, g, np))),
                    );
                    for (p, g, n_parallel) in tests {
                        let mut t = TestResult {
                            n_prompt: p,
                            n_gen: g,
                            n_depth,
                            n_parallel,
                            n_threads,
                            kv_type,
                            samples_ns: Vec::new(),
                        };
                        pool.install(|| {
                            run_test(model, &mut t, a.repetitions, !a.no_warmup, a.progress)
                        })?;
                        printer.row(&mut out, info, &t)?;
                    }
                }
            }
        }
    }
    printer.footer(&mut out)?;
    Ok(())
}
