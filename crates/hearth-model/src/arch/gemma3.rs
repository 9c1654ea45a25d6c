//! Gemma 3: five sliding-window layers (local RoPE base, 10,000 by default) to each
//! global one (the file's base), RMSNorm before and after both attention and FFN,
//! QK-norm, GeGLU, NeoX RoPE, and embeddings scaled by `sqrt(n_embd)`.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Block, Decoder, Weights};
use crate::error::{ModelError, Result};
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

/// Every `SWA_PATTERN`-th layer is global; the others use the sliding window.
const SWA_PATTERN: usize = 6;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    let w = Weights::new(file, c);
    if c.n_swa == 0 {
        return Err(ModelError::MissingKey(
            "gemma3.attention.sliding_window".into(),
        ));
    }
    let global = w.rope(RopeKind::Neox, c.rope_freq_base)?;
    let mut local = w.rope(RopeKind::Neox, c.rope_freq_base_swa.unwrap_or(10_000.0))?;
    // The scaling applies to the global layers only.
    local.scale = hearth_kernels::ops::RopeScale::NONE;
    let layers = (0..c.n_layer)
        .map(|il| {
            let blk = format!("blk.{il}");
            let is_local = il % SWA_PATTERN < SWA_PATTERN - 1;
            let mut attn = w.attention(il, w.attn_shape(is_local.then_some(c.n_swa)))?;
            attn.q_norm = Some(w.norm_of(&format!("{blk}.attn_q_norm"), c.head_dim)?);
            attn.k_norm = Some(w.norm_of(&format!("{blk}.attn_k_norm"), c.head_dim)?);
            attn.rope = usize::from(is_local);
            // Queries are scaled before the scores: by `1 / sqrt(head_dim)`, except in the
            // 27B model (62 layers), which takes `1 / sqrt(n_embd / n_head)`.
            let per_head = if c.n_layer == 62 {
                c.n_embd / c.n_head
            } else {
                c.head_dim
            };
            attn.q_scale = 1.0 / (per_head as f32).sqrt();
            attn.shape.kq_scale = 1.0;
            Ok(Block {
                attn_norm: w.norm(&format!("{blk}.attn_norm"))?,
                attn,
                post_attn_norm: Some(w.norm(&format!("{blk}.post_attention_norm"))?),
                ffn_norm: w.norm(&format!("{blk}.ffn_norm"))?,
                ffn: w.gated_ffn(il, Activation::GeluTanh)?,
                post_ffn_norm: Some(w.norm(&format!("{blk}.post_ffw_norm"))?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, (c.n_embd as f32).sqrt(), vec![global, local], layers)
}
