//! A naive f32 forward pass for every architecture, driven by the same block descriptions
//! as the fast path ([`crate::decoder::Decoder`]): every weight dequantized to f32, one
//! token at a time, plain loops, exact functions (f64 RoPE angles and softmax, `tanh`
//! GELU, no tables), an f32 KV cache. Slow and memory-hungry on purpose; it is the oracle
//! the fast path is tested against, not a way to serve.

use crate::decoder::Decoder;
use crate::layers::ffn::{Activation, Ffn};
use crate::layers::norm::{Norm, NormKind};
use crate::layers::rope::{Rope, RopeKind};
use crate::tensor::QTensor;
use crate::{Model, ModelConfig};

/// A dense f32 matrix `[rows][cols]`.
struct Dense {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl Dense {
    fn new(t: &QTensor) -> Dense {
        Dense {
            rows: t.ne[1],
            cols: t.ne[0],
            w: t.to_f32(),
        }
    }

    /// `y = W x`
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        (0..self.rows)
            .map(|r| {
                self.w[r * self.cols..(r + 1) * self.cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }
}

struct RefLayer {
    wq: Dense,
    wk: Dense,
    wv: Dense,
    wo: Dense,
    gate: Dense,
    up: Dense,
    down: Dense,
}

/// The oracle model with its own growing f32 KV cache (one sequence).
pub struct ReferenceModel<'m> {
    d: &'m Decoder,
    embd: Dense,
    layers: Vec<RefLayer>,
    output: Dense,
    /// `[n_layer][pos][n_embd_kv]`
    k_cache: Vec<Vec<Vec<f32>>>,
    /// `[n_layer][pos][n_embd_kv]`
    v_cache: Vec<Vec<Vec<f32>>>,
}

fn norm(x: &[f32], n: &Norm) -> Vec<f32> {
    let w = n.n();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(w) {
        let len = w as f64;
        let (mean, var) = match n.kind {
            NormKind::Rms => (
                0.0,
                row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / len,
            ),
            NormKind::Layer => {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / len;
                (
                    mean,
                    row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len,
                )
            }
        };
        let s = 1.0 / (var + n.eps as f64).sqrt();
        for (i, &v) in row.iter().enumerate() {
            out.push(
                ((v as f64 - mean) * s) as f32 * n.weight[i]
                    + n.bias.as_ref().map_or(0.0, |b| b[i]),
            );
        }
    }
    out
}

fn rope(x: &mut [f32], head_dim: usize, r: &Rope, pos: usize) {
    let half = r.n_rot / 2;
    for head in x.chunks_mut(head_dim) {
        for i in 0..half {
            let ff = r.freq_factors.get(i).copied().unwrap_or(1.0) as f64;
            let extrap =
                pos as f64 * (r.freq_base as f64).powf(-2.0 * i as f64 / r.n_rot as f64) / ff;
            let interp = r.scale.freq_scale as f64 * extrap;
            let (mut theta, mut m) = (interp, r.scale.attn_factor as f64);
            if r.scale.ext_factor != 0.0 {
                let [lo, hi] = r.scale.corr_dims.map(f64::from);
                let ramp = (1.0 - ((i as f64 - lo) / (hi - lo).max(0.001)).clamp(0.0, 1.0))
                    * r.scale.ext_factor as f64;
                theta = interp * (1.0 - ramp) + extrap * ramp;
                m *= 1.0 + 0.1 * (1.0 / r.scale.freq_scale as f64).ln();
            }
            let (s, c) = ((theta.sin() * m) as f32, (theta.cos() * m) as f32);
            let (a, b) = match r.kind {
                RopeKind::Normal => (2 * i, 2 * i + 1),
                RopeKind::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

fn act(a: Activation, g: f32) -> f32 {
    let g = g as f64;
    (match a {
        Activation::Silu => g / (1.0 + (-g).exp()),
        Activation::GeluTanh => {
            0.5 * g
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * g * (1.0 + 0.044715 * g * g)).tanh())
        }
    }) as f32
}

impl<'m> ReferenceModel<'m> {
    pub fn load(m: &'m Model) -> ReferenceModel<'m> {
        let d = m.decoder();
        let layers = d
            .layers
            .iter()
            .map(|l| {
                let Ffn::Gated { gate, up, down, .. } = &l.ffn;
                RefLayer {
                    wq: Dense::new(&l.attn.wq),
                    wk: Dense::new(&l.attn.wk),
                    wv: Dense::new(&l.attn.wv),
                    wo: Dense::new(&l.attn.wo),
                    gate: Dense::new(gate),
                    up: Dense::new(up),
                    down: Dense::new(down),
                }
            })
            .collect();
        ReferenceModel {
            embd: Dense::new(&d.token_embd),
            output: Dense::new(&d.output_tensor),
            k_cache: vec![Vec::new(); d.layers.len()],
            v_cache: vec![Vec::new(); d.layers.len()],
            layers,
            d,
        }
    }

    fn c(&self) -> &ModelConfig {
        &self.d.c
    }

    /// Feeds the next token; returns its logits `[n_vocab]`.
    pub fn step(&mut self, token: u32) -> Vec<f32> {
        let n_embd = self.c().n_embd;
        let pos = self.k_cache[0].len();
        let mut x: Vec<f32> = self.embd.w[token as usize * n_embd..][..n_embd]
            .iter()
            .map(|v| v * self.d.embd_scale)
            .collect();
        for (il, (l, rl)) in self.d.layers.iter().zip(&self.layers).enumerate() {
            let a = &l.attn;
            let sh = &a.shape;
            let hd = sh.head_dim;
            let xn = norm(&x, &l.attn_norm);
            let (mut q, mut k, mut v) = (rl.wq.apply(&xn), rl.wk.apply(&xn), rl.wv.apply(&xn));
            if let Some([bq, bk, bv]) = &a.bias {
                for (x, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    x.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                }
            }
            if let Some(n) = &a.q_norm {
                q = norm(&q, n);
            }
            if let Some(n) = &a.k_norm {
                k = norm(&k, n);
            }
            rope(&mut q, hd, &self.d.ropes[a.rope], pos);
            rope(&mut k, hd, &self.d.ropes[a.rope], pos);
            q.iter_mut().for_each(|v| *v *= a.q_scale);
            self.k_cache[il].push(k);
            self.v_cache[il].push(v);
            let first = sh.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let mut att = vec![0.0f32; sh.n_head * hd];
            for h in 0..sh.n_head {
                let kvh = h / (sh.n_head / sh.n_head_kv);
                let qh = &q[h * hd..(h + 1) * hd];
                let scores: Vec<f64> = (first..=pos)
                    .map(|p| {
                        qh.iter()
                            .zip(&self.k_cache[il][p][kvh * hd..(kvh + 1) * hd])
                            .map(|(a, b)| (a * b) as f64)
                            .sum::<f64>()
                            * sh.kq_scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for (p, e) in (first..=pos).zip(&exps) {
                    let vp = &self.v_cache[il][p][kvh * hd..(kvh + 1) * hd];
                    for (o, vv) in att[h * hd..(h + 1) * hd].iter_mut().zip(vp) {
                        *o += (e / sum) as f32 * vv;
                    }
                }
            }
            let mut o = rl.wo.apply(&att);
            if let Some(n) = &l.post_attn_norm {
                o = norm(&o, n);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = norm(&x, &l.ffn_norm);
            let Ffn::Gated { act: kind, .. } = &l.ffn;
            let h: Vec<f32> = rl
                .gate
                .apply(&xn)
                .iter()
                .zip(rl.up.apply(&xn))
                .map(|(&g, u)| act(*kind, g) * u)
                .collect();
            let mut o = rl.down.apply(&h);
            if let Some(n) = &l.post_ffn_norm {
                o = norm(&o, n);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        self.output.apply(&norm(&x, &self.d.output_norm))
    }
}
