//! The llama family: RMSNorm, RoPE on adjacent pairs (with Llama 3.1's `rope_freqs`),
//! grouped-query attention, SwiGLU, tied or separate output weights. Llama 1/2/3.x,
//! Mistral, SmolLM; Mixtral, where `expert_count` gives it a mixture of experts (weights
//! renormalized over the chosen experts).

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::{Decoder, Weights};
use crate::error::Result;
use crate::layers::ffn::Activation;
use crate::layers::rope::RopeKind;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    let w = Weights::new(file, c);
    let rope = w.rope(RopeKind::Normal, c.rope_freq_base)?;
    let layers = (0..c.n_layer)
        .map(|il| {
            w.block(
                il,
                w.attention(il, w.attn_shape(None))?,
                w.ffn(il, Activation::Silu, true)?,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Decoder::new(&w, 1.0, vec![rope], layers)
}
