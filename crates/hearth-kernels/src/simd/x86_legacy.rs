//! AVX2 dot products of the 5-bit legacy blocks: Q5_0 × Q8_0 and Q5_1 × Q8_1.
//!
//! Per block, as the Q4 kernels in `x86.rs`: the 32 unsigned 5-bit quants (low nibbles
//! from `qs`, the fifth bit spread from `qh` to bytes) times the signed activation bytes
//! (`vpmaddubsw` + `vpmaddwd`) give eight exact i32 lane sums, lane `l` over elements
//! `4l..4l+4`; Q5_0 subtracts `16 × (lane sums of the activations)`. The lanes are scaled
//! by `d_w * d_a` into eight f32 accumulators with one FMA per block; one horizontal sum
//! at the end. The scalar twins (`vec_dot_q5_0_q8_0_ref`, `vec_dot_q5_1_q8_1_ref`) do
//! the same f32 operations in the same order.

use std::arch::x86_64::*;

use half::f16;

use crate::quants::{BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Two f16 values to f32 lanes 0 and 1 (exact).
#[inline(always)]
unsafe fn f16x2(lo: f16, hi: f16) -> __m128 {
    let bits = u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16);
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

/// Sum of `u[i] * s[i]` for unsigned bytes `u <= 31` and signed bytes `s`, as 8 i32
/// lanes of four consecutive bytes (pair sums stay below `vpmaddubsw`'s saturation).
#[inline(always)]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// The 32 unsigned 5-bit quants of a block in element order: nibbles of `qs` (low, then
/// high) with bit `j` of the little-endian `qh` as bit 4 of byte `j`.
#[inline(always)]
unsafe fn quants5(qs: &[u8; 16], qh: &[u8; 4]) -> __m256i {
    let b = _mm_loadu_si128(qs.as_ptr().cast());
    let lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    let nib = _mm256_set_m128i(hi, lo);
    // Byte j gets byte j/8 of qh; OR-ing every bit but j % 8 leaves all ones iff set.
    let x = i32::from_le_bytes(*qh);
    let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)), _mm256_set1_epi64x(-1));
    _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
}

/// Q5_0 × Q8_0: `sum (d_w d_a) sumi`, quants offset by -16.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_0: row lengths differ");
    let mut acc = _mm256_setzero_ps();
    for (bw, ba) in w.iter().zip(a) {
        let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2(bw.d, bw.d), f16x2(ba.d, ba.d)));
        let qa = _mm256_loadu_si256(ba.qs.as_ptr().cast());
        // sum (q - 16) a = sum q a - 16 sum a, exact.
        let qa_sum = dot_u8_i8(_mm256_set1_epi8(1), qa);
        let sumi = _mm256_sub_epi32(dot_u8_i8(quants5(&bw.qs, &bw.qh), qa), _mm256_slli_epi32(qa_sum, 4));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// Q5_1 × Q8_1: `sum (d_w d_a) sumi + m_w s_a`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_1: row lengths differ");
    let mut acc = _mm256_setzero_ps();
    // Lane 1 accumulates m_w * s_a; lane 0 is unused.
    let mut acc_m = _mm_setzero_ps();
    for (bw, ba) in w.iter().zip(a) {
        let dm = _mm_mul_ps(f16x2(bw.d, bw.m), f16x2(ba.d, ba.s));
        acc_m = _mm_add_ps(acc_m, dm);
        let qa = _mm256_loadu_si256(ba.qs.as_ptr().cast());
        let sumi = dot_u8_i8(quants5(&bw.qs, &bw.qh), qa);
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m))
}
