//! OLMoE: the llama block with RMSNorm over the whole query and key vectors (not per
//! head), NeoX RoPE, and a mixture of experts whose weights are not renormalized.

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
            // A norm as wide as the whole projection normalizes it as one vector.
            attn.q_norm = Some(w.norm_of(&format!("{blk}.attn_q_norm"), c.n_head * c.head_dim)?);
            attn.k_norm = Some(w.norm_of(&format!("{blk}.attn_k_norm"), c.n_embd_kv())?);
            Ok(Block {
                attn_norm: w.norm(&format!("{blk}.attn_norm"))?,
                attn,
                post_attn_norm: None,
                ffn_norm: w.norm(&format!("{blk}.ffn_norm"))?,
                ffn: w.moe(il, Activation::Silu, false)?,
                post_ffn_norm: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
