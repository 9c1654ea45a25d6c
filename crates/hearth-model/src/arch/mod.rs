//! One file per architecture; this registry maps `general.architecture` to its loader.
//! Adding an architecture is a new file here plus one line in [`load`].

mod llama;

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::error::{ModelError, Result};
use crate::{Batch, KvCache, Logits, ModelConfig};

/// Architectures Hearth can run, by their GGUF name.
pub const SUPPORTED: &[&str] = &["llama"];

/// A loaded network: the forward pass over a batch of tokens of one sequence.
pub trait Architecture: Send + Sync {
    /// Runs `batch` (already validated by [`crate::Model::forward`]), writing its keys and
    /// values into `kv`, and returns the logits of the rows that asked for them.
    fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Logits;
}

pub(crate) fn load(file: &Arc<GgufFile>, config: &ModelConfig) -> Result<Box<dyn Architecture>> {
    match config.arch.as_str() {
        // Llama 1/2/3, Mistral, SmolLM and other llama-shaped models share one graph.
        "llama" => Ok(Box::new(llama::Llama::load(file, config)?)),
        other => Err(ModelError::UnknownArchitecture(other.to_string())),
    }
}
