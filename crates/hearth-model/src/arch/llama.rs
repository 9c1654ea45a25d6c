//! The llama family: RMSNorm, RoPE (adjacent pairs), grouped-query attention, SwiGLU,
//! tied or separate output weights. Llama 1/2/3, Mistral, SmolLM.

use std::sync::Arc;

use hearth_gguf::GgufFile;
use hearth_kernels::attention::{self, KvElem};
use hearth_kernels::{ops, with_isa};
use rayon::prelude::*;

use crate::error::Result;
use crate::tensor::QTensor;
use crate::{Batch, KvCache, KvLayer, Logits, ModelConfig};

struct Layer {
    /// `[n_embd]`
    attn_norm: Vec<f32>,
    /// `[n_embd] -> [n_head * head_dim]`
    wq: QTensor,
    /// `[n_embd] -> [n_head_kv * head_dim]`
    wk: QTensor,
    /// `[n_embd] -> [n_head_kv * head_dim]`
    wv: QTensor,
    /// `[n_head * head_dim] -> [n_embd]`
    wo: QTensor,
    /// `[n_embd]`
    ffn_norm: Vec<f32>,
    /// `[n_embd] -> [n_ff]`
    ffn_gate: QTensor,
    /// `[n_embd] -> [n_ff]`
    ffn_up: QTensor,
    /// `[n_ff] -> [n_embd]`
    ffn_down: QTensor,
}

pub struct Llama {
    c: ModelConfig,
    /// `[n_vocab][n_embd]`
    token_embd: QTensor,
    layers: Vec<Layer>,
    /// `[n_embd]`
    output_norm: Vec<f32>,
    /// `[n_embd] -> [n_vocab]`; `token_embd` itself when the embedding is tied.
    output: QTensor,
}

impl Llama {
    pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Llama> {
        let t = |name: &str, ne: [usize; 2]| QTensor::load(file, name, ne);
        let (n_embd, n_q, n_kv) = (c.n_embd, c.n_head * c.head_dim, c.n_embd_kv());
        let token_embd = t("token_embd.weight", [n_embd, c.n_vocab])?;
        let layers = (0..c.n_layer)
            .map(|i| {
                let l = |n: &str, ne| t(&format!("blk.{i}.{n}.weight"), ne);
                Ok(Layer {
                    attn_norm: l("attn_norm", [n_embd, 1])?.to_f32(),
                    wq: l("attn_q", [n_embd, n_q])?,
                    wk: l("attn_k", [n_embd, n_kv])?,
                    wv: l("attn_v", [n_embd, n_kv])?,
                    wo: l("attn_output", [n_q, n_embd])?,
                    ffn_norm: l("ffn_norm", [n_embd, 1])?.to_f32(),
                    ffn_gate: l("ffn_gate", [n_embd, c.n_ff])?,
                    ffn_up: l("ffn_up", [n_embd, c.n_ff])?,
                    ffn_down: l("ffn_down", [c.n_ff, n_embd])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match file.tensor("output.weight") {
            Some(_) => t("output.weight", [n_embd, c.n_vocab])?,
            None => token_embd.clone(),
        };
        Ok(Llama {
            c: c.clone(),
            output_norm: t("output_norm.weight", [n_embd, 1])?.to_f32(),
            token_embd,
            layers,
            output,
        })
    }

    /// Causal grouped-query attention of each batch row over the cache (which already
    /// holds this batch's keys and values). `q: [n_tokens][n_head * head_dim]`.
    fn attention(&self, layer: usize, batch: &Batch, kv: &KvCache, q: &[f32], out: &mut [f32]) {
        let n_pos = batch.positions.iter().max().map_or(0, |&p| p as usize + 1);
        match kv.layer(layer, n_pos) {
            KvLayer::F16(k, v) => self.attend(batch, q, k, v, out),
            KvLayer::F32(k, v) => self.attend(batch, q, k, v, out),
        }
    }

    /// Every (token, head) pair of the batch against keys/values `[n_pos][n_embd_kv]`.
    fn attend<T: KvElem>(&self, batch: &Batch, q: &[f32], k: &[T], v: &[T], out: &mut [f32]) {
        let c = &self.c;
        let (hd, n_kv) = (c.head_dim, c.n_embd_kv());
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
            let (t, h) = (i / c.n_head, i % c.n_head);
            let qh = &q[i * hd..(i + 1) * hd];
            let len = batch.positions[t] as usize + 1;
            attention::attend_head(qh, k, v, n_kv, (h / group) * hd, len, scale, o);
        });
    }
}

impl super::Architecture for Llama {
    fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Logits {
        let c = &self.c;
        let n = batch.tokens.len();
        let (n_embd, n_q, n_kv) = (c.n_embd, c.n_head * c.head_dim, c.n_embd_kv());

        // Activations for the whole batch, row-major by token.
        let mut x = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut xn = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut q = vec![0.0f32; n * n_q]; // [n][n_head * head_dim]
        let mut k = vec![0.0f32; n * n_kv]; // [n][n_embd_kv]
        let mut v = vec![0.0f32; n * n_kv]; // [n][n_embd_kv]
        let mut attn = vec![0.0f32; n * n_q]; // [n][n_head * head_dim]
        let mut gate = vec![0.0f32; n * c.n_ff]; // [n][n_ff]
        let mut up = vec![0.0f32; n * c.n_ff]; // [n][n_ff]

        for (row, &tok) in x.chunks_exact_mut(n_embd).zip(&batch.tokens) {
            self.token_embd.dequantize_row(tok as usize, row);
        }

        for (il, l) in self.layers.iter().enumerate() {
            ops::rms_norm(&x, &l.attn_norm, c.rms_norm_eps, &mut xn);
            QTensor::matmul_many(&[&l.wq, &l.wk, &l.wv], &xn, &mut [&mut q, &mut k, &mut v]);
            for (t, &pos) in batch.positions.iter().enumerate() {
                with_isa(|| {
                    ops::rope_norm(&mut q[t * n_q..(t + 1) * n_q], c.head_dim, c.n_rot, pos, c.rope_freq_base);
                    ops::rope_norm(&mut k[t * n_kv..(t + 1) * n_kv], c.head_dim, c.n_rot, pos, c.rope_freq_base);
                });
                kv.store(il, pos as usize, &k[t * n_kv..(t + 1) * n_kv], &v[t * n_kv..(t + 1) * n_kv]);
            }
            self.attention(il, batch, kv, &q, &mut attn);
            l.wo.matmul(&attn, &mut xn);
            x.iter_mut().zip(&xn).for_each(|(a, b)| *a += b);

            ops::rms_norm(&x, &l.ffn_norm, c.rms_norm_eps, &mut xn);
            QTensor::matmul_many(&[&l.ffn_gate, &l.ffn_up], &xn, &mut [&mut gate, &mut up]);
            with_isa(|| ops::swiglu(&mut gate, &up));
            l.ffn_down.matmul(&gate, &mut xn);
            x.iter_mut().zip(&xn).for_each(|(a, b)| *a += b);
        }

        let rows: Vec<usize> = (0..n).filter(|&i| batch.output[i]).collect();
        let mut h = vec![0.0f32; rows.len() * n_embd];
        for (dst, &r) in h.chunks_exact_mut(n_embd).zip(&rows) {
            ops::rms_norm(&x[r * n_embd..(r + 1) * n_embd], &self.output_norm, c.rms_norm_eps, dst);
        }
        let mut data = vec![0.0f32; rows.len() * c.n_vocab];
        if !rows.is_empty() {
            self.output.matmul(&h, &mut data);
        }
        Logits { n_vocab: c.n_vocab, rows, data }
    }
}
