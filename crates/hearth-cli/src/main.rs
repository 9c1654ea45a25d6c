//! `hearth`: run, serve, pull, list, inspect, tokenize and score GGUF models.

mod bench;
mod convert;
mod embed;
mod info;
mod models;
mod perplexity;
mod quantize;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Local LLM inference engine for GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a prompt, or chat interactively when no prompt is given on a terminal.
    Run(run::RunArgs),
    /// Serve the model over HTTP: OpenAI- and Ollama-compatible APIs, many users at once.
    Serve(serve::ServeArgs),
    /// Download a known model into the models directory.
    Pull {
        /// Model name (default: the default model).
        model: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List downloaded and known models.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Print a model's metadata and tensor table.
    Inspect {
        /// Model name or GGUF path.
        model: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the token ids of a text.
    Tokenize(info::TokenizeArgs),
    /// Perplexity of a text file, by llama.cpp's method.
    Perplexity(perplexity::PerplexityArgs),
    /// Write a copy of a model with its weights converted to another type.
    Quantize(quantize::QuantizeArgs),
    /// Measure prompt processing and generation speed, as llama-bench does.
    Bench(bench::BenchArgs),
    /// Print texts' embedding vectors as JSON.
    Embed(embed::EmbedArgs),
    /// Convert a Hugging Face model folder (safetensors) to GGUF, as llama.cpp's converter does.
    Convert(convert::ConvertArgs),
}

/// Options every command that finds a model shares.
#[derive(Args, Clone)]
pub struct Common {
    /// Where models are stored [default: $HEARTH_MODELS or ~/.cache/hearth/models].
    #[arg(long, global = true)]
    pub models_dir: Option<PathBuf>,
}

impl Common {
    pub fn dir(&self) -> PathBuf {
        models::models_dir(self.models_dir.as_deref())
    }
}

/// Dies quietly on a closed pipe (`hearth inspect | head`) like other Unix tools, instead
/// of Rust's default of ignoring SIGPIPE and failing the next write.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Sizes the global thread pool the kernels run on.
pub fn init_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot start {n} threads: {e}"))?;
    Ok(n)
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Serve(a) => serve::serve(a),
        Command::Pull { model, common } => {
            let name = model.as_deref().unwrap_or(models::DEFAULT_MODEL);
            match models::find_known(name) {
                Some(m) => models::pull(m, &common.dir()).map(|_| ()),
                None => Err(anyhow::anyhow!(
                    "unknown model '{name}' (known: {})",
                    models::KNOWN_MODELS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        Command::List { common } => info::list(&common.dir()),
        Command::Inspect { model, common } => info::inspect(model.as_deref(), &common.dir()),
        Command::Tokenize(a) => info::tokenize(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
        Command::Quantize(a) => quantize::quantize(a),
        Command::Bench(a) => bench::bench(a),
        Command::Embed(a) => embed::embed(a),
        Command::Convert(a) => convert::convert(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
