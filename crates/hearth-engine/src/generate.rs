//! Generation for one sequence: prefill the prompt in batches, then decode token by token,
//! sampling, streaming text, and stopping at end-of-generation, a stop string or a limit.

use std::time::{Duration, Instant};

use hearth_model::{Batch, KvCache, Model, ModelError};

use crate::sampler::{Sampler, SamplingParams};
use crate::stop::{StopEvent, StopMatcher};

/// Largest number of prompt tokens run through the network in one batch.
pub const N_BATCH: usize = 512;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends when the text contains one of these (not included in the output).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Where the time went, in Ollama's terms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Prompt tokens run through the network (cached ones excluded).
    pub prompt_eval_count: usize,
    /// Prompt tokens whose keys and values were already in the cache.
    pub prompt_cached_count: usize,
    pub prompt_eval_duration: Duration,
    /// Generated tokens.
    pub eval_count: usize,
    /// From the end of the prompt to the last generated token.
    pub eval_duration: Duration,
    /// From the request to the first generated token.
    pub time_to_first_token: Duration,
    pub total_duration: Duration,
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        rate(self.prompt_eval_count, self.prompt_eval_duration)
    }
    pub fn eval_tokens_per_second(&self) -> f64 {
        rate(self.eval_count, self.eval_duration)
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// A sequence's KV cache and the tokens it holds, kept across turns so that a follow-up
/// prompt that extends the earlier conversation only runs its new tokens.
pub struct Session {
    pub kv: KvCache,
    /// Tokens whose keys and values are in `kv`, in order.
    pub tokens: Vec<u32>,
}

impl Session {
    pub fn new(model: &Model, n_ctx: usize, kv_type: hearth_model::KvType) -> Session {
        Session {
            kv: model.new_kv_cache(n_ctx, kv_type),
            tokens: Vec::new(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Runs `tokens` (appended after what the cache holds) and returns the logits of the
    /// last one, in batches of at most [`N_BATCH`].
    pub fn feed(&mut self, model: &Model, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx() {
            return Err(ModelError::ContextOverflow {
                needed,
                n_ctx: self.n_ctx(),
                n_ctx_train: model.config.n_ctx_train,
            });
        }
        let mut last = Vec::new();
        for chunk in tokens.chunks(N_BATCH) {
            let logits = model.forward(
                &Batch::contiguous(chunk, self.tokens.len(), false),
                &mut self.kv,
            )?;
            self.tokens.extend_from_slice(chunk);
            last = logits.last().to_vec();
        }
        Ok(last)
    }

    /// Generates a continuation of `req.prompt_ids`, calling `on_text` with each piece of
    /// text as soon as it is final. Reuses the cached prefix shared with earlier calls.
    pub fn generate(
        &mut self,
        model: &Model,
        req: &GenerateRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation, ModelError> {
        let t0 = Instant::now();
        let prompt = &req.prompt_ids;
        if prompt.is_empty() {
            return Err(ModelError::BadBatch("the prompt is empty".into()));
        }
        if prompt.len() > self.n_ctx() {
            return Err(ModelError::ContextOverflow {
                needed: prompt.len(),
                n_ctx: self.n_ctx(),
                n_ctx_train: model.config.n_ctx_train,
            });
        }

        // Reuse the longest cached prefix, but always run at least the last prompt token
        // to get its logits.
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let reuse = common.min(prompt.len() - 1);
        self.tokens.truncate(reuse);
        let mut logits = self.feed(model, &prompt[reuse..])?;
        let prefill_done = Instant::now();
        let mut timings = Timings {
            prompt_eval_count: prompt.len() - reuse,
            prompt_cached_count: reuse,
            prompt_eval_duration: prefill_done - t0,
            ..Default::default()
        };

        let mut sampler = Sampler::new(req.sampling.clone());
        let mut history = prompt.clone();
        let mut decoder = model.tokenizer.stream_decoder(false);
        let mut stops = StopMatcher::new(req.stop.clone());
        let mut generated = Vec::new();
        let mut text = String::new();
        let mut finish = FinishReason::Length;
        while generated.len() < req.max_tokens {
            let tok = sampler.sample(&logits, &history);
            if generated.is_empty() {
                timings.time_to_first_token = t0.elapsed();
            }
            generated.push(tok);
            history.push(tok);
            if !req.ignore_eos && model.tokenizer.is_eog(tok) {
                finish = FinishReason::Stop;
                break;
            }
            let piece = decoder.push(tok);
            match stops.push(&piece) {
                StopEvent::Text(t) => {
                    on_text(&t);
                    text.push_str(&t);
                }
                StopEvent::Stop(t) => {
                    on_text(&t);
                    text.push_str(&t);
                    finish = FinishReason::Stop;
                    break;
                }
            }
            if generated.len() == req.max_tokens || self.tokens.len() >= self.n_ctx() {
                break;
            }
            logits = self.feed(model, &[tok])?;
        }
        if finish == FinishReason::Length {
            let mut rest = stops.push(&decoder.finish());
            if let StopEvent::Text(t) = &mut rest {
                t.push_str(&stops.flush());
            }
            let (StopEvent::Text(t) | StopEvent::Stop(t)) = rest;
            on_text(&t);
            text.push_str(&t);
        }
        timings.eval_count = generated.len();
        timings.eval_duration = prefill_done.elapsed();
        timings.total_duration = t0.elapsed();
        Ok(Generation {
            generated_ids: generated,
            text,
            finish_reason: finish,
            timings,
        })
    }
}
