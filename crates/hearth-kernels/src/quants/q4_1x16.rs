//! `Q4_1` weight rows sixteen at a time: the same product as [`BlockQ4_1`]'s, bit for bit
//! (the scalar twin is [`crate::vec_dot_q4_1_q8_1_ref`]), in a layout where a 512-bit
//! register holds one of the twin's eight lanes for sixteen rows.
//!
//! The twin keeps eight f32 lanes per output; lane `l` takes the exact sum of the four
//! products of elements `4l..4l+4` of each block, scaled by `d_w * d_a` in one FMA. With
//! rows side by side, one `vpdpbusd` makes lane `l`'s sums for sixteen rows, and the
//! scale `d_w * d_a` is one register for all eight lanes of the sixteen rows: per block
//! and token, eight sums, eight conversions, eight FMAs and one multiply. With two rows
//! per register (the plain layout's kernel) each sum needs its own multiply of the
//! scales, and each row pair its own unpacking and scale shuffles.

use half::f16;

use super::legacy::{BlockQ4_1, QK4_1};
use super::q8::BlockQ8_1;
use crate::{IntoGemmOut, WeightBlock};

/// Rows per [`BlockQ4_1x16`].
pub const Q4_1X16_ROWS: usize = 16;

/// Block `b` of sixteen `Q4_1` rows: `qs[64 c + 4 r + j]` is row `r`'s nibble byte
/// `4 c + j` (`c < 4`, `j < 4`): its low nibble is element `4 c + j`, its high nibble
/// element `16 + 4 c + j`. So 64 bytes hold lanes `c` (low nibbles) and `c + 4` (high
/// nibbles) of every row.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1x16 {
    /// `[16]`: each row's scale.
    pub d: [f16; Q4_1X16_ROWS],
    /// `[16]`: each row's minimum.
    pub m: [f16; Q4_1X16_ROWS],
    /// `[4][16][4]`: byte groups, rows, bytes.
    pub qs: [u8; Q4_1X16_ROWS * QK4_1 / 2],
}
const _: () = assert!(
    core::mem::size_of::<BlockQ4_1x16>() == Q4_1X16_ROWS * core::mem::size_of::<BlockQ4_1>()
);

/// Interleaves `Q4_1` rows of `nb` blocks, sixteen at a time: block `b` of rows `16 i..16
/// i + 16` goes to element `i * nb + b`. The number of rows must be a multiple of 16.
pub fn interleave_q4_1x16(rows: &[BlockQ4_1], nb: usize) -> Vec<BlockQ4_1x16> {
    assert!(
        nb > 0 && rows.len().is_multiple_of(nb * Q4_1X16_ROWS),
        "interleave_q4_1x16: rows are not whole groups of 16"
    );
    let mut out = Vec::with_capacity(rows.len() / Q4_1X16_ROWS);
    for group in rows.chunks_exact(nb * Q4_1X16_ROWS) {
        for b in 0..nb {
            let mut x = BlockQ4_1x16 {
                d: [f16::ZERO; Q4_1X16_ROWS],
                m: [f16::ZERO; Q4_1X16_ROWS],
                qs: [0; Q4_1X16_ROWS * QK4_1 / 2],
            };
            for r in 0..Q4_1X16_ROWS {
                let blk = &group[r * nb + b];
                (x.d[r], x.m[r]) = (blk.d, blk.m);
                for (i, &q) in blk.qs.iter().enumerate() {
                    x.qs[64 * (i / 4) + 4 * r + i % 4] = q;
                }
            }
            out.push(x);
        }
    }
    out
}

/// Row `r` (`< 16`) of the group of `nb` blocks `g`, back in the plain layout.
fn row_of(g: &[BlockQ4_1x16], r: usize) -> Vec<BlockQ4_1> {
    g.iter()
        .map(|x| BlockQ4_1 {
            d: x.d[r],
            m: x.m[r],
            qs: std::array::from_fn(|i| x.qs[64 * (i / 4) + 4 * r + i % 4]),
        })
        .collect()
}

/// Output (token `t`, row `r`) is `BlockQ4_1::vec_dot` of row `r` and token `t`, bit for
/// bit: `w` holds `n_rows / 16` groups of `nb` interleaved blocks, `a` is
/// `[n_tokens][nb]`, `out` `[n_tokens][n_rows]` (or a [`crate::GemmOut`] of that shape).
/// Worth the layout with AVX-512 ([`q4_1x16_pays`]); elsewhere each row is taken back
/// to the plain layout.
pub fn gemm_q4_1x16<'o>(nb: usize, w: &[BlockQ4_1x16], a: &[BlockQ8_1], out: impl IntoGemmOut<'o>) {
    assert!(
        nb > 0 && w.len().is_multiple_of(nb) && a.len().is_multiple_of(nb),
        "gemm_q4_1x16: lengths are not whole rows"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
        // when the CPU has them; the lengths are whole rows (checked above).
        return unsafe { crate::simd::x86_avx512_q4_1x16::gemm_q4_1x16(nb, w, a, out) };
    }
    let mut out = out.into_gemm_out(w.len() / nb * Q4_1X16_ROWS, a.len() / nb);
    for (gi, g) in w.chunks_exact(nb).enumerate() {
        for r in 0..Q4_1X16_ROWS {
            let row = row_of(g, r);
            for (t, ar) in a.chunks_exact(nb).enumerate() {
                out.set(t, gi * Q4_1X16_ROWS + r, BlockQ4_1::vec_dot(&row, ar));
            }
        }
    }
}

/// Whether this process's ISA has a kernel for [`BlockQ4_1x16`] (else the plain
/// layout's kernels are faster).
pub fn q4_1x16_pays() -> bool {
    crate::isa() >= crate::Isa::Avx512
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantize;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 1.5
            })
            .collect()
    }

    /// Every output against the twin, over token counts that fill and split the tiles,
    /// one- and many-block rows, and extreme quants and scales.
    #[test]
    fn product_is_the_twin_bit_for_bit() {
        for &(nb, n_rows) in &[(1usize, 16usize), (3, 48), (18, 32)] {
            let mut w = vec![
                BlockQ4_1 {
                    d: f16::ZERO,
                    m: f16::ZERO,
                    qs: [0; 16]
                };
                n_rows * nb
            ];
            BlockQ4_1::quantize_row(&data(n_rows * nb * 32, 7), &mut w);
            w[nb].qs = [0xff; 16];
            w[2 * nb].qs = [0; 16];
            w[3 * nb].d = f16::ZERO;
            w[4 * nb].m = f16::from_f32(-3.0);
            let x16 = interleave_q4_1x16(&w, nb);
            for g in 0..n_rows / 16 {
                for r in 0..16 {
                    assert_eq!(
                        bytemuck::cast_slice::<_, u8>(&row_of(&x16[g * nb..(g + 1) * nb], r)),
                        bytemuck::cast_slice::<_, u8>(&w[(16 * g + r) * nb..(16 * g + r + 1) * nb])
                    );
                }
            }
            for n_tokens in [1usize, 2, 3, 5, 16] {
                let mut a = vec![
                    BlockQ8_1 {
                        d: f16::ZERO,
                        s: f16::ZERO,
                        qs: [0; 32]
                    };
                    n_tokens * nb
                ];
                BlockQ8_1::quantize_row_act(
                    &data(n_tokens * nb * 32, 11 + n_tokens as u32),
                    &mut a,
                );
                a[0].qs = [-127; 32];
                let mut got = vec![f32::NAN; n_tokens * n_rows];
                gemm_q4_1x16(nb, &x16, &a, &mut got);
                for (i, got) in got.iter().enumerate() {
                    let (t, r) = (i / n_rows, i % n_rows);
                    let want = crate::vec_dot_q4_1_q8_1_ref(
                        &w[r * nb..(r + 1) * nb],
                        &a[t * nb..(t + 1) * nb],
                    );
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{:?}: nb {nb} tokens {n_tokens} output {i}",
                        crate::isa()
                    );
                }
            }
        }
    }
}
