//! Rotary position embedding, described by data: the pairing, the rotated dimensions, the
//! base frequency (per layer where a model has two), Llama 3.1's per-pair frequency
//! factors and the context-scaling schemes.

use hearth_kernels::ops::{self, RopeScale};

use crate::team::par_each;

/// Which dimensions of a head form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeKind {
    /// `(x[2i], x[2i+1])`: llama.
    Normal,
    /// `(x[i], x[i + n_rot/2])`: GPT-NeoX, Qwen, Gemma, Phi-3.
    Neox,
}

/// One RoPE configuration; layers that share one share its angle table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub kind: RopeKind,
    /// Dimensions of each head that rotate (the first `n_rot`).
    pub n_rot: usize,
    pub freq_base: f32,
    /// `[n_rot / 2]`: divisors of each pair's frequency (`rope_freqs`), empty for none.
    pub freq_factors: Vec<f32>,
    pub scale: RopeScale,
}

impl Rope {
    /// Each position's `(cos, sin)` per pair, `[n][n_rot / 2]`: computed once per batch and
    /// shared by every layer and head that use this configuration.
    pub fn angles(&self, positions: &[u32]) -> Vec<(f32, f32)> {
        let n_pairs = self.n_rot / 2;
        let mut cs = vec![(0.0f32, 0.0f32); positions.len() * n_pairs];
        for (cs, &pos) in cs.chunks_exact_mut(n_pairs).zip(positions) {
            ops::rope_angles(
                pos,
                self.n_rot,
                self.freq_base,
                &self.freq_factors,
                &self.scale,
                cs,
            );
        }
        cs
    }

    /// Rotates each token's query row (`q`, `[n][n_q]`) and key row (`k`, `[n][n_kv]`) by its
    /// angles (`cs`, from [`Rope::angles`]), in one parallel section for a large batch.
    pub fn apply(
        &self,
        q: &mut [f32],
        n_q: usize,
        k: &mut [f32],
        n_kv: usize,
        cs: &[(f32, f32)],
        head_dim: usize,
    ) {
        let n_pairs = self.n_rot / 2;
        // (The rotations pick their ISA themselves.)
        let rotate = |q: &mut [f32], k: &mut [f32], cs: &[(f32, f32)]| {
            for ((q, k), cs) in q
                .chunks_exact_mut(n_q)
                .zip(k.chunks_exact_mut(n_kv))
                .zip(cs.chunks_exact(n_pairs))
            {
                match self.kind {
                    RopeKind::Normal => {
                        ops::rope_rotate(q, head_dim, cs);
                        ops::rope_rotate(k, head_dim, cs);
                    }
                    RopeKind::Neox => {
                        ops::rope_rotate_neox(q, head_dim, cs);
                        ops::rope_rotate_neox(k, head_dim, cs);
                    }
                }
            }
        };
        if q.len() / n_q < super::PAR_ROWS {
            rotate(q, k, cs);
        } else {
            let rows: Vec<_> = q
                .chunks_mut(4 * n_q)
                .zip(k.chunks_mut(4 * n_kv))
                .zip(cs.chunks(4 * n_pairs))
                .collect();
            par_each(rows, |((q4, k4), cs4)| rotate(q4, k4, cs4));
        }
    }
}
