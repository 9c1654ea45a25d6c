//! AVX2 dot products of legacy quant rows with 8-bit activations.
//!
//! Per block: unsigned-by-signed byte products summed to i32 lanes (`vpmaddubsw` +
//! `vpmaddwd`), scaled by `d_w * d_a` into eight f32 accumulators that stay in registers
//! across the row; one horizontal sum at the end. The integer part is exact, so these
//! differ from the scalar twins only in the order of the f32 additions.

use std::arch::x86_64::*;

use half::f16;

use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// The 32 nibbles of `qs` as bytes in element order: low nibbles then high nibbles.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let b = _mm_loadu_si128(qs.as_ptr().cast());
    let lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    _mm256_set_m128i(hi, lo)
}

/// Sum of `u[i] * s[i]` for unsigned bytes `u <= 15` and signed bytes `s`, as 8 i32 lanes
/// (byte-pair sums stay far below `vpmaddubsw`'s i16 saturation).
#[inline(always)]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Two f16 values to f32 lanes 0 and 1 (hardware F16C; exact).
#[inline(always)]
unsafe fn f16x2(lo: f16, hi: f16) -> __m128 {
    let bits = u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16);
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

#[inline(always)]
unsafe fn load_i8x32(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr().cast())
}

/// Q4_1 × Q8_1: `sum (d_w d_a) sumi + m_w s_a`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_1: row lengths differ");
    let mut acc = _mm256_setzero_ps();
    // Lane 1 accumulates m_w * s_a; lane 0 is unused.
    let mut acc_m = _mm_setzero_ps();
    for (bw, ba) in w.iter().zip(a) {
        // [d_w * d_a, m_w * s_a]
        let dm = _mm_mul_ps(f16x2(bw.d, bw.m), f16x2(ba.d, ba.s));
        acc_m = _mm_add_ps(acc_m, dm);
        let sumi = dot_u8_i8(nibbles(&bw.qs), load_i8x32(&ba.qs));
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m))
}

/// Q4_0 × Q8_0: `sum (d_w d_a) sumi` with quants offset by -8.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_0: row lengths differ");
    let mut acc = _mm256_setzero_ps();
    for (bw, ba) in w.iter().zip(a) {
        let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2(bw.d, bw.d), f16x2(ba.d, ba.d)));
        // sum (q - 8) a = sum q a - 8 sum a, exact for any activation bytes.
        let qa = load_i8x32(&ba.qs);
        let qa_sum = dot_u8_i8(_mm256_set1_epi8(1), qa);
        let sumi = _mm256_sub_epi32(dot_u8_i8(nibbles(&bw.qs), qa), _mm256_slli_epi32(qa_sum, 3));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// Q8_0 × Q8_0: `sum (d_w d_a) sumi`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q8_0: row lengths differ");
    let mut acc = _mm256_setzero_ps();
    for (bw, ba) in w.iter().zip(a) {
        let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2(bw.d, bw.d), f16x2(ba.d, ba.d)));
        let sumi = dot_i8_i8_wide(load_i8x32(&bw.qs), load_i8x32(&ba.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// Exact signed byte dot product for any inputs (both may be -128, where the
/// `vpmaddubsw` form saturates), via 16-bit products: 8 i32 lanes.
#[inline(always)]
unsafe fn dot_i8_i8_wide(a: __m256i, b: __m256i) -> __m256i {
    let a_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
    let a_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1));
    let b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b));
    let b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1));
    _mm256_add_epi32(_mm256_madd_epi16(a_lo, b_lo), _mm256_madd_epi16(a_hi, b_hi))
}
