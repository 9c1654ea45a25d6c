//! Phi-3 / Phi-4-mini: fused `attn_qkv` and fused `ffn_up` (gate, then up), NeoX RoPE,
//! queries scaled by `1 / sqrt(head_dim)` before the scores, SwiGLU.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Decoder, Weights};
use crate::error::{ModelError, Result};
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    let w = Weights::new(file, c);
    if w.has("rope_factors_long", "weight") || w.has("rope_factors_short", "weight") {
        return Err(ModelError::BadHyperparameter(
            "phi3 LongRoPE factors (rope_factors_long/short) are not supported yet".into(),
        ));
    }
    let rope = w.rope(RopeKind::Neox, c.rope_freq_base)?;
    let window = (c.n_swa > 0).then_some(c.n_swa);
    let layers = (0..c.n_layer)
        .map(|il| {
            let mut attn = w.attention(il, w.attn_shape(window))?;
            attn.q_scale = attn.shape.kq_scale;
            attn.shape.kq_scale = 1.0;
            w.block(il, attn, w.gated_ffn(il, Activation::Silu)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
