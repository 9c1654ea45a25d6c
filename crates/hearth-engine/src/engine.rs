//! The serving engine: one thread owns the model's paged KV cache and every sequence, and
//! runs continuous batching. Requests arrive over a channel; each gets its own channel of
//! [`Event`]s back. Dropping that receiver cancels the request and frees its blocks at the
//! next step.
//!
//! Scheduling is token-budgeted with no separate prefill and decode phases: every step,
//! each running sequence asks for the tokens it has not computed yet (one for a decoding
//! sequence, the rest of the prompt for a new one), oldest first, until the step's token
//! budget is spent; new requests join as soon as a place and blocks are free. Long prompts
//! are therefore prefilled in chunks between decode steps, and all the step's tokens run
//! as one batch, so each weight read serves every sequence. When the block pool runs dry
//! the youngest running sequence is preempted: its blocks are freed and it is recomputed
//! later from its tokens (prompt and generated so far), which gives the same keys and
//! values because every kernel is batch-invariant.
//!
//! Embedding requests share the thread: each step first runs the waiting ones (up to the
//! token budget, at least one request) as one batch through [`Model::embed`], then the
//! generation step. An input's vector never depends on what else is in its batch.
//! Reranking requests (pooling `rank`: a cross-encoder's query-document pairs, one score
//! each) take the same queue and batch with each other.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_model::encoder::EncoderInput;
use hearth_model::{Batch, KvType, Model, Pooling};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::blocks::BlockManager;
use crate::constraint::{Constraint, Grammar, GrammarError, Grammars};
use crate::metrics::Metrics;
use crate::sampler::{Sampler, SamplingParams};
use crate::spec::{check_draft, ngram_drafts, DraftModel, SpecConfig, SpecKind};
use crate::stop::{StopEvent, StopMatcher};
use crate::{FinishReason, Timings};

/// How the engine is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sequences in the running batch at most.
    pub max_seqs: usize,
    /// Tokens (prompt and generated) one sequence may hold.
    pub n_ctx: usize,
    /// Blocks in the KV pool.
    pub n_blocks: usize,
    /// Positions per KV block.
    pub block_size: usize,
    /// Tokens run per step at most (decode tokens and prompt chunks together).
    pub token_budget: usize,
    pub kv_type: KvType,
    /// Threads of the compute pool.
    pub n_threads: usize,
    /// Requests allowed to wait for a place: at most `max_seqs + max_waiting` requests
    /// are in the engine at once, more are refused as overloaded.
    pub max_waiting: usize,
    /// Reuse the KV blocks of earlier requests that start with the same tokens.
    pub prefix_caching: bool,
    /// Speculative decoding for decoding sequences.
    pub spec: Option<SpecConfig>,
    /// The draft model when `spec` is of kind [`SpecKind::Draft`].
    pub draft_model: Option<DraftModel>,
}

impl EngineConfig {
    /// Enough blocks for `max_seqs` sequences of `n_ctx` tokens each.
    pub fn new(max_seqs: usize, n_ctx: usize, n_threads: usize) -> EngineConfig {
        let block_size = 16;
        EngineConfig {
            max_seqs,
            n_ctx,
            n_blocks: max_seqs * n_ctx.div_ceil(block_size),
            block_size,
            token_budget: 512,
            kv_type: KvType::F16,
            n_threads,
            max_waiting: 256,
            prefix_caching: true,
            spec: None,
            draft_model: None,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {prompt} tokens, but the context holds {n_ctx} (leave room for at least one generated token)")]
    PromptTooLong { prompt: usize, n_ctx: usize },
    #[error("{0}")]
    BadParameter(String),
    #[error("the server is overloaded ({0} requests waiting); try again later")]
    Overloaded(usize),
    #[error("the engine has stopped")]
    Stopped,
    #[error("model error: {0}")]
    Model(String),
    #[error("{0}")]
    Grammar(#[from] GrammarError),
}

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt_ids: Vec<u32>,
    /// Generated tokens at most; the context bounds it too.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these (not included in the output).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Report the chosen token's log-probability and this many top alternatives.
    pub logprobs: Option<usize>,
    /// The output must match this grammar (compiled by [`Engine::compile`]); generation
    /// stops when the grammar is complete.
    pub constraint: Option<Constraint>,
}

/// Inputs (token ids) to embed, one L2-normalized vector each; or, with pooling
/// [`Pooling::Rank`], query-document pairs for a cross-encoder to score, one vector of one
/// value each (the raw relevance logit, [`Model::rerank`]).
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub inputs: Vec<Vec<u32>>,
    pub pooling: Pooling,
    /// For [`Pooling::Rank`], each input's `[CLS] query [SEP]` length (token type 0; the
    /// rest is the document, type 1), as [`Model::rerank_input`] gives it; empty for
    /// the other poolings.
    pub n_first: Vec<usize>,
}

/// The vectors of an [`EmbedRequest`], in input order.
pub type Embeddings = Result<Vec<Vec<f32>>, EngineError>;

/// Log-probabilities of one generated token (natural log, over the model's distribution
/// before sampling filters).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// The most likely tokens, best first.
    pub top: Vec<(u32, f32)>,
}

/// What the engine sends back for a request.
#[derive(Debug, Clone)]
pub enum Event {
    /// A generated token and the text that became final with it (often one piece; empty
    /// while a multi-byte character or a possible stop string is incomplete).
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The end: text still held back, then the summary.
    Done {
        text: String,
        summary: Summary,
    },
    Error(EngineError),
}

/// The final accounting of a request.
#[derive(Debug, Clone)]
pub struct Summary {
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    /// Speculative decoding: tokens drafted, and drafts the model confirmed.
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    pub completion_tokens: usize,
    /// The stop string that ended the generation, if one did.
    pub stop_string: Option<String>,
    pub timings: Timings,
    /// From arrival to the first step that ran it.
    pub queue_duration: Duration,
}

enum Command {
    Submit(Box<Request>, UnboundedSender<Event>, Instant, Ticket),
    Embed(EmbedJob),
    Shutdown,
}

struct EmbedJob {
    req: EmbedRequest,
    tx: oneshot::Sender<Embeddings>,
    _ticket: Ticket,
}

/// A request's place in the engine, given back when dropped (with its sequence, or with
/// the command if the engine never takes it).
struct Ticket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A running engine; cheap to share behind an `Arc`.
pub struct Engine {
    tx: std_mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    pub config: EngineConfig,
    n_vocab: usize,
    /// Requests submitted and not yet finished (see [`Ticket`]).
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    model: Arc<Model>,
    /// The grammar compiler, built on the first constrained request.
    grammars: std::sync::OnceLock<Result<Grammars, GrammarError>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine thread with its own KV pool and compute pool.
    pub fn start(model: Arc<Model>, config: EngineConfig) -> Result<Engine, EngineError> {
        if config.max_seqs == 0
            || config.n_ctx == 0
            || config.block_size == 0
            || config.token_budget == 0
        {
            return Err(EngineError::BadParameter(
                "max_seqs, n_ctx, block_size and token_budget must be positive".into(),
            ));
        }
        if !model.is_encoder() && config.n_ctx.div_ceil(config.block_size) > config.n_blocks {
            return Err(EngineError::BadParameter(format!(
                "{} KV blocks of {} cannot hold one sequence of {} tokens",
                config.n_blocks, config.block_size, config.n_ctx
            )));
        }
        model
            .check_kv_type(config.kv_type)
            .map_err(|e| EngineError::BadParameter(e.to_string()))?;
        let draft = match (config.spec.map(|s| s.kind), &config.draft_model) {
            (Some(SpecKind::Draft), None) => {
                return Err(EngineError::BadParameter(
                    "draft-model speculation needs a draft model".into(),
                ))
            }
            (Some(SpecKind::Draft), Some(DraftModel(d))) => {
                check_draft(&model, d).map_err(EngineError::BadParameter)?;
                d.check_kv_type(config.kv_type)
                    .map_err(|e| EngineError::BadParameter(e.to_string()))?;
                Some(d.clone())
            }
            _ => None,
        };
        // The KV pools, allocated here so that one the machine cannot hold is an error
        // of `start`, before anyone is told the engine is ready.
        // An encoder keeps no keys and values: one token's block stands in.
        let kv_pool = |m: &Model| {
            let n_blocks = if m.is_encoder() { 1 } else { config.n_blocks };
            m.try_new_paged_kv_cache(n_blocks, config.block_size, config.kv_type)
                .map_err(|e| EngineError::BadParameter(e.to_string()))
        };
        let kv = kv_pool(&model)?;
        let draft_kv = draft.as_deref().map(kv_pool).transpose()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.n_threads.max(1))
            .thread_name(|i| format!("hearth-compute-{i}"))
            .build()
            .map_err(|e| EngineError::Model(e.to_string()))?;
        let metrics = Arc::new(Metrics::default());
        metrics
            .kv_blocks_total
            .store(config.n_blocks as u64, Relaxed);
        metrics
            .kv_block_size
            .store(config.block_size as u64, Relaxed);
        let (tx, rx) = std_mpsc::channel();
        let n_vocab = model.config.n_vocab;
        let (m, cfg, engine_model) = (metrics.clone(), config.clone(), model.clone());
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || {
                pool.install(|| {
                    let draft = draft.as_deref().zip(draft_kv);
                    Scheduler::new(&model, kv, draft, cfg, m).run(rx)
                })
            })
            .map_err(|e| EngineError::Model(e.to_string()))?;
        Ok(Engine {
            tx,
            metrics,
            config,
            n_vocab,
            in_flight: Arc::default(),
            model: engine_model,
            grammars: std::sync::OnceLock::new(),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Compiles `g` against this model's vocabulary into a constraint for
    /// [`Request::constraint`]; an invalid or unsupported grammar says why.
    pub fn compile(&self, g: &Grammar) -> Result<Constraint, GrammarError> {
        self.grammars
            .get_or_init(|| Grammars::new(self.model.clone()))
            .as_ref()
            .map_err(Clone::clone)?
            .compile(g)
    }

    /// Queues a request; its events arrive on the returned receiver. Drop the receiver to
    /// cancel.
    pub fn submit(&self, req: Request) -> Result<UnboundedReceiver<Event>, EngineError> {
        if self.model.is_encoder() {
            return Err(EngineError::BadParameter(
                "this model is an encoder: it embeds text and cannot generate".into(),
            ));
        }
        if req.prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if req.prompt_ids.len() >= self.config.n_ctx {
            return Err(EngineError::PromptTooLong {
                prompt: req.prompt_ids.len(),
                n_ctx: self.config.n_ctx,
            });
        }
        if let Some(&t) = req.prompt_ids.iter().find(|&&t| t as usize >= self.n_vocab) {
            return Err(EngineError::BadParameter(format!(
                "token id {t} is outside the vocabulary"
            )));
        }
        req.sampling
            .validate(self.n_vocab)
            .map_err(EngineError::BadParameter)?;
        let ticket = self.admit()?;
        let (etx, erx) = unbounded_channel();
        self.tx
            .send(Command::Submit(Box::new(req), etx, Instant::now(), ticket))
            .map_err(|_| EngineError::Stopped)?;
        Ok(erx)
    }

    /// A place in the engine, if one is free. Exact under concurrency: a place is taken
    /// by compare-and-swap, and given back when the request's ticket drops (finished,
    /// cancelled, or never run).
    fn admit(&self) -> Result<Ticket, EngineError> {
        let limit = self.config.max_seqs + self.config.max_waiting;
        self.in_flight
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .map_err(|n| EngineError::Overloaded(n - n.min(self.config.max_seqs)))?;
        Ok(Ticket(self.in_flight.clone()))
    }

    /// Queues inputs to embed (one place in the engine for the whole request); the
    /// vectors arrive on the returned receiver. Each input must be non-empty, within the
    /// vocabulary and within the context (the server's for a decoder, the trained one for
    /// an encoder); `pooling` must give one vector per input.
    pub fn embed(&self, req: EmbedRequest) -> Result<oneshot::Receiver<Embeddings>, EngineError> {
        if req.inputs.is_empty() || req.inputs.iter().any(Vec::is_empty) {
            return Err(EngineError::EmptyPrompt);
        }
        if req.pooling == Pooling::Rank {
            if !self.model.can_rerank() {
                return Err(EngineError::BadParameter(
                    "this model cannot rerank: it has no one-label classification head".into(),
                ));
            }
            if req.n_first.len() != req.inputs.len()
                || req
                    .n_first
                    .iter()
                    .zip(&req.inputs)
                    .any(|(&n, i)| n > i.len())
            {
                return Err(EngineError::BadParameter(
                    "each pair needs the length of its first segment, within the pair".into(),
                ));
            }
        } else if !matches!(req.pooling, Pooling::Mean | Pooling::Cls | Pooling::Last) {
            return Err(EngineError::BadParameter(format!(
                "pooling '{}' does not give one vector per input",
                req.pooling.name()
            )));
        } else if !req.n_first.is_empty() {
            return Err(EngineError::BadParameter(
                "segment lengths are for reranking (pooling 'rank') only".into(),
            ));
        }
        let n_ctx = if self.model.is_encoder() {
            self.model.config.n_ctx_train
        } else {
            self.config.n_ctx
        };
        if let Some(long) = req.inputs.iter().find(|i| i.len() > n_ctx) {
            return Err(EngineError::PromptTooLong {
                prompt: long.len(),
                n_ctx,
            });
        }
        if let Some(&t) = req
            .inputs
            .iter()
            .flatten()
            .find(|&&t| t as usize >= self.n_vocab)
        {
            return Err(EngineError::BadParameter(format!(
                "token id {t} is outside the vocabulary"
            )));
        }
        let ticket = self.admit()?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Embed(EmbedJob {
                req,
                tx,
                _ticket: ticket,
            }))
            .map_err(|_| EngineError::Stopped)?;
        Ok(rx)
    }

    /// Requests submitted and not finished (running, waiting, or queued to embed).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Cancels every request and stops the engine thread.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One request's sequence, owned by the engine thread.
struct Seq<'m> {
    req: Box<Request>,
    tx: UnboundedSender<Event>,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    /// Leading tokens whose keys and values are in the cache.
    n_computed: usize,
    /// KV blocks holding positions `0..blocks.len() * block_size`.
    blocks: Vec<u32>,
    /// Chained hashes of the leading blocks that are full (registered in the prefix cache).
    block_hashes: Vec<u64>,
    /// Prompt tokens found in the prefix cache when first scheduled.
    cached_tokens: Option<usize>,
    drafted: usize,
    accepted: usize,
    /// Leading tokens whose keys and values are in the draft model's cache.
    draft_computed: usize,
    sampler: Sampler,
    decoder: hearth_model::tokenizer::StreamDecoder<'m>,
    stops: StopMatcher,
    arrived: Instant,
    first_scheduled: Option<Instant>,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// Its place in the engine, until the sequence is dropped.
    _ticket: Ticket,
}

impl Seq<'_> {
    fn n_generated(&self) -> usize {
        self.tokens.len() - self.req.prompt_ids.len()
    }
}

struct Scheduler<'m> {
    model: &'m Model,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    kv: hearth_model::KvCache,
    /// The draft model and its KV pool, which mirrors `kv` block for block (a sequence's
    /// block table serves both).
    draft: Option<(&'m Model, hearth_model::KvCache)>,
    blocks: BlockManager,
    /// Admitted sequences, oldest first.
    running: Vec<Seq<'m>>,
    /// Not yet admitted, or preempted (those go to the front).
    waiting: VecDeque<Seq<'m>>,
    /// Embedding requests, oldest first.
    embeds: VecDeque<EmbedJob>,
}

impl<'m> Scheduler<'m> {
    fn new(
        model: &'m Model,
        kv: hearth_model::KvCache,
        draft: Option<(&'m Model, hearth_model::KvCache)>,
        cfg: EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Scheduler<'m> {
        // The prefix cache's hash chain starts from the model and the KV type.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(
            &format!(
                "{:?} {:?} {}",
                model.config,
                cfg.kv_type,
                model.gguf().bytes().len()
            ),
            &mut h,
        );
        let blocks = BlockManager::new(
            cfg.n_blocks,
            cfg.block_size,
            cfg.prefix_caching,
            std::hash::Hasher::finish(&h),
        );
        Scheduler {
            model,
            cfg,
            metrics,
            kv,
            draft,
            blocks,
            running: Vec::new(),
            waiting: VecDeque::new(),
            embeds: VecDeque::new(),
        }
    }

    fn run(mut self, rx: std_mpsc::Receiver<Command>) {
        loop {
            // Block only when there is nothing to do.
            let first =
                if self.running.is_empty() && self.waiting.is_empty() && self.embeds.is_empty() {
                    match rx.recv() {
                        Ok(c) => Some(c),
                        Err(_) => return,
                    }
                } else {
                    None
                };
            for cmd in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match cmd {
                    Command::Submit(req, tx, arrived, ticket) => {
                        self.admit_new(req, tx, arrived, ticket)
                    }
                    Command::Embed(job) => {
                        self.metrics.requests_total.fetch_add(1, Relaxed);
                        self.embeds.push_back(job);
                    }
                    Command::Shutdown => return,
                }
            }
            self.drop_cancelled();
            self.embed_step();
            self.step();
            self.publish_gauges();
        }
    }

    fn admit_new(
        &mut self,
        req: Box<Request>,
        tx: UnboundedSender<Event>,
        arrived: Instant,
        ticket: Ticket,
    ) {
        let tok = &self.model.tokenizer;
        self.metrics.requests_total.fetch_add(1, Relaxed);
        self.waiting.push_back(Seq {
            tokens: req.prompt_ids.clone(),
            sampler: Sampler::new(req.sampling.clone()),
            stops: StopMatcher::new(req.stop.clone()),
            decoder: tok.stream_decoder(false),
            req,
            tx,
            n_computed: 0,
            blocks: Vec::new(),
            block_hashes: Vec::new(),
            cached_tokens: None,
            drafted: 0,
            accepted: 0,
            draft_computed: 0,
            arrived,
            first_scheduled: None,
            first_token: None,
            last_token: None,
            _ticket: ticket,
        });
    }

    /// Runs the oldest embedding requests that share a pooling, up to the step's token
    /// budget (at least one request), as one batch.
    fn embed_step(&mut self) {
        self.embeds.retain(|j| !j.tx.is_closed());
        let Some(pooling) = self.embeds.front().map(|j| j.req.pooling) else {
            return;
        };
        let mut jobs = Vec::new();
        let mut n_tokens = 0;
        while let Some(j) = self.embeds.front() {
            let n: usize = j.req.inputs.iter().map(Vec::len).sum();
            if j.req.pooling != pooling
                || (!jobs.is_empty() && n_tokens + n > self.cfg.token_budget)
            {
                break;
            }
            n_tokens += n;
            jobs.extend(self.embeds.pop_front());
        }
        let result = if pooling == Pooling::Rank {
            let pairs: Vec<EncoderInput> = jobs
                .iter()
                .flat_map(|j| j.req.inputs.iter().zip(&j.req.n_first))
                .map(|(tokens, &n_first)| EncoderInput { tokens, n_first })
                .collect();
            self.model
                .rerank(&pairs)
                .map(|scores| scores.into_iter().map(|s| vec![s]).collect())
        } else {
            let inputs: Vec<&[u32]> = jobs
                .iter()
                .flat_map(|j| j.req.inputs.iter().map(Vec::as_slice))
                .collect();
            self.model.embed(&inputs, pooling)
        };
        self.metrics.steps_total.fetch_add(1, Relaxed);
        self.metrics
            .prompt_tokens_total
            .fetch_add(n_tokens as u64, Relaxed);
        self.metrics
            .batch_tokens_total
            .fetch_add(n_tokens as u64, Relaxed);
        match result {
            Ok(vectors) => {
                let mut vectors = vectors.into_iter();
                for j in jobs {
                    let mine = vectors.by_ref().take(j.req.inputs.len()).collect();
                    let _ = j.tx.send(Ok(mine));
                    self.metrics.requests_finished_stop.fetch_add(1, Relaxed);
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.tx.send(Err(EngineError::Model(e.to_string())));
                }
            }
        }
    }

    fn publish_gauges(&self) {
        let m = &self.metrics;
        m.requests_running.store(self.running.len() as u64, Relaxed);
        m.requests_waiting.store(self.waiting.len() as u64, Relaxed);
        m.kv_blocks_used.store(self.blocks.n_used() as u64, Relaxed);
        m.kv_blocks_cached
            .store(self.blocks.n_cached_free() as u64, Relaxed);
    }

    fn release(&mut self, seq: &mut Seq<'_>) {
        self.blocks.release(&seq.blocks);
        seq.blocks.clear();
        seq.block_hashes.clear();
        seq.n_computed = 0;
        seq.draft_computed = 0;
    }

    /// Frees the sequences whose client went away.
    fn drop_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].tx.is_closed() {
                let mut s = self.running.remove(i);
                self.release(&mut s);
                self.metrics.requests_cancelled.fetch_add(1, Relaxed);
            } else {
                i += 1;
            }
        }
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.tx.is_closed());
        let gone = before - self.waiting.len();
        self.metrics
            .requests_cancelled
            .fetch_add(gone as u64, Relaxed);
        // Waiting sequences hold no blocks except preempted ones, which were released.
    }

    /// Grows `seq`'s block table to hold `n_pos` positions, if the pool allows.
    fn reserve(
        blocks: &mut BlockManager,
        seq: &mut Seq<'_>,
        n_pos: usize,
        block_size: usize,
    ) -> bool {
        let need = n_pos.div_ceil(block_size).saturating_sub(seq.blocks.len());
        if need > blocks.n_free() {
            return false;
        }
        for _ in 0..need {
            seq.blocks.push(blocks.allocate().expect("checked above"));
        }
        true
    }

    /// How many drafts a decoding sequence may have, within `budget` tokens, its token
    /// limit and the context (a draft past either could never be used).
    fn n_drafts(&self, s: &Seq<'_>, budget: usize) -> usize {
        let Some(spec) = self.cfg.spec else { return 0 };
        let left = s.req.max_tokens.saturating_sub(s.n_generated() + 1);
        let room = self.cfg.n_ctx.saturating_sub(s.tokens.len() + 1);
        spec.n_draft.min(budget).min(left).min(room)
    }

    /// N-gram drafts for a decoding sequence.
    fn drafts(&self, s: &Seq<'_>, budget: usize) -> Vec<u32> {
        match self.cfg.spec {
            Some(spec) if spec.kind == SpecKind::Ngram => ngram_drafts(
                &s.tokens,
                self.n_drafts(s, budget),
                spec.ngram_max,
                spec.ngram_min,
            ),
            _ => Vec::new(),
        }
    }

    /// Draft-model drafts for every running sequence that is decoding (indexed like
    /// `running`; empty for the others): the draft model first catches up with the
    /// sequence's tokens, then decodes greedily, all sequences in one batch per token.
    /// Blocks for the drafts' positions are reserved here; a sequence that cannot get
    /// them has no drafts.
    fn draft_with_model(&mut self, budget: usize) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.running.len()];
        let Some((draft, _)) = &self.draft else {
            return out;
        };
        let draft: &Model = draft;
        let bs = self.cfg.block_size;
        // (running index, drafts wanted)
        let mut cands: Vec<(usize, usize)> = Vec::new();
        let mut left = budget;
        for i in 0..self.running.len() {
            let s = &self.running[i];
            if s.tokens.len() - s.n_computed != 1 || left < 2 {
                continue;
            }
            let k = self.n_drafts(s, left - 1);
            let n_pos = s.tokens.len() + k;
            if k > 0 && Self::reserve(&mut self.blocks, &mut self.running[i], n_pos, bs) {
                cands.push((i, k));
                left -= k + 1;
            }
        }
        let max_k = cands.iter().map(|c| c.1).max().unwrap_or(0);
        for j in 0..max_k {
            let mut batch = Batch::default();
            let mut rows = Vec::new();
            for &(i, k) in &cands {
                if j >= k {
                    continue;
                }
                let s = &self.running[i];
                let slot = batch.block_tables.len();
                batch.block_tables.push(s.blocks.clone());
                if j == 0 {
                    // Catch up: every token the draft has not seen, up to the pending one.
                    for p in s.draft_computed..s.tokens.len() {
                        batch.push(s.tokens[p], p, slot, p + 1 == s.tokens.len());
                    }
                } else {
                    batch.push(out[i][j - 1], s.tokens.len() + j - 1, slot, true);
                }
                rows.push(i);
            }
            let (_, kv) = self.draft.as_mut().expect("checked above");
            let logits = match draft.forward(&batch, kv) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("hearth: the draft model failed, continuing without drafts: {e}");
                    return vec![Vec::new(); self.running.len()];
                }
            };
            for (r, &i) in rows.iter().enumerate() {
                out[i].push(crate::sampler::argmax(logits.row(r)));
                let s = &mut self.running[i];
                s.draft_computed = s.tokens.len() + j;
            }
        }
        out
    }

    /// Starts a sequence that holds no blocks from the longest cached prefix of its
    /// tokens, leaving at least its last token to compute (its logits are needed).
    fn match_prefix(&mut self, s: &mut Seq<'_>) {
        let bs = self.cfg.block_size;
        let (blocks, hashes) = self
            .blocks
            .match_prefix(&s.tokens, (s.tokens.len() - 1) / bs);
        s.n_computed = blocks.len() * bs;
        s.blocks = blocks;
        s.block_hashes = hashes;
        if s.cached_tokens.is_none() {
            let cached = s.n_computed.min(s.req.prompt_ids.len());
            s.cached_tokens = Some(cached);
            if self.cfg.prefix_caching {
                self.metrics
                    .prefix_cache_queries_total
                    .fetch_add(s.req.prompt_ids.len() as u64, Relaxed);
                self.metrics
                    .prefix_cache_hits_total
                    .fetch_add(cached as u64, Relaxed);
            }
        }
    }

    /// Builds and runs one batch, then samples for every sequence that reached its end.
    fn step(&mut self) {
        let bs = self.cfg.block_size;
        let mut budget = self.cfg.token_budget;
        // (index into running, tokens scheduled, drafts among them)
        let mut plan: Vec<(usize, usize, Vec<u32>)> = Vec::new();
        let mut model_drafts = self.draft_with_model(budget);

        // Running sequences first, oldest first; preempt the youngest when blocks run out.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let take = (s.tokens.len() - s.n_computed).min(budget);
            let mut drafts = match model_drafts.get_mut(i) {
                Some(d) if take == 1 && !d.is_empty() => std::mem::take(d),
                _ if take == 1 => self.drafts(s, budget - 1),
                _ => Vec::new(),
            };
            if let Some(c) = self.running[i].req.constraint.as_mut() {
                // Drafts the grammar refuses would be rejected anyway: not worth a row.
                drafts.truncate(c.valid_prefix(&drafts));
            }
            let s = &self.running[i];
            let take = (s.tokens.len() - s.n_computed).min(budget) + drafts.len();
            let n_pos = s.n_computed + take;
            if Self::reserve(&mut self.blocks, &mut self.running[i], n_pos, bs) {
                plan.push((i, take, drafts));
                budget -= take;
                i += 1;
                continue;
            }
            // Out of blocks: preempt the youngest sequence (possibly this one).
            let mut victim = self.running.pop().expect("running is not empty");
            self.release(&mut victim);
            self.metrics.preemptions_total.fetch_add(1, Relaxed);
            self.waiting.push_front(victim);
        }

        // Then waiting ones, in order, while there is room, budget and blocks.
        while budget > 0 && self.running.len() < self.cfg.max_seqs {
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            self.match_prefix(&mut s);
            let take = (s.tokens.len() - s.n_computed).min(budget);
            let n_pos = s.n_computed + take;
            if !Self::reserve(&mut self.blocks, &mut s, n_pos, bs) {
                self.release(&mut s);
                self.waiting.push_front(s);
                break;
            }
            let now = Instant::now();
            if s.first_scheduled.is_none() {
                s.first_scheduled = Some(now);
                self.metrics
                    .queue_time
                    .observe((now - s.arrived).as_secs_f64());
            }
            self.running.push(s);
            plan.push((self.running.len() - 1, take, Vec::new()));
            budget -= take;
        }
        if plan.is_empty() {
            return;
        }

        let mut batch = Batch::default();
        for (slot, (i, take, drafts)) in plan.iter().enumerate() {
            let s = &self.running[*i];
            batch.block_tables.push(s.blocks.clone());
            let n_real = take - drafts.len();
            for p in s.n_computed..s.n_computed + n_real {
                batch.push(s.tokens[p], p, slot, p + 1 == s.tokens.len());
            }
            for (j, &d) in drafts.iter().enumerate() {
                batch.push(d, s.tokens.len() + j, slot, true);
            }
        }
        // The constrained sequences that sample this step: their first masks, in parallel.
        let sampling: Vec<usize> = plan
            .iter()
            .filter(|(i, take, drafts)| {
                let s = &self.running[*i];
                s.req.constraint.is_some() && s.n_computed + take - drafts.len() == s.tokens.len()
            })
            .map(|p| p.0)
            .collect();
        if !sampling.is_empty() {
            use rayon::prelude::*;
            self.running
                .par_iter_mut()
                .enumerate()
                .filter(|(i, _)| sampling.contains(i))
                .for_each(|(_, s)| {
                    if let Some(c) = s.req.constraint.as_mut() {
                        // An error here is reported when the sequence samples.
                        let _ = c.prepare();
                    }
                });
        }
        let logits = match self.model.forward(&batch, &mut self.kv) {
            Ok(l) => l,
            Err(e) => {
                // A bug, not bad input (requests are checked on arrival): fail the batch's
                // requests rather than the server.
                for &(i, _, _) in plan.iter().rev() {
                    let mut s = self.running.remove(i);
                    let _ = s.tx.send(Event::Error(EngineError::Model(e.to_string())));
                    self.release(&mut s);
                }
                return;
            }
        };
        self.metrics.steps_total.fetch_add(1, Relaxed);
        self.metrics
            .batch_tokens_total
            .fetch_add(batch.len() as u64, Relaxed);

        let mut out_row = 0;
        let mut finished = Vec::new();
        for (i, take, drafts) in &plan {
            let (i, take) = (*i, *take);
            let s = &mut self.running[i];
            let n_real = take - drafts.len();
            let prompt_part = s
                .req
                .prompt_ids
                .len()
                .saturating_sub(s.n_computed)
                .min(n_real);
            self.metrics
                .prompt_tokens_total
                .fetch_add(prompt_part as u64, Relaxed);
            s.n_computed += n_real;
            let n_out = if s.n_computed == s.tokens.len() {
                1 + drafts.len()
            } else {
                0
            };
            if n_out > 0 {
                // Sample at the last real token, then at each draft while the drafts
                // agree with what was sampled; the keys and values of agreed drafts stay.
                let mut done = None;
                for j in 0..=drafts.len() {
                    let row = logits.row(out_row + j);
                    done = sample_next(self.model, &self.metrics, &self.cfg, s, row);
                    if done.is_some()
                        || j == drafts.len()
                        || *s.tokens.last().expect("just sampled") != drafts[j]
                    {
                        break;
                    }
                    s.n_computed += 1;
                    s.accepted += 1;
                    self.metrics.spec_accepted_total.fetch_add(1, Relaxed);
                }
                s.drafted += drafts.len();
                s.draft_computed = s.draft_computed.min(s.n_computed);
                self.metrics
                    .spec_drafted_total
                    .fetch_add(drafts.len() as u64, Relaxed);
                if let Some(done) = done {
                    finished.push((i, done));
                }
            }
            out_row += n_out;
            // Register the blocks that are now full, for later requests to reuse.
            while (s.block_hashes.len() + 1) * bs <= s.n_computed {
                let b = s.block_hashes.len();
                let parent = s.block_hashes.last().copied().unwrap_or(self.blocks.seed());
                let h = self
                    .blocks
                    .register(s.blocks[b], parent, &s.tokens[b * bs..(b + 1) * bs]);
                s.block_hashes.push(h);
            }
        }
        for &(i, ref done) in finished.iter().rev() {
            let mut s = self.running.remove(i);
            self.finish(&mut s, done.clone());
        }
    }

    fn finish(&mut self, s: &mut Seq<'_>, (reason, text): (FinishReason, String)) {
        let now = Instant::now();
        let m = &self.metrics;
        match reason {
            FinishReason::Stop => m.requests_finished_stop.fetch_add(1, Relaxed),
            FinishReason::Length => m.requests_finished_length.fetch_add(1, Relaxed),
        };
        m.e2e_request_latency
            .observe((now - s.arrived).as_secs_f64());
        let scheduled = s.first_scheduled.unwrap_or(s.arrived);
        let first = s.first_token.unwrap_or(now);
        let cached = s.cached_tokens.unwrap_or(0);
        let timings = Timings {
            prompt_eval_count: s.req.prompt_ids.len() - cached,
            prompt_cached_count: cached,
            prompt_eval_duration: first - scheduled,
            eval_count: s.n_generated(),
            eval_duration: s.last_token.unwrap_or(now) - first,
            time_to_first_token: first - s.arrived,
            total_duration: now - s.arrived,
        };
        let summary = Summary {
            finish_reason: reason,
            prompt_tokens: s.req.prompt_ids.len(),
            cached_tokens: cached,
            drafted_tokens: s.drafted,
            accepted_tokens: s.accepted,
            completion_tokens: s.n_generated(),
            stop_string: s.stops.matched().map(str::to_string),
            timings,
            queue_duration: scheduled - s.arrived,
        };
        let _ = s.tx.send(Event::Done { text, summary });
        self.release(s);
    }
}

/// Samples `s`'s next token from `logits` and streams it. Returns the finish reason and
/// the held-back text when the sequence is done.
fn sample_next(
    model: &Model,
    metrics: &Metrics,
    cfg: &EngineConfig,
    s: &mut Seq<'_>,
    logits: &[f32],
) -> Option<(FinishReason, String)> {
    let tok = match s.req.constraint.as_mut() {
        None => s.sampler.sample(logits, &s.tokens),
        Some(c) => {
            let picked = c
                .mask()
                .map(|m| s.sampler.sample_masked(logits, &s.tokens, Some(m)));
            match picked.and_then(|t| c.commit(t).map(|()| t)) {
                Ok(t) => t,
                Err(e) => {
                    let _ = s.tx.send(Event::Error(e.into()));
                    return Some((FinishReason::Stop, String::new()));
                }
            }
        }
    };
    let now = Instant::now();
    match s.last_token {
        None => {
            s.first_token = Some(now);
            metrics
                .time_to_first_token
                .observe((now - s.arrived).as_secs_f64());
        }
        Some(t) => metrics.inter_token_latency.observe((now - t).as_secs_f64()),
    }
    s.last_token = Some(now);
    s.tokens.push(tok);
    metrics.generation_tokens_total.fetch_add(1, Relaxed);
    let logprob = s.req.logprobs.map(|n| token_logprob(logits, tok, n));

    if !s.req.ignore_eos && model.tokenizer.is_eog(tok) {
        let _ = s.tx.send(Event::Token {
            id: tok,
            text: String::new(),
            logprob,
        });
        return Some((FinishReason::Stop, String::new()));
    }
    let piece = s.decoder.push(tok);
    let (text, stopped) = match s.stops.push(&piece) {
        StopEvent::Text(t) => (t, false),
        StopEvent::Stop(t) => (t, true),
    };
    let _ = s.tx.send(Event::Token {
        id: tok,
        text,
        logprob,
    });
    if stopped {
        return Some((FinishReason::Stop, String::new()));
    }
    let complete = s.req.constraint.as_ref().is_some_and(Constraint::is_done);
    if complete || s.n_generated() >= s.req.max_tokens || s.tokens.len() >= cfg.n_ctx {
        // Release what the decoder and the stop matcher held back.
        let rest = match s.stops.push(&s.decoder.finish()) {
            StopEvent::Text(mut t) => {
                t.push_str(&s.stops.flush());
                t
            }
            StopEvent::Stop(t) => return Some((FinishReason::Stop, t)),
        };
        let reason = if complete {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        return Some((reason, rest));
    }
    None
}

/// The log-softmax of `tok` and of the `n_top` most likely tokens.
pub fn token_logprob(logits: &[f32], tok: u32, n_top: usize) -> TokenLogprob {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln();
    let lp = |i: usize| (logits[i] as f64 - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::new();
    if n_top > 0 {
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        let k = n_top.min(idx.len());
        idx.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
        idx.truncate(k);
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        top = idx.into_iter().map(|i| (i as u32, lp(i))).collect();
    }
    TokenLogprob {
        logprob: lp(tok as usize),
        top,
    }
}
