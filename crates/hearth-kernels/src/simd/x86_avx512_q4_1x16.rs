//! AVX-512 VNNI kernel of the `Q4_1` product over sixteen interleaved rows
//! ([`crate::gemm_rows16`]), bit for bit the twin [`crate::vec_dot_q4_1_q8_1_ref`].
//!
//! A group's blocks are unpacked once per call into eight 64-byte registers' worth per
//! block, lane `l` of sixteen rows each (a scratch that stays in L1 for all the tokens).
//! Then per block and token: `d = d_w * d_a` for the sixteen rows (one multiply), per
//! lane one `vpdpbusd` against the token's four matching activations (broadcast), its
//! conversion and `acc[l] = d * sumi + acc[l]`; and `summs = m_w * s_a + summs` (one FMA:
//! the product of two f16 is exact in f32, so it rounds once as the twin's multiply then
//! add does). At the end the twin's horizontal order: `acc[l] + acc[l + 4]`, then `(0 +
//! 2) + (1 + 3)`, then `+ summs`. Each of those is one lane's own operation, so a
//! register does sixteen rows' twins at once.

use std::arch::x86_64::*;

use super::x86_avx512_x16::{gemm16, twin_lanes_sum, Tile16, LANES, ROWS};
use crate::quants::float::fp16_to_fp32;
use crate::{BlockQ4_1x16, BlockQ8_1, IntoGemmOut};

/// See [`crate::gemm_rows16`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `nb > 0` and `w` and
/// `a` are whole rows of `nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q4_1x16<'o>(
    nb: usize,
    w: &[BlockQ4_1x16],
    a: &[BlockQ8_1],
    out: impl IntoGemmOut<'o>,
) {
    gemm16::<TileQ4_1x16>(nb, w, a, out)
}

struct TileQ4_1x16;

impl Tile16 for TileQ4_1x16 {
    type W = BlockQ4_1x16;
    type A = BlockQ8_1;
    /// `d_a` and `s_a` as f32.
    type Prep = [f32; 2];

    fn prep(a: &BlockQ8_1) -> [f32; 2] {
        [fp16_to_fp32(a.d), fp16_to_fp32(a.s)]
    }

    /// Lanes 0..4: the low nibbles of byte groups 0..4; lanes 4..8: their high nibbles.
    #[inline(always)]
    unsafe fn unpack(w: &BlockQ4_1x16, quants: *mut __m512i) {
        let low = _mm512_set1_epi8(0x0f);
        for c in 0..4 {
            let raw = _mm512_loadu_si512(w.qs.as_ptr().add(64 * c).cast());
            _mm512_storeu_si512(quants.add(c), _mm512_and_si512(raw, low));
            _mm512_storeu_si512(
                quants.add(c + 4),
                _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low),
            );
        }
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens and lanes read best indexed
    unsafe fn tile<const T: usize>(
        nb: usize,
        g: *const BlockQ4_1x16,
        quants: *const __m512i,
        a: *const BlockQ8_1,
        ds: *const [f32; 2],
        res: &mut [[f32; ROWS]; 2],
    ) {
        let mut acc = [[_mm512_setzero_ps(); LANES]; T];
        let mut summs = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let wb = &*g.add(b);
            let d_w = _mm512_cvtph_ps(_mm256_loadu_si256(wb.d.as_ptr().cast()));
            let m_w = _mm512_cvtph_ps(_mm256_loadu_si256(wb.m.as_ptr().cast()));
            let mut d = [_mm512_setzero_ps(); T];
            for t in 0..T {
                let [d_a, s_a] = *ds.add(t * nb + b);
                d[t] = _mm512_mul_ps(d_w, _mm512_set1_ps(d_a));
                summs[t] = _mm512_fmadd_ps(m_w, _mm512_set1_ps(s_a), summs[t]);
            }
            for l in 0..LANES {
                let q = _mm512_loadu_si512(quants.add(b * LANES + l));
                for t in 0..T {
                    let y = std::ptr::read_unaligned(
                        (*a.add(t * nb + b)).qs.as_ptr().add(4 * l).cast::<i32>(),
                    );
                    let sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_set1_epi32(y));
                    acc[t][l] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(sumi), acc[t][l]);
                }
            }
        }
        for t in 0..T {
            _mm512_storeu_ps(
                res[t].as_mut_ptr(),
                _mm512_add_ps(twin_lanes_sum(&acc[t]), summs[t]),
            );
        }
    }
}
