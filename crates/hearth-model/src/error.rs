use hearth_gguf::{GgmlType, GgufError};

use crate::tokenizer::TokenizerError;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("unknown model architecture '{0}' (supported: {supported})", supported = crate::arch::supported())]
    UnknownArchitecture(String),
    #[error("model file has no '{0}' metadata key")]
    MissingKey(String),
    #[error("invalid hyperparameter: {0}")]
    BadHyperparameter(String),
    #[error("model file has no tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {got:?}, expected {expected:?}")]
    BadShape {
        name: String,
        got: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor '{name}' has type {ggml_type}, which Hearth cannot compute with yet")]
    UnsupportedType { name: String, ggml_type: GgmlType },
    #[error("the prompt needs {needed} tokens of context but the context size is {n_ctx} (raise it with --ctx-size, up to the model's {n_ctx_train})")]
    ContextOverflow {
        needed: usize,
        n_ctx: usize,
        n_ctx_train: usize,
    },
    #[error("tensor '{0}' data is not 4-byte aligned")]
    Misaligned(String),
    #[error("invalid batch: {0}")]
    BadBatch(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the KV cache needs {} MiB, {}", bytes >> 20, match available {
        Some(a) => format!("but only {} MiB of memory is available (lower --kv-memory, --kv-blocks, --parallel or --ctx-size)", a >> 20),
        None => "which cannot be allocated".to_string(),
    })]
    OutOfMemory {
        bytes: usize,
        available: Option<usize>,
    },
    #[error("chat template: {0}")]
    Template(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
