//! A naive f32 forward pass for the llama family: every weight dequantized to f32, one
//! token at a time, plain loops, an f32 KV cache. Slow and memory-hungry on purpose; it
//! is the oracle the fast path is tested against, not a way to serve.

use crate::error::Result;
use crate::tensor::QTensor;
use crate::{Model, ModelConfig};

/// A dense f32 matrix `[rows][cols]`.
struct Dense {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl Dense {
    fn load(m: &Model, name: &str, cols: usize, rows: usize) -> Result<Dense> {
        let t = QTensor::load(m.gguf(), name, [cols, rows])?;
        Ok(Dense { rows, cols, w: t.to_f32() })
    }

    /// `y = W x`
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        (0..self.rows)
            .map(|r| self.w[r * self.cols..(r + 1) * self.cols].iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    }
}

struct RefLayer {
    attn_norm: Vec<f32>,
    wq: Dense,
    wk: Dense,
    wv: Dense,
    wo: Dense,
    ffn_norm: Vec<f32>,
    gate: Dense,
    up: Dense,
    down: Dense,
}

/// The oracle model with its own growing f32 KV cache (one sequence).
pub struct ReferenceLlama {
    c: ModelConfig,
    embd: Dense,
    layers: Vec<RefLayer>,
    output_norm: Vec<f32>,
    output: Dense,
    /// `[n_layer][pos][n_embd_kv]`
    k_cache: Vec<Vec<Vec<f32>>>,
    /// `[n_layer][pos][n_embd_kv]`
    v_cache: Vec<Vec<Vec<f32>>>,
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / x.len() as f64;
    let s = 1.0 / ((ms as f32) + eps).sqrt();
    x.iter().zip(w).map(|(a, b)| a * s * b).collect()
}

fn rope(x: &mut [f32], head_dim: usize, n_rot: usize, pos: usize, base: f32) {
    for head in x.chunks_mut(head_dim) {
        for i in (0..n_rot).step_by(2) {
            let theta = pos as f64 * (base as f64).powf(-(i as f64) / n_rot as f64);
            let (s, c) = (theta.sin() as f32, theta.cos() as f32);
            let (a, b) = (head[i], head[i + 1]);
            head[i] = a * c - b * s;
            head[i + 1] = a * s + b * c;
        }
    }
}

impl ReferenceLlama {
    pub fn load(m: &Model) -> Result<ReferenceLlama> {
        let c = m.config.clone();
        let (e, nq, nkv) = (c.n_embd, c.n_head * c.head_dim, c.n_embd_kv());
        let vec = |name: &str| QTensor::load(m.gguf(), name, [e, 1]).map(|t| t.to_f32());
        let mut layers = Vec::new();
        for i in 0..c.n_layer {
            let d = |n: &str, cols, rows| Dense::load(m, &format!("blk.{i}.{n}.weight"), cols, rows);
            layers.push(RefLayer {
                attn_norm: vec(&format!("blk.{i}.attn_norm.weight"))?,
                wq: d("attn_q", e, nq)?,
                wk: d("attn_k", e, nkv)?,
                wv: d("attn_v", e, nkv)?,
                wo: d("attn_output", nq, e)?,
                ffn_norm: vec(&format!("blk.{i}.ffn_norm.weight"))?,
                gate: d("ffn_gate", e, c.n_ff)?,
                up: d("ffn_up", e, c.n_ff)?,
                down: d("ffn_down", c.n_ff, e)?,
            });
        }
        let output_name = if m.gguf().tensor("output.weight").is_some() { "output.weight" } else { "token_embd.weight" };
        Ok(ReferenceLlama {
            embd: Dense::load(m, "token_embd.weight", e, c.n_vocab)?,
            output: Dense::load(m, output_name, e, c.n_vocab)?,
            output_norm: vec("output_norm.weight")?,
            k_cache: vec![Vec::new(); c.n_layer],
            v_cache: vec![Vec::new(); c.n_layer],
            layers,
            c,
        })
    }

    /// Feeds the next token; returns its logits `[n_vocab]`.
    pub fn step(&mut self, token: u32) -> Vec<f32> {
        let c = &self.c;
        let pos = self.k_cache[0].len();
        let hd = c.head_dim;
        let mut x = self.embd.w[token as usize * c.n_embd..][..c.n_embd].to_vec();
        for (il, l) in self.layers.iter().enumerate() {
            let xn = rms_norm(&x, &l.attn_norm, c.rms_norm_eps);
            let mut q = l.wq.apply(&xn);
            let mut k = l.wk.apply(&xn);
            let v = l.wv.apply(&xn);
            rope(&mut q, hd, c.n_rot, pos, c.rope_freq_base);
            rope(&mut k, hd, c.n_rot, pos, c.rope_freq_base);
            self.k_cache[il].push(k);
            self.v_cache[il].push(v);
            let mut att = vec![0.0f32; c.n_head * hd];
            for h in 0..c.n_head {
                let kvh = h / (c.n_head / c.n_head_kv);
                let qh = &q[h * hd..(h + 1) * hd];
                let scores: Vec<f64> = self.k_cache[il]
                    .iter()
                    .map(|kp| qh.iter().zip(&kp[kvh * hd..(kvh + 1) * hd]).map(|(a, b)| (a * b) as f64).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for (p, e) in exps.iter().enumerate() {
                    let vp = &self.v_cache[il][p][kvh * hd..(kvh + 1) * hd];
                    for (o, vv) in att[h * hd..(h + 1) * hd].iter_mut().zip(vp) {
                        *o += (e / sum) as f32 * vv;
                    }
                }
            }
            for (a, b) in x.iter_mut().zip(l.wo.apply(&att)) {
                *a += b;
            }
            let xn = rms_norm(&x, &l.ffn_norm, c.rms_norm_eps);
            let g = l.gate.apply(&xn);
            let u = l.up.apply(&xn);
            let h: Vec<f32> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            for (a, b) in x.iter_mut().zip(l.down.apply(&h)) {
                *a += b;
            }
        }
        self.output.apply(&rms_norm(&x, &self.output_norm, c.rms_norm_eps))
    }
}
