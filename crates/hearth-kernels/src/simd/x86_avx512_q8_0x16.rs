//! AVX-512 VNNI kernel of the output layer's product ([`crate::gemm_q8_0x16`]).
//!
//! A register holds one 64-byte group of a [`BlockQ8_0x16`]: four quants of each of
//! sixteen rows. One `vpdpbusd` against a token's four matching activations (broadcast)
//! adds four products to each row's sum; eight make the block's exact sums. `vpdpbusd`
//! multiplies unsigned by signed bytes, so the weights are stored as `w + 128` and each
//! sum starts from `-128 * sum(a)` of the token's block: `(w + 128)·a - 128·a = w·a`, exact.
//! Then one FMA per block scales the sixteen sums by `d_w * d_a`, as the twin
//! ([`crate::vec_dot_q8_0_exact_ref`]) does per row.

use std::arch::x86_64::*;

use crate::quants::float::fp16_to_fp32;
use crate::{BlockQ8_0, BlockQ8_0x16, IntoGemmOut, Q8_0X16_ROWS};

/// Most tokens per tile: each keeps two registers (its sums and its accumulators).
const TILE_TOKENS: usize = 8;

/// See [`crate::gemm_q8_0x16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `nb > 0` and `w` and
/// `a` are whole rows of `nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q8_0x16<'o>(nb: usize, w: &[BlockQ8_0x16], a: &[BlockQ8_0], out: impl IntoGemmOut<'o>) {
    let (n_groups, n_tokens) = (w.len() / nb, a.len() / nb);
    let mut out = out.into_gemm_out(n_groups * Q8_0X16_ROWS, n_tokens);
    // Per token and block: the sums' start, -128 * sum(a), and d_a as f32.
    let offset: Vec<i32> = a.iter().map(|b| -128 * b.qs.iter().map(|&q| i32::from(q)).sum::<i32>()).collect();
    let d_a: Vec<f32> = a.iter().map(|b| fp16_to_fp32(b.d)).collect();
    for gi in 0..n_groups {
        let g = w.as_ptr().add(gi * nb);
        // The group's blocks (about 10 KB at n_embd 576) stay in L1 for its token tiles.
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = (n_tokens - t0).min(TILE_TOKENS);
            let at = t0 * nb;
            let (ap, op, dp) = (a.as_ptr().add(at), offset.as_ptr().add(at), d_a.as_ptr().add(at));
            let mut acc = [[0.0f32; Q8_0X16_ROWS]; TILE_TOKENS];
            // (A match, not a closure: a closure would not inherit the target features.)
            match nt {
                1 => tile::<1>(nb, g, ap, op, dp, &mut acc),
                2 => tile::<2>(nb, g, ap, op, dp, &mut acc),
                3 => tile::<3>(nb, g, ap, op, dp, &mut acc),
                4 => tile::<4>(nb, g, ap, op, dp, &mut acc),
                5 => tile::<5>(nb, g, ap, op, dp, &mut acc),
                6 => tile::<6>(nb, g, ap, op, dp, &mut acc),
                7 => tile::<7>(nb, g, ap, op, dp, &mut acc),
                _ => tile::<8>(nb, g, ap, op, dp, &mut acc),
            }
            for (t, row) in acc.iter().enumerate().take(nt) {
                for (r, &v) in row.iter().enumerate() {
                    out.set(t0 + t, gi * Q8_0X16_ROWS + r, v);
                }
            }
            t0 += nt;
        }
    }
}

/// Sixteen rows (the `nb` blocks at `g`) against `T` tokens (token `t`'s blocks at `a +
/// t * nb`, its offsets and scales likewise at `offset` and `d_a`): `acc[t][r]`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // tokens read best indexed
unsafe fn tile<const T: usize>(nb: usize, g: *const BlockQ8_0x16, a: *const BlockQ8_0, offset: *const i32, d_a: *const f32, acc: &mut [[f32; Q8_0X16_ROWS]; TILE_TOKENS]) {
    let mut accv = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let wb = &*g.add(b);
        let mut sumi = [_mm512_setzero_si512(); T];
        for t in 0..T {
            sumi[t] = _mm512_set1_epi32(*offset.add(t * nb + b));
        }
        for k in 0..QK_GROUPS {
            let q = _mm512_loadu_si512(wb.qu.as_ptr().add(64 * k).cast());
            for t in 0..T {
                let y = std::ptr::read_unaligned((*a.add(t * nb + b)).qs.as_ptr().add(4 * k).cast::<i32>());
                sumi[t] = _mm512_dpbusd_epi32(sumi[t], q, _mm512_set1_epi32(y));
            }
        }
        let d_w = _mm512_cvtph_ps(_mm256_loadu_si256(wb.d.as_ptr().cast()));
        for t in 0..T {
            let d = _mm512_mul_ps(d_w, _mm512_set1_ps(*d_a.add(t * nb + b)));
            accv[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[t]), accv[t]);
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(acc[t].as_mut_ptr(), accv[t]);
    }
}

/// Groups of four quants per block.
const QK_GROUPS: usize = 8;
