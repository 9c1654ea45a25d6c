//! Qwen 3: the llama block with per-head RMSNorm of queries and keys (QK-norm), no
//! biases, NeoX RoPE, explicit head size (128). Qwen 3 MoE (`qwen3moe`, Qwen3-30B-A3B) is
//! the same block with a mixture of experts, weights renormalized over the chosen ones.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Block, Decoder, Weights};
use crate::error::Result;
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    let w = Weights::new(file, c);
    let rope = w.rope(RopeKind::Neox, c.rope_freq_base)?;
    let layers = (0..c.n_layer)
        .map(|il| {
            let blk = format!("blk.{il}");
            let mut attn = w.attention(il, w.attn_shape(None))?;
            attn.q_norm = Some(w.norm_of(&format!("{blk}.attn_q_norm"), c.head_dim)?);
            attn.k_norm = Some(w.norm_of(&format!("{blk}.attn_k_norm"), c.head_dim)?);
            Ok(Block {
                attn_norm: w.norm(&format!("{blk}.attn_norm"))?,
                attn,
                post_attn_norm: None,
                ffn_norm: w.norm(&format!("{blk}.ffn_norm"))?,
                ffn: w.ffn(il, Activation::Silu, true)?,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
