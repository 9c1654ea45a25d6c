//! The engine: sampling, stop conditions and the generation loop over a model.

pub mod generate;
pub mod sampler;
pub mod stop;

pub use generate::{FinishReason, GenerateRequest, Generation, Session, Timings, N_BATCH};
pub use sampler::{Sampler, SamplingParams};
pub use stop::{StopEvent, StopMatcher};
