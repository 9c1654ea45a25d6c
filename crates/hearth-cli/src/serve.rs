//! `hearth serve`: the OpenAI- and Ollama-compatible HTTP server.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_model::KvType;
use hearth_server::ServerOptions;

use crate::{models, Common};

#[derive(Args)]
pub struct ServeArgs {
    /// Model name or GGUF path; repeatable. The first is the default model, loaded at
    /// start; every model here and in the models directory is served by name and loads
    /// on its first request [default: smollm2-135m-instruct, pulled on first use].
    #[arg(short, long)]
    pub model: Vec<String>,
    /// The name clients use for the first model [default: the known model's name, or the
    /// file's stem].
    #[arg(long)]
    pub alias: Option<String>,
    /// How long a model stays loaded once idle: a duration such as 5m, 1h or 30s; 0
    /// unloads at once, -1 keeps it loaded. A request's `keep_alive` overrides it.
    #[arg(long, default_value = "5m", allow_hyphen_values = true)]
    pub keep_alive: String,
    /// Models loaded at once at most; the least recently used idle one unloads first.
    #[arg(long, default_value_t = 3)]
    pub max_loaded: usize,
    /// Memory the loaded models may take together, in MiB (weights, KV caches, scratch)
    /// [default: what the system has available].
    #[arg(long)]
    pub max_memory: Option<usize>,
    /// Address to listen on (use 0.0.0.0 to accept other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Compute threads [default: all cores].
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Sequences decoding together at most.
    #[arg(long, visible_alias = "max-seqs", short = 'p', default_value_t = 64)]
    pub parallel: usize,
    /// Tokens one request may hold, prompt and output [default: the model's training context, at most 8192 and what --kv-memory holds].
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// KV-cache blocks of 16 tokens [default: from --kv-memory].
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// KV-cache memory budget in MiB, when --kv-blocks is not given.
    #[arg(long, default_value_t = 512)]
    pub kv_memory: usize,
    /// KV-cache type: q8_0, f16, f32 or q4_0 (the block types are read in place by
    /// attention). q8_0 halves f16's memory, is faster, and costs +0.2% perplexity; f16
    /// reproduces the reference engine's outputs token for token.
    #[arg(long, default_value = "q8_0")]
    pub kv_cache_type: KvType,
    /// Tokens per engine step (decode tokens and prompt chunks together).
    #[arg(long, default_value_t = 512)]
    pub batch_tokens: usize,
    /// Requests that may wait for a place; more get 503.
    #[arg(long, default_value_t = 256)]
    pub max_waiting: usize,
    /// Require `Authorization: Bearer KEY` (or `x-api-key: KEY`).
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds a connection has to send a request's headers, and then its body (an idle
    /// keep-alive connection is closed after as long).
    #[arg(long, default_value_t = 10)]
    pub read_timeout: u64,
    /// Seconds a client may read nothing of a response before it is dropped (its
    /// generation is cancelled and its KV memory freed).
    #[arg(long, default_value_t = 60)]
    pub write_timeout: u64,
    /// How embeddings pool token vectors: `mean`, `cls` or `last` [default: the model's
    /// pooling_type; a generative model has none, so it embeds only with this set].
    #[arg(long, value_parser = ["mean", "cls", "last"])]
    pub pooling: Option<String>,
    /// Open connections at most; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Let web pages from this origin call the API (CORS; repeatable, `*` for any).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body: usize,
    /// Speculative decoding: `ngram` drafts tokens by looking up the text so far.
    #[arg(long, value_parser = ["ngram"])]
    pub spec: Option<String>,
    /// Drafted tokens per step with --spec or --draft-model (verifying a batch costs about
    /// as much per token as prefill, so longer drafts stop paying off).
    #[arg(long, default_value_t = 5)]
    pub spec_draft: usize,
    /// Speculative decoding with a draft model (name or GGUF path) of the same vocabulary.
    #[arg(long)]
    pub draft_model: Option<String>,
    /// Do not reuse the KV cache of earlier requests that start with the same tokens.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Seconds to let running requests finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    #[command(flatten)]
    pub common: Common,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let dir = a.common.dir();
    let first = a.model.first().map(String::as_str);
    let path = models::resolve_served(first, &dir, true)?;
    let model_id = match (&a.alias, first.map(models::find_known)) {
        (Some(alias), _) => alias.clone(),
        (None, Some(Some(k))) => k.name.to_string(),
        (None, None) => models::DEFAULT_MODEL.to_string(),
        (None, Some(None)) => models::id_of(&path),
    };
    // Every other model: the further -m's, then the models directory's GGUF files and
    // created models' manifests (`hearth create`).
    let mut other_models = Vec::new();
    for m in a.model.iter().skip(1) {
        let p = models::resolve_served(Some(m), &dir, true)?;
        other_models.push((models::served_name(m, &p), p));
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let gguf = p.extension().is_some_and(|x| x == "gguf");
                (gguf || hearth_server::modelfile::manifest_name(p).is_some()) && p.is_file()
            })
            .collect();
        files.sort();
        for p in files {
            let same = |q: &std::path::Path| q.canonicalize().ok() == p.canonicalize().ok();
            let id = models::id_of(&p);
            if !same(&path) && !other_models.iter().any(|(n, q)| same(q) || *n == id) {
                other_models.push((id, p));
            }
        }
    }
    let keep_alive = parse_keep_alive(&a.keep_alive)?;
    if a.max_loaded == 0 {
        bail!("--max-loaded must be at least 1");
    }
    let n_threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n_threads == 0 || a.parallel == 0 || a.batch_tokens == 0 {
        bail!("--threads, --parallel and --batch-tokens must be at least 1");
    }
    if a.ctx_size == Some(0) || a.kv_blocks == Some(0) {
        bail!("--ctx-size and --kv-blocks must be at least 1");
    }
    let opts = ServerOptions {
        model_path: path,
        model_id,
        other_models,
        keep_alive,
        max_loaded: a.max_loaded,
        models_dir: Some(dir.clone()),
        memory_budget: a.max_memory.map(|m| m << 20),
        host: a.host,
        port: a.port,
        n_threads,
        max_seqs: a.parallel,
        n_ctx: a.ctx_size.unwrap_or(0),
        n_blocks: a.kv_blocks.unwrap_or(0),
        kv_memory_mib: a.kv_memory,
        kv_type: a.kv_cache_type,
        token_budget: a.batch_tokens,
        max_waiting: a.max_waiting,
        api_key: a.api_key.filter(|k| !k.is_empty()),
        max_body_bytes: a.max_body,
        cors_origins: a.cors_origins,
        read_timeout: std::time::Duration::from_secs(a.read_timeout.max(1)),
        write_timeout: std::time::Duration::from_secs(a.write_timeout.max(1)),
        puller: Some(crate::pull::puller(dir.clone())),
        pooling: a
            .pooling
            .as_deref()
            .map(|p| hearth_model::Pooling::from_name(p).expect("clap checked it")),
        max_connections: a.max_connections.max(1),
        prefix_caching: !a.no_prefix_cache,
        spec: match (&a.spec, &a.draft_model) {
            _ if a.spec_draft == 0 => bail!("--spec-draft must be at least 1"),
            (Some(_), Some(_)) => bail!("--spec ngram and --draft-model cannot be used together"),
            (Some(_), None) => Some(hearth_engine::SpecConfig::ngram(a.spec_draft)),
            (None, Some(_)) => Some(hearth_engine::SpecConfig::draft(a.spec_draft)),
            (None, None) => None,
        },
        draft_model_path: match &a.draft_model {
            Some(d) => Some(models::resolve(Some(d), &a.common.dir(), true)?),
            None => None,
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hearth-http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    rt.block_on(hearth_server::run(opts, Duration::from_secs(a.drain)))?;
    Ok(())
}

/// `--keep-alive`: a duration such as "5m", "1h30m", "30s" or a number of seconds; a
/// negative one keeps models loaded (`None`).
fn parse_keep_alive(s: &str) -> Result<Option<Duration>> {
    let v = serde_json::Value::String(s.to_string());
    match hearth_server::parse_keep_alive(&Some(v)) {
        Ok(k) => Ok(k.flatten()),
        Err(_) => bail!("--keep-alive {s:?} is not a duration (5m, 1h, 30s, 0, -1)"),
    }
}
