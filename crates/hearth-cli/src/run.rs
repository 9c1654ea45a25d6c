//! `hearth run`: one prompt, piped stdin, or an interactive chat (the chat itself is in
//! `chat.rs`; this file loads the model, starts the engine and runs one turn).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

use hearth_engine::{
    DraftModel, Engine, EngineConfig, Event, Grammar, Request, SamplingParams, SpecConfig, Summary,
};
use hearth_model::{ChatMessage, KvType, Model};

use crate::{models, Common};
use hearth_server::modelfile::Manifest;

// The interactive chat (chat.rs) is a child of this module: it shares the one-shot
// path's request and streaming code.
#[path = "chat.rs"]
mod chat;

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Model name or GGUF path [default: smollm2-135m-instruct, pulled on first use].
    #[arg(short, long)]
    pub model: Option<String>,
    /// The prompt; read from stdin when piped; an interactive chat when absent on a terminal.
    pub prompt: Option<String>,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this much probability (1 = all).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0 = none).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Divide the logits of recently seen tokens by this (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Tokens the repeat penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every token already present (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of tokens already present (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Random seed, for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when the output contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Context size in tokens [default: the model's, at most 4096].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Threads for the kernels [default: all cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// KV-cache type: q8_0, f16, f32 or q4_0 (the block types are read in place by
    /// attention). q8_0 halves f16's memory, is faster, and costs +0.2% perplexity; f16
    /// reproduces the reference engine's outputs token for token.
    #[arg(long, default_value = "q8_0")]
    pub kv_cache_type: KvType,
    /// Speculative decoding: `ngram` drafts tokens by looking up the text so far (pays off
    /// when the answer repeats parts of the prompt: summaries, edits, code).
    #[arg(long, value_parser = ["ngram"])]
    pub spec: Option<String>,
    /// Drafted tokens per step with --spec or --draft-model (verifying a batch costs about
    /// as much per token as prefill, so longer drafts stop paying off).
    #[arg(long, default_value_t = 5)]
    pub spec_draft: usize,
    /// Speculative decoding with a draft model (name or GGUF path) of the same vocabulary,
    /// e.g. a quantized copy of the model.
    #[arg(long)]
    pub draft_model: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// System message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// The answer is JSON valid against the JSON schema in this file.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// The answer follows the GBNF grammar (llama.cpp's syntax) in this file.
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
    /// Print timing statistics after the answer.
    #[arg(long)]
    pub verbose: bool,
    /// Print one JSON object (ids, text, finish reason, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

impl RunArgs {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: Vec::new(),
            seed: self.seed,
        }
    }
}

/// A created model's Modelfile (`hearth create`) as this run's defaults: each PARAMETER for
/// the option it names unless that option was given on the command line (`given`), its
/// SYSTEM unless `--system` was.
fn apply_created(a: &mut RunArgs, given: Option<&clap::ArgMatches>, m: &Manifest) -> Result<()> {
    use clap::parser::ValueSource;
    for (name, v) in &m.parameters {
        // The option's id (its field) where it is not the parameter's own name.
        let id = match name.as_str() {
            "temperature" => "temp",
            "num_predict" => "max_tokens",
            "num_ctx" => "ctx_size",
            other => other,
        };
        if given.and_then(|g| g.value_source(id)) == Some(ValueSource::CommandLine) {
            continue;
        }
        let bad = || {
            format!("the created model's PARAMETER {name} {v} is not a value `hearth run` takes")
        };
        let float = || v.as_f64().map(|f| f as f32).with_context(bad);
        let count = || {
            v.as_i64()
                .and_then(|i| usize::try_from(i).ok())
                .with_context(bad)
        };
        match name.as_str() {
            "temperature" => a.temp = float()?,
            "top_p" => a.top_p = float()?,
            "min_p" => a.min_p = float()?,
            "repeat_penalty" => a.repeat_penalty = float()?,
            "presence_penalty" => a.presence_penalty = float()?,
            "frequency_penalty" => a.frequency_penalty = float()?,
            "top_k" => a.top_k = count()?,
            "repeat_last_n" => a.repeat_last_n = count()?,
            "num_predict" => a.max_tokens = count()?,
            "num_ctx" => a.ctx_size = Some(count()?),
            "seed" => a.seed = Some(count()? as u64),
            "stop" => {
                a.stop = v
                    .as_array()
                    .with_context(bad)?
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            }
            _ => bail!(bad()),
        }
    }
    if a.system.is_none() {
        a.system = m.system.clone();
    }
    Ok(())
}

/// The result of one generation.
struct Generation {
    generated_ids: Vec<u32>,
    text: String,
    summary: Summary,
}

pub fn run(mut a: RunArgs, given: Option<&clap::ArgMatches>) -> Result<()> {
    let n_threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n_threads == 0 {
        bail!("--threads must be at least 1");
    }
    if a.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n_threads > cores {
        eprintln!("warning: --threads {n_threads} is more than the {cores} cores here; it will be slower, not faster");
    }
    let dir = a.common.dir();
    let created = a.model.as_deref().and_then(|m| models::created(m, &dir));
    let (path, template) = match &created {
        Some(manifest) => {
            let m = Manifest::read(manifest).map_err(|e| anyhow::anyhow!(e.0))?;
            apply_created(&mut a, given, &m)?;
            (m.gguf_path(manifest), m.template)
        }
        None => (models::resolve(a.model.as_deref(), &dir, true)?, None),
    };
    let t_load = Instant::now();
    let mut model =
        Model::load(&path).with_context(|| format!("cannot load model {}", path.display()))?;
    if let Some(t) = template {
        model.chat_template = Some(
            hearth_model::ChatTemplate::new(&t, &model.tokenizer)
                .with_context(|| "the created model's TEMPLATE does not compile")?,
        );
    }
    let model = Arc::new(model);
    let load_duration = t_load.elapsed();
    let sampling = a.sampling();
    sampling
        .validate(model.config.n_vocab)
        .map_err(anyhow::Error::msg)?;
    let n_ctx = a
        .ctx_size
        .unwrap_or_else(|| model.config.n_ctx_train.min(4096));
    if n_ctx == 0 {
        bail!("--ctx-size must be at least 1");
    }
    if n_ctx > model.config.n_ctx_train {
        eprintln!(
            "warning: --ctx-size {n_ctx} is beyond the {} tokens the model was trained on; expect worse answers past them",
            model.config.n_ctx_train
        );
    }
    // One sequence; the prefix cache keeps a chat's earlier turns, so each turn only runs
    // its new tokens.
    let mut cfg = EngineConfig::new(1, n_ctx, n_threads);
    cfg.kv_type = a.kv_cache_type;
    if (a.spec.is_some() || a.draft_model.is_some()) && a.spec_draft == 0 {
        bail!("--spec-draft must be at least 1");
    }
    if let Some(d) = &a.draft_model {
        if a.spec.is_some() {
            bail!("--spec ngram and --draft-model cannot be used together");
        }
        let path = models::resolve(Some(d), &a.common.dir(), true)?;
        let draft = Model::load(&path)
            .with_context(|| format!("cannot load draft model {}", path.display()))?;
        cfg.spec = Some(SpecConfig::draft(a.spec_draft));
        cfg.draft_model = Some(DraftModel(Arc::new(draft)));
    } else if a.spec.is_some() {
        cfg.spec = Some(SpecConfig::ngram(a.spec_draft));
    }
    let engine = Engine::start(model.clone(), cfg)?;

    let prompt = match &a.prompt {
        Some(p) => Some(p.clone()),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            Some(s)
        }
        None => None,
    };
    match prompt {
        Some(p) if p.trim().is_empty() => bail!("the prompt is empty"),
        Some(p) => {
            let messages = system_messages(&a, p);
            let ids = prompt_ids(&model, &a, &messages, None)?;
            let g = generate(&engine, &a, ids.clone(), sampling)?;
            report(&a, &ids, &g, load_duration);
        }
        None => chat::chat(&model, &engine, &a, &path, load_duration)?,
    }
    Ok(())
}

fn system_messages(a: &RunArgs, user: String) -> Vec<ChatMessage> {
    let mut m = Vec::new();
    if let Some(s) = &a.system {
        m.push(ChatMessage::new("system", s.clone()));
    }
    m.push(ChatMessage::new("user", user));
    m
}

/// The prompt's token ids: the chat template applied to `messages` (with `kwargs` as the
/// template's further variables), or with `--raw` (or a model without a template) the last
/// message's text as is.
fn prompt_ids(
    model: &Model,
    a: &RunArgs,
    messages: &[ChatMessage],
    kwargs: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<u32>> {
    let text = match (&model.chat_template, a.raw) {
        (Some(t), false) => t.render_with(messages, true, None, kwargs)?,
        _ => messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default(),
    };
    let ids = model.tokenizer.encode(&text, true, true);
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    Ok(ids)
}

/// The grammar of `--json-schema` or `--grammar`.
fn output_grammar(a: &RunArgs) -> Result<Option<Grammar>> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    if let Some(p) = &a.json_schema {
        let schema = serde_json::from_str(&read(p)?)
            .with_context(|| format!("{} is not JSON", p.display()))?;
        return Ok(Some(Grammar::JsonSchema(schema)));
    }
    Ok(a.grammar.as_ref().map(read).transpose()?.map(Grammar::Gbnf))
}

/// One answer to `ids`, streamed to stdout as it comes (unless `--json`).
fn generate(
    engine: &Engine,
    a: &RunArgs,
    ids: Vec<u32>,
    sampling: SamplingParams,
) -> Result<Generation> {
    let mut rx = submit(engine, a, ids, sampling)?;
    let mut answer = Answer::new(a);
    while let Some(ev) = rx.blocking_recv() {
        if let Some(g) = answer.take(ev)? {
            return Ok(g);
        }
    }
    bail!("the engine stopped")
}

/// Queues the request for `ids` with `a`'s options (token budget, stop strings, grammar);
/// its events arrive on the receiver, and dropping the receiver cancels it.
fn submit(
    engine: &Engine,
    a: &RunArgs,
    ids: Vec<u32>,
    sampling: SamplingParams,
) -> Result<UnboundedReceiver<Event>> {
    let n_ctx = engine.config.n_ctx;
    if ids.len() >= n_ctx {
        bail!(
            "the prompt has {} tokens, but the context holds {n_ctx} (raise --ctx-size)",
            ids.len()
        );
    }
    let max_tokens = a.max_tokens.min(n_ctx - ids.len());
    let constraint = match output_grammar(a)? {
        Some(g) => Some(
            engine
                .compile(&g)
                .context("the output grammar cannot be used")?,
        ),
        None => None,
    };
    let req = Request {
        prompt_ids: ids,
        max_tokens,
        sampling,
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
        logprobs: None,
        constraint,
    };
    Ok(engine.submit(req)?)
}

/// An answer as its events arrive: written to stdout token by token (unless `--json`) and
/// collected.
struct Answer {
    stream: bool,
    generated_ids: Vec<u32>,
    text: String,
}

impl Answer {
    fn new(a: &RunArgs) -> Answer {
        Answer {
            stream: !a.json,
            generated_ids: Vec::new(),
            text: String::new(),
        }
    }

    /// Takes the next event; at the last one, returns the whole generation.
    fn take(&mut self, ev: Event) -> Result<Option<Generation>> {
        match ev {
            Event::Token { id, text, .. } => {
                self.generated_ids.push(id);
                self.put(&text);
                Ok(None)
            }
            Event::Done { text, summary } => {
                self.put(&text);
                if self.stream {
                    println!();
                }
                Ok(Some(Generation {
                    generated_ids: std::mem::take(&mut self.generated_ids),
                    text: std::mem::take(&mut self.text),
                    summary,
                }))
            }
            Event::Error(e) => bail!(e),
        }
    }

    /// The text so far, of an answer stopped before its end.
    fn into_text(self) -> String {
        self.text
    }

    fn put(&mut self, t: &str) {
        if self.stream {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
        self.text.push_str(t);
    }
}

fn report(a: &RunArgs, prompt_ids: &[u32], g: &Generation, load: Duration) {
    let s = &g.summary;
    let t = &s.timings;
    if a.json {
        let v = serde_json::json!({
            "prompt_ids": prompt_ids,
            "generated_ids": g.generated_ids,
            "text": g.text,
            "finish_reason": s.finish_reason.as_str(),
            "timings": {
                "load_ms": ms(load),
                "prompt_n": t.prompt_eval_count,
                "prompt_cached_n": t.prompt_cached_count,
                "prompt_ms": ms(t.prompt_eval_duration),
                "prompt_per_second": t.prompt_tokens_per_second(),
                "predicted_n": t.eval_count,
                "predicted_ms": ms(t.eval_duration),
                "predicted_per_second": t.eval_tokens_per_second(),
                "ttft_ms": ms(t.time_to_first_token),
                "total_ms": ms(t.total_duration + load),
                "draft_n": s.drafted_tokens,
                "draft_accepted_n": s.accepted_tokens,
            }
        });
        println!("{v}");
    }
    if a.verbose {
        eprintln!();
        eprintln!("total duration:       {:?}", t.total_duration + load);
        eprintln!("load duration:        {load:?}");
        eprintln!("prompt eval count:    {} token(s)", t.prompt_eval_count);
        if t.prompt_cached_count > 0 {
            eprintln!("prompt cached count:  {} token(s)", t.prompt_cached_count);
        }
        eprintln!("prompt eval duration: {:?}", t.prompt_eval_duration);
        eprintln!(
            "prompt eval rate:     {:.2} tokens/s",
            t.prompt_tokens_per_second()
        );
        eprintln!("eval count:           {} token(s)", t.eval_count);
        eprintln!("eval duration:        {:?}", t.eval_duration);
        eprintln!(
            "eval rate:            {:.2} tokens/s",
            t.eval_tokens_per_second()
        );
        if s.drafted_tokens > 0 {
            eprintln!("draft tokens:         {}", s.drafted_tokens);
            eprintln!(
                "draft accepted:       {} ({:.1}%)",
                s.accepted_tokens,
                100.0 * s.accepted_tokens as f64 / s.drafted_tokens as f64
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
