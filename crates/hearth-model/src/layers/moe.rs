//! A mixture-of-experts FFN: a router scores the experts per token, the top
//! `n_expert_used` run, and their outputs are summed with the router's weights (in the
//! router's order, best first). Optionally a shared expert that every token runs
//! (Qwen2-MoE), scaled by its own sigmoid gate.
//!
//! A batch runs expert by expert: each expert's tokens are gathered, so that its weights
//! are read once per step and multiplied against all of them with the GEMM tiles. A
//! token's arithmetic does not depend on which other tokens share its experts (a
//! product's rows are batch-invariant), so neither does its output.

use hearth_kernels::ops;

use super::ffn::{FfnScratch, GatedFfn};
use crate::tensor::QTensor;

/// How the router's logits become expert weights (`expert_gating_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    Sigmoid,
}

/// A gated FFN that every token runs beside the routed experts, its output multiplied by
/// `sigmoid(gate_inp · x)`.
pub struct SharedExpert {
    /// `[n_embd] -> [1]`: `ffn_gate_inp_shexp`.
    pub gate_inp: QTensor,
    pub ffn: GatedFfn,
}

/// A mixture-of-experts FFN.
pub struct Moe {
    /// `[n_embd] -> [n_expert]`: `ffn_gate_inp`.
    pub router: QTensor,
    /// `[n_expert]`: each a view of its slice of `ffn_{gate,up,down}_exps`.
    pub experts: Vec<GatedFfn>,
    /// Experts run per token (`expert_used_count`).
    pub n_used: usize,
    pub gating: Gating,
    /// Whether the chosen experts' weights are divided by their sum.
    pub norm_w: bool,
    /// Multiplies the chosen weights (`expert_weights_scale`); 1 for none.
    pub w_scale: f32,
    pub shared: Option<SharedExpert>,
}

impl Moe {
    /// Width of the scratch rows [`Moe::forward`] needs per token: each of its
    /// `n_used` experts' hidden rows, or the shared expert's.
    pub fn n_ff(&self) -> usize {
        let routed = self.n_used * self.experts[0].n_ff();
        routed.max(self.shared.as_ref().map_or(0, |s| s.ffn.n_ff()))
    }

    /// Each token's chosen experts and their weights, `[n][n_used]`, best first, for the
    /// rows of `xn` (`[n][n_embd]`).
    pub fn route(&self, xn: &[f32]) -> Vec<(usize, f32)> {
        let n_expert = self.experts.len();
        let mut probs = vec![0.0f32; xn.len() / self.router.ne[0] * n_expert];
        self.router.matmul(xn, &mut probs);
        let mut routes = Vec::with_capacity(probs.len() / n_expert * self.n_used);
        let mut order: Vec<usize> = Vec::with_capacity(n_expert);
        for row in probs.chunks_exact_mut(n_expert) {
            match self.gating {
                Gating::Softmax => softmax(row),
                Gating::Sigmoid => row.iter_mut().for_each(|v| *v = sigmoid(*v)),
            }
            order.clear();
            order.extend(0..n_expert);
            // Stable: equal weights keep the lower expert first.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let chosen = &order[..self.n_used];
            let sum = if self.norm_w {
                // The sum in f64, rounded once; at least f16's smallest normal.
                (chosen.iter().map(|&e| f64::from(row[e])).sum::<f64>() as f32).max(6.103_515_6e-5)
            } else {
                1.0
            };
            routes.extend(chosen.iter().map(|&e| {
                let w = if self.norm_w { row[e] / sum } else { row[e] };
                (
                    e,
                    if self.w_scale != 1.0 {
                        w * self.w_scale
                    } else {
                        w
                    },
                )
            }));
        }
        routes
    }

    /// `xn = moe(xn)` for the batch (`[n][n_embd]`); `s` holds `n` rows of
    /// [`Moe::n_ff`].
    pub fn forward(&self, xn: &mut [f32], s: &mut FfnScratch) {
        let n_embd = self.router.ne[0];
        let (n, k) = (xn.len() / n_embd, self.n_used);
        let routes = self.route(xn);

        // The experts that run, each with its slots (`t * k + j`: token `t`'s `j`-th
        // choice) in token order; their rows grouped by expert in that order.
        let mut by_expert: Vec<Vec<usize>> = vec![Vec::new(); self.experts.len()];
        for (slot, &(e, _)) in routes.iter().enumerate() {
            by_expert[e].push(slot);
        }
        let active: Vec<usize> = (0..self.experts.len())
            .filter(|&e| !by_expert[e].is_empty())
            .collect();
        let tokens: Vec<Vec<usize>> = active
            .iter()
            .map(|&e| by_expert[e].iter().map(|slot| slot / k).collect())
            .collect();
        // Each slot's row in the grouped order.
        let mut row_of = vec![0usize; n * k];
        let mut grouped: Vec<Vec<usize>> = Vec::with_capacity(active.len());
        let mut next = 0;
        for &e in &active {
            let rows: Vec<usize> = (next..next + by_expert[e].len()).collect();
            for (&slot, &r) in by_expert[e].iter().zip(&rows) {
                row_of[slot] = r;
            }
            next += rows.len();
            grouped.push(rows);
        }

        // Gate and up of every expert against its tokens, in one section; the activation
        // over all rows; then every down against its expert's hidden rows.
        let n_ff = self.experts[0].n_ff();
        let (gate, up) = (&mut s.gate[..n * k * n_ff], &mut s.up[..n * k * n_ff]);
        {
            let lens = tokens.iter().map(|t| t.len() * n_ff);
            let mut outs: Vec<&mut [f32]> = split_rows(&mut *gate, lens.clone())
                .into_iter()
                .zip(split_rows(&mut *up, lens))
                .flat_map(|(g, u)| [g, u])
                .collect();
            let ws: Vec<&QTensor> = active
                .iter()
                .flat_map(|&e| [&self.experts[e].gate, &self.experts[e].up])
                .collect();
            let rows: Vec<&[usize]> = tokens.iter().flat_map(|t| [&t[..], &t[..]]).collect();
            QTensor::matmul_gather(&ws, xn, &rows, &mut outs);
        }
        self.experts[0].act.apply(gate, up, n_ff);
        // (Kept in the scratch between layers; every element is written by the products,
        // so nothing is zeroed. Taken out while the shared expert uses the scratch.)
        let mut ye = std::mem::take(&mut s.experts_out);
        ye.resize(n * k * n_embd, 0.0);
        {
            let ws: Vec<&QTensor> = active.iter().map(|&e| &self.experts[e].down).collect();
            let rows: Vec<&[usize]> = grouped.iter().map(Vec::as_slice).collect();
            let mut outs = split_rows(&mut ye, grouped.iter().map(|r| r.len() * n_embd));
            QTensor::matmul_gather(&ws, gate, &rows, &mut outs);
        }

        // The shared expert reads the same input, before `xn` is overwritten.
        let shared = self.shared.as_ref().map(|sh| {
            let mut out = vec![0.0f32; n * n_embd];
            sh.ffn.hidden(xn, s);
            sh.ffn.down.matmul(&s.gate[..n * sh.ffn.n_ff()], &mut out);
            let mut gate = vec![0.0f32; n];
            sh.gate_inp.matmul(xn, &mut gate);
            (out, gate)
        });

        // Each token: its choices' outputs times their weights, summed in the router's
        // order (each product rounded, then added), then the shared expert.
        for (t, out) in xn.chunks_exact_mut(n_embd).enumerate() {
            for j in 0..k {
                let (slot, w) = (t * k + j, routes[t * k + j].1);
                let y = &ye[row_of[slot] * n_embd..][..n_embd];
                if j == 0 {
                    out.iter_mut().zip(y).for_each(|(o, &v)| *o = v * w);
                } else {
                    out.iter_mut().zip(y).for_each(|(o, &v)| *o += v * w);
                }
            }
            if let Some((sh, gate)) = &shared {
                // sigmoid(g) as silu(g) / g, in the reference engine's order.
                let g = gate[t];
                let g = g / (1.0 + ops::expf(-g)) / g;
                for (o, &v) in out.iter_mut().zip(&sh[t * n_embd..(t + 1) * n_embd]) {
                    *o += v * g;
                }
            }
        }
        s.experts_out = ye;
    }
}

/// `buf` cut into consecutive parts of the given lengths.
fn split_rows(mut buf: &mut [f32], lens: impl Iterator<Item = usize>) -> Vec<&mut [f32]> {
    lens.map(|len| {
        let (part, rest) = std::mem::take(&mut buf).split_at_mut(len);
        buf = rest;
        part
    })
    .collect()
}

/// `1 / (1 + e^-x)`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + ops::expf(-x))
}

/// In-place softmax of one row of router logits: `e^(x - max)` (sixteen-lane blocks by
/// [`ops::expf_poly`], the rest by [`ops::expf`], as the reference engine's AVX-512 path
/// does), summed in f64 (each block's lanes first, pairwise), then times `1 / sum`.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let mut blocks = row.chunks_exact_mut(16);
    for b in &mut blocks {
        let mut lanes = [0.0f32; 16];
        for (l, v) in lanes.iter_mut().zip(b.iter_mut()) {
            *v = ops::expf_poly(*v - max);
            *l = *v;
        }
        let mut w = 16;
        while w > 1 {
            w /= 2;
            for i in 0..w {
                lanes[i] += lanes[i + w];
            }
        }
        sum += f64::from(lanes[0]);
    }
    for v in blocks.into_remainder() {
        *v = ops::expf(*v - max);
        sum += f64::from(*v);
    }
    let scale = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= scale);
}
