//! OLMoE: the Qwen 3 block with RMSNorm over the whole query and key vectors (not per
//! head) and a mixture of experts whose weights are not renormalized.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::Decoder;
use crate::error::Result;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Decoder> {
    super::qwen3::load_qk_normed(file, c, [c.n_head * c.head_dim, c.n_embd_kv()], false)
}
