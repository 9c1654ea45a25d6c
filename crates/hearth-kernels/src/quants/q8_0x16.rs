//! The output layer's product: `Q8_0` weight rows sixteen at a time against `Q8_0`
//! activations, with exact block sums.
//!
//! The layers' products keep the reference engine's arithmetic (eight f32 lanes per
//! output, one FMA per lane and block): the next layer quantizes their results to eight
//! bits, which turns an ulp's difference into a quantization step. The logits feed no
//! further layer, so the output layer takes a cheaper arithmetic that is as exact: per
//! block one exact integer sum of the 32 products, then `acc = (d_w * d_a) * sumi + acc`
//! in one rounding, blocks in order ([`vec_dot_q8_0_exact_ref`], the scalar twin).
//!
//! [`BlockQ8_0x16`] lays sixteen rows' blocks side by side so that one 512-bit
//! `vpdpbusd` adds four products to each of the sixteen rows' sums: eight instructions
//! make a block's sums, and one FMA scales them, where the lane-wise arithmetic takes a
//! multiply-add per four products. Every output is its row's [`vec_dot_q8_0_exact_ref`],
//! bit for bit, whatever the ISA, the tile or the batch.

use half::f16;

use super::float::fp16_to_fp32;
use super::q8::{BlockQ8_0, QK8_0};
use crate::IntoGemmOut;

/// Rows per [`BlockQ8_0x16`].
pub const Q8_0X16_ROWS: usize = 16;

/// Block `b` of sixteen `Q8_0` rows: `qu[64 g + 4 r + j]` is row `r`'s quant `4 g + j`
/// (`g < 8`, `j < 4`) plus 128, so each 64 bytes hold four consecutive quants of every
/// row, as the unsigned bytes `vpdpbusd` takes.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0x16 {
    /// `[16]`: each row's scale.
    pub d: [f16; Q8_0X16_ROWS],
    /// `[8][16][4]`: quant groups, rows, quants; each quant plus 128.
    pub qu: [u8; Q8_0X16_ROWS * QK8_0],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0x16>() == 544);

/// Interleaves `Q8_0` rows of `nb` blocks, sixteen at a time: block `b` of rows `16 i..16
/// i + 16` goes to element `i * nb + b`. The number of rows must be a multiple of 16.
pub fn interleave_q8_0x16(rows: &[BlockQ8_0], nb: usize) -> Vec<BlockQ8_0x16> {
    assert!(
        nb > 0 && rows.len().is_multiple_of(nb * Q8_0X16_ROWS),
        "interleave_q8_0x16: rows are not whole groups of 16"
    );
    let mut out = Vec::with_capacity(rows.len() / Q8_0X16_ROWS);
    for group in rows.chunks_exact(nb * Q8_0X16_ROWS) {
        for b in 0..nb {
            let mut x = BlockQ8_0x16 {
                d: [f16::ZERO; Q8_0X16_ROWS],
                qu: [0; Q8_0X16_ROWS * QK8_0],
            };
            for r in 0..Q8_0X16_ROWS {
                let blk = &group[r * nb + b];
                x.d[r] = blk.d;
                for (i, &q) in blk.qs.iter().enumerate() {
                    x.qu[64 * (i / 4) + 4 * r + i % 4] = (i16::from(q) + 128) as u8;
                }
            }
            out.push(x);
        }
    }
    out
}

/// The scalar twin of the output layer's product: per block the exact sum of the 32
/// products, then `acc = (d_w * d_a) * sumi + acc` rounded once, blocks in order.
/// (`|sumi| <= 32 * 127 * 127 < 2^24`, so its conversion to f32 is exact too.)
#[inline]
pub fn vec_dot_q8_0_exact_ref(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q8_0 exact: row lengths differ");
    let mut acc = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let sumi: i32 = bw
            .qs
            .iter()
            .zip(&ba.qs)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        acc = (fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d)).mul_add(sumi as f32, acc);
    }
    acc
}

/// Output (token `t`, row `r`) is [`vec_dot_q8_0_exact_ref`] of row `r` and token `t`:
/// `w` holds `n_rows / 16` groups of `nb` interleaved blocks, `a` is `[n_tokens][nb]`,
/// `out` `[n_tokens][n_rows]` (or a [`crate::GemmOut`] of that shape).
pub fn gemm_q8_0x16<'o>(nb: usize, w: &[BlockQ8_0x16], a: &[BlockQ8_0], out: impl IntoGemmOut<'o>) {
    assert!(
        nb > 0 && w.len().is_multiple_of(nb) && a.len().is_multiple_of(nb),
        "gemm_q8_0x16: lengths are not whole rows"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
        // when the CPU has them; the lengths are whole rows (checked above).
        return unsafe { crate::simd::x86_q8_0x16::gemm_q8_0x16_avx512(nb, w, a, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them; the
        // lengths are whole rows (checked above).
        return unsafe { crate::simd::x86_q8_0x16::gemm_q8_0x16_avx2(nb, w, a, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if crate::isa() == crate::Isa::Neon {
        // SAFETY: NEON is part of the aarch64 base ISA; the lengths are whole rows.
        return unsafe { crate::simd::neon::gemm_q8_0x16(nb, w, a, out) };
    }
    crate::with_isa(|| gemm_q8_0x16_generic(nb, w, a, out))
}

/// [`gemm_q8_0x16`] in plain code, for the scalar ISA: per group, token and block, the
/// sixteen rows' exact sums (over the stored `w + 128`, less `128 * sum(a)`), then their
/// FMAs. (The compiler does not vectorize it well: with AVX2 it ran 12× slower than the
/// lane-wise kernel, hence the SIMD kernels.)
#[inline(always)]
fn gemm_q8_0x16_generic<'o>(
    nb: usize,
    w: &[BlockQ8_0x16],
    a: &[BlockQ8_0],
    out: impl IntoGemmOut<'o>,
) {
    let mut out = out.into_gemm_out(w.len() / nb * Q8_0X16_ROWS, a.len() / nb);
    for (gi, group) in w.chunks_exact(nb).enumerate() {
        for (t, ar) in a.chunks_exact(nb).enumerate() {
            let mut acc = [0.0f32; Q8_0X16_ROWS];
            for (bw, ba) in group.iter().zip(ar) {
                let offset = -128 * ba.qs.iter().map(|&q| i32::from(q)).sum::<i32>();
                let mut sumi = [offset; Q8_0X16_ROWS];
                for (qu, y) in bw
                    .qu
                    .chunks_exact(4 * Q8_0X16_ROWS)
                    .zip(ba.qs.chunks_exact(4))
                {
                    let y: [i32; 4] = std::array::from_fn(|j| i32::from(y[j]));
                    for (s, q) in sumi.iter_mut().zip(qu.chunks_exact(4)) {
                        *s += i32::from(q[0]) * y[0]
                            + i32::from(q[1]) * y[1]
                            + i32::from(q[2]) * y[2]
                            + i32::from(q[3]) * y[3];
                    }
                }
                let d_a = fp16_to_fp32(ba.d);
                for r in 0..Q8_0X16_ROWS {
                    acc[r] = (fp16_to_fp32(bw.d[r]) * d_a).mul_add(sumi[r] as f32, acc[r]);
                }
            }
            for (r, &v) in acc.iter().enumerate() {
                out.set(t, gi * Q8_0X16_ROWS + r, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quantize;

    fn rows(n: usize, len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n * len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// The product by the dispatch, the plain code and each x86 kernel this CPU can run.
    fn kernels(nb: usize, w: &[BlockQ8_0x16], a: &[BlockQ8_0]) -> Vec<(&'static str, Vec<f32>)> {
        let n = w.len() / nb * Q8_0X16_ROWS * (a.len() / nb);
        let run = |f: &dyn Fn(&mut Vec<f32>)| {
            let mut out = vec![f32::NAN; n];
            f(&mut out);
            out
        };
        let mut all = vec![
            ("dispatch", run(&|o| gemm_q8_0x16(nb, w, a, o))),
            ("generic", run(&|o| gemm_q8_0x16_generic(nb, w, a, o))),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use crate::simd::x86_q8_0x16::{gemm_q8_0x16_avx2, gemm_q8_0x16_avx512};
            use crate::Isa;
            if Isa::detect() >= Isa::Avx2 {
                // SAFETY: the CPU has AVX2, FMA and F16C; whole rows.
                all.push(("avx2", run(&|o| unsafe { gemm_q8_0x16_avx2(nb, w, a, o) })));
            }
            if Isa::detect() >= Isa::Avx512 {
                // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI; whole rows.
                all.push((
                    "avx512",
                    run(&|o| unsafe { gemm_q8_0x16_avx512(nb, w, a, o) }),
                ));
            }
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of the aarch64 base ISA; whole rows.
        all.push((
            "neon",
            run(&|o| unsafe { crate::simd::neon::gemm_q8_0x16(nb, w, a, o) }),
        ));
        all
    }

    /// Every output of the product, for every ISA this CPU has, against the twin; over
    /// token counts that fill and split the kernels' tiles and one- and many-block rows.
    #[test]
    fn product_is_the_twin_bit_for_bit() {
        for &(nb, n_rows) in &[(1usize, 16usize), (3, 48), (18, 32)] {
            let ne0 = nb * QK8_0;
            let mut w = vec![
                BlockQ8_0 {
                    d: f16::ZERO,
                    qs: [0; 32]
                };
                n_rows * nb
            ];
            BlockQ8_0::quantize_row(&rows(n_rows, ne0, 7), &mut w);
            // Extreme quants and scales: -127 and 127 everywhere in one row, a zero scale.
            w[nb].qs = [127; 32];
            w[2 * nb].qs = [-127; 32];
            w[3 * nb].d = f16::ZERO;
            let x16 = interleave_q8_0x16(&w, nb);
            for n_tokens in [1usize, 2, 7, 8, 9, 16, 17] {
                let mut a = vec![
                    BlockQ8_0 {
                        d: f16::ZERO,
                        qs: [0; 32]
                    };
                    n_tokens * nb
                ];
                BlockQ8_0::quantize_row_act(&rows(n_tokens, ne0, 11 + n_tokens as u32), &mut a);
                a[0].qs = [-127; 32];
                let want: Vec<f32> = (0..n_tokens * n_rows)
                    .map(|i| {
                        let (t, r) = (i / n_rows, i % n_rows);
                        vec_dot_q8_0_exact_ref(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb])
                    })
                    .collect();
                for (name, got) in kernels(nb, &x16, &a) {
                    for i in 0..want.len() {
                        assert_eq!(
                            got[i].to_bits(),
                            want[i].to_bits(),
                            "{name}: nb {nb} tokens {n_tokens} output {i}"
                        );
                    }
                }
            }
        }
    }

    /// The exact arithmetic stays within rounding of the lane-wise one (it is not a
    /// different product).
    #[test]
    fn exact_sums_agree_with_the_lanewise_product() {
        let nb = 18;
        let mut w = vec![
            BlockQ8_0 {
                d: f16::ZERO,
                qs: [0; 32]
            };
            nb
        ];
        let mut a = w.clone();
        BlockQ8_0::quantize_row(&rows(1, nb * 32, 3), &mut w);
        BlockQ8_0::quantize_row_act(&rows(1, nb * 32, 5), &mut a);
        let (exact, lanes) = (
            vec_dot_q8_0_exact_ref(&w, &a),
            crate::vec_dot_q8_0_q8_0_ref(&w, &a),
        );
        assert!(
            (exact - lanes).abs() <= 1e-5 * lanes.abs().max(1.0),
            "{exact} vs {lanes}"
        );
    }
}
