//! AVX2 dot products of K-quant rows with Q8_K activations: Q4_K, Q5_K, Q6_K.
//!
//! Per super-block of 256: each 32-value chunk's unsigned quants times the signed
//! activation bytes (`vpmaddubsw`), times the chunk's small scales (`vpmaddwd`), summed
//! into eight exact i32 lanes, lane `l` over elements `32c + 4l .. 32c + 4l + 4` of every
//! chunk `c`; the lanes are scaled by `d_w * d_a` into eight f32 accumulators with one
//! FMA per super-block. Q4_K/Q5_K also accumulate their min correction
//! `(-d_a * dmin) * (mins · pair sums of bsums)` in four f32 lanes. One horizontal sum at
//! the end. The scalar twins in `quants/k_quants.rs` (`vec_dot_q*_k_q8_k_ref`) do the same
//! f32 operations in the same order; ggml's generic code (eight lanes by element index
//! mod 8) differs from them by f32 rounding only.

use std::arch::x86_64::*;

use crate::quants::{fp16_to_fp32, k4_scales_mins, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K};

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `(m0 + m2) + (m1 + m3)` of four lanes.
#[inline(always)]
unsafe fn hsum4(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// Bits `S..S + 2` of each byte of `qh`, moved to bits 4..6.
#[inline(always)]
unsafe fn q6_high<const S: i32>(qh: __m256i, m2: __m256i) -> __m256i {
    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16::<S>(qh), m2), 4)
}

/// Q6_K × Q8_K.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_q8_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q6_K vec_dot: block counts differ");
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let d = y.d * fp16_to_fp32(x.d);
        let scales = _mm_loadu_si128(x.scales.as_ptr().cast());
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let ql = x.ql.as_ptr().add(64 * h);
            let bits1 = load(ql);
            let bits2 = load(ql.add(32));
            let bits_h = load(x.qh.as_ptr().add(32 * h));
            // The four 32-value chunks of this half, quants 0..=63 in element order.
            let q = [
                _mm256_or_si256(_mm256_and_si256(bits1, m4), q6_high::<0>(bits_h, m2)),
                _mm256_or_si256(_mm256_and_si256(bits2, m4), q6_high::<2>(bits_h, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4), q6_high::<4>(bits_h, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4), q6_high::<6>(bits_h, m2)),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let c = 4 * h + k;
                let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
                // (q - 32) a per byte pair, exact in i16.
                let p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(qk, q8), _mm256_maddubs_epi16(m32, q8));
                // Scales 2c (first 16 values) and 2c + 1, sign-extended to i16.
                let shuf = _mm_set_epi64x(0x0101_0101_0101_0101 * (2 * c as i64 + 1), 0x0101_0101_0101_0101 * (2 * c as i64));
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// Chunk `j` (32 values in element order) of a Q4_K/Q5_K super-block as unsigned bytes:
/// nibbles of `qs[32 (j / 2)..]` (low for even `j`, high for odd), plus for Q5_K
/// (`FIVE`) bit `j` of each `qh` byte (`hbits`) as bit 4.
#[inline(always)]
unsafe fn k4_chunk<const FIVE: bool>(qs: *const u8, hbits: __m256i, j: usize) -> __m256i {
    let m4 = _mm256_set1_epi8(0x0f);
    let b = load(qs.add(32 * (j / 2)));
    let lo = if j % 2 == 0 { _mm256_and_si256(b, m4) } else { _mm256_and_si256(_mm256_srli_epi16(b, 4), m4) };
    if FIVE {
        let h = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(j as i32)), _mm256_set1_epi8(1));
        _mm256_or_si256(lo, _mm256_slli_epi16(h, 4))
    } else {
        lo
    }
}

/// One Q4_K/Q5_K super-block into the accumulators.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn k4_block<const FIVE: bool>(
    d16: half::f16,
    dmin16: half::f16,
    scales: &[u8; 12],
    qs: *const u8,
    hbits: __m256i,
    y: &BlockQ8_K,
    acc: &mut __m256,
    acc_m: &mut __m128,
) {
    let d = y.d * fp16_to_fp32(d16);
    let dmin = -y.d * fp16_to_fp32(dmin16);
    let (sc, m) = k4_scales_mins(scales);
    // Min correction: mins · (sums of bsums pairs), four i32 lanes of two sub-blocks.
    let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.as_ptr().cast()));
    let bs = y.bsums.as_ptr();
    let q8s = _mm_hadd_epi16(_mm_loadu_si128(bs.cast()), _mm_loadu_si128(bs.add(8).cast()));
    let prod = _mm_madd_epi16(mins, q8s);
    *acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), *acc_m);
    let mut sumi = _mm256_setzero_si256();
    for (j, &s) in sc.iter().enumerate() {
        let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j).cast());
        let p = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(s)), _mm256_maddubs_epi16(k4_chunk::<FIVE>(qs, hbits, j), q8));
        sumi = _mm256_add_epi32(sumi, p);
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
}

/// Q4_K × Q8_K.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q4_K vec_dot: block counts differ");
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        k4_block::<false>(x.d, x.dmin, &x.scales, x.qs.as_ptr(), _mm256_setzero_si256(), y, &mut acc, &mut acc_m);
    }
    hsum(acc) + hsum4(acc_m)
}

/// Q5_K × Q8_K.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k_q8_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q5_K vec_dot: block counts differ");
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        k4_block::<true>(x.d, x.dmin, &x.scales, x.qs.as_ptr(), load(x.qh.as_ptr()), y, &mut acc, &mut acc_m);
    }
    hsum(acc) + hsum4(acc_m)
}
