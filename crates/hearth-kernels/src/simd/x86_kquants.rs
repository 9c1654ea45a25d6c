//! AVX2 dot products of K-quant rows with Q8_K activations: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! Per super-block of 256: each 32-value chunk's unsigned quants times the signed
//! activation bytes (`vpmaddubsw`), times the chunk's small scales (`vpmaddwd`), summed
//! into eight exact i32 lanes, lane `l` over elements `32c + 4l .. 32c + 4l + 4` of every
//! chunk `c`; the lanes are scaled by `d_w * d_a` into eight f32 accumulators with one
//! FMA per super-block. Q4_K/Q5_K also accumulate their min correction
//! `(-d_a * dmin) * (mins · pair sums of bsums)` in four f32 lanes; Q2_K adds its
//! `(-d_a * dmin) * (mins · bsums)` (eight lanes) into the main accumulators first. One horizontal sum at
//! the end. The scalar twins in `quants/k_quants/mod.rs` (`vec_dot_q*_k_q8_k_ref`) do the same
//! f32 operations in the same order; ggml's generic code (eight lanes by element index
//! mod 8) differs from them by f32 rounding only.

use std::arch::x86_64::*;

use crate::quants::{
    fp16_to_fp32, k4_scales_mins, q3_k_scales16, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K,
    BlockQ6_K, BlockQ8_K,
};

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `(m0 + m2) + (m1 + m3)` of four lanes.
#[inline(always)]
pub(crate) unsafe fn hsum4(v: __m128) -> f32 {
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
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                    q6_high::<4>(bits_h, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4),
                    q6_high::<6>(bits_h, m2),
                ),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let c = 4 * h + k;
                let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
                // q a per byte pair (q in 0..=63), exact in i16.
                let p16 = _mm256_maddubs_epi16(qk, q8);
                // Scales 2c (first 16 values) and 2c + 1, sign-extended to i16.
                let shuf = _mm_set_epi64x(
                    0x0101_0101_0101_0101 * (2 * c as i64 + 1),
                    0x0101_0101_0101_0101 * (2 * c as i64),
                );
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p16));
            }
        }
        let sumi = _mm256_sub_epi32(sumi, q6_offset(y, scales));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// The Q6_K quants' offset of 32 per lane, as the twin takes it: lane `l` is `32 ×
/// (bsums[2l] s[2l] + bsums[2l+1] s[2l+1])`.
#[inline(always)]
unsafe fn q6_offset(y: &BlockQ8_K, scales: __m128i) -> __m256i {
    let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
    _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(scales)))
}

/// The i16 scales of 32-value chunk `c` from 16 per-sub-block i8 scales: lanes 0..8 get
/// scale `2c`, lanes 8..16 scale `2c + 1` (so i32 lane `l` of a `vpmaddwd` gets the
/// scale of element `32c + 4l`).
#[inline(always)]
unsafe fn chunk_scales(scales: __m128i, c: usize) -> __m256i {
    let shuf = _mm_set_epi64x(
        0x0101_0101_0101_0101 * (2 * c as i64 + 1),
        0x0101_0101_0101_0101 * (2 * c as i64),
    );
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf))
}

/// Q3_K × Q8_K: as Q6_K, with quants `low2 + 4 × hbit - 4`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q3_k_q8_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q3_K vec_dot: block counts differ");
    let m3 = _mm256_set1_epi8(3);
    let m1 = _mm256_set1_epi8(1);
    let m4 = _mm256_set1_epi8(4);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let d = y.d * fp16_to_fp32(x.d);
        let sc = q3_k_scales16(&x.scales);
        let scales = _mm_loadu_si128(sc.as_ptr().cast());
        let hbits = load(x.hmask.as_ptr());
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let bits = load(x.qs.as_ptr().add(32 * h));
            for k in 0..4 {
                let c = 4 * h + k;
                let low =
                    _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * k as i32)), m3);
                let hb = _mm256_and_si256(_mm256_srl_epi16(hbits, _mm_cvtsi32_si128(c as i32)), m1);
                let u = _mm256_or_si256(low, _mm256_slli_epi16(hb, 2));
                let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
                // (u - 4) a per byte pair, exact in i16.
                let p16 =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(u, q8), _mm256_maddubs_epi16(m4, q8));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(chunk_scales(scales, c), p16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc)
}

/// Q2_K × Q8_K: per super-block, the min correction `(-d_a dmin) × (mins · bsums)` (eight
/// i32 lanes of two sub-blocks) into the accumulators, then `(d_a d) × sumi`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q2_k_q8_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q2_K vec_dot: block counts differ");
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let d = y.d * fp16_to_fp32(x.d);
        let dmin = -y.d * fp16_to_fp32(x.dmin);
        let ms = _mm_loadu_si128(x.scales.as_ptr().cast());
        let scales = _mm_and_si128(ms, m4);
        let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(ms, 4), m4));
        let prod = _mm256_madd_epi16(mins, _mm256_loadu_si256(y.bsums.as_ptr().cast()));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let bits = load(x.qs.as_ptr().add(32 * h));
            for k in 0..4 {
                let c = 4 * h + k;
                let u =
                    _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * k as i32)), m3);
                let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_madd_epi16(chunk_scales(scales, c), _mm256_maddubs_epi16(u, q8)),
                );
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
    let lo = if j.is_multiple_of(2) {
        _mm256_and_si256(b, m4)
    } else {
        _mm256_and_si256(_mm256_srli_epi16(b, 4), m4)
    };
    if FIVE {
        let h = _mm256_and_si256(
            _mm256_srl_epi16(hbits, _mm_cvtsi32_si128(j as i32)),
            _mm256_set1_epi8(1),
        );
        _mm256_or_si256(lo, _mm256_slli_epi16(h, 4))
    } else {
        lo
    }
}

/// One Q4_K/Q5_K super-block's exact integer sums against `y`: the eight lanes of
/// `sc[j] × (four products)` over the chunks, and the four lanes of the mins' correction
/// (`m · bsum pairs`, two sub-blocks a lane).
#[inline(always)]
unsafe fn k4_sums<const FIVE: bool>(
    scales: &[u8; 12],
    qs: *const u8,
    hbits: __m256i,
    y: &BlockQ8_K,
) -> (__m256i, __m128i) {
    let (sc, m) = k4_scales_mins(scales);
    let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.as_ptr().cast()));
    let bs = y.bsums.as_ptr();
    let q8s = _mm_hadd_epi16(
        _mm_loadu_si128(bs.cast()),
        _mm_loadu_si128(bs.add(8).cast()),
    );
    let prod = _mm_madd_epi16(mins, q8s);
    let mut sumi = _mm256_setzero_si256();
    for (j, &s) in sc.iter().enumerate() {
        let q8 = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j).cast());
        let p = _mm256_madd_epi16(
            _mm256_set1_epi16(i16::from(s)),
            _mm256_maddubs_epi16(k4_chunk::<FIVE>(qs, hbits, j), q8),
        );
        sumi = _mm256_add_epi32(sumi, p);
    }
    (sumi, prod)
}

/// The sum of eight i32 lanes (exact in any order).
#[inline(always)]
pub(crate) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    hsum_i32x4(s)
}

/// The sum of four i32 lanes (exact in any order).
#[inline(always)]
pub(crate) unsafe fn hsum_i32x4(s: __m128i) -> i32 {
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)))
}

/// Q4_K × Q8_K, as [`crate::vec_dot_q4_k_q8_k_ref`]: per super-block the whole integer
/// sums, then one FMA each for the scales and the mins.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q4_K vec_dot: block counts differ");
    let (mut acc, mut acc_m) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(a) {
        let (sumi, prod) = k4_sums::<false>(&x.scales, x.qs.as_ptr(), _mm256_setzero_si256(), y);
        acc = (hsum_i32(sumi) as f32).mul_add(fp16_to_fp32(x.d) * y.d, acc);
        acc_m = (hsum_i32x4(prod) as f32).mul_add(fp16_to_fp32(x.dmin) * y.d, acc_m);
    }
    acc - acc_m
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
        let (sumi, prod) = k4_sums::<true>(&x.scales, x.qs.as_ptr(), load(x.qh.as_ptr()), y);
        let dmin = -y.d * fp16_to_fp32(x.dmin);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
        let d = y.d * fp16_to_fp32(x.d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(acc) + hsum4(acc_m)
}

// ---------------------------------------------------------------------------------------
// Tiled products (the driver of `x86_legacy.rs`)
// ---------------------------------------------------------------------------------------
//
// Every output keeps its own accumulators and sees exactly the f32 operations of the
// one-row kernels above, in the same order (the per-block integer sums are exact, so
// how a tile orders them does not matter); a weight super-block is unpacked once for all
// the tokens of a tile.

use super::x86::{gemm, prefetch_next_tile, Tile, TILE_TOKENS};

struct TileQ6K;

impl Tile for TileQ6K {
    type W = BlockQ6_K;
    type A = BlockQ8_K;
    /// Nothing: every token's activations are read in place.
    type Prep = ();

    #[inline(always)]
    unsafe fn prepare<const T: usize>(_a: *const BlockQ8_K, _nb: usize, _prep: &mut [Self::Prep]) {}

    /// Per super-block and output, the same i32 lanes as [`vec_dot_q6_k_q8_k`], so the
    /// same result: the unsigned quants (`0..=63`) take `vpmaddubsw`'s unsigned side and
    /// the activations its signed side (exact in i16, |pair| ≤ 63·128·2), then each
    /// token's offset lanes ([`q6_offset`]) are subtracted. A weight super-block is
    /// unpacked once for all the tokens of the tile.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // acc[r][t] reads best indexed
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ6_K,
        a: *const BlockQ8_K,
        _prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R] {
        let m4 = _mm256_set1_epi8(0x0f);
        let m2 = _mm256_set1_epi8(3);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            if T <= 2 {
                prefetch_next_tile::<BlockQ6_K, R>(w, nb, b);
            }
            let d_a = token_scales::<T>(a, nb, b);
            for r in 0..R {
                let x = &*w.add(r * nb + b);
                let scales = _mm_loadu_si128(x.scales.as_ptr().cast());
                let mut d = [0.0f32; 8];
                _mm256_storeu_ps(
                    d.as_mut_ptr(),
                    _mm256_mul_ps(d_a, _mm256_set1_ps(f16_pair(x.d, x.d).0)),
                );
                let mut sumi = [_mm256_setzero_si256(); T];
                for c in 0..8 {
                    let (h, k) = (c / 4, c % 4);
                    let bits = load(x.ql.as_ptr().add(64 * h + 32 * (k % 2)));
                    let bits_h = load(x.qh.as_ptr().add(32 * h));
                    let low = if k < 2 {
                        _mm256_and_si256(bits, m4)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4)
                    };
                    let high = match k {
                        0 => q6_high::<0>(bits_h, m2),
                        1 => q6_high::<2>(bits_h, m2),
                        2 => q6_high::<4>(bits_h, m2),
                        _ => q6_high::<6>(bits_h, m2),
                    };
                    let (q, sc) = (_mm256_or_si256(low, high), chunk_scales(scales, c));
                    for (t, s) in sumi.iter_mut().enumerate() {
                        let q8 = load((*a.add(t * nb + b)).qs.as_ptr().add(32 * c).cast());
                        *s = _mm256_add_epi32(
                            *s,
                            _mm256_madd_epi16(sc, _mm256_maddubs_epi16(q, q8)),
                        );
                    }
                }
                for t in 0..T {
                    let sumi = _mm256_sub_epi32(sumi[t], q6_offset(&*a.add(t * nb + b), scales));
                    acc[r][t] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d[t]), _mm256_cvtepi32_ps(sumi), acc[r][t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]);
            }
        }
        res
    }
}

/// Tiled Q6_K × Q8_K: `out[t * n_rows + r]` is [`vec_dot_q6_k_q8_k`] of weight row `r`
/// and activation row `t` (rows of `nb` super-blocks), bit for bit.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q6_k_q8_k<'o>(
    nb: usize,
    w: &[BlockQ6_K],
    a: &[BlockQ8_K],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ6K, TILE_TOKENS>(nb, w, a, out)
}

/// The parts of a Q4_K or Q5_K block the kernels read.
trait K4Block {
    const FIVE: bool;
    fn d(&self) -> half::f16;
    fn dmin(&self) -> half::f16;
    fn scales(&self) -> &[u8; 12];
    fn qs(&self) -> *const u8;
    /// The fifth bits (Q5_K only; zero for Q4_K).
    unsafe fn hbits(&self) -> __m256i;
}

impl K4Block for BlockQ4_K {
    const FIVE: bool = false;
    #[inline(always)]
    fn d(&self) -> half::f16 {
        self.d
    }
    #[inline(always)]
    fn dmin(&self) -> half::f16 {
        self.dmin
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> *const u8 {
        self.qs.as_ptr()
    }
    #[inline(always)]
    unsafe fn hbits(&self) -> __m256i {
        _mm256_setzero_si256()
    }
}

impl K4Block for BlockQ5_K {
    const FIVE: bool = true;
    #[inline(always)]
    fn d(&self) -> half::f16 {
        self.d
    }
    #[inline(always)]
    fn dmin(&self) -> half::f16 {
        self.dmin
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> *const u8 {
        self.qs.as_ptr()
    }
    #[inline(always)]
    unsafe fn hbits(&self) -> __m256i {
        load(self.qh.as_ptr())
    }
}

struct TileK4<B>(std::marker::PhantomData<B>);

/// Each token's `d_a` as eight f32 lanes (zero past `T`).
#[inline(always)]
unsafe fn token_scales<const T: usize>(a: *const BlockQ8_K, nb: usize, b: usize) -> __m256 {
    let mut d = [0.0f32; 8];
    for (t, d) in d.iter_mut().enumerate().take(T) {
        *d = (*a.add(t * nb + b)).d;
    }
    _mm256_loadu_ps(d.as_ptr())
}

/// `d_w` and `dmin_w` of a K-quant super-block as f32 (F16C).
#[inline(always)]
unsafe fn f16_pair(d: half::f16, dmin: half::f16) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(
        i32::from(d.to_bits()) | (i32::from(dmin.to_bits()) << 16),
    ));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

impl<B: K4Block> Tile for TileK4<B> {
    type W = B;
    type A = BlockQ8_K;
    /// Each token's pair sums of `bsums` (eight i16, one per 32-value chunk).
    type Prep = [__m128i; TILE_TOKENS];

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_K, nb: usize, prep: &mut [Self::Prep]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            for (t, q) in p.iter_mut().enumerate().take(T) {
                let bs = (*a.add(t * nb + b)).bsums.as_ptr();
                *q = _mm_hadd_epi16(
                    _mm_loadu_si128(bs.cast()),
                    _mm_loadu_si128(bs.add(8).cast()),
                );
            }
        }
    }

    /// Per super-block and output, as `k4_sums` in the one-row kernels. A row's scales
    /// and mins are unpacked once for the tile's tokens, each chunk's scale pair stored
    /// for a broadcast load, and the tokens' `d_a d_w` and `-d_a dmin_w` computed in one
    /// multiply each (the same products, rounded once).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // acc[r][t] reads best indexed
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const B,
        a: *const BlockQ8_K,
        prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut acc_m = [[_mm_setzero_ps(); T]; R];
        // Q4_K's scalar accumulators: (scales, mins).
        let mut acc4 = [[(0.0f32, 0.0f32); T]; R];
        for (b, q8s) in prep.iter().enumerate().take(nb) {
            if T <= 2 {
                prefetch_next_tile::<B, R>(w, nb, b);
            }
            let d_a = token_scales::<T>(a, nb, b);
            for r in 0..R {
                let x = &*w.add(r * nb + b);
                let (sc, m) = k4_scales_mins(x.scales());
                // Each chunk's scale in both i16 halves of an i32, for a broadcast.
                let scw: [i32; 8] = sc.map(|s| i32::from(s) * 0x1_0001);
                let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.as_ptr().cast()));
                let (dw, dminw) = f16_pair(x.d(), x.dmin());
                // Q5_K's per-token scale products (Q4_K takes its own in the FMAs).
                let (mut d, mut dmin) = ([0.0f32; 8], [0.0f32; 8]);
                if B::FIVE {
                    _mm256_storeu_ps(d.as_mut_ptr(), _mm256_mul_ps(d_a, _mm256_set1_ps(dw)));
                    _mm256_storeu_ps(
                        dmin.as_mut_ptr(),
                        _mm256_mul_ps(
                            _mm256_xor_ps(d_a, _mm256_set1_ps(-0.0)),
                            _mm256_set1_ps(dminw),
                        ),
                    );
                }
                let hbits = x.hbits();
                let mut sumi = [_mm256_setzero_si256(); T];
                for j in 0..8 {
                    let chunk = if B::FIVE {
                        k4_chunk::<true>(x.qs(), hbits, j)
                    } else {
                        k4_chunk::<false>(x.qs(), hbits, j)
                    };
                    let scj = _mm256_set1_epi32(scw[j]);
                    for (t, si) in sumi.iter_mut().enumerate() {
                        let q8 =
                            _mm256_loadu_si256((*a.add(t * nb + b)).qs.as_ptr().add(32 * j).cast());
                        *si = _mm256_add_epi32(
                            *si,
                            _mm256_madd_epi16(scj, _mm256_maddubs_epi16(chunk, q8)),
                        );
                    }
                }
                for t in 0..T {
                    let prod = _mm_madd_epi16(mins, q8s[t]);
                    if !B::FIVE {
                        // Q4_K: the whole integer sums, one FMA each (the twin's).
                        let d_at = (*a.add(t * nb + b)).d;
                        acc4[r][t].0 = (hsum_i32(sumi[t]) as f32).mul_add(dw * d_at, acc4[r][t].0);
                        acc4[r][t].1 =
                            (hsum_i32x4(prod) as f32).mul_add(dminw * d_at, acc4[r][t].1);
                        continue;
                    }
                    acc_m[r][t] =
                        _mm_fmadd_ps(_mm_set1_ps(dmin[t]), _mm_cvtepi32_ps(prod), acc_m[r][t]);
                    acc[r][t] = _mm256_fmadd_ps(
                        _mm256_set1_ps(d[t]),
                        _mm256_cvtepi32_ps(sumi[t]),
                        acc[r][t],
                    );
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = if B::FIVE {
                    hsum(acc[r][t]) + hsum4(acc_m[r][t])
                } else {
                    acc4[r][t].0 - acc4[r][t].1
                };
            }
        }
        res
    }
}

/// Tiled Q4_K × Q8_K, bit for bit [`vec_dot_q4_k_q8_k`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_k_q8_k<'o>(
    nb: usize,
    w: &[BlockQ4_K],
    a: &[BlockQ8_K],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileK4<BlockQ4_K>, TILE_TOKENS>(nb, w, a, out)
}

/// Tiled Q5_K × Q8_K, bit for bit [`vec_dot_q5_k_q8_k`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q5_k_q8_k<'o>(
    nb: usize,
    w: &[BlockQ5_K],
    a: &[BlockQ8_K],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileK4<BlockQ5_K>, TILE_TOKENS>(nb, w, a, out)
}

struct TileQ3K;

impl Tile for TileQ3K {
    type W = BlockQ3_K;
    type A = BlockQ8_K;
    type Prep = ();

    #[inline(always)]
    unsafe fn prepare<const T: usize>(_: *const BlockQ8_K, _: usize, _: &mut [()]) {}

    /// Per super-block and output, as [`vec_dot_q3_k_q8_k`].
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ3_K,
        a: *const BlockQ8_K,
        _: &mut [()],
        nb: usize,
    ) -> [[f32; T]; R] {
        let m3 = _mm256_set1_epi8(3);
        let m1 = _mm256_set1_epi8(1);
        let m4 = _mm256_set1_epi8(4);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            if T <= 2 {
                prefetch_next_tile::<BlockQ3_K, R>(w, nb, b);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = &*w.add(r * nb + b);
                let sc = q3_k_scales16(&x.scales);
                let scales = _mm_loadu_si128(sc.as_ptr().cast());
                let hbits = load(x.hmask.as_ptr());
                let mut sumi = [_mm256_setzero_si256(); T];
                for h in 0..2 {
                    let bits = load(x.qs.as_ptr().add(32 * h));
                    for k in 0..4 {
                        let c = 4 * h + k;
                        let low = _mm256_and_si256(
                            _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * k as i32)),
                            m3,
                        );
                        let hb = _mm256_and_si256(
                            _mm256_srl_epi16(hbits, _mm_cvtsi32_si128(c as i32)),
                            m1,
                        );
                        let u = _mm256_or_si256(low, _mm256_slli_epi16(hb, 2));
                        let csc = chunk_scales(scales, c);
                        for (t, s) in sumi.iter_mut().enumerate() {
                            let q8 = _mm256_loadu_si256(
                                (*a.add(t * nb + b)).qs.as_ptr().add(32 * c).cast(),
                            );
                            let p16 = _mm256_sub_epi16(
                                _mm256_maddubs_epi16(u, q8),
                                _mm256_maddubs_epi16(m4, q8),
                            );
                            *s = _mm256_add_epi32(*s, _mm256_madd_epi16(csc, p16));
                        }
                    }
                }
                let dw = fp16_to_fp32(x.d);
                for t in 0..T {
                    let d = (*a.add(t * nb + b)).d * dw;
                    acc[t] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]);
            }
        }
        res
    }
}

/// Tiled Q3_K × Q8_K, bit for bit [`vec_dot_q3_k_q8_k`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q3_k_q8_k<'o>(
    nb: usize,
    w: &[BlockQ3_K],
    a: &[BlockQ8_K],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ3K, 4>(nb, w, a, out)
}

struct TileQ2K;

impl Tile for TileQ2K {
    type W = BlockQ2_K;
    type A = BlockQ8_K;
    type Prep = ();

    #[inline(always)]
    unsafe fn prepare<const T: usize>(_: *const BlockQ8_K, _: usize, _: &mut [()]) {}

    /// Per super-block and output, as [`vec_dot_q2_k_q8_k`]: the min correction's FMA,
    /// then the scale's.
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ2_K,
        a: *const BlockQ8_K,
        _: &mut [()],
        nb: usize,
    ) -> [[f32; T]; R] {
        let m3 = _mm256_set1_epi8(3);
        let m4 = _mm_set1_epi8(0x0f);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            if T <= 2 {
                prefetch_next_tile::<BlockQ2_K, R>(w, nb, b);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = &*w.add(r * nb + b);
                let (dw, dminw) = (fp16_to_fp32(x.d), fp16_to_fp32(x.dmin));
                let ms = _mm_loadu_si128(x.scales.as_ptr().cast());
                let scales = _mm_and_si128(ms, m4);
                let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(ms, 4), m4));
                for (t, acc) in acc.iter_mut().enumerate() {
                    let y = &*a.add(t * nb + b);
                    let prod = _mm256_madd_epi16(mins, _mm256_loadu_si256(y.bsums.as_ptr().cast()));
                    *acc = _mm256_fmadd_ps(
                        _mm256_set1_ps(-y.d * dminw),
                        _mm256_cvtepi32_ps(prod),
                        *acc,
                    );
                }
                let mut sumi = [_mm256_setzero_si256(); T];
                for h in 0..2 {
                    let bits = load(x.qs.as_ptr().add(32 * h));
                    for k in 0..4 {
                        let c = 4 * h + k;
                        let u = _mm256_and_si256(
                            _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * k as i32)),
                            m3,
                        );
                        let csc = chunk_scales(scales, c);
                        for (t, s) in sumi.iter_mut().enumerate() {
                            let q8 = _mm256_loadu_si256(
                                (*a.add(t * nb + b)).qs.as_ptr().add(32 * c).cast(),
                            );
                            *s = _mm256_add_epi32(
                                *s,
                                _mm256_madd_epi16(csc, _mm256_maddubs_epi16(u, q8)),
                            );
                        }
                    }
                }
                for t in 0..T {
                    let d = (*a.add(t * nb + b)).d * dw;
                    acc[t] =
                        _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]);
            }
        }
        res
    }
}

/// Tiled Q2_K × Q8_K, bit for bit [`vec_dot_q2_k_q8_k`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q2_k_q8_k<'o>(
    nb: usize,
    w: &[BlockQ2_K],
    a: &[BlockQ8_K],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ2K, 4>(nb, w, a, out)
}
