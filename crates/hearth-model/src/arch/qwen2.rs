//! Qwen 2 / 2.5: the llama block with biases on the query, key and value projections and
//! NeoX RoPE. Qwen 2 MoE (`qwen2moe`: Qwen1.5-MoE, Qwen2-57B-A14B) is the same block with
//! a mixture of experts, weights not renormalized, and a shared expert behind a sigmoid
//! gate.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Decoder, Weights};
use crate::error::Result;
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    let w = Weights::new(file, c);
    let rope = w.rope(RopeKind::Neox, c.rope_freq_base)?;
    let (n_q, n_kv) = (c.n_head * c.head_dim, c.n_embd_kv());
    let layers = (0..c.n_layer)
        .map(|il| {
            let blk = format!("blk.{il}");
            let mut attn = w.attention(il, w.attn_shape(None))?;
            attn.bias = Some([
                w.vec(&format!("{blk}.attn_q"), "bias", n_q)?,
                w.vec(&format!("{blk}.attn_k"), "bias", n_kv)?,
                w.vec(&format!("{blk}.attn_v"), "bias", n_kv)?,
            ]);
            w.block(il, attn, w.ffn(il, Activation::Silu, false)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
