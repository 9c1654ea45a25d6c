//! Hyperparameters read from GGUF metadata (`{arch}.*` keys).

use hearth_gguf::GgufFile;

use crate::error::{ModelError, Result};

/// The shape of a decoder-only transformer, as GGUF metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `general.architecture`, e.g. "llama".
    pub arch: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head dimension of queries and keys (`n_embd / n_head` unless the file says).
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    pub rope_freq_base: f32,
    pub rms_norm_eps: f32,
}

impl ModelConfig {
    /// Reads the hyperparameters of `file`, checking that they are consistent.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig> {
        let arch = file
            .get_str("general.architecture")
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?
            .to_string();
        if !crate::arch::SUPPORTED.contains(&arch.as_str()) {
            return Err(ModelError::UnknownArchitecture(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| -> Result<usize> {
            file.get_u64(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::MissingKey(key(k)))
        };
        let opt = |k: &str| file.get_u64(&key(k)).map(|v| v as usize);

        let n_embd = req("embedding_length")?;
        let n_head = req("attention.head_count")?;
        if n_head == 0 || n_embd == 0 {
            return Err(ModelError::BadHyperparameter("embedding_length and head_count must be positive".into()));
        }
        let n_head_kv = opt("attention.head_count_kv").unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::BadHyperparameter(format!(
                "head_count ({n_head}) must be a multiple of head_count_kv ({n_head_kv})"
            )));
        }
        let head_dim = opt("attention.key_length").unwrap_or(n_embd / n_head);
        let n_rot = opt("rope.dimension_count").unwrap_or(head_dim);
        if head_dim == 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadHyperparameter(format!(
                "rope dimension count {n_rot} does not fit head size {head_dim}"
            )));
        }
        let n_vocab = match opt("vocab_size") {
            Some(v) => v,
            None => file
                .get_str_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .ok_or_else(|| ModelError::MissingKey(key("vocab_size")))?,
        };
        Ok(ModelConfig {
            name: file.get_str("general.name").map(str::to_string),
            n_vocab,
            n_ctx_train: opt("context_length").unwrap_or(2048),
            n_embd,
            n_layer: req("block_count")?,
            n_ff: req("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_freq_base: file.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rms_norm_eps: file
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            arch,
        })
    }

    /// Width of one token's keys (or values) in one layer: `n_head_kv * head_dim`.
    pub fn n_embd_kv(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}
