//! Qwen 3: the llama block with per-head RMSNorm of queries and keys (QK-norm), no
//! biases, NeoX RoPE, explicit head size (128). Qwen 3 MoE (`qwen3moe`, Qwen3-30B-A3B) is
//! the same block with a mixture of experts, weights renormalized over the chosen ones.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Decoder, Weights};
use crate::error::Result;
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    load_qk_normed(file, c, [c.head_dim; 2], true)
}

/// The Qwen 3 block with query and key norms `widths` wide (a head's, or a whole
/// projection's, normalized as one vector) and, where the config has experts, their
/// weights renormalized where `norm_w` says.
pub(super) fn load_qk_normed(
    file: &Arc<GgufFile>,
    c: &ModelConfig,
    widths: [usize; 2],
    norm_w: bool,
) -> Result<Decoder> {
    let w = Weights::new(file, c);
    let rope = w.rope(RopeKind::Neox, c.rope_freq_base)?;
    let layers = (0..c.n_layer)
        .map(|il| {
            let blk = format!("blk.{il}");
            let mut attn = w.attention(il, w.attn_shape(None))?;
            attn.q_norm = Some(w.norm_of(&format!("{blk}.attn_q_norm"), widths[0])?);
            attn.k_norm = Some(w.norm_of(&format!("{blk}.attn_k_norm"), widths[1])?);
            w.block(il, attn, w.ffn(il, Activation::Silu, norm_w)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
