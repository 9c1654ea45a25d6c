//! Hyperparameters read from GGUF metadata (`{arch}.*` keys).

use hearth_gguf::GgufFile;
use hearth_kernels::ops::RopeScale;

use crate::error::{ModelError, Result};

/// Largest `context_length` a file may claim (2^28 tokens); past it the metadata is
/// taken as corrupt rather than sized against.
pub const MAX_CONTEXT: usize = 1 << 28;

/// Most experts a mixture-of-experts layer may have.
pub const MAX_EXPERTS: usize = 512;

/// The shape of a transformer (a decoder, or an encoder such as BERT), as GGUF metadata
/// describes it.
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
    /// Base frequency of the sliding-window layers (`rope.freq_base_swa`), where a model
    /// gives them their own.
    pub rope_freq_base_swa: Option<f32>,
    /// `rope.scaling.type`: none, linear, yarn or llama3 (the last through `rope_freqs`).
    pub rope_scaling_type: Option<String>,
    /// The context scaling that `rope.scaling.*` asks for.
    pub rope_scale: RopeScale,
    /// `attention.sliding_window`: the window of the layers that use one, 0 for none.
    pub n_swa: usize,
    pub rms_norm_eps: f32,
    /// Mixture of experts: experts per layer (`expert_count`), 0 for a dense model.
    pub n_expert: usize,
    /// Experts each token runs (`expert_used_count`).
    pub n_expert_used: usize,
    /// Hidden width of each routed expert (`expert_feed_forward_length`, else `n_ff`).
    pub n_ff_exp: usize,
    /// Hidden width of the shared expert (`expert_shared_feed_forward_length`), 0 for none.
    pub n_ff_shexp: usize,
    /// `expert_weights_norm`, where the file says; else the architecture's default.
    pub expert_weights_norm: Option<bool>,
    /// `expert_weights_scale` (1 when absent or 0).
    pub expert_weights_scale: f32,
    /// `expert_gating_func`: 1 softmax, 2 sigmoid, where the file says.
    pub expert_gating_func: Option<u32>,
    /// LayerNorm's epsilon (`attention.layer_norm_epsilon`), for the models that use it.
    pub norm_eps: f32,
    /// `attention.causal`: false for an encoder, whose tokens see the whole input.
    pub causal: bool,
    /// `pooling_type`: how the file says to pool its hidden states into one vector.
    pub pooling: Option<Pooling>,
}

/// How token vectors become one vector per input (llama.cpp's `pooling_type` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Per-token vectors, no pooling (0).
    None,
    /// The mean over the input's tokens (1).
    Mean,
    /// The first token's vector, BERT's `[CLS]` (2).
    Cls,
    /// The last token's vector (3).
    Last,
    /// A cross-encoder's relevance score (4).
    Rank,
}

impl Pooling {
    /// From the GGUF number, if known.
    pub fn from_gguf(v: u64) -> Option<Pooling> {
        Some(match v {
            0 => Pooling::None,
            1 => Pooling::Mean,
            2 => Pooling::Cls,
            3 => Pooling::Last,
            4 => Pooling::Rank,
            _ => return None,
        })
    }

    /// From its name (`--pooling`), if known.
    pub fn from_name(name: &str) -> Option<Pooling> {
        Some(match name {
            "none" => Pooling::None,
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" => Pooling::Last,
            "rank" => Pooling::Rank,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Last => "last",
            Pooling::Rank => "rank",
        }
    }
}

impl ModelConfig {
    /// Reads the hyperparameters of `file`, checking that they are consistent.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig> {
        let arch = file
            .get_str("general.architecture")
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?
            .to_string();
        if crate::arch::find(&arch).is_none() {
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
            return Err(ModelError::BadHyperparameter(
                "embedding_length and head_count must be positive".into(),
            ));
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
        let n_ctx_train = opt("context_length").unwrap_or(2048);
        if n_ctx_train == 0 || n_ctx_train > MAX_CONTEXT {
            return Err(ModelError::BadHyperparameter(format!(
                "context_length {n_ctx_train} is outside 1..={MAX_CONTEXT}"
            )));
        }
        let n_layer = req("block_count")?;
        let n_ff = req("feed_forward_length")?;
        if n_layer == 0 || n_ff == 0 || n_vocab == 0 {
            return Err(ModelError::BadHyperparameter(
                "block_count, feed_forward_length and the vocabulary must be positive".into(),
            ));
        }
        // Every size computed from these (activations, KV rows) must fit in memory's
        // address space; the tensors themselves were checked by the reader.
        let widest = [n_embd, n_ff, n_vocab, n_head.saturating_mul(head_dim)]
            .into_iter()
            .max()
            .unwrap_or(0);
        if widest
            .checked_mul(n_ctx_train)
            .and_then(|v| v.checked_mul(n_layer.max(4)))
            .is_none_or(|v| v > (1 << 60))
        {
            return Err(ModelError::BadHyperparameter(format!(
                "sizes overflow: {n_layer} layers of width {widest} over {n_ctx_train} positions"
            )));
        }
        let n_swa = opt("attention.sliding_window").unwrap_or(0);
        if n_swa > n_ctx_train {
            return Err(ModelError::BadHyperparameter(format!(
                "sliding window {n_swa} is larger than the context length {n_ctx_train}"
            )));
        }
        let rope_freq_base = file.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0);
        let rope_scaling_type = file.get_str(&key("rope.scaling.type")).map(str::to_string);
        let factor = file.get_f32(&key("rope.scaling.factor")).unwrap_or(1.0);
        if !(factor.is_finite()
            && factor > 0.0
            && rope_freq_base.is_finite()
            && rope_freq_base > 1.0)
        {
            return Err(ModelError::BadHyperparameter(format!("rope base {rope_freq_base} and scaling factor {factor} must be positive (base above 1)")));
        }
        let rope_scale = match rope_scaling_type.as_deref() {
            None | Some("none") | Some("llama3") => RopeScale::NONE,
            Some("linear") => RopeScale {
                freq_scale: 1.0 / factor,
                ..RopeScale::NONE
            },
            Some("yarn") => {
                let n_ctx_orig = opt("rope.scaling.original_context_length").unwrap_or(n_ctx_train);
                let f = |k: &str, default: f32| file.get_f32(&key(k)).unwrap_or(default);
                RopeScale::yarn(
                    1.0 / factor,
                    n_rot,
                    n_ctx_orig,
                    rope_freq_base,
                    f("rope.scaling.yarn_beta_fast", 32.0),
                    f("rope.scaling.yarn_beta_slow", 1.0),
                    f("rope.scaling.yarn_attn_factor", 1.0),
                )
            }
            Some(other) => {
                return Err(ModelError::BadHyperparameter(format!(
                    "rope scaling type '{other}' is not supported (none, linear, yarn, llama3)"
                )))
            }
        };
        let n_expert = opt("expert_count").unwrap_or(0);
        let n_expert_used = opt("expert_used_count").unwrap_or(0);
        if n_expert > MAX_EXPERTS || (n_expert > 0 && !(1..=n_expert).contains(&n_expert_used)) {
            return Err(ModelError::BadHyperparameter(format!(
                "expert_count {n_expert} (at most {MAX_EXPERTS}) with expert_used_count {n_expert_used} (1 to expert_count)"
            )));
        }
        let n_ff_exp = opt("expert_feed_forward_length").unwrap_or(n_ff);
        let n_ff_shexp = opt("expert_shared_feed_forward_length").unwrap_or(0);
        if n_expert > 0 && (n_ff_exp == 0 || n_ff_exp.checked_mul(n_expert).is_none()) {
            return Err(ModelError::BadHyperparameter(format!(
                "expert_feed_forward_length {n_ff_exp} must be positive"
            )));
        }
        let expert_weights_scale = match file.get_f32(&key("expert_weights_scale")) {
            None => 1.0,
            Some(0.0) => 1.0,
            Some(v) if v.is_finite() => v,
            Some(v) => {
                return Err(ModelError::BadHyperparameter(format!(
                    "expert_weights_scale {v} is not finite"
                )))
            }
        };
        let expert_gating_func = opt("expert_gating_func").map(|v| v as u32);
        if let Some(g) = expert_gating_func.filter(|g| !(1..=2).contains(g)) {
            return Err(ModelError::BadHyperparameter(format!(
                "expert_gating_func {g} is not supported (1 softmax, 2 sigmoid)"
            )));
        }
        let pooling = match opt("pooling_type") {
            None => None,
            Some(v) => Some(Pooling::from_gguf(v as u64).ok_or_else(|| {
                ModelError::BadHyperparameter(format!(
                    "pooling_type {v} is not known (0 none, 1 mean, 2 cls, 3 last, 4 rank)"
                ))
            })?),
        };
        let norm_eps = file
            .get_f32(&key("attention.layer_norm_epsilon"))
            .unwrap_or(1e-5);
        if !(norm_eps.is_finite() && norm_eps >= 0.0) {
            return Err(ModelError::BadHyperparameter(format!(
                "layer_norm_epsilon {norm_eps} must be finite and not negative"
            )));
        }
        Ok(ModelConfig {
            norm_eps,
            causal: file.get_bool(&key("attention.causal")).unwrap_or(true),
            pooling,
            n_expert,
            n_expert_used,
            n_ff_exp,
            n_ff_shexp,
            expert_weights_norm: file.get_bool(&key("expert_weights_norm")),
            expert_weights_scale,
            expert_gating_func,
            name: file.get_str("general.name").map(str::to_string),
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_freq_base,
            rope_freq_base_swa: file.get_f32(&key("rope.freq_base_swa")),
            rope_scaling_type,
            rope_scale,
            n_swa,
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
