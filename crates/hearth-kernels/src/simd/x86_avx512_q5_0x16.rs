//! AVX-512 VNNI kernel of the `Q5_0` product over sixteen interleaved rows
//! ([`crate::gemm_q5_0x16`]), bit for bit the twin [`crate::vec_dot_q5_0_q8_0_ref`].
//!
//! A group's blocks are unpacked once per call into eight 64-byte registers' worth per
//! block: lane `l`'s quants `q` (`0..32`, nibble plus fifth bit) of sixteen rows, in the
//! thread's scratch, where they stay in L1/L2 for all the tokens. Then per block and
//! token: `d = d_w * d_a` for the sixteen rows (one multiply); per lane one `vpdpbusd` of
//! the quants against the token's four matching activations (broadcast), starting from
//! `-16` times their sum, so the integer is the twin's `Σ (q - 16) a`; its conversion and
//! `acc[l] = d * sumi + acc[l]`. At the end the twin's horizontal order, `acc[l] + acc[l +
//! 4]`, then `(0 + 2) + (1 + 3)`, each one lane's own operation.

use std::arch::x86_64::*;

use super::x86::{scratch, SCRATCH};
use crate::quants::float::fp16_to_fp32;
use crate::{BlockQ5_0x16, BlockQ8_0, IntoGemmOut, Q5_0X16_ROWS};

/// Lanes of the twin per output (and registers per block of unpacked quants).
const LANES: usize = 8;

/// Most tokens per tile: each keeps nine registers (eight lanes and `d`).
const TILE_TOKENS: usize = 2;

/// What a token's block brings to the tile: `d_a` and each lane's `-16 Σ a`.
#[derive(Clone, Copy)]
struct Act {
    d_a: f32,
    offset: [i32; LANES],
}

/// See [`crate::gemm_q5_0x16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `nb > 0` and `w` and
/// `a` are whole rows of `nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q5_0x16<'o>(
    nb: usize,
    w: &[BlockQ5_0x16],
    a: &[BlockQ8_0],
    out: impl IntoGemmOut<'o>,
) {
    let (n_groups, n_tokens) = (w.len() / nb, a.len() / nb);
    let mut out = out.into_gemm_out(n_groups * Q5_0X16_ROWS, n_tokens);
    let acts: Vec<Act> = a
        .iter()
        .map(|b| Act {
            d_a: fp16_to_fp32(b.d),
            offset: std::array::from_fn(|l| {
                -16 * b.qs[4 * l..4 * l + 4]
                    .iter()
                    .map(|&v| i32::from(v))
                    .sum::<i32>()
            }),
        })
        .collect();
    // (The thread's scratch, two 256-bit words per register: a fresh allocation per call
    // was measurable.)
    let mut buf = SCRATCH.with(|c| c.take());
    let quants = scratch::<__m256i>(&mut buf, 2 * nb * LANES)
        .as_mut_ptr()
        .cast::<__m512i>();
    let low = _mm512_set1_epi8(0x0f);
    let ones = _mm512_set1_epi32(0x0101_0101);
    for gi in 0..n_groups {
        let g = &w[gi * nb..(gi + 1) * nb];
        for (b, wb) in g.iter().enumerate() {
            let qh = _mm512_loadu_si512(wb.qh.as_ptr().cast());
            for l in 0..LANES {
                // Bits 4l..4l+4 of each row's qh, one per byte (bit j to byte j, times
                // 16): the four bits multiplied by 2^0 + 2^7 + 2^14 + 2^21 land on bits
                // 0, 8, 16 and 24, and nothing else does.
                let bits = _mm512_and_si512(
                    _mm512_srl_epi32(qh, _mm_cvtsi32_si128(4 * l as i32)),
                    _mm512_set1_epi32(0xf),
                );
                let spread = _mm512_and_si512(
                    _mm512_mullo_epi32(bits, _mm512_set1_epi32(0x0020_4081)),
                    ones,
                );
                let high = _mm512_slli_epi32::<4>(spread);
                let raw = _mm512_loadu_si512(wb.qs.as_ptr().add(64 * (l % 4)).cast());
                let nib = if l < 4 {
                    _mm512_and_si512(raw, low)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low)
                };
                _mm512_storeu_si512(quants.add(b * LANES + l), _mm512_or_si512(nib, high));
            }
        }
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = (n_tokens - t0).min(TILE_TOKENS);
            let mut res = [[0.0f32; Q5_0X16_ROWS]; TILE_TOKENS];
            let (ap, pp) = (a.as_ptr().add(t0 * nb), acts.as_ptr().add(t0 * nb));
            // (A match, not a closure: a closure would not inherit the target features.)
            match nt {
                1 => tile::<1>(nb, g.as_ptr(), quants, ap, pp, &mut res),
                _ => tile::<2>(nb, g.as_ptr(), quants, ap, pp, &mut res),
            }
            for (t, row) in res.iter().enumerate().take(nt) {
                for (r, &v) in row.iter().enumerate() {
                    out.set(t0 + t, gi * Q5_0X16_ROWS + r, v);
                }
            }
            t0 += nt;
        }
    }
    SCRATCH.with(|c| c.set(buf));
}

/// Sixteen rows (the `nb` blocks at `g`, their quants unpacked at `quants`) against `T`
/// tokens (token `t`'s blocks at `a + t * nb`, what they bring at `acts + t * nb`):
/// `res[t][r]`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // tokens and lanes read best indexed
unsafe fn tile<const T: usize>(
    nb: usize,
    g: *const BlockQ5_0x16,
    quants: *const __m512i,
    a: *const BlockQ8_0,
    acts: *const Act,
    res: &mut [[f32; Q5_0X16_ROWS]; TILE_TOKENS],
) {
    let mut acc = [[_mm512_setzero_ps(); LANES]; T];
    for b in 0..nb {
        let d_w = _mm512_cvtph_ps(_mm256_loadu_si256((*g.add(b)).d.as_ptr().cast()));
        let mut d = [_mm512_setzero_ps(); T];
        for t in 0..T {
            d[t] = _mm512_mul_ps(d_w, _mm512_set1_ps((*acts.add(t * nb + b)).d_a));
        }
        for l in 0..LANES {
            let q = _mm512_loadu_si512(quants.add(b * LANES + l));
            for t in 0..T {
                let y = std::ptr::read_unaligned(
                    (*a.add(t * nb + b)).qs.as_ptr().add(4 * l).cast::<i32>(),
                );
                let start = _mm512_set1_epi32((*acts.add(t * nb + b)).offset[l]);
                let sumi = _mm512_dpbusd_epi32(start, q, _mm512_set1_epi32(y));
                acc[t][l] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(sumi), acc[t][l]);
            }
        }
    }
    for t in 0..T {
        let mut s = [_mm512_setzero_ps(); 4];
        for i in 0..4 {
            s[i] = _mm512_add_ps(acc[t][i], acc[t][i + 4]);
        }
        let v = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
        _mm512_storeu_ps(res[t].as_mut_ptr(), v);
    }
}
