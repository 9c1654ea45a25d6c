//! `Q5_0` weight rows sixteen at a time: the same product as [`BlockQ5_0`]'s, bit for bit
//! (the scalar twin is [`crate::vec_dot_q5_0_q8_0_ref`]), in a layout where a 512-bit
//! register holds one of the twin's eight lanes for sixteen rows, as
//! [`super::q4_1x16`] does for `Q4_1`.
//!
//! The twin's lane `l` takes the exact sum of the four products of elements `4l..4l+4`
//! of each block (quants `q - 16`), scaled by `d_w * d_a` in one FMA. Here the quants go
//! in unsigned (`q`, `0..32`) and each lane's sum starts from `-16` times the token's four
//! activations: the same integer.

use half::f16;

use super::legacy::{BlockQ5_0, QK5_0};
use super::q8::BlockQ8_0;
use crate::{IntoGemmOut, WeightBlock};

/// Rows per [`BlockQ5_0x16`].
pub const Q5_0X16_ROWS: usize = 16;

/// Block `b` of sixteen `Q5_0` rows: `qs[64 c + 4 r + j]` is row `r`'s nibble byte `4 c +
/// j` (`c < 4`, `j < 4`): its low nibble is element `4 c + j`, its high nibble element
/// `16 + 4 c + j`; `qh[r]` is row `r`'s fifth bits (bit `j` for element `j`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0x16 {
    /// `[16]`: each row's scale.
    pub d: [f16; Q5_0X16_ROWS],
    /// `[16]`: each row's fifth bits, little-endian.
    pub qh: [u32; Q5_0X16_ROWS],
    /// `[4][16][4]`: byte groups, rows, bytes.
    pub qs: [u8; Q5_0X16_ROWS * QK5_0 / 2],
}
const _: () = assert!(
    core::mem::size_of::<BlockQ5_0x16>() == Q5_0X16_ROWS * core::mem::size_of::<BlockQ5_0>()
);

/// Interleaves `Q5_0` rows of `nb` blocks, sixteen at a time: block `b` of rows `16 i..16
/// i + 16` goes to element `i * nb + b`. The number of rows must be a multiple of 16.
pub fn interleave_q5_0x16(rows: &[BlockQ5_0], nb: usize) -> Vec<BlockQ5_0x16> {
    assert!(
        nb > 0 && rows.len().is_multiple_of(nb * Q5_0X16_ROWS),
        "interleave_q5_0x16: rows are not whole groups of 16"
    );
    let mut out = Vec::with_capacity(rows.len() / Q5_0X16_ROWS);
    for group in rows.chunks_exact(nb * Q5_0X16_ROWS) {
        for b in 0..nb {
            let mut x = BlockQ5_0x16 {
                d: [f16::ZERO; Q5_0X16_ROWS],
                qh: [0; Q5_0X16_ROWS],
                qs: [0; Q5_0X16_ROWS * QK5_0 / 2],
            };
            for r in 0..Q5_0X16_ROWS {
                let blk = &group[r * nb + b];
                (x.d[r], x.qh[r]) = (blk.d, u32::from_le_bytes(blk.qh));
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
fn row_of(g: &[BlockQ5_0x16], r: usize) -> Vec<BlockQ5_0> {
    g.iter()
        .map(|x| BlockQ5_0 {
            d: x.d[r],
            qh: x.qh[r].to_le_bytes(),
            qs: std::array::from_fn(|i| x.qs[64 * (i / 4) + 4 * r + i % 4]),
        })
        .collect()
}

/// Output (token `t`, row `r`) is `BlockQ5_0::vec_dot` of row `r` and token `t`, bit for
/// bit: `w` holds `n_rows / 16` groups of `nb` interleaved blocks, `a` is
/// `[n_tokens][nb]`, `out` `[n_tokens][n_rows]` (or a [`crate::GemmOut`] of that shape).
/// Worth the layout with AVX-512 ([`q5_0x16_pays`]); elsewhere each row is taken back
/// to the plain layout.
pub fn gemm_q5_0x16<'o>(nb: usize, w: &[BlockQ5_0x16], a: &[BlockQ8_0], out: impl IntoGemmOut<'o>) {
    assert!(
        nb > 0 && w.len().is_multiple_of(nb) && a.len().is_multiple_of(nb),
        "gemm_q5_0x16: lengths are not whole rows"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
        // when the CPU has them; the lengths are whole rows (checked above).
        return unsafe { crate::simd::x86_avx512_q5_0x16::gemm_q5_0x16(nb, w, a, out) };
    }
    let mut out = out.into_gemm_out(w.len() / nb * Q5_0X16_ROWS, a.len() / nb);
    for (gi, g) in w.chunks_exact(nb).enumerate() {
        for r in 0..Q5_0X16_ROWS {
            let row = row_of(g, r);
            for (t, ar) in a.chunks_exact(nb).enumerate() {
                out.set(t, gi * Q5_0X16_ROWS + r, BlockQ5_0::vec_dot(&row, ar));
            }
        }
    }
}

/// Whether this process's ISA has a kernel for [`BlockQ5_0x16`] (else the plain
/// layout's kernels are faster).
pub fn q5_0x16_pays() -> bool {
    crate::isa() >= crate::Isa::Avx512
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantize;
    use bytemuck::Zeroable;

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
    /// one- and many-block rows, and extreme quants, fifth bits and scales.
    #[test]
    fn product_is_the_twin_bit_for_bit() {
        for &(nb, n_rows) in &[(1usize, 16usize), (3, 48), (20, 32)] {
            let mut w = vec![BlockQ5_0::zeroed(); n_rows * nb];
            BlockQ5_0::quantize_row(&data(n_rows * nb * 32, 7), &mut w);
            (w[nb].qs, w[nb].qh) = ([0xff; 16], [0xff; 4]);
            (w[2 * nb].qs, w[2 * nb].qh) = ([0; 16], [0; 4]);
            w[3 * nb].qh = [0x5a, 0xa5, 0x0f, 0xf0];
            w[4 * nb].d = f16::ZERO;
            let x16 = interleave_q5_0x16(&w, nb);
            for g in 0..n_rows / 16 {
                for r in 0..16 {
                    assert_eq!(
                        bytemuck::cast_slice::<_, u8>(&row_of(&x16[g * nb..(g + 1) * nb], r)),
                        bytemuck::cast_slice::<_, u8>(&w[(16 * g + r) * nb..(16 * g + r + 1) * nb])
                    );
                }
            }
            for n_tokens in [1usize, 2, 3, 5, 16] {
                let mut a = vec![BlockQ8_0::zeroed(); n_tokens * nb];
                BlockQ8_0::quantize_row_act(
                    &data(n_tokens * nb * 32, 11 + n_tokens as u32),
                    &mut a,
                );
                a[0].qs = [-127; 32];
                a[nb - 1].qs = [127; 32];
                let mut got = vec![f32::NAN; n_tokens * n_rows];
                gemm_q5_0x16(nb, &x16, &a, &mut got);
                for (i, got) in got.iter().enumerate() {
                    let (t, r) = (i / n_rows, i % n_rows);
                    let want = crate::vec_dot_q5_0_q8_0_ref(
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
