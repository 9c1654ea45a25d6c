//! AVX-512 (F, BW, VL, VNNI) tiled dot products of weight rows with 8-bit activations.
//!
//! A 512-bit register holds two outputs side by side: its low half is the eight f32
//! accumulators of one weight row against a token, its high half those of the next row
//! against the same token. Each half does exactly the arithmetic of the scalar twin
//! (`vec_dot_*_ref`) and of the AVX2 kernels: per block, eight i32 lanes of four-product
//! sums (one `vpdpbusd`, or two `vpdpwssd` for signed weights), scaled into the lanes
//! with one FMA by `d_w * d_a`; the same horizontal sum at the end. So every output is
//! bit-identical to the twin whatever the ISA, the tile or the batch; the register just
//! does two of them at once, and one VNNI instruction does the work of two.
//!
//! Tiles are one pair of rows against up to [`TILE_TOKENS_512`] tokens. The activation
//! side of a tile is prepared once per call ([`PairTile::prepare`]); a weight block is
//! unpacked once per row pair for all the tile's tokens.

use std::arch::x86_64::*;

use super::x86::{hsum, prefetch_next_tile};
use crate::quants::{BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Most tokens per tile: one 512-bit accumulator per token, 16 of the 32 registers.
pub(crate) const TILE_TOKENS_512: usize = 16;

/// A tile kernel for one weight type: `prepare` converts the activation side of up to
/// [`TILE_TOKENS_512`] tokens once, `tile` computes two rows × `T` tokens.
pub(crate) trait PairTile {
    type W;
    type A;
    /// Activation-side data per block, for a tile of tokens.
    type Prep: Copy;
    /// `prep[b]` (`prep.len() == nb`) for `T` activation rows of `nb` blocks at `a`
    /// (row `t` at `a + t * nb`); what belongs to tokens `T..` is zero.
    unsafe fn prepare<const T: usize>(a: *const Self::A, nb: usize, prep: &mut [Self::Prep]);
    /// `out[h][t]`: weight row `w0` (`h = 0`) and `w1` (`h = 1`), each `nb` blocks,
    /// against token `t` of `prep`.
    unsafe fn tile<const T: usize>(w0: *const Self::W, w1: *const Self::W, prep: &[Self::Prep], nb: usize) -> [[f32; T]; 2];
}

/// Runs a pair-tile kernel over `n_rows × n_tokens` outputs (`out[t * n_rows + r]`):
/// tokens in tiles of up to `MAX_T`, rows two at a time (an odd last row is paired with
/// itself and written once).
#[inline(always)]
unsafe fn gemm<K: PairTile, const MAX_T: usize>(nb: usize, w: &[K::W], a: &[K::A], out: &mut [f32]) {
    const { assert!(MAX_T >= 1 && MAX_T <= TILE_TOKENS_512) };
    assert!(nb > 0 && w.len() % nb == 0 && a.len() % nb == 0, "gemm: lengths are not whole rows");
    let (n_rows, n_tokens) = (w.len() / nb, a.len() / nb);
    assert_eq!(out.len(), n_rows * n_tokens, "gemm: output length");
    let mut buf = SCRATCH.with(|c| c.take());
    let prep = scratch::<K::Prep>(&mut buf, nb);
    let mut t0 = 0;
    while t0 < n_tokens {
        let ap = a.as_ptr().add(t0 * nb);
        // (A match, not a closure: a closure would not inherit the target features.)
        t0 += match (n_tokens - t0).min(MAX_T) {
            1 => pairs::<K, 1>(nb, w, ap, t0, prep, out),
            2 => pairs::<K, 2>(nb, w, ap, t0, prep, out),
            3 => pairs::<K, 3>(nb, w, ap, t0, prep, out),
            4 => pairs::<K, 4>(nb, w, ap, t0, prep, out),
            5 => pairs::<K, 5>(nb, w, ap, t0, prep, out),
            6 => pairs::<K, 6>(nb, w, ap, t0, prep, out),
            7 => pairs::<K, 7>(nb, w, ap, t0, prep, out),
            8 => pairs::<K, 8>(nb, w, ap, t0, prep, out),
            9 => pairs::<K, 9>(nb, w, ap, t0, prep, out),
            10 => pairs::<K, 10>(nb, w, ap, t0, prep, out),
            11 => pairs::<K, 11>(nb, w, ap, t0, prep, out),
            12 => pairs::<K, 12>(nb, w, ap, t0, prep, out),
            13 => pairs::<K, 13>(nb, w, ap, t0, prep, out),
            14 => pairs::<K, 14>(nb, w, ap, t0, prep, out),
            15 => pairs::<K, 15>(nb, w, ap, t0, prep, out),
            _ => pairs::<K, 16>(nb, w, ap, t0, prep, out),
        };
    }
    SCRATCH.with(|c| c.set(buf));
}

thread_local! {
    /// Per-thread scratch for [`PairTile::prepare`], kept between calls (a matmul runs
    /// many small tasks per token).
    static SCRATCH: std::cell::Cell<Vec<__m512i>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `n` values of `P` in `buf`, grown (zero-filled) as needed; they hold whatever the
/// last user left. `P` must be plain data (floats and SIMD integers: any bit pattern is
/// a value) aligned to at most 64.
#[inline(always)]
fn scratch<P: Copy>(buf: &mut Vec<__m512i>, n: usize) -> &mut [P] {
    const { assert!(std::mem::align_of::<P>() <= 64) };
    let words = (n * std::mem::size_of::<P>()).div_ceil(64);
    if buf.len() < words {
        // SAFETY: an all-zero __m512i is a valid value.
        buf.resize(words, unsafe { std::mem::zeroed() });
    }
    // SAFETY: the buffer holds at least n * size_of::<P>() initialised bytes, aligned to
    // 64 >= align_of::<P>(), and P (floats and SIMD integers) is valid for any bits.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<P>(), n) }
}

/// All row pairs against the `T` tokens at `a` (tokens `t0..t0 + T` of the output);
/// returns `T`.
#[inline(always)]
unsafe fn pairs<K: PairTile, const T: usize>(nb: usize, w: &[K::W], a: *const K::A, t0: usize, prep: &mut [K::Prep], out: &mut [f32]) -> usize {
    let n_rows = w.len() / nb;
    K::prepare::<T>(a, nb, prep);
    let mut r = 0;
    while r < n_rows {
        let r1 = (r + 1).min(n_rows - 1);
        let v = K::tile::<T>(w.as_ptr().add(r * nb), w.as_ptr().add(r1 * nb), prep, nb);
        for t in 0..T {
            out[(t0 + t) * n_rows + r] = v[0][t];
            out[(t0 + t) * n_rows + r1] = v[1][t];
        }
        r += 2;
    }
    T
}

/// The two halves of `v`, each horizontally summed in [`hsum`]'s order.
#[inline(always)]
unsafe fn hsum_halves(v: __m512) -> [f32; 2] {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    [hsum(_mm512_castps512_ps256(v)), hsum(hi)]
}

/// Lane 0 of a four-lane vector in the low eight lanes, lane `I` in the high eight.
#[inline(always)]
unsafe fn spread<const I: i32>(v: __m128) -> __m512 {
    _mm512_permutexvar_ps(_mm512_set_epi32(I, I, I, I, I, I, I, I, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(v))
}

/// Lane `I` of a four-lane vector in all sixteen.
#[inline(always)]
unsafe fn splat<const I: i32>(v: __m128) -> __m512 {
    _mm512_permutexvar_ps(_mm512_set1_epi32(I), _mm512_castps128_ps512(v))
}

/// The 32-bit words at `p0` and `p1` as lanes 0 and 1.
#[inline(always)]
unsafe fn words2(p0: *const u8, p1: *const u8) -> __m128i {
    _mm_unpacklo_epi32(_mm_cvtsi32_si128(std::ptr::read_unaligned(p0.cast::<i32>())), _mm_cvtsi32_si128(std::ptr::read_unaligned(p1.cast::<i32>())))
}

/// The two 32-byte activation quants at `p` in both halves.
#[inline(always)]
unsafe fn both_halves(p: &__m256i) -> __m512i {
    _mm512_broadcast_i64x4(_mm256_load_si256(p))
}

/// Rows `w0` and `w1`'s 32 nibbles of block `b` as bytes in element order, `w0`'s in the
/// low half.
#[inline(always)]
unsafe fn q4_1_nibbles(w0: *const BlockQ4_1, w1: *const BlockQ4_1, b: usize) -> __m512i {
    let q0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((*w0.add(b)).qs.as_ptr().cast()));
    let q1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((*w1.add(b)).qs.as_ptr().cast()));
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q0), q1);
    // Per 16 bytes: the low nibbles, then the high ones.
    _mm512_and_si512(_mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0x0f))
}

/// `[d_w0, m_w0, d_w1, m_w1]` of block `b` of rows `w0` and `w1`, as f32.
#[inline(always)]
unsafe fn q4_1_dm(w0: *const BlockQ4_1, w1: *const BlockQ4_1, b: usize) -> __m128 {
    _mm_cvtph_ps(words2(w0.add(b).cast(), w1.add(b).cast()))
}

/// Rows `w0` and `w1`'s quants `16 h .. 16 h + 16` of block `b` widened to i16, `w0`'s
/// in the low half.
#[inline(always)]
unsafe fn q8_0_widened(w0: *const BlockQ8_0, w1: *const BlockQ8_0, b: usize, h: usize) -> __m512i {
    let q0 = _mm_loadu_si128((*w0.add(b)).qs.as_ptr().add(16 * h).cast());
    let q1 = _mm_loadu_si128((*w1.add(b)).qs.as_ptr().add(16 * h).cast());
    _mm512_cvtepi8_epi16(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q0), q1))
}

/// `[d_w0, d_w1, 0, 0]` of block `b` of rows `w0` and `w1`, as f32.
#[inline(always)]
unsafe fn q8_0_d(w0: *const BlockQ8_0, w1: *const BlockQ8_0, b: usize) -> __m128 {
    let (d0, d1) = ((*w0.add(b)).d.to_bits() as i32, (*w1.add(b)).d.to_bits() as i32);
    _mm_cvtph_ps(_mm_cvtsi32_si128(d0 | (d1 << 16)))
}

/// What [`TileQ4_1`] keeps per block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepQ4_1 {
    /// Each token's quants (aligned: in the activation rows a block's quants straddle
    /// cache lines).
    qa: [__m256i; TILE_TOKENS_512],
    /// `[d_a(t), s_a(t)]` of each token as f32, in lanes `2t`, `2t + 1`.
    ds: [f32; 2 * TILE_TOKENS_512],
    /// `s_a(t)` of each token.
    s_a: [f32; TILE_TOKENS_512],
}

pub(crate) struct TileQ4_1;

impl PairTile for TileQ4_1 {
    type W = BlockQ4_1;
    type A = BlockQ8_1;
    type Prep = PrepQ4_1;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_1, nb: usize, prep: &mut [PrepQ4_1]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u32; TILE_TOKENS_512];
            for (t, h) in h.iter_mut().enumerate().take(T) {
                let blk = a.add(t * nb + b);
                *h = std::ptr::read_unaligned(blk.cast::<u32>()); // d (low half), s
                p.qa[t] = _mm256_loadu_si256((*blk).qs.as_ptr().cast());
            }
            let h = _mm512_loadu_si512(h.as_ptr().cast());
            _mm512_storeu_ps(p.ds.as_mut_ptr(), _mm512_cvtph_ps(_mm512_castsi512_si256(h)));
            _mm512_storeu_ps(p.ds.as_mut_ptr().add(16), _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h)));
            _mm512_storeu_ps(p.s_a.as_mut_ptr(), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(h))));
        }
    }

    /// Per block and output, as [`crate::vec_dot_q4_1_q8_1_ref`]: `acc += (d_w d_a) *
    /// sumi` in the eight lanes, `summs += m_w * s_a`.
    #[inline(always)]
    unsafe fn tile<const T: usize>(w0: *const BlockQ4_1, w1: *const BlockQ4_1, prep: &[PrepQ4_1], nb: usize) -> [[f32; T]; 2] {
        let mut acc = [_mm512_setzero_ps(); T];
        let mut res = [[0.0f32; T]; 2];
        if T == 1 {
            // One token: both rows' scale products in one multiply.
            let mut summs = _mm_setzero_ps(); // lanes 1 and 3
            for (b, p) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the next pair's bytes are on their way in.
                prefetch_next_tile::<BlockQ4_1, 2>(w0, nb, b);
                let ds = _mm_castpd_ps(_mm_loaddup_pd(p.ds.as_ptr().cast())); // [d_a, s_a, d_a, s_a]
                let prod = _mm_mul_ps(q4_1_dm(w0, w1, b), ds);
                summs = _mm_add_ps(summs, prod);
                let sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q4_1_nibbles(w0, w1, b), both_halves(&p.qa[0]));
                acc[0] = _mm512_fmadd_ps(spread::<2>(prod), _mm512_cvtepi32_ps(sumi), acc[0]);
            }
            let mut s = [0.0f32; 4];
            _mm_storeu_ps(s.as_mut_ptr(), summs);
            let [h0, h1] = hsum_halves(acc[0]);
            res[0][0] = h0 + s[1];
            res[1][0] = h1 + s[3];
            return res;
        }
        let (mut summs0, mut summs1) = (_mm512_setzero_ps(), _mm512_setzero_ps()); // lane t: token t
        for (b, p) in prep.iter().enumerate().take(nb) {
            let dm = q4_1_dm(w0, w1, b);
            let s_a = _mm512_loadu_ps(p.s_a.as_ptr());
            summs0 = _mm512_add_ps(summs0, _mm512_mul_ps(splat::<1>(dm), s_a));
            summs1 = _mm512_add_ps(summs1, _mm512_mul_ps(splat::<3>(dm), s_a));
            let d_w = spread::<2>(dm);
            let q = q4_1_nibbles(w0, w1, b);
            for t in 0..T {
                let d = _mm512_mul_ps(d_w, _mm512_set1_ps(p.ds[2 * t]));
                let sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, both_halves(&p.qa[t]));
                acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[t]);
            }
        }
        let mut s = [[0.0f32; TILE_TOKENS_512]; 2];
        _mm512_storeu_ps(s[0].as_mut_ptr(), summs0);
        _mm512_storeu_ps(s[1].as_mut_ptr(), summs1);
        for t in 0..T {
            let [h0, h1] = hsum_halves(acc[t]);
            res[0][t] = h0 + s[0][t];
            res[1][t] = h1 + s[1][t];
        }
        res
    }
}

/// Tiled Q4_1 × Q8_1: `out[t * n_rows + r]` is [`crate::vec_dot_q4_1_q8_1_ref`] of weight
/// row `r` and activation row `t` (rows of `nb` blocks), bit for bit.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q4_1_q8_1(nb: usize, w: &[BlockQ4_1], a: &[BlockQ8_1], out: &mut [f32]) {
    gemm::<TileQ4_1, TILE_TOKENS_512>(nb, w, a, out)
}

/// What [`TileQ8_0`] keeps per block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepQ8_0 {
    /// Each token's quants widened to i16: elements 0..16 and 16..32.
    qa: [[__m256i; 2]; TILE_TOKENS_512],
    /// `d_a(t)` of each token as f32.
    d_a: [f32; TILE_TOKENS_512],
}

pub(crate) struct TileQ8_0;

impl PairTile for TileQ8_0 {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    type Prep = PrepQ8_0;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_0, nb: usize, prep: &mut [PrepQ8_0]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u16; TILE_TOKENS_512];
            for (t, h) in h.iter_mut().enumerate().take(T) {
                let blk = &*a.add(t * nb + b);
                *h = blk.d.to_bits();
                let q = blk.qs.as_ptr();
                p.qa[t] = [_mm256_cvtepi8_epi16(_mm_loadu_si128(q.cast())), _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16).cast()))];
            }
            _mm512_storeu_ps(p.d_a.as_mut_ptr(), _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr().cast())));
        }
    }

    /// Per block and output, as [`crate::vec_dot_q8_0_q8_0_ref`]: lane `l` sums the
    /// products of elements `2l, 2l+1` and `16+2l, 17+2l` (two `vpdpwssd` of the quants
    /// widened to i16: exact for any bytes); `acc += (d_w d_a) * sumi`.
    #[inline(always)]
    unsafe fn tile<const T: usize>(w0: *const BlockQ8_0, w1: *const BlockQ8_0, prep: &[PrepQ8_0], nb: usize) -> [[f32; T]; 2] {
        let mut acc = [_mm512_setzero_ps(); T];
        if T == 1 {
            for (b, p) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the next pair's bytes are on their way in.
                prefetch_next_tile::<BlockQ8_0, 2>(w0, nb, b);
                let d = _mm_mul_ps(q8_0_d(w0, w1, b), _mm_set1_ps(p.d_a[0]));
                let sumi = _mm512_dpwssd_epi32(_mm512_setzero_si512(), q8_0_widened(w0, w1, b, 0), _mm512_broadcast_i64x4(p.qa[0][0]));
                let sumi = _mm512_dpwssd_epi32(sumi, q8_0_widened(w0, w1, b, 1), _mm512_broadcast_i64x4(p.qa[0][1]));
                acc[0] = _mm512_fmadd_ps(spread::<1>(d), _mm512_cvtepi32_ps(sumi), acc[0]);
            }
        } else {
            for (b, p) in prep.iter().enumerate().take(nb) {
                let d_w = spread::<1>(q8_0_d(w0, w1, b));
                let (lo, hi) = (q8_0_widened(w0, w1, b, 0), q8_0_widened(w0, w1, b, 1));
                for t in 0..T {
                    let d = _mm512_mul_ps(d_w, _mm512_set1_ps(p.d_a[t]));
                    let sumi = _mm512_dpwssd_epi32(_mm512_setzero_si512(), lo, _mm512_broadcast_i64x4(p.qa[t][0]));
                    let sumi = _mm512_dpwssd_epi32(sumi, hi, _mm512_broadcast_i64x4(p.qa[t][1]));
                    acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; 2];
        for t in 0..T {
            [res[0][t], res[1][t]] = hsum_halves(acc[t]);
        }
        res
    }
}

/// Tiled Q8_0 × Q8_0: `out[t * n_rows + r]` is [`crate::vec_dot_q8_0_q8_0_ref`] of
/// weight row `r` and activation row `t` (rows of `nb` blocks), bit for bit.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn gemm_q8_0_q8_0(nb: usize, w: &[BlockQ8_0], a: &[BlockQ8_0], out: &mut [f32]) {
    gemm::<TileQ8_0, TILE_TOKENS_512>(nb, w, a, out)
}
