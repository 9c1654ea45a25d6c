//! The decoder-only transformer every architecture builds: embeddings, then per layer
//! `x += post_norm(attention(norm(x)))` and `x += post_norm(ffn(norm(x)))` (the post-norms
//! only where a model has them), then the output norm and the output layer. An
//! architecture file (`arch/`) names the tensors and chooses the blocks' options; this
//! file runs them.

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::error::{ModelError, Result};
use crate::layers::attention::{Attention, AttnScratch, AttnShape};
use crate::layers::ffn::{Activation, Ffn, FfnScratch, GatedFfn};
use crate::layers::for_rows;
use crate::layers::moe::{Gating, Moe, SharedExpert};
use crate::layers::norm::Norm;
use crate::layers::rope::{Rope, RopeKind};
use crate::output::OutputWeights;
use crate::tensor::QTensor;
use crate::{Batch, KvCache, Logits, ModelConfig};

/// One transformer layer.
pub struct Block {
    /// `[n_embd]`
    pub attn_norm: Norm,
    pub attn: Attention,
    /// `[n_embd]`: Gemma's norm of the attention output before the residual add.
    pub post_attn_norm: Option<Norm>,
    /// `[n_embd]`
    pub ffn_norm: Norm,
    pub ffn: Ffn,
    /// `[n_embd]`: Gemma's norm of the FFN output before the residual add.
    pub post_ffn_norm: Option<Norm>,
}

/// A loaded decoder: its blocks, described by data.
pub struct Decoder {
    pub c: ModelConfig,
    /// `[n_vocab][n_embd]`
    pub token_embd: QTensor,
    /// Multiplies each embedding row (Gemma's `sqrt(n_embd)`); 1 for none.
    pub embd_scale: f32,
    /// The RoPE configurations the layers use (`Attention::rope` indexes this).
    pub ropes: Vec<Rope>,
    pub layers: Vec<Block>,
    /// `[n_embd]`
    pub output_norm: Norm,
    /// `[n_embd] -> [n_vocab]`: `output.weight`, or `token_embd` itself when tied.
    pub output_tensor: QTensor,
    /// `output_tensor` in the layout its product reads.
    output: OutputWeights,
}

impl Decoder {
    pub fn new(
        w: &Weights,
        embd_scale: f32,
        ropes: Vec<Rope>,
        layers: Vec<Block>,
    ) -> Result<Decoder> {
        let c = w.c.clone();
        let token_embd = w.t("token_embd", [c.n_embd, c.n_vocab])?;
        let output_tensor = match w.file.tensor("output.weight") {
            Some(_) => w.t("output", [c.n_embd, c.n_vocab])?,
            None => token_embd.clone(),
        };
        Ok(Decoder {
            output_norm: w.norm("output_norm")?,
            output: OutputWeights::new(output_tensor.clone()),
            output_tensor,
            token_embd,
            embd_scale,
            ropes,
            layers,
            c,
        })
    }

    /// Runs `batch` (already validated by [`crate::Model::forward`]), writing its keys and
    /// values into `kv`, and returns the logits of the rows that asked for them.
    pub fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Logits {
        let c = &self.c;
        let (rows, h) = self.hidden(batch, kv);
        let mut data = vec![0.0f32; rows.len() * c.n_vocab];
        if !rows.is_empty() {
            self.output.matmul(&h, &mut data);
        }
        Logits {
            n_vocab: c.n_vocab,
            rows,
            data,
        }
    }

    /// Runs `batch` as [`Decoder::forward`] does, up to the output norm: the batch rows
    /// that asked for output and their final hidden states, `[rows.len()][n_embd]` (a
    /// decoder's embeddings).
    pub fn hidden(&self, batch: &Batch, kv: &mut KvCache) -> (Vec<usize>, Vec<f32>) {
        let c = &self.c;
        let n = batch.tokens.len();
        let n_embd = c.n_embd;

        // Activations for the whole batch, row-major by token.
        let mut x = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut xn = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut attn = AttnScratch::new(n, &self.layers[0].attn.shape);
        let n_ff = self.layers.iter().map(|l| l.ffn.n_ff()).max().unwrap_or(0);
        let mut ffn = FfnScratch::new(n, n_ff);

        for (row, &tok) in x.chunks_exact_mut(n_embd).zip(&batch.tokens) {
            self.token_embd.dequantize_row(tok as usize, row);
            if self.embd_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= self.embd_scale);
            }
        }
        // Each position's rotation angles per RoPE configuration, `[n][n_rot / 2]`: the
        // same for every layer and head that share it.
        let angles: Vec<Vec<(f32, f32)>> = self
            .ropes
            .iter()
            .map(|r| r.angles(&batch.positions))
            .collect();

        // Each token's KV cache slot: (block, row).
        let bs = kv.block_size();
        let slots: Vec<(usize, usize)> = (0..n)
            .map(|t| {
                let pos = batch.positions[t] as usize;
                (
                    batch.block_tables[batch.seq[t] as usize][pos / bs] as usize,
                    pos % bs,
                )
            })
            .collect();

        // Each residual add runs with the next norm in one pass (the first layer's norm
        // and the last add stand alone).
        if let Some(first) = self.layers.first() {
            first.attn_norm.rows(&x, &mut xn, n_embd);
        }
        for (il, l) in self.layers.iter().enumerate() {
            let rope = l.attn.rope;
            l.attn.forward(
                il,
                batch,
                kv,
                &slots,
                &self.ropes[rope],
                &angles[rope],
                &mut xn,
                &mut attn,
            );
            if let Some(norm) = &l.post_attn_norm {
                norm.rows_in_place(&mut xn, n_embd);
            }
            l.ffn_norm.add_then(&mut x, &mut xn);
            l.ffn.forward(&mut xn, &mut ffn);
            if let Some(norm) = &l.post_ffn_norm {
                norm.rows_in_place(&mut xn, n_embd);
            }
            match self.layers.get(il + 1) {
                Some(next) => next.attn_norm.add_then(&mut x, &mut xn),
                None => for_rows(&mut x, n_embd, &xn, n_embd, |x, y| {
                    x.iter_mut().zip(y).for_each(|(a, b)| *a += b)
                }),
            }
        }

        let rows: Vec<usize> = (0..n).filter(|&i| batch.output[i]).collect();
        let mut h = vec![0.0f32; rows.len() * n_embd];
        for (dst, &r) in h.chunks_exact_mut(n_embd).zip(&rows) {
            self.output_norm
                .apply(&x[r * n_embd..(r + 1) * n_embd], dst);
        }
        (rows, h)
    }
}

/// Looks up a model's tensors by their GGUF names, checking each one's shape: what an
/// architecture file uses to fill in the blocks.
pub struct Weights<'a> {
    pub file: &'a Arc<GgufFile>,
    pub c: &'a ModelConfig,
}

impl<'a> Weights<'a> {
    pub fn new(file: &'a Arc<GgufFile>, c: &'a ModelConfig) -> Weights<'a> {
        Weights { file, c }
    }

    /// The config's attention shape, scores scaled by `1 / sqrt(head_dim)`.
    pub fn attn_shape(&self, window: Option<usize>) -> AttnShape {
        let c = self.c;
        AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            kq_scale: 1.0 / (c.head_dim as f32).sqrt(),
            window,
        }
    }

    /// The config's RoPE with `kind` pairing at base `freq_base`, with the file's
    /// `rope_freqs` and rope scaling.
    pub fn rope(&self, kind: RopeKind, freq_base: f32) -> Result<Rope> {
        Ok(Rope {
            kind,
            n_rot: self.c.n_rot,
            freq_base,
            freq_factors: self.rope_freqs()?,
            scale: self.c.rope_scale,
        })
    }

    /// Tensor `{name}.weight`, `[ne0, ne1]`.
    pub fn t(&self, name: &str, ne: [usize; 2]) -> Result<QTensor> {
        QTensor::load(self.file, &format!("{name}.weight"), ne)
    }

    /// A 1-D f32 vector `{name}.{suffix}` of `n` values.
    pub fn vec(&self, name: &str, suffix: &str, n: usize) -> Result<Vec<f32>> {
        QTensor::load(self.file, &format!("{name}.{suffix}"), [n, 1]).map(|t| t.to_f32())
    }

    /// Whether tensor `{name}.{suffix}` exists.
    pub fn has(&self, name: &str, suffix: &str) -> bool {
        self.file.tensor(&format!("{name}.{suffix}")).is_some()
    }

    /// The RMSNorm `{name}.weight` over `n_embd`.
    pub fn norm(&self, name: &str) -> Result<Norm> {
        self.norm_of(name, self.c.n_embd)
    }

    /// The RMSNorm `{name}.weight` over `n` values.
    pub fn norm_of(&self, name: &str, n: usize) -> Result<Norm> {
        Ok(Norm::rms(self.vec(name, "weight", n)?, self.c.rms_norm_eps))
    }

    /// Llama 3.1's per-pair frequency factors (`rope_freqs.weight`, `[n_rot / 2]`), empty
    /// when the file has none; required when the file's rope scaling says `llama3`.
    pub fn rope_freqs(&self) -> Result<Vec<f32>> {
        if self.has("rope_freqs", "weight") {
            return self.vec("rope_freqs", "weight", self.c.n_rot / 2);
        }
        if self.c.rope_scaling_type.as_deref() == Some("llama3") {
            return Err(ModelError::MissingTensor(
                "rope_freqs.weight (rope scaling type llama3 needs it)".into(),
            ));
        }
        Ok(Vec::new())
    }

    /// The attention of layer `il` from separate `attn_q`, `attn_k`, `attn_v` (or a fused
    /// `attn_qkv`, split into views) and `attn_output`, with no options set.
    pub fn attention(&self, il: usize, shape: AttnShape) -> Result<Attention> {
        let (n_embd, n_q, n_kv) = (
            self.c.n_embd,
            shape.n_head * shape.head_dim,
            shape.n_head_kv * shape.head_dim,
        );
        let blk = format!("blk.{il}");
        let t = |name: &str, ne| self.t(&format!("{blk}.{name}"), ne);
        let (wq, wk, wv) = if self.has(&format!("{blk}.attn_qkv"), "weight") {
            let qkv = t("attn_qkv", [n_embd, n_q + 2 * n_kv])?;
            (
                qkv.rows(0, n_q)?,
                qkv.rows(n_q, n_q + n_kv)?,
                qkv.rows(n_q + n_kv, n_q + 2 * n_kv)?,
            )
        } else {
            (
                t("attn_q", [n_embd, n_q])?,
                t("attn_k", [n_embd, n_kv])?,
                t("attn_v", [n_embd, n_kv])?,
            )
        };
        Ok(Attention {
            wq,
            wk,
            wv,
            wo: t("attn_output", [n_q, n_embd])?,
            bias: None,
            q_norm: None,
            k_norm: None,
            q_scale: 1.0,
            rope: 0,
            shape,
        })
    }

    /// Layer `il`'s gated FFN from `ffn_gate`, `ffn_up`, `ffn_down`, or from a fused
    /// `ffn_up` holding gate then up (`[n_embd] -> [2 * n_ff]`, split into views).
    pub fn gated_ffn(&self, il: usize, act: Activation) -> Result<Ffn> {
        let (n_embd, n_ff) = (self.c.n_embd, self.c.n_ff);
        let blk = format!("blk.{il}");
        let t = |name: &str, ne| self.t(&format!("{blk}.{name}"), ne);
        let (gate, up) = if self.has(&format!("{blk}.ffn_gate"), "weight") {
            (t("ffn_gate", [n_embd, n_ff])?, t("ffn_up", [n_embd, n_ff])?)
        } else {
            let fused = t("ffn_up", [n_embd, 2 * n_ff])?;
            (fused.rows(0, n_ff)?, fused.rows(n_ff, 2 * n_ff)?)
        };
        Ok(Ffn::Gated(GatedFfn {
            act,
            gate,
            up,
            down: t("ffn_down", [n_ff, n_embd])?,
        }))
    }

    /// Layer `il`'s mixture of experts: the router `ffn_gate_inp`, the experts' slices of
    /// `ffn_{gate,up,down}_exps`, and a shared expert (`ffn_*_shexp`, with its gate
    /// `ffn_gate_inp_shexp`) where the config gives it a width. The chosen weights are
    /// renormalized where the file's `expert_weights_norm` says, else where `norm_w`
    /// (the architecture's default) does; the gating is the file's, else softmax.
    pub fn moe(&self, il: usize, act: Activation, norm_w: bool) -> Result<Ffn> {
        let c = self.c;
        let (n_embd, n_ff, n_expert) = (c.n_embd, c.n_ff_exp, c.n_expert);
        let blk = format!("blk.{il}");
        let exps = |name: &str, ne| {
            QTensor::load_experts(self.file, &format!("{blk}.{name}.weight"), ne, n_expert)
        };
        let gates = exps("ffn_gate_exps", [n_embd, n_ff])?;
        let ups = exps("ffn_up_exps", [n_embd, n_ff])?;
        let downs = exps("ffn_down_exps", [n_ff, n_embd])?;
        let experts = gates
            .into_iter()
            .zip(ups)
            .zip(downs)
            .map(|((gate, up), down)| GatedFfn {
                act,
                gate,
                up,
                down,
            })
            .collect();
        let shared = if c.n_ff_shexp > 0 {
            let t = |name: &str, ne| self.t(&format!("{blk}.{name}"), ne);
            let n_ff = c.n_ff_shexp;
            Some(SharedExpert {
                gate_inp: t("ffn_gate_inp_shexp", [n_embd, 1])?,
                ffn: GatedFfn {
                    act,
                    gate: t("ffn_gate_shexp", [n_embd, n_ff])?,
                    up: t("ffn_up_shexp", [n_embd, n_ff])?,
                    down: t("ffn_down_shexp", [n_ff, n_embd])?,
                },
            })
        } else {
            None
        };
        // (The config admits only these two.)
        let gating = match c.expert_gating_func {
            Some(2) => Gating::Sigmoid,
            _ => Gating::Softmax,
        };
        Ok(Ffn::Moe(Moe {
            router: self.t(&format!("{blk}.ffn_gate_inp"), [n_embd, n_expert])?,
            experts,
            n_used: c.n_expert_used,
            gating,
            norm_w: c.expert_weights_norm.unwrap_or(norm_w),
            w_scale: c.expert_weights_scale,
            shared,
        }))
    }

    /// Layer `il` with the usual pre-norms (`attn_norm`, `ffn_norm`) and no post-norms.
    pub fn block(&self, il: usize, attn: Attention, ffn: Ffn) -> Result<Block> {
        Ok(Block {
            attn_norm: self.norm(&format!("blk.{il}.attn_norm"))?,
            attn,
            post_attn_norm: None,
            ffn_norm: self.norm(&format!("blk.{il}.ffn_norm"))?,
            ffn,
            post_ffn_norm: None,
        })
    }

    /// Layer `il`'s FFN: the mixture of experts where the config has experts (see
    /// [`Weights::moe`]), else the dense gated FFN.
    pub fn ffn(&self, il: usize, act: Activation, norm_w: bool) -> Result<Ffn> {
        if self.c.n_expert > 0 {
            self.moe(il, act, norm_w)
        } else {
            self.gated_ffn(il, act)
        }
    }
}
