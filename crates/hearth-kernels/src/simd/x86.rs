//! AVX2 kernels: dot products of legacy quant rows with 8-bit activations, and one head
//! of attention over the KV cache.
//!
//! Per block: unsigned-by-signed byte products summed to i32 lanes (`vpmaddubsw` +
//! `vpmaddwd`), scaled by `d_w * d_a` into eight f32 accumulators that stay in registers
//! across the row; one horizontal sum at the end. The integer part is exact, so these
//! differ from the scalar twins only in the order of the f32 additions.

use std::arch::x86_64::*;

use half::f16;

use crate::attention::{KvElem, KvSpan};
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

/// Eight cache elements at `p` as f32 lanes (f16 widened exactly by F16C).
#[inline(always)]
unsafe fn load8<T: KvElem>(p: *const T) -> __m256 {
    if T::IS_F16 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    } else {
        _mm256_loadu_ps(p.cast())
    }
}

/// Rounds an f32 vector to the nearest f16 values (ties to even), back in f32.
#[inline(always)]
unsafe fn round_f16(x: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT))
}

/// AVX2 twin of [`crate::attention::attend_head`] for `head_dim == 64`: the same
/// operations in the same order (64-lane score dot reduced as there, f16 value
/// accumulator rounded after every key), so the results are bit-identical.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `q.len() == out.len() == 64`. (Each span is
/// checked to hold its rows.)
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attend_head_64<T: KvElem>(q: &[f32], spans: &[KvSpan<'_, T>], stride: usize, offset: usize, scale: f32, out: &mut [f32]) {
    assert!(q.len() == 64 && out.len() == 64);
    // q rounded to f16, as 8 registers of 8 lanes.
    let qv: [__m256; 8] = std::array::from_fn(|i| round_f16(_mm256_loadu_ps(q.as_ptr().add(8 * i))));
    let mut acc = [_mm256_setzero_ps(); 8];
    let (mut m, mut s_sum) = (f32::NEG_INFINITY, 0.0f32);
    for span in spans {
        assert!(span.holds(stride, offset, 64), "attention span out of bounds");
        for p in 0..span.n_pos {
            let kp = span.k.as_ptr().add(p * stride + offset);
            // Lanes l of group g (16 lanes) live in register 2g + l/8.
            let prod: [__m256; 8] = std::array::from_fn(|i| _mm256_mul_ps(qv[i], load8(kp.add(8 * i))));
            // groups: 0+2, 1+3, then 0+1 (per register half).
            let g01 = [_mm256_add_ps(prod[0], prod[4]), _mm256_add_ps(prod[1], prod[5])];
            let g13 = [_mm256_add_ps(prod[2], prod[6]), _mm256_add_ps(prod[3], prod[7])];
            let lo = _mm256_add_ps(g01[0], g13[0]); // lanes 0..8 of the 16-lane sum
            let hi = _mm256_add_ps(g01[1], g13[1]); // lanes 8..16
            let t3 = _mm256_add_ps(hi, lo); // l + l+8
            let t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3)); // l + l+4
            let t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6)); // (0+2), (1+3)
            let s = _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8))) * scale;
            let (ms, vs) = if s > m {
                let ms = (m - s).exp();
                m = s;
                let msv = _mm256_set1_ps(ms);
                for a in acc.iter_mut() {
                    *a = round_f16(_mm256_mul_ps(*a, msv));
                }
                (ms, 1.0)
            } else {
                (1.0, (s - m).exp())
            };
            let vsv = _mm256_set1_ps(vs);
            let vp = span.v.as_ptr().add(p * stride + offset);
            for (i, a) in acc.iter_mut().enumerate() {
                *a = round_f16(_mm256_fmadd_ps(load8(vp.add(8 * i)), vsv, *a));
            }
            s_sum = s_sum.mul_add(ms, vs);
        }
    }
    let inv = _mm256_set1_ps(if s_sum == 0.0 { 0.0 } else { 1.0 / s_sum });
    for (i, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), _mm256_mul_ps(*a, inv));
    }
}
