//! The engine: sampling, stop conditions, the single-sequence generation loop, and the
//! serving engine (continuous batching over a paged KV cache).

pub mod blocks;
pub mod constraint;
pub mod engine;
pub mod gbnf;
pub mod generate;
pub mod metrics;
pub mod sampler;
pub mod spec;
pub mod stop;

pub use constraint::{Constraint, Grammar, GrammarError};
pub use engine::{
    EmbedRequest, Embeddings, Engine, EngineConfig, EngineError, Event, Request, Summary,
    TokenLogprob,
};
pub use generate::{FinishReason, GenerateRequest, Generation, Session, Timings, N_BATCH};
pub use sampler::{Sampler, SamplingParams};
pub use spec::{DraftModel, SpecConfig, SpecKind};
pub use stop::{StopEvent, StopMatcher};
