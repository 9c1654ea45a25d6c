//! x86 kernels of the output layer's product ([`crate::gemm_q8_0x16`]): sixteen rows'
//! exact block sums at once, then one FMA per block scales them by `d_w * d_a`, as the
//! twin ([`crate::vec_dot_q8_0_exact_ref`]) does per row. The integer sums are exact, so
//! both kernels are the twin bit for bit.
//!
//! - AVX-512 VNNI: a register holds one 64-byte group of a [`BlockQ8_0x16`], four quants
//!   of each of the sixteen rows (stored as `w + 128`). One `vpdpbusd` against the
//!   token's four matching activations (broadcast) adds four products to each row's sum;
//!   eight make the block's sums. `vpdpbusd` multiplies unsigned by signed bytes, so each
//!   sum starts from `-128 * sum(a)`: `(w + 128)·a - 128·a = w·a`.
//! - AVX2: eight rows per register, the signed weights against `|a|` with `a`'s signs
//!   (`vpsignb`, `vpmaddubsw`: pairs of products, at most 2·127² in 16 bits), then
//!   `vpmaddwd` by ones: four products per row per step.

use std::arch::x86_64::*;

use crate::quants::float::fp16_to_fp32;
use crate::{BlockQ8_0, BlockQ8_0x16, GemmOut, IntoGemmOut, Q8_0X16_ROWS};

/// Groups of four quants per block.
const QK_GROUPS: usize = 8;

/// A token's block, prepared once per call: its quants, `d_a` as f32 and `-128 *
/// sum(a)` (the AVX-512 sums' start).
struct Act {
    qs: *const i8,
    d_a: f32,
    offset: i32,
}

/// A tile kernel: sixteen rows (the `nb` blocks at `g`) against `T` tokens (token `t`'s
/// blocks at `a + t * nb`): `acc[t][r]`.
type Tile =
    unsafe fn(nb: usize, g: *const BlockQ8_0x16, a: *const Act, acc: &mut [[f32; Q8_0X16_ROWS]]);

/// Per group of sixteen rows, the tokens in tiles (`tiles[T - 1]` computes `T` tokens):
/// the group's blocks (about 10 KB at n_embd 576) stay in L1 for all its tiles.
#[inline(always)]
unsafe fn groups(
    nb: usize,
    w: &[BlockQ8_0x16],
    a: &[BlockQ8_0],
    out: &mut GemmOut<'_>,
    tiles: &[Tile],
) {
    let (n_groups, n_tokens) = (w.len() / nb, a.len() / nb);
    let a: Vec<Act> = a
        .iter()
        .map(|b| Act {
            qs: b.qs.as_ptr(),
            d_a: fp16_to_fp32(b.d),
            offset: -128 * b.qs.iter().map(|&q| i32::from(q)).sum::<i32>(),
        })
        .collect();
    let mut acc = [[0.0f32; Q8_0X16_ROWS]; 8];
    for gi in 0..n_groups {
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = (n_tokens - t0).min(tiles.len());
            tiles[nt - 1](
                nb,
                w.as_ptr().add(gi * nb),
                a.as_ptr().add(t0 * nb),
                &mut acc,
            );
            for (t, row) in acc.iter().enumerate().take(nt) {
                for (r, &v) in row.iter().enumerate() {
                    out.set(t0 + t, gi * Q8_0X16_ROWS + r, v);
                }
            }
            t0 += nt;
        }
    }
}

/// See [`crate::gemm_q8_0x16`]; AVX-512.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `nb > 0` and `w` and
/// `a` are whole rows of `nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q8_0x16_avx512<'o>(
    nb: usize,
    w: &[BlockQ8_0x16],
    a: &[BlockQ8_0],
    out: impl IntoGemmOut<'o>,
) {
    let mut out = out.into_gemm_out(w.len() / nb * Q8_0X16_ROWS, a.len() / nb);
    // Up to eight tokens per tile: each keeps two registers (its sums and accumulators).
    let tiles: [Tile; 8] = [
        tile512::<1>,
        tile512::<2>,
        tile512::<3>,
        tile512::<4>,
        tile512::<5>,
        tile512::<6>,
        tile512::<7>,
        tile512::<8>,
    ];
    groups(nb, w, a, &mut out, &tiles);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // tokens read best indexed
unsafe fn tile512<const T: usize>(
    nb: usize,
    g: *const BlockQ8_0x16,
    a: *const Act,
    acc: &mut [[f32; Q8_0X16_ROWS]],
) {
    let mut accv = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let wb = &*g.add(b);
        let mut sumi = [_mm512_setzero_si512(); T];
        for t in 0..T {
            sumi[t] = _mm512_set1_epi32((*a.add(t * nb + b)).offset);
        }
        for k in 0..QK_GROUPS {
            let q = _mm512_loadu_si512(wb.qu.as_ptr().add(64 * k).cast());
            for t in 0..T {
                let y = std::ptr::read_unaligned((*a.add(t * nb + b)).qs.add(4 * k).cast::<i32>());
                sumi[t] = _mm512_dpbusd_epi32(sumi[t], q, _mm512_set1_epi32(y));
            }
        }
        let d_w = _mm512_cvtph_ps(_mm256_loadu_si256(wb.d.as_ptr().cast()));
        for t in 0..T {
            let d = _mm512_mul_ps(d_w, _mm512_set1_ps((*a.add(t * nb + b)).d_a));
            accv[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[t]), accv[t]);
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(acc[t].as_mut_ptr(), accv[t]);
    }
}

/// See [`crate::gemm_q8_0x16`]; AVX2.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `nb > 0` and `w` and `a` are whole rows of
/// `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q8_0x16_avx2<'o>(
    nb: usize,
    w: &[BlockQ8_0x16],
    a: &[BlockQ8_0],
    out: impl IntoGemmOut<'o>,
) {
    let mut out = out.into_gemm_out(w.len() / nb * Q8_0X16_ROWS, a.len() / nb);
    // Up to two tokens per tile: each keeps four of the sixteen registers.
    let tiles: [Tile; 2] = [tile256::<1>, tile256::<2>];
    groups(nb, w, a, &mut out, &tiles);
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // tokens and halves read best indexed
unsafe fn tile256<const T: usize>(
    nb: usize,
    g: *const BlockQ8_0x16,
    a: *const Act,
    acc: &mut [[f32; Q8_0X16_ROWS]],
) {
    let (bias, ones) = (_mm256_set1_epi8(i8::MIN), _mm256_set1_epi16(1));
    let mut accv = [[_mm256_setzero_ps(); 2]; T];
    for b in 0..nb {
        let wb = &*g.add(b);
        let mut sumi = [[_mm256_setzero_si256(); 2]; T];
        for k in 0..QK_GROUPS {
            // Rows 0..8 and 8..16, signed again.
            let mut q = [bias; 2];
            for h in 0..2 {
                q[h] = _mm256_xor_si256(
                    _mm256_loadu_si256(wb.qu.as_ptr().add(64 * k + 32 * h).cast()),
                    bias,
                );
            }
            for t in 0..T {
                let y = std::ptr::read_unaligned((*a.add(t * nb + b)).qs.add(4 * k).cast::<i32>());
                let y = _mm256_set1_epi32(y);
                let y_abs = _mm256_abs_epi8(y);
                for h in 0..2 {
                    let p = _mm256_maddubs_epi16(y_abs, _mm256_sign_epi8(q[h], y));
                    sumi[t][h] = _mm256_add_epi32(sumi[t][h], _mm256_madd_epi16(p, ones));
                }
            }
        }
        let d_w = [
            _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr().cast())),
            _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr().add(8).cast())),
        ];
        for t in 0..T {
            let d_a = _mm256_set1_ps((*a.add(t * nb + b)).d_a);
            for h in 0..2 {
                accv[t][h] = _mm256_fmadd_ps(
                    _mm256_mul_ps(d_w[h], d_a),
                    _mm256_cvtepi32_ps(sumi[t][h]),
                    accv[t][h],
                );
            }
        }
    }
    for t in 0..T {
        for h in 0..2 {
            _mm256_storeu_ps(acc[t].as_mut_ptr().add(8 * h), accv[t][h]);
        }
    }
}
