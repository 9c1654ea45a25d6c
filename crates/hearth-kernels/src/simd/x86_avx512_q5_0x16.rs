//! AVX-512 VNNI kernel of the `Q5_0` product over sixteen interleaved rows
//! ([`crate::gemm_rows16`]), bit for bit the twin [`crate::vec_dot_q5_0_q8_0_ref`].
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

use super::x86_avx512_x16::{gemm16, twin_lanes_sum, Tile16, LANES, ROWS};
use crate::quants::float::fp16_to_fp32;
use crate::{BlockQ5_0x16, BlockQ8_0, IntoGemmOut};

/// See [`crate::gemm_rows16`].
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
    gemm16::<TileQ5_0x16>(nb, w, a, out)
}

/// What a token's block brings to the tile: `d_a` and each lane's `-16 Σ a`.
#[derive(Clone, Copy)]
struct Act {
    d_a: f32,
    offset: [i32; LANES],
}

struct TileQ5_0x16;

impl Tile16 for TileQ5_0x16 {
    type W = BlockQ5_0x16;
    type A = BlockQ8_0;
    type Prep = Act;

    fn prep(a: &BlockQ8_0) -> Act {
        Act {
            d_a: fp16_to_fp32(a.d),
            offset: std::array::from_fn(|l| {
                -16 * a.qs[4 * l..4 * l + 4]
                    .iter()
                    .map(|&v| i32::from(v))
                    .sum::<i32>()
            }),
        }
    }

    /// Lane `l`: the nibbles of byte group `l % 4` (low for `l < 4`, high after) plus
    /// bits `4l..4l + 4` of each row's `qh` as `16`s: the four bits multiplied by `2^0 +
    /// 2^7 + 2^14 + 2^21` land on bits 0, 8, 16 and 24, and nothing else does.
    #[inline(always)]
    unsafe fn unpack(w: &BlockQ5_0x16, quants: *mut __m512i) {
        let low = _mm512_set1_epi8(0x0f);
        let qh = _mm512_loadu_si512(w.qh.as_ptr().cast());
        for l in 0..LANES {
            let bits = _mm512_and_si512(
                _mm512_srl_epi32(qh, _mm_cvtsi32_si128(4 * l as i32)),
                _mm512_set1_epi32(0xf),
            );
            let spread = _mm512_and_si512(
                _mm512_mullo_epi32(bits, _mm512_set1_epi32(0x0020_4081)),
                _mm512_set1_epi32(0x0101_0101),
            );
            let raw = _mm512_loadu_si512(w.qs.as_ptr().add(64 * (l % 4)).cast());
            let nib = if l < 4 {
                _mm512_and_si512(raw, low)
            } else {
                _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low)
            };
            _mm512_storeu_si512(
                quants.add(l),
                _mm512_or_si512(nib, _mm512_slli_epi32::<4>(spread)),
            );
        }
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens and lanes read best indexed
    unsafe fn tile<const T: usize>(
        nb: usize,
        g: *const BlockQ5_0x16,
        quants: *const __m512i,
        a: *const BlockQ8_0,
        acts: *const Act,
        res: &mut [[f32; ROWS]; 2],
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
            _mm512_storeu_ps(res[t].as_mut_ptr(), twin_lanes_sum(&acc[t]));
        }
    }
}
