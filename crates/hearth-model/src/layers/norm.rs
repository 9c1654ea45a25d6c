//! Normalization layers: RMSNorm and LayerNorm, with or without bias.

use hearth_kernels::ops;

use super::{for_chunks, for_chunks_mut};

/// A normalization over the last dimension of each row.
#[derive(Debug, Clone)]
pub struct Norm {
    pub kind: NormKind,
    /// `[n]`: the scale.
    pub weight: Vec<f32>,
    /// `[n]`: LayerNorm's shift, if it has one.
    pub bias: Option<Vec<f32>>,
    pub eps: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / sqrt(mean(x^2) + eps) * w`.
    Rms,
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    Layer,
}

impl Norm {
    pub fn rms(weight: Vec<f32>, eps: f32) -> Norm {
        Norm {
            kind: NormKind::Rms,
            weight,
            bias: None,
            eps,
        }
    }

    /// Width of a normalized row (a row of `x` may hold several, e.g. one per head).
    pub fn n(&self) -> usize {
        self.weight.len()
    }

    /// `y = norm(x)`, each `self.n()`-wide row of `x` on its own (under `with_isa` when
    /// called through [`Norm::rows`]).
    #[inline(always)]
    pub fn apply(&self, x: &[f32], y: &mut [f32]) {
        match self.kind {
            NormKind::Rms => ops::rms_norm(x, &self.weight, self.eps, y),
            NormKind::Layer => layer_norm(x, &self.weight, self.bias.as_deref(), self.eps, y),
        }
    }

    /// `y = norm(x)` for rows of `x` (`[n_tokens][d]`, `d` a multiple of `self.n()`), in
    /// parallel for a large batch.
    pub fn rows(&self, x: &[f32], y: &mut [f32], d: usize) {
        for_chunks(y, d, x, d, |y, x| self.apply(x, y));
    }

    /// `x` normalized in place (per-head QK-norm: rows of `d`, heads of `self.n()`), one
    /// scratch row per parallel task.
    pub fn rows_in_place(&self, x: &mut [f32], d: usize) {
        super::each_chunk(x, d, |rows| {
            let mut t = vec![0.0f32; self.n()];
            for head in rows.chunks_exact_mut(self.n()) {
                self.apply(head, &mut t);
                head.copy_from_slice(&t);
            }
        });
    }

    /// The residual step and this norm in one pass over each row: `x += d`, then
    /// `d = norm(x)` (the same arithmetic as the two apart).
    pub fn add_then(&self, x: &mut [f32], d: &mut [f32]) {
        let n = self.n();
        for_chunks_mut(x, d, n, |x, d| match self.kind {
            NormKind::Rms => ops::add_rms_norm(x, d, &self.weight, self.eps),
            NormKind::Layer => {
                x.iter_mut().zip(d.iter()).for_each(|(a, b)| *a += b);
                layer_norm(x, &self.weight, self.bias.as_deref(), self.eps, d);
            }
        });
    }
}

/// LayerNorm of each `w.len()`-wide row: mean and variance summed in f64, in element order.
#[inline(always)]
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, y: &mut [f32]) {
    let n = w.len();
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let mean = (xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32;
        let var = xr
            .iter()
            .map(|&v| ((v - mean) * (v - mean)) as f64)
            .sum::<f64>()
            / n as f64;
        let scale = 1.0 / (var as f32 + eps).sqrt();
        for (i, (yv, &xv)) in yr.iter_mut().zip(xr).enumerate() {
            *yv = (xv - mean) * scale * w[i] + b.map_or(0.0, |b| b[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_centres_scales_and_shifts() {
        let x = [1.0f32, 2.0, 3.0, 6.0, -1.0, 0.0, 1.0, 4.0];
        let (w, b) = ([2.0f32; 4], [0.5f32, -0.5, 0.0, 1.0]);
        let mut y = [0.0f32; 8];
        layer_norm(&x, &w, Some(&b), 0.0, &mut y);
        for (xr, yr) in x.chunks(4).zip(y.chunks(4)) {
            let mean = xr.iter().sum::<f32>() / 4.0;
            let sd = (xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0).sqrt();
            for i in 0..4 {
                let want = (xr[i] - mean) / sd * w[i] + b[i];
                assert!((yr[i] - want).abs() < 1e-5, "{} vs {want}", yr[i]);
            }
        }
        // The fused residual step is the two apart.
        let norm = Norm {
            kind: NormKind::Layer,
            weight: w.to_vec(),
            bias: Some(b.to_vec()),
            eps: 0.0,
        };
        let (mut xa, mut d) = (x.to_vec(), vec![0.25f32; 8]);
        norm.add_then(&mut xa, &mut d);
        let added: Vec<f32> = x.iter().map(|v| v + 0.25).collect();
        let mut apart = vec![0.0f32; 8];
        layer_norm(&added, &w, Some(&b), 0.0, &mut apart);
        assert_eq!(d, apart);
    }
}
