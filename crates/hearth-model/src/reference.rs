//! A naive f32 forward pass for every architecture, driven by the same block descriptions
//! as the fast path ([`crate::decoder::Decoder`]): every weight dequantized to f32, one
//! token at a time, plain loops, exact functions (f64 RoPE angles and softmax, `tanh`
//! GELU, no tables), an f32 KV cache. Slow and memory-hungry on purpose; it is the oracle
//! the fast path is tested against, not a way to serve.

use crate::decoder::Decoder;
use crate::layers::ffn::{Activation, Ffn, GatedFfn};
use crate::layers::moe::{Gating, Moe};
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

/// A gated FFN's matrices: gate, up, down.
struct RefGated([Dense; 3]);

impl RefGated {
    fn new(f: &GatedFfn) -> RefGated {
        RefGated([Dense::new(&f.gate), Dense::new(&f.up), Dense::new(&f.down)])
    }

    fn apply(&self, a: Activation, x: &[f32]) -> Vec<f32> {
        let [gate, up, down] = &self.0;
        let h: Vec<f32> = gate
            .apply(x)
            .iter()
            .zip(up.apply(x))
            .map(|(&g, u)| act(a, g) * u)
            .collect();
        down.apply(&h)
    }
}

enum RefFfn {
    Gated(RefGated),
    /// Router, experts, and the shared expert with its gate.
    Moe(Dense, Vec<RefGated>, Option<(Dense, RefGated)>),
}

struct RefLayer {
    wq: Dense,
    wk: Dense,
    wv: Dense,
    wo: Dense,
    ffn: RefFfn,
}

/// The mixture of experts `m` (its matrices in `router`, `experts`, `shared`) on `x`:
/// exact softmax or sigmoid in f64, the top `n_used` weights, renormalized where `m` says.
fn moe(
    m: &Moe,
    router: &Dense,
    experts: &[RefGated],
    shared: &Option<(Dense, RefGated)>,
    x: &[f32],
) -> Vec<f32> {
    let logits: Vec<f64> = router.apply(x).iter().map(|&v| v as f64).collect();
    let probs: Vec<f64> = match m.gating {
        Gating::Softmax => {
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            logits.iter().map(|l| (l - max).exp() / sum).collect()
        }
        Gating::Sigmoid => logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect(),
    };
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let chosen = &order[..m.n_used];
    let sum: f64 = if m.norm_w {
        chosen.iter().map(|&e| probs[e]).sum()
    } else {
        1.0
    };
    let mut out = vec![0.0f32; x.len()];
    for &e in chosen {
        let w = probs[e] / sum * m.w_scale as f64;
        for (o, v) in out.iter_mut().zip(experts[e].apply(m.experts[e].act, x)) {
            *o += (w * v as f64) as f32;
        }
    }
    if let (Some((gate_inp, ffn)), Some(sh)) = (shared, &m.shared) {
        let g = gate_inp.apply(x)[0] as f64;
        let g = 1.0 / (1.0 + (-g).exp());
        for (o, v) in out.iter_mut().zip(ffn.apply(sh.ffn.act, x)) {
            *o += (g * v as f64) as f32;
        }
    }
    out
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
        let d = m.decoder().expect("the reference runs decoders");
        let layers = d
            .layers
            .iter()
            .map(|l| {
                let ffn = match &l.ffn {
                    Ffn::Gated(f) => RefFfn::Gated(RefGated::new(f)),
                    Ffn::Moe(m) => RefFfn::Moe(
                        Dense::new(&m.router),
                        m.experts.iter().map(RefGated::new).collect(),
                        m.shared
                            .as_ref()
                            .map(|s| (Dense::new(&s.gate_inp), RefGated::new(&s.ffn))),
                    ),
                };
                RefLayer {
                    wq: Dense::new(&l.attn.wq),
                    wk: Dense::new(&l.attn.wk),
                    wv: Dense::new(&l.attn.wv),
                    wo: Dense::new(&l.attn.wo),
                    ffn,
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
            let mut o = match (&l.ffn, &rl.ffn) {
                (Ffn::Gated(f), RefFfn::Gated(r)) => r.apply(f.act, &xn),
                (Ffn::Moe(m), RefFfn::Moe(router, experts, shared)) => {
                    moe(m, router, experts, shared, &xn)
                }
                _ => unreachable!("the oracle mirrors the decoder's blocks"),
            };
            if let Some(n) = &l.post_ffn_norm {
                o = norm(&o, n);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        self.output.apply(&norm(&x, &self.d.output_norm))
    }
}
