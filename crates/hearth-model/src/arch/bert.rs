//! BERT: an encoder with learned absolute positions, token-type (segment) embeddings,
//! biases on every projection, post-LayerNorm layers and a GELU FFN (sentence-embedding
//! models such as all-MiniLM-L6-v2). A cross-encoder (pooling `rank`, e.g.
//! ms-marco-MiniLM-L-6-v2) also has the classification head `cls` (optional: the pooler,
//! with tanh) and `cls.output` (the scores).

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::Weights;
use crate::encoder::{Encoder, EncoderBlock, Linear, RankHead};
use crate::error::{ModelError, Result};
use crate::tensor::QTensor;
use crate::ModelConfig;

pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Encoder> {
    let w = Weights::new(file, c);
    let (n_embd, n_ff) = (c.n_embd, c.n_ff);
    if c.n_head_kv != c.n_head || c.head_dim * c.n_head != n_embd {
        return Err(ModelError::BadHyperparameter(format!(
            "a BERT encoder needs {} heads of {} values filling embedding_length {n_embd}",
            c.n_head, c.head_dim
        )));
    }
    let linear = |name: &str, n_in: usize, n_out: usize| -> Result<Linear> {
        Ok(Linear {
            w: w.t(name, [n_in, n_out])?,
            b: w.vec(name, "bias", n_out)?,
        })
    };
    let norm = |name: &str| -> Result<_> {
        Ok(Encoder::layer_norm(
            c,
            w.vec(name, "weight", n_embd)?,
            w.vec(name, "bias", n_embd)?,
        ))
    };
    let (token_types, n_token_types) = match file.tensor("token_types.weight") {
        Some(t) => {
            let n_types = t.shape.get(1).copied().unwrap_or(1) as usize;
            let types = QTensor::load(file, "token_types.weight", [n_embd, n_types])?;
            (Some(types), n_types)
        }
        None => (None, 0),
    };
    // A bias is optional in llama.cpp's head; absent, it is zero.
    let head_linear = |name: &str, n_out: usize| -> Result<Linear> {
        Ok(Linear {
            w: w.t(name, [n_embd, n_out])?,
            b: if w.has(name, "bias") {
                w.vec(name, "bias", n_out)?
            } else {
                vec![0.0; n_out]
            },
        })
    };
    let head = if w.has("cls.output", "weight") {
        let n_out = file
            .tensor("cls.output.weight")
            .and_then(|t| t.shape.get(1).copied())
            .unwrap_or(1) as usize;
        let cls = if w.has("cls", "weight") {
            Some(head_linear("cls", n_embd)?)
        } else {
            None
        };
        Some(RankHead {
            cls,
            out: head_linear("cls.output", n_out)?,
        })
    } else {
        None
    };
    if c.pooling == Some(crate::Pooling::Rank) && head.is_none() {
        return Err(ModelError::BadHyperparameter(
            "pooling_type rank needs a classification head (cls.output), which the file \
             does not have"
                .into(),
        ));
    }
    let layers = (0..c.n_layer)
        .map(|il| {
            let blk = format!("blk.{il}");
            Ok(EncoderBlock {
                q: linear(&format!("{blk}.attn_q"), n_embd, n_embd)?,
                k: linear(&format!("{blk}.attn_k"), n_embd, n_embd)?,
                v: linear(&format!("{blk}.attn_v"), n_embd, n_embd)?,
                o: linear(&format!("{blk}.attn_output"), n_embd, n_embd)?,
                attn_norm: norm(&format!("{blk}.attn_output_norm"))?,
                up: linear(&format!("{blk}.ffn_up"), n_embd, n_ff)?,
                down: linear(&format!("{blk}.ffn_down"), n_ff, n_embd)?,
                out_norm: norm(&format!("{blk}.layer_output_norm"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Encoder {
        c: c.clone(),
        token_embd: w.t("token_embd", [n_embd, c.n_vocab])?,
        position_embd: w.t("position_embd", [n_embd, c.n_ctx_train])?,
        token_types,
        n_token_types,
        embd_norm: norm("token_embd_norm")?,
        layers,
        head,
    })
}
