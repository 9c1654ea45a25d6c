//! What every handler shares: the options, and the models this server serves. Each model
//! loads on its first request (the first one given at start loads before the server says
//! it is ready), with its own engine thread and KV pool, and unloads when it has been idle
//! for its keep-alive, or to make room for another under `--max-loaded` and the memory
//! budget (least recently used first).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use hearth_engine::{Engine, EngineConfig};
use hearth_gguf::GgufFile;
use hearth_model::{KvType, Model, ModelConfig};

use crate::error::ApiError;
use crate::modelfile::{self, Dialect, Manifest};

/// Largest context `hearth serve` gives a model by default (`--ctx-size` asks for more).
pub const DEFAULT_MAX_CTX: usize = 8192;
/// How `hearth serve` was started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The default model's file: loaded at start, and used by routes that name no model.
    pub model_path: PathBuf,
    /// The default model's name (`/v1/models`, `/api/tags`).
    pub model_id: String,
    /// Every other model this server serves on request (the models directory's, and
    /// further `-m`s): `(name, file)`.
    pub other_models: Vec<(String, PathBuf)>,
    /// How long an idle model stays loaded; `None` forever (a request's `keep_alive`
    /// overrides it for its model).
    pub keep_alive: Option<Duration>,
    /// Models loaded at once at most.
    pub max_loaded: usize,
    /// Where `/api/copy` writes and `/api/delete` removes model files; `None` for neither.
    pub models_dir: Option<PathBuf>,
    /// Memory the loaded models may take together (weights, KV pool, scratch), in
    /// bytes; `None` = what the kernel says is available.
    pub memory_budget: Option<usize>,
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
    /// What `/api/pull` downloads with (the binary installs its puller); `None` makes
    /// `/api/pull` a 501.
    pub puller: Option<Puller>,
}

/// A pull's progress, as Ollama's `/api/pull` streams it.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// A file is downloading: `completed` of `total` bytes (`total` unknown: 0).
    Downloading {
        file: String,
        /// `sha256:HEX` when the source states it, else the file's name.
        digest: String,
        total: u64,
        completed: u64,
    },
    /// The download is complete and its sha256 is being checked.
    Verifying,
    /// Anything else worth a status line (joining shards, converting).
    Status(String),
}

/// What a pull made: the model's name (as `hearth serve` would serve the file) and file.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub name: String,
    pub path: PathBuf,
}

/// Why a pull failed: `not_found` for a name that names no model (a 404), otherwise the
/// source could not be had (a 502).
#[derive(Debug, Clone)]
pub struct PullFailure {
    pub not_found: bool,
    pub message: String,
}

/// Where a pull reports its progress.
pub type PullSink = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// Downloads a model by name (blocking; run off the async threads), reporting progress.
pub type PullFn = dyn Fn(&str, PullSink) -> Result<Pulled, PullFailure> + Send + Sync;

/// The function `/api/pull` downloads with; the server crate knows no download protocol.
#[derive(Clone)]
pub struct Puller(pub Arc<PullFn>);

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Puller")
    }
}

/// Facts about the served model, for the listing endpoints.
pub struct ModelInfo {
    pub id: String,
    pub size_bytes: u64,
    pub modified: SystemTime,
    pub family: String,
    pub n_params: u64,
    pub quantization: String,
    /// Ollama's capabilities (`completion`, `embedding`, `tools`, `thinking`, `insert`).
    pub capabilities: Vec<&'static str>,
    /// A created model's manifest (`hearth create`, `/api/create`).
    pub recipe: Option<Arc<Manifest>>,
    /// sha256 of the served file (a created model's manifest), computed once on first use.
    digest: OnceLock<String>,
    /// The GGUF file.
    path: PathBuf,
    /// The served file: the GGUF, or a created model's manifest.
    file: PathBuf,
}

impl ModelInfo {
    /// The facts of the model file at `path` (a GGUF, or a created model's manifest and
    /// its base GGUF), served as `id` (metadata only: nothing is loaded).
    pub fn read(id: &str, path: &std::path::Path) -> Result<ModelInfo, String> {
        let recipe = match modelfile::manifest_name(path) {
            Some(_) => Some(Arc::new(Manifest::read(path).map_err(|e| e.0)?)),
            None => None,
        };
        let gguf = match &recipe {
            Some(m) => m.gguf_path(path),
            None => path.to_path_buf(),
        };
        let file = GgufFile::open(&gguf).map_err(|e| format!("{}: {e}", gguf.display()))?;
        let size = std::fs::metadata(&gguf).map_err(|e| e.to_string())?.len();
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        Ok(ModelInfo {
            id: id.to_string(),
            size_bytes: size,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            capabilities: modelfile::capabilities(
                &file,
                recipe.as_ref().and_then(|m| m.template.as_deref()),
            ),
            family: file
                .get_str("general.architecture")
                .unwrap_or("")
                .to_string(),
            n_params: file
                .tensors()
                .iter()
                .map(|t| t.shape.iter().product::<u64>())
                .sum(),
            quantization: quantization_name(&file),
            recipe,
            digest: OnceLock::new(),
            path: gguf,
            file: path.to_path_buf(),
        })
    }

    /// The GGUF file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The served file: the GGUF, or a created model's manifest.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Whether it can chat or complete text (an embedding model cannot).
    pub fn generates(&self) -> bool {
        self.capabilities.contains(&"completion")
    }

    pub fn digest(&self) -> &str {
        self.digest
            .get_or_init(|| sha256_file(&self.file).unwrap_or_default())
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

/// A loaded model: its engine and what the listings say of it.
pub struct Ready {
    /// The name requests use for it.
    pub id: String,
    pub model: Arc<Model>,
    pub engine: Engine,
    pub info: Arc<ModelInfo>,
    pub load_duration: Duration,
    /// Bytes it was admitted with (weights, KV pool, scratch), against the budget.
    pub footprint: usize,
}

/// One servable model: loaded on demand, behind an async lock that makes concurrent
/// first requests wait for one load.
struct Slot {
    id: String,
    path: PathBuf,
    /// Its file's facts, read on first use.
    info: OnceLock<Option<Arc<ModelInfo>>>,
    loaded: tokio::sync::Mutex<Option<Arc<Ready>>>,
    usage: Mutex<Usage>,
}

struct Usage {
    /// The last time a request used it (or the reaper found it busy).
    last_used: Instant,
    /// How long it stays loaded once idle; `None` forever.
    keep_alive: Option<Duration>,
    /// When loaded, its footprint (for the budget without taking the async lock).
    footprint: Option<usize>,
}

/// A request's `keep_alive` (Ollama's): `Some(None)` keeps the model forever.
pub type KeepAlive = Option<Option<Duration>>;

pub struct AppState {
    pub opts: ServerOptions,
    pub started: Instant,
    /// The default model first; `/api/copy` and `/api/delete` add and remove others.
    slots: std::sync::RwLock<Vec<Arc<Slot>>>,
    /// Further names of served models (`(alias, id)`): the name a model was pulled as.
    aliases: std::sync::RwLock<Vec<(String, String)>>,
    /// The default model finished its first load (`/health`).
    up: AtomicBool,
    stopping: AtomicBool,
}

impl AppState {
    pub fn new(opts: ServerOptions) -> AppState {
        let mut slots = vec![Slot::new(
            opts.model_id.clone(),
            opts.model_path.clone(),
            opts.keep_alive,
        )];
        for (id, path) in &opts.other_models {
            if !slots.iter().any(|s| s.id == *id) {
                slots.push(Slot::new(id.clone(), path.clone(), opts.keep_alive));
            }
        }
        AppState {
            opts,
            started: Instant::now(),
            slots: std::sync::RwLock::new(slots),
            aliases: Default::default(),
            up: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether the default model has loaded once (the server is up).
    pub fn is_ready(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Every model this server serves, loaded or not, the default first (a file that
    /// cannot be read is left out, with a warning in the log).
    pub fn models(&self) -> Vec<Arc<ModelInfo>> {
        self.slots().iter().filter_map(|s| s.info()).collect()
    }

    /// The served models' names, the default first.
    pub fn model_ids(&self) -> Vec<String> {
        self.slots().iter().map(|s| s.id.clone()).collect()
    }

    /// A snapshot of the slots.
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The file of the model `name` names.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, ApiError> {
        Ok(self
            .slot(name)
            .ok_or_else(|| self.unknown(name))?
            .path
            .clone())
    }

    /// Serves the model file at `path` as `id` from now on (`/api/copy`); a name already
    /// served is a 409.
    pub fn add(&self, id: &str, path: PathBuf) -> Result<(), ApiError> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.iter().any(|s| s.id == id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("model '{id}' already exists"),
            )
            .param("destination"));
        }
        slots.push(Slot::new(id.to_string(), path, self.opts.keep_alive));
        Ok(())
    }

    /// Stops serving `name` (`/api/delete`) and returns its file, unloading it first; the
    /// default model, or one that is busy, is a 409.
    pub fn remove(&self, name: &str) -> Result<PathBuf, ApiError> {
        let slot = self.slot(name).ok_or_else(|| self.unknown(name))?;
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if Arc::ptr_eq(&slots[0], &slot) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "'{}' is the server's default model; it cannot be deleted while served",
                    slot.id
                ),
            )
            .param("model"));
        }
        let loaded = slot.loaded.try_lock().map(|c| c.is_some()).unwrap_or(true);
        if loaded && !slot.unload_if_idle() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "model '{}' is in use; try again when its requests are done",
                    slot.id
                ),
            )
            .param("model"));
        }
        slots.retain(|s| !Arc::ptr_eq(s, &slot));
        Ok(slot.path.clone())
    }

    /// The slot a request's model name picks (also as `name:latest`, as Ollama clients
    /// say, or by an alias).
    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        let name = name.strip_suffix(":latest").unwrap_or(name);
        let slots = self.slots();
        if let Some(s) = slots.iter().find(|s| s.id == name) {
            return Some(s.clone());
        }
        let aliases = self.aliases.read().unwrap_or_else(|e| e.into_inner());
        let id = &aliases.iter().find(|(a, _)| a == name)?.1;
        slots.into_iter().find(|s| s.id == *id)
    }

    /// Serves the model `id` under `alias` too (for the life of this process).
    pub fn add_alias(&self, alias: &str, id: &str) {
        let alias = alias.strip_suffix(":latest").unwrap_or(alias);
        if alias != id && !self.serves(alias) {
            let mut aliases = self.aliases.write().unwrap_or_else(|e| e.into_inner());
            aliases.push((alias.to_string(), id.to_string()));
        }
    }

    /// The facts of the model `name` names (metadata only: nothing is loaded).
    pub fn info(&self, name: &str) -> Result<Arc<ModelInfo>, ApiError> {
        let slot = self.slot(name).ok_or_else(|| self.unknown(name))?;
        slot.info().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the file of '{}'", slot.id),
            )
        })
    }

    /// Parses a request body in `dialect`, after filling in the defaults of the created
    /// model its `model` field names (the default model's when it names none); see
    /// [`modelfile::apply`].
    pub fn parse_request<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        dialect: Dialect,
    ) -> Result<T, ApiError> {
        let peek = serde_json::from_slice::<serde_json::Value>(bytes).ok();
        let recipe = peek.as_ref().and_then(|v| {
            let slot = match v.get("model") {
                Some(serde_json::Value::String(n)) => self.slot(n),
                None => self.slots().first().cloned(),
                Some(_) => None,
            };
            slot?.info()?.recipe.clone()
        });
        let (Some(mut v), Some(m)) = (peek, recipe) else {
            return crate::util::parse_json(bytes);
        };
        modelfile::apply(dialect, &mut v, &m);
        serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
    }

    /// Whether `name` is a model this server serves.
    pub fn serves(&self, name: &str) -> bool {
        self.slot(name).is_some()
    }

    /// 404 for a model this server does not serve, naming those it does.
    pub fn unknown(&self, name: &str) -> ApiError {
        ApiError::unknown_model(name, &self.model_ids().join("', '"))
    }

    /// The default model, loading it if it is not loaded.
    pub async fn default_model(&self) -> Result<Arc<Ready>, ApiError> {
        let default = self.slots()[0].clone();
        self.load_slot(&default, None).await
    }

    /// The model `name` names, loading it (or waiting for its load) if needed;
    /// `keep_alive` sets how long it stays once idle.
    pub async fn model(&self, name: &str, keep_alive: KeepAlive) -> Result<Arc<Ready>, ApiError> {
        let slot = self.slot(name).ok_or_else(|| self.unknown(name))?;
        self.load_slot(&slot, keep_alive).await
    }

    /// The loaded models, in slot order, and their keep-alive deadlines (`None`: forever).
    pub fn loaded(&self) -> Vec<(Arc<Ready>, Option<SystemTime>)> {
        self.slots()
            .iter()
            .filter_map(|s| {
                let r = s.loaded.try_lock().ok()?.clone()?;
                let u = s.usage.lock().unwrap_or_else(|e| e.into_inner());
                let expires = u.keep_alive.map(|k| {
                    SystemTime::now() + (u.last_used + k).saturating_duration_since(Instant::now())
                });
                Some((r, expires))
            })
            .collect()
    }

    async fn load_slot(
        &self,
        slot: &Arc<Slot>,
        keep_alive: KeepAlive,
    ) -> Result<Arc<Ready>, ApiError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ));
        }
        let mut cell = slot.loaded.lock().await;
        {
            let mut u = slot.usage.lock().unwrap_or_else(|e| e.into_inner());
            u.last_used = Instant::now();
            if let Some(k) = keep_alive {
                u.keep_alive = k;
            }
        }
        if let Some(r) = cell.as_ref() {
            return Ok(r.clone());
        }
        // Size it before allocating anything, and make room.
        let info = slot.info().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the file of '{}'", slot.id),
            )
        })?;
        let (opts, path, id) = (
            self.opts.clone(),
            info.path().to_path_buf(),
            slot.id.clone(),
        );
        let fp = tokio::task::spawn_blocking(move || estimate(&opts, &path))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot load '{id}': {e}"),
                )
            })?;
        self.make_room(slot, fp)?;
        let need = fp.total();
        let (opts, path, id) = (
            self.opts.clone(),
            info.path().to_path_buf(),
            slot.id.clone(),
        );
        let ready = tokio::task::spawn_blocking(move || load(&opts, &id, &path, need, info))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let ready = Arc::new(ready);
        slot.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .footprint = Some(need);
        *cell = Some(ready.clone());
        Ok(ready)
    }

    /// Unloads idle models, least recently used first, until one more of `need` bytes
    /// fits `--max-loaded` and the memory budget. A model that cannot fit even alone is a
    /// 400; one that must wait for busy models is a 503.
    fn make_room(&self, slot: &Arc<Slot>, fp: Footprint) -> Result<(), ApiError> {
        let need = fp.total();
        let budget = self.budget();
        let mb = |b: usize| b >> 20;
        if need > budget.saturating_add(self.footprints()) {
            return Err(ApiError::bad_request(format!(
                "model '{}' needs about {} MiB (weights {} MiB, KV cache {} MiB, scratch {} MiB), more than the {} MiB {} (lower --kv-memory, --kv-blocks, --parallel or --ctx-size)",
                slot.id,
                mb(need),
                mb(fp.weights),
                mb(fp.kv),
                mb(fp.scratch),
                mb(budget.saturating_add(self.footprints())),
                if self.opts.memory_budget.is_some() { "--max-memory allows" } else { "of memory available" }
            ))
            .param("model")
            .code("insufficient_memory"));
        }
        loop {
            let slots = self.slots();
            let n_loaded = slots.iter().filter(|s| s.footprint().is_some()).count();
            if n_loaded < self.opts.max_loaded && need <= self.budget() {
                return Ok(());
            }
            // The least recently used idle model goes.
            let mut idle: Vec<&Arc<Slot>> = slots
                .iter()
                .filter(|s| !Arc::ptr_eq(s, slot) && s.footprint().is_some())
                .collect();
            idle.sort_by_key(|s| s.usage.lock().unwrap_or_else(|e| e.into_inner()).last_used);
            if !idle.iter().any(|s| s.unload_if_idle()) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "cannot load '{}' now: the loaded models are busy (--max-loaded {}, {} MiB free of the budget)",
                        slot.id,
                        self.opts.max_loaded,
                        mb(self.budget())
                    ),
                ));
            }
        }
    }

    /// Bytes the loaded models were admitted with.
    fn footprints(&self) -> usize {
        self.slots().iter().filter_map(|s| s.footprint()).sum()
    }

    /// Bytes a new model may take: `--max-memory` less the loaded models' footprints,
    /// else what the kernel says is available (which already counts them).
    fn budget(&self) -> usize {
        match self.opts.memory_budget {
            Some(b) => b.saturating_sub(self.footprints()),
            None => hearth_model::available_memory().unwrap_or(usize::MAX),
        }
    }

    /// Unloads the models that have been idle past their keep-alive; the server runs
    /// this every half second. A busy model's idle time starts again.
    pub fn reap(&self) {
        for s in &self.slots() {
            let Ok(mut cell) = s.loaded.try_lock() else {
                continue;
            };
            let Some(r) = cell.as_ref() else { continue };
            let mut u = s.usage.lock().unwrap_or_else(|e| e.into_inner());
            if !is_idle(r) {
                u.last_used = Instant::now();
                continue;
            }
            if u.keep_alive.is_some_and(|k| u.last_used.elapsed() >= k) {
                tracing::info!(model = %s.id, "unloading (idle past its keep-alive)");
                u.footprint = None;
                *cell = None;
            }
        }
    }

    /// Unloads `name` (`hearth stop`, Ollama's empty request with `keep_alive: 0`): now
    /// if it is idle, else once its requests are done. Nothing is loaded for it.
    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        let slot = self.slot(name).ok_or_else(|| self.unknown(name))?;
        slot.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep_alive = Some(Duration::ZERO);
        slot.unload_if_idle();
        Ok(())
    }

    /// Stops every engine (cancelling what still runs) and loads nothing more.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        for s in &self.slots() {
            if let Ok(cell) = s.loaded.try_lock() {
                if let Some(r) = cell.as_ref() {
                    r.engine.shutdown();
                }
            }
        }
    }

    /// Loads the default model at start; the server is up once it has.
    pub async fn load_default(&self) -> Result<Arc<Ready>, String> {
        let r = self.default_model().await.map_err(|e| e.message)?;
        self.up.store(true, Ordering::Release);
        Ok(r)
    }
}

impl Slot {
    fn new(id: String, path: PathBuf, keep_alive: Option<Duration>) -> Arc<Slot> {
        Arc::new(Slot {
            id,
            path,
            info: OnceLock::new(),
            loaded: tokio::sync::Mutex::new(None),
            usage: Mutex::new(Usage {
                last_used: Instant::now(),
                keep_alive,
                footprint: None,
            }),
        })
    }

    fn info(&self) -> Option<Arc<ModelInfo>> {
        self.info
            .get_or_init(|| match ModelInfo::read(&self.id, &self.path) {
                Ok(i) => Some(Arc::new(i)),
                Err(e) => {
                    tracing::warn!(model = %self.id, error = %e, "cannot read the model file");
                    None
                }
            })
            .clone()
    }

    fn footprint(&self) -> Option<usize> {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .footprint
    }

    /// Drops the loaded model if no request holds or runs on it; whether it did.
    fn unload_if_idle(&self) -> bool {
        let Ok(mut cell) = self.loaded.try_lock() else {
            return false;
        };
        match cell.as_ref() {
            Some(r) if is_idle(r) => {
                tracing::info!(model = %self.id, "unloading");
                self.usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .footprint = None;
                *cell = None;
                true
            }
            _ => false,
        }
    }
}

/// No request holds the model (only its slot does) and its engine runs nothing.
fn is_idle(r: &Arc<Ready>) -> bool {
    Arc::strong_count(r) == 1 && r.engine.in_flight() == 0
}

/// The engine settings for a model of config `c` (KV pool sized from the options), and
/// the KV pool's bytes. Every product is checked: a hostile file's sizes give an error.
fn plan(o: &ServerOptions, c: &ModelConfig) -> Result<(EngineConfig, usize), String> {
    let encoder = hearth_model::arch::find(&c.arch)
        .is_some_and(|a| matches!(a.load, hearth_model::arch::Loader::Encoder(_)));
    // Bytes of one position's keys and values over all layers.
    let bytes_per_token = o
        .kv_type
        .row_bytes(c.n_embd_kv())
        .checked_mul(2 * c.n_layer)
        .ok_or("the model's KV cache size overflows")?;
    // The context: what was asked for, else the model's, capped at DEFAULT_MAX_CTX and
    // at what --kv-memory holds (a 131,072-token model would otherwise take gigabytes
    // whatever --kv-memory says).
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
    if encoder {
        // An encoder keeps no KV cache; its inputs are bounded by its trained context.
        cfg.n_ctx = c.n_ctx_train;
        cfg.n_blocks = 1;
    }
    let kv_bytes = cfg
        .n_blocks
        .checked_mul(bytes_per_block)
        .ok_or("the model's KV cache size overflows")?;
    Ok((cfg, kv_bytes))
}

/// What loading the model at `path` will take: its file (weights are read in place),
/// the KV pool, and scratch for a step's activations and logits; read from the file's
/// metadata, before anything is allocated.
pub fn estimate(o: &ServerOptions, path: &std::path::Path) -> Result<Footprint, String> {
    let file = GgufFile::open(path).map_err(|e| e.to_string())?;
    let c = ModelConfig::from_gguf(&file).map_err(|e| e.to_string())?;
    let (cfg, kv_bytes) = plan(o, &c)?;
    let draft = match &o.draft_model_path {
        Some(p) => std::fs::metadata(p).map_or(0, |m| m.len() as usize),
        None => 0,
    };
    let scratch = 4 * (cfg.token_budget * (6 * c.n_embd + 3 * c.n_ff) + cfg.max_seqs * c.n_vocab)
        + (64 << 20);
    Ok(Footprint {
        weights: file.bytes().len() + draft,
        kv: kv_bytes,
        scratch,
    })
}

/// What a model takes loaded, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// Its file (and a draft model's), read in place.
    pub weights: usize,
    /// The KV pool.
    pub kv: usize,
    /// A step's activations and logits.
    pub scratch: usize,
}

impl Footprint {
    pub fn total(&self) -> usize {
        self.weights
            .saturating_add(self.kv)
            .saturating_add(self.scratch)
    }
}

/// Loads the model at `path` as `id` and starts its engine (blocking; run off the async
/// threads).
fn load(
    o: &ServerOptions,
    id: &str,
    path: &std::path::Path,
    footprint: usize,
    info: Arc<ModelInfo>,
) -> Result<Ready, String> {
    let t0 = Instant::now();
    let mut model =
        Model::load(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    // A created model's TEMPLATE replaces the file's chat template.
    if let Some(t) = info.recipe.as_ref().and_then(|m| m.template.as_deref()) {
        model.chat_template = Some(
            hearth_model::ChatTemplate::new(t, &model.tokenizer)
                .map_err(|e| format!("the TEMPLATE of '{id}' does not compile: {e}"))?,
        );
    }
    let model = Arc::new(model);
    let c = &model.config;
    let (mut cfg, kv_bytes) = plan(o, c)?;
    if let Some(p) = &o.draft_model_path {
        let d = Model::load(p)
            .map_err(|e| format!("cannot load the draft model {}: {e}", p.display()))?;
        cfg.draft_model = Some(hearth_engine::DraftModel(Arc::new(d)));
    }
    let engine = Engine::start(model.clone(), cfg.clone()).map_err(|e| e.to_string())?;
    tracing::info!(
        model = %id,
        encoder = model.is_encoder(),
        n_ctx = cfg.n_ctx,
        max_seqs = cfg.max_seqs,
        kv_blocks = cfg.n_blocks,
        block_size = cfg.block_size,
        kv_type = %cfg.kv_type,
        kv_mib = kv_bytes as f64 / (1 << 20) as f64,
        kv_bytes_per_token = kv_bytes / cfg.n_blocks.max(1) / cfg.block_size,
        prefix_caching = cfg.prefix_caching,
        spec = ?cfg.spec,
        threads = o.n_threads,
        "engine ready"
    );
    Ok(Ready {
        id: id.to_string(),
        model,
        engine,
        info,
        load_duration: t0.elapsed(),
        footprint,
    })
}

/// The type most of the model's weights use, as Ollama names quantizations ("Q4_1").
fn quantization_name(file: &GgufFile) -> String {
    let mut by_type: std::collections::BTreeMap<String, u64> = Default::default();
    for t in file.tensors() {
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
