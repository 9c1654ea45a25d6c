//! `hearth`: run, serve, pull, list, inspect, tokenize and score GGUF models.

mod bench;
mod convert;
mod embed;
mod hf;
mod info;
mod manage;
mod models;
mod perplexity;
mod progress;
mod pull;
mod quantize;
mod run;
mod serve;
mod shards;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Download a model into the models directory: a known model, a GGUF from Hugging
    /// Face (hf.co/OWNER/REPO[:QUANT]) or a GGUF file's http(s):// URL.
    Pull {
        /// Known model name, hf.co/OWNER/REPO[:QUANT] or URL (default: the default model).
        model: Option<String>,
        /// The sha256 a URL's file must have (hex), when the server states none.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
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
    /// Score documents against a query with a reranker (cross-encoder), as JSON.
    Rerank(embed::RerankArgs),
    /// List the models a running server has loaded.
    Ps {
        #[command(flatten)]
        addr: manage::ServerAddr,
    },
    /// Unload a model from a running server.
    Stop {
        model: String,
        #[command(flatten)]
        addr: manage::ServerAddr,
    },
    /// Show a model's details and what serving it takes.
    Show {
        /// Model name or GGUF path.
        model: Option<String>,
        /// The context to size the KV cache for [default: the model's, at most 8192].
        #[arg(short = 'c', long)]
        ctx_size: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a model from the models directory.
    Rm {
        model: String,
        #[command(flatten)]
        common: Common,
    },
    /// Copy a model to a new name in the models directory.
    Cp {
        source: String,
        destination: String,
        #[command(flatten)]
        common: Common,
    },
    /// Make a model from a Modelfile (FROM, PARAMETER, SYSTEM, TEMPLATE), stored as a small
    /// manifest in the models directory.
    Create {
        name: String,
        /// The Modelfile.
        #[arg(short, long, default_value = "Modelfile")]
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
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
    // Parsed by hand (as `Cli::parse` does) to keep the matches: `run` asks which options
    // were given, for a created model's defaults.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Run(a) => run::run(a, matches.subcommand_matches("run")),
        Command::Serve(a) => serve::serve(a),
        Command::Pull {
            model,
            sha256,
            common,
        } => {
            let name = model.as_deref().unwrap_or(models::DEFAULT_MODEL);
            match (hf::Source::parse(name), models::find_known(name)) {
                (Err(e), _) => Err(e),
                (Ok(Some(source)), _) => {
                    hf::pull(&source, &common.dir(), sha256.as_deref()).map(|_| ())
                }
                (Ok(None), _) if sha256.is_some() => Err(anyhow::anyhow!(
                    "--sha256 applies to URLs; a known model's sha256 is built in"
                )),
                (Ok(None), Some(m)) => models::pull(m, &common.dir()).map(|_| ()),
                (Ok(None), None) => Err(anyhow::anyhow!(
                    "unknown model '{name}' (known: {}; or pull hf.co/OWNER/REPO[:QUANT], or the https:// URL of a .gguf file)",
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
        Command::Rerank(a) => embed::rerank(a),
        Command::Ps { addr } => manage::ps(&addr),
        Command::Stop { model, addr } => manage::stop(&addr, &model),
        Command::Show {
            model,
            ctx_size,
            common,
        } => manage::show(model.as_deref(), &common, ctx_size),
        Command::Rm { model, common } => manage::rm(&model, &common),
        Command::Cp {
            source,
            destination,
            common,
        } => manage::cp(&source, &destination, &common),
        Command::Create { name, file, common } => manage::create(&name, &file, &common),
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
