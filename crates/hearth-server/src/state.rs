//! What every handler shares: the options, and once loaded, the model and its engine.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use axum::http::StatusCode;
use hearth_engine::{Engine, EngineConfig};
use hearth_model::{KvType, Model};

use crate::error::ApiError;

/// Largest context `hearth serve` gives a model by default (`--ctx-size` asks for more).
pub const DEFAULT_MAX_CTX: usize = 8192;
/// How `hearth serve` was started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub model_path: PathBuf,
    /// The name requests use (`/v1/models`, `/api/tags`).
    pub model_id: String,
    pub host: String,
    pub port: u16,
    pub n_threads: usize,
    /// Sequences decoding together at most.
    pub max_seqs: usize,
    /// Tokens one sequence may hold (prompt and generated); 0 = the model's training context.
    pub n_ctx: usize,
    /// KV blocks in the pool; 0 = sized from `kv_memory_mib`.
    pub n_blocks: usize,
    pub kv_memory_mib: usize,
    pub kv_type: KvType,
    /// Tokens per engine step.
    pub token_budget: usize,
    /// Requests allowed to wait for a place before new ones get 503.
    pub max_waiting: usize,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// Origins browsers may call from (CORS); `*` for any; empty for none.
    pub cors_origins: Vec<String>,
    /// A connection must send its request's headers, and then its body, within this.
    pub read_timeout: std::time::Duration,
    /// A client that reads nothing of a response for this long is dropped.
    pub write_timeout: std::time::Duration,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Reuse the KV blocks of earlier requests with the same leading tokens.
    pub prefix_caching: bool,
    /// Speculative decoding, if any.
    pub spec: Option<hearth_engine::SpecConfig>,
    /// The draft model's file, for draft-model speculation.
    pub draft_model_path: Option<PathBuf>,
    /// How embeddings pool token vectors; `None` = the model's own `pooling_type`.
    pub pooling: Option<hearth_model::Pooling>,
}

/// Facts about the served model, for the listing endpoints.
pub struct ModelInfo {
    pub id: String,
    pub size_bytes: u64,
    pub modified: SystemTime,
    pub family: String,
    pub n_params: u64,
    pub quantization: String,
    /// sha256 of the file, computed once on first use.
    digest: OnceLock<String>,
    path: PathBuf,
}

impl ModelInfo {
    pub fn digest(&self) -> &str {
        self.digest
            .get_or_init(|| sha256_file(&self.path).unwrap_or_default())
    }

    /// Parameter count the way Ollama prints it ("135M", "1.7B").
    pub fn parameter_size(&self) -> String {
        let n = self.n_params as f64;
        if n >= 1e9 {
            format!("{:.1}B", n / 1e9)
        } else {
            format!("{:.0}M", n / 1e6)
        }
    }
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

pub struct Ready {
    pub model: Arc<Model>,
    pub engine: Engine,
    pub info: ModelInfo,
    pub load_duration: std::time::Duration,
}

pub struct AppState {
    pub opts: ServerOptions,
    pub started: Instant,
    ready: OnceLock<Ready>,
}

impl AppState {
    pub fn new(opts: ServerOptions) -> AppState {
        AppState {
            opts,
            started: Instant::now(),
            ready: OnceLock::new(),
        }
    }

    /// The loaded model, or 503 while it loads.
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading",
            )
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }

    /// Whether `name` is the served model (also as `name:latest`, as Ollama clients say).
    pub fn serves(&self, name: &str) -> bool {
        let id = &self.opts.model_id;
        name == id || name.strip_suffix(":latest") == Some(id)
    }

    /// Loads the model and starts the engine (blocking; run off the async threads).
    pub fn load(&self) -> Result<(), String> {
        let t0 = Instant::now();
        let o = &self.opts;
        let model = Arc::new(
            Model::load(&o.model_path)
                .map_err(|e| format!("cannot load {}: {e}", o.model_path.display()))?,
        );
        let c = &model.config;
        // Bytes of one position's keys and values over all layers, checked: a hostile
        // file's sizes give an error, not an overflow.
        let bytes_per_token = o
            .kv_type
            .row_bytes(c.n_embd_kv())
            .checked_mul(2 * c.n_layer)
            .ok_or("the model's KV cache size overflows")?;
        // The context: what was asked for, else the model's, capped at DEFAULT_MAX_CTX and
        // at what --kv-memory holds (a 131,072-token model would otherwise take
        // gigabytes whatever --kv-memory says).
        let n_ctx = if o.n_ctx > 0 {
            o.n_ctx
        } else {
            let fits = ((o.kv_memory_mib << 20) / bytes_per_token.max(1)).max(256);
            c.n_ctx_train.min(DEFAULT_MAX_CTX).min(fits)
        };
        let mut cfg = EngineConfig::new(o.max_seqs, n_ctx, o.n_threads);
        cfg.kv_type = o.kv_type;
        cfg.token_budget = o.token_budget;
        cfg.max_waiting = o.max_waiting;
        cfg.prefix_caching = o.prefix_caching;
        cfg.spec = o.spec;
        if let Some(p) = &o.draft_model_path {
            let d = Model::load(p)
                .map_err(|e| format!("cannot load the draft model {}: {e}", p.display()))?;
            cfg.draft_model = Some(hearth_engine::DraftModel(Arc::new(d)));
        }
        let bytes_per_block = bytes_per_token
            .checked_mul(cfg.block_size)
            .ok_or("the model's KV cache size overflows")?;
        cfg.n_blocks = if o.n_blocks > 0 {
            o.n_blocks
        } else {
            // The memory budget, but always room for one full-context sequence.
            (o.kv_memory_mib << 20)
                .div_ceil(bytes_per_block)
                .max(n_ctx.div_ceil(cfg.block_size))
        };
        if model.is_encoder() {
            // An encoder keeps no KV cache; its inputs are bounded by its trained context.
            cfg.n_ctx = c.n_ctx_train;
            cfg.n_blocks = 1;
        }
        let engine = Engine::start(model.clone(), cfg.clone()).map_err(|e| e.to_string())?;
        tracing::info!(
            model = %o.model_id,
            encoder = model.is_encoder(),
            n_ctx = cfg.n_ctx,
            max_seqs = cfg.max_seqs,
            kv_blocks = cfg.n_blocks,
            block_size = cfg.block_size,
            kv_type = %cfg.kv_type,
            kv_mib = (cfg.n_blocks * bytes_per_block) as f64 / (1 << 20) as f64,
            kv_bytes_per_token = bytes_per_block / cfg.block_size,
            prefix_caching = cfg.prefix_caching,
            spec = ?cfg.spec,
            threads = o.n_threads,
            "engine ready"
        );
        let meta = std::fs::metadata(&o.model_path).map_err(|e| e.to_string())?;
        let n_params = model
            .gguf()
            .tensors()
            .iter()
            .map(|t| t.shape.iter().product::<u64>())
            .sum();
        let info = ModelInfo {
            id: o.model_id.clone(),
            size_bytes: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            family: c.arch.clone(),
            n_params,
            quantization: quantization_name(&model),
            digest: OnceLock::new(),
            path: o.model_path.clone(),
        };
        let _ = self.ready.set(Ready {
            model,
            engine,
            info,
            load_duration: t0.elapsed(),
        });
        Ok(())
    }

    /// Stops the engine (cancelling what still runs).
    pub fn shutdown(&self) {
        if let Some(r) = self.ready.get() {
            r.engine.shutdown();
        }
    }
}

/// The type most of the model's weights use, as Ollama names quantizations ("Q4_1").
fn quantization_name(model: &Model) -> String {
    let mut by_type: std::collections::BTreeMap<String, u64> = Default::default();
    for t in model.gguf().tensors() {
        *by_type
            .entry(t.ggml_type.name().to_uppercase())
            .or_default() += t.n_bytes;
    }
    by_type
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}
