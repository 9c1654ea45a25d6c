//! AVX-512 (F, BW, VL, VNNI) tiled dot products of weight rows with 8-bit activations.
//!
//! A 512-bit register holds two outputs side by side: its low half is the eight f32
//! accumulators of one weight row against a token, its high half those of the next row
//! against the same token. Each half does exactly the arithmetic of the scalar twin
//! (`vec_dot_*_ref`) and of the AVX2 kernels: per block, eight i32 lanes of four-product
//! sums (one `vpdpbusd` for the legacy types; for the K-quants `vpmaddubsw` and a
//! `vpdpwssd` with the sub-block scales), scaled into the lanes with one FMA by `d_w *
//! d_a`; the same horizontal sum at the end. The integer sums are exact, so every
//! output is bit-identical to the twin whatever the ISA, the tile or the batch; the
//! register just does two of them at once.
//!
//! Tiles are one pair of rows against up to [`TILE_TOKENS_512`] tokens. The activation
//! side of a tile is prepared once per call ([`PairTile::prepare`]); a weight block is
//! unpacked once per row pair for all the tile's tokens.

use std::arch::x86_64::*;

use super::x86::{hsum, scratch, SCRATCH};
use super::x86_kquants::hsum4;
use crate::quants::{
    k4_scales_mins, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K,
    BlockQ8_0, BlockQ8_1, BlockQ8_K,
};

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
    /// (row `t` at `a + t * nb`); what belongs to tokens `T..` is left as it was and
    /// never read.
    unsafe fn prepare<const T: usize>(a: *const Self::A, nb: usize, prep: &mut [Self::Prep]);
    /// `out[h][t]`: weight row `w0` (`h = 0`) and `w1` (`h = 1`), each `nb` blocks,
    /// against token `t` of `prep` (and of `a`, row `t` at `a + t * nb`).
    unsafe fn tile<const T: usize>(
        w0: *const Self::W,
        w1: *const Self::W,
        a: *const Self::A,
        prep: &[Self::Prep],
        nb: usize,
    ) -> [[f32; T]; 2];
}

/// Runs a pair-tile kernel over `n_rows × n_tokens` outputs (token `t`, row `r`):
/// tokens in tiles of up to `MAX_T`, rows two at a time (an odd last row is paired with
/// itself and written once).
#[inline(always)]
unsafe fn gemm<'o, K: PairTile, const MAX_T: usize>(
    nb: usize,
    w: &[K::W],
    a: &[K::A],
    out: impl crate::IntoGemmOut<'o>,
) {
    const { assert!(MAX_T >= 1 && MAX_T <= TILE_TOKENS_512) };
    assert!(
        nb > 0 && w.len() % nb == 0 && a.len() % nb == 0,
        "gemm: lengths are not whole rows"
    );
    let (n_rows, n_tokens) = (w.len() / nb, a.len() / nb);
    let out = &mut out.into_gemm_out(n_rows, n_tokens);
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

/// All row pairs against the `T` tokens at `a` (tokens `t0..t0 + T` of the output);
/// returns `T`.
#[inline(always)]
unsafe fn pairs<K: PairTile, const T: usize>(
    nb: usize,
    w: &[K::W],
    a: *const K::A,
    t0: usize,
    prep: &mut [K::Prep],
    out: &mut crate::GemmOut<'_>,
) -> usize {
    let n_rows = w.len() / nb;
    K::prepare::<T>(a, nb, prep);
    let mut r = 0;
    while r < n_rows {
        let r1 = (r + 1).min(n_rows - 1);
        let v = K::tile::<T>(w.as_ptr().add(r * nb), w.as_ptr().add(r1 * nb), a, prep, nb);
        for (t, (&v0, &v1)) in v[0].iter().zip(&v[1]).enumerate() {
            out.set(t0 + t, r, v0);
            out.set(t0 + t, r1, v1);
        }
        r += 2;
    }
    T
}

/// Rows a decode tile prefetches ahead of the pair it computes.
const PREFETCH_ROWS: usize = 8;

/// Prefetches the part of the pair of rows [`PREFETCH_ROWS`] ahead of `w` that lies
/// `b / nb` of the way through it. The address may be past the weights; a prefetch
/// never faults.
#[inline(always)]
unsafe fn prefetch_rows_ahead<W>(w: *const W, nb: usize, b: usize) {
    let step = 2 * std::mem::size_of::<W>();
    let p = w
        .wrapping_add(PREFETCH_ROWS * nb)
        .cast::<i8>()
        .wrapping_add(b * step);
    let mut k = 0;
    while k < step {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(k));
        k += 64;
    }
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
    _mm512_permutexvar_ps(
        _mm512_set_epi32(I, I, I, I, I, I, I, I, 0, 0, 0, 0, 0, 0, 0, 0),
        _mm512_castps128_ps512(v),
    )
}

/// Lane `I` of a four-lane vector in all sixteen.
#[inline(always)]
unsafe fn splat<const I: i32>(v: __m128) -> __m512 {
    _mm512_permutexvar_ps(_mm512_set1_epi32(I), _mm512_castps128_ps512(v))
}

/// The 32-bit words at `p0` and `p1` as lanes 0 and 1.
#[inline(always)]
unsafe fn words2(p0: *const u8, p1: *const u8) -> __m128i {
    _mm_unpacklo_epi32(
        _mm_cvtsi32_si128(std::ptr::read_unaligned(p0.cast::<i32>())),
        _mm_cvtsi32_si128(std::ptr::read_unaligned(p1.cast::<i32>())),
    )
}

/// The f16 at `p0` and at `p1` as f32 lanes 0 and 1.
#[inline(always)]
unsafe fn f16_2(p0: *const u8, p1: *const u8) -> __m128 {
    let (d0, d1) = (
        i32::from(std::ptr::read_unaligned(p0.cast::<u16>())),
        i32::from(std::ptr::read_unaligned(p1.cast::<u16>())),
    );
    _mm_cvtph_ps(_mm_cvtsi32_si128(d0 | (d1 << 16)))
}

/// The 32 bytes at `p` in both halves.
#[inline(always)]
unsafe fn both_halves(p: &__m256i) -> __m512i {
    _mm512_broadcast_i64x4(_mm256_load_si256(p))
}

/// Where a legacy block of 4- or 5-bit unsigned quants keeps them.
pub(crate) trait NibbleBlock {
    /// Byte offset of the 16 nibble bytes (element `j` low, `j + 16` high).
    const QS: usize;
    /// Byte offset of the fifth bits (32 bits, little-endian: bit `j` for element `j`).
    const QH: Option<usize>;
}

impl NibbleBlock for BlockQ4_0 {
    const QS: usize = 2;
    const QH: Option<usize> = None;
}

impl NibbleBlock for BlockQ4_1 {
    const QS: usize = 4;
    const QH: Option<usize> = None;
}

impl NibbleBlock for BlockQ5_0 {
    const QS: usize = 6;
    const QH: Option<usize> = Some(2);
}

impl NibbleBlock for BlockQ5_1 {
    const QS: usize = 8;
    const QH: Option<usize> = Some(4);
}

/// Rows `w0` and `w1`'s 32 unsigned quants of block `b` as bytes in element order,
/// `w0`'s in the low half.
#[inline(always)]
unsafe fn quants2<B: NibbleBlock>(w0: *const B, w1: *const B, b: usize) -> __m512i {
    let (p0, p1) = (w0.add(b).cast::<u8>(), w1.add(b).cast::<u8>());
    let q0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(p0.add(B::QS).cast()));
    let q1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(p1.add(B::QS).cast()));
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q0), q1);
    // Per 16 bytes: the low nibbles, then the high ones.
    let q = _mm512_and_si512(
        _mm512_srlv_epi64(q, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)),
        _mm512_set1_epi8(0x0f),
    );
    match B::QH {
        None => q,
        Some(o) => {
            // Bit j of the 64 fifth bits (row w1's above row w0's) adds 16 to byte j.
            let h0 = u64::from(std::ptr::read_unaligned(p0.add(o).cast::<u32>()));
            let h1 = u64::from(std::ptr::read_unaligned(p1.add(o).cast::<u32>()));
            _mm512_mask_add_epi8(q, h0 | (h1 << 32), q, _mm512_set1_epi8(16))
        }
    }
}

/// `[d_w0, m_w0, d_w1, m_w1]` of block `b` of rows `w0` and `w1` (a block that starts
/// with its scale and minimum), as f32.
#[inline(always)]
unsafe fn scale_min2<B>(w0: *const B, w1: *const B, b: usize) -> __m128 {
    _mm_cvtph_ps(words2(w0.add(b).cast(), w1.add(b).cast()))
}

/// What [`TileMin`] keeps per block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepMin {
    /// Each token's quants (aligned: in the activation rows a block's quants straddle
    /// cache lines).
    qa: [__m256i; TILE_TOKENS_512],
    /// `[d_a(t), s_a(t)]` of each token as f32, in lanes `2t`, `2t + 1`.
    ds: [f32; 2 * TILE_TOKENS_512],
    /// `s_a(t)` of each token.
    s_a: [f32; TILE_TOKENS_512],
}

/// The tile of a block with a scale and a minimum, `w = d q + m` (Q4_1, Q5_1), against
/// Q8_1 activations.
pub(crate) struct TileMin<B>(std::marker::PhantomData<B>);

impl<B: NibbleBlock> PairTile for TileMin<B> {
    type W = B;
    type A = BlockQ8_1;
    type Prep = PrepMin;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_1, nb: usize, prep: &mut [PrepMin]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u32; TILE_TOKENS_512];
            for (t, h) in h.iter_mut().enumerate().take(T) {
                let blk = a.add(t * nb + b);
                *h = std::ptr::read_unaligned(blk.cast::<u32>()); // d (low half), s
                p.qa[t] = _mm256_loadu_si256((*blk).qs.as_ptr().cast());
            }
            let h = _mm512_loadu_si512(h.as_ptr().cast());
            _mm512_storeu_ps(
                p.ds.as_mut_ptr(),
                _mm512_cvtph_ps(_mm512_castsi512_si256(h)),
            );
            _mm512_storeu_ps(
                p.ds.as_mut_ptr().add(16),
                _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(h)),
            );
            _mm512_storeu_ps(
                p.s_a.as_mut_ptr(),
                _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(h))),
            );
        }
    }

    /// Per block and output, as [`crate::vec_dot_q4_1_q8_1_ref`]: `acc += (d_w d_a) *
    /// sumi` in the eight lanes, `summs += m_w * s_a`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens read best indexed
    unsafe fn tile<const T: usize>(
        w0: *const B,
        w1: *const B,
        _a: *const BlockQ8_1,
        prep: &[PrepMin],
        nb: usize,
    ) -> [[f32; T]; 2] {
        let mut acc = [_mm512_setzero_ps(); T];
        let mut res = [[0.0f32; T]; 2];
        if T == 1 {
            // One token: both rows' scale products in one multiply.
            let mut summs = _mm_setzero_ps(); // lanes 1 and 3
            for (b, p) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the rows ahead are on their way in.
                prefetch_rows_ahead(w0, nb, b);
                let ds = _mm_castpd_ps(_mm_loaddup_pd(p.ds.as_ptr().cast())); // [d_a, s_a, d_a, s_a]
                let prod = _mm_mul_ps(scale_min2(w0, w1, b), ds);
                summs = _mm_add_ps(summs, prod);
                let sumi = _mm512_dpbusd_epi32(
                    _mm512_setzero_si512(),
                    quants2(w0, w1, b),
                    both_halves(&p.qa[0]),
                );
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
            let dm = scale_min2(w0, w1, b);
            let s_a = _mm512_loadu_ps(p.s_a.as_ptr());
            // `m_w * s_a` is exact (two f16 significands fit in an f32's), so one FMA
            // rounds once, as the twin's multiply-then-add does.
            summs0 = _mm512_fmadd_ps(splat::<1>(dm), s_a, summs0);
            summs1 = _mm512_fmadd_ps(splat::<3>(dm), s_a, summs1);
            let d_w = spread::<2>(dm);
            let q = quants2(w0, w1, b);
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

/// A block whose dot product with Q8_0 activations is `sum (d_w d_a) sumi`, `sumi` eight
/// lanes of four products of signed weights and activations: Q4_0 and Q5_0 (quants less
/// their offset), Q8_0. The scale `d_w` is the block's first two bytes.
pub(crate) trait SignedRows {
    /// Rows `w0` and `w1`'s 32 signed weights of block `b` (`w0`'s in the low half), in
    /// the byte order whose groups of four are the twin's lanes.
    unsafe fn weights2(w0: *const Self, w1: *const Self, b: usize) -> __m512i;
}

impl SignedRows for BlockQ4_0 {
    #[inline(always)]
    unsafe fn weights2(w0: *const Self, w1: *const Self, b: usize) -> __m512i {
        _mm512_sub_epi8(quants2(w0, w1, b), _mm512_set1_epi8(8))
    }
}

impl SignedRows for BlockQ5_0 {
    #[inline(always)]
    unsafe fn weights2(w0: *const Self, w1: *const Self, b: usize) -> __m512i {
        _mm512_sub_epi8(quants2(w0, w1, b), _mm512_set1_epi8(16))
    }
}

impl SignedRows for BlockQ8_0 {
    #[inline(always)]
    unsafe fn weights2(w0: *const Self, w1: *const Self, b: usize) -> __m512i {
        let q0 = _mm256_loadu_si256((*w0.add(b)).qs.as_ptr().cast());
        let q1 = _mm256_loadu_si256((*w1.add(b)).qs.as_ptr().cast());
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q0), q1)
    }
}

/// What [`TileSigned`] keeps per block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepSigned {
    /// Each token's quants plus 128 as unsigned bytes (in the weights' byte order).
    ua: [__m256i; TILE_TOKENS_512],
    /// `d_a(t)` of each token as f32.
    d_a: [f32; TILE_TOKENS_512],
}

/// The tile of a [`SignedRows`] block against Q8_0 activations.
///
/// `vpdpbusd` multiplies unsigned bytes by signed ones, so the activations go in as `a
/// + 128` and the weights `w` signed: `(a + 128)·w - 128·w = a·w` per lane, exact (no
/// 16-bit step). The `-128·w` lanes depend on the weight row alone: computed once per
/// row pair and block, they are the accumulator each token's `vpdpbusd` starts from.
pub(crate) struct TileSigned<B>(std::marker::PhantomData<B>);

impl<B: SignedRows> PairTile for TileSigned<B> {
    type W = B;
    type A = BlockQ8_0;
    type Prep = PrepSigned;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_0, nb: usize, prep: &mut [PrepSigned]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u16; TILE_TOKENS_512];
            for (t, h) in h.iter_mut().enumerate().take(T) {
                let blk = &*a.add(t * nb + b);
                *h = blk.d.to_bits();
                let q = _mm256_loadu_si256(blk.qs.as_ptr().cast());
                p.ua[t] = _mm256_xor_si256(q, _mm256_set1_epi8(i8::MIN));
            }
            _mm512_storeu_ps(
                p.d_a.as_mut_ptr(),
                _mm512_cvtph_ps(_mm256_loadu_si256(h.as_ptr().cast())),
            );
        }
    }

    /// Per block and output, as the type's twin: `acc += (d_w d_a) * sumi`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens read best indexed
    unsafe fn tile<const T: usize>(
        w0: *const B,
        w1: *const B,
        _a: *const BlockQ8_0,
        prep: &[PrepSigned],
        nb: usize,
    ) -> [[f32; T]; 2] {
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, p) in prep.iter().enumerate().take(nb) {
            if T == 1 {
                // Streaming weights (decode): the rows ahead are on their way in.
                prefetch_rows_ahead(w0, nb, b);
            }
            let w = B::weights2(w0, w1, b);
            let base = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(i8::MIN), w),
            );
            let d_w = f16_2(w0.add(b).cast(), w1.add(b).cast()); // [d_w0, d_w1, 0, 0]
            if T == 1 {
                // One token: both rows' scale products in one multiply.
                let d = spread::<1>(_mm_mul_ps(d_w, _mm_set1_ps(p.d_a[0])));
                let sumi = _mm512_dpbusd_epi32(base, both_halves(&p.ua[0]), w);
                acc[0] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[0]);
                continue;
            }
            let d_w = spread::<1>(d_w);
            for t in 0..T {
                let d = _mm512_mul_ps(d_w, _mm512_set1_ps(p.d_a[t]));
                let sumi = _mm512_dpbusd_epi32(base, both_halves(&p.ua[t]), w);
                acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[t]);
            }
        }
        let mut res = [[0.0f32; T]; 2];
        for t in 0..T {
            [res[0][t], res[1][t]] = hsum_halves(acc[t]);
        }
        res
    }
}

/// Where a Q4_K or Q5_K super-block keeps its parts (`d`, `dmin` and the packed scales
/// and mins first, at bytes 0, 2 and 4).
pub(crate) trait K4Rows {
    /// Byte offset of the 128 nibble bytes (chunk `2i` low, `2i + 1` high nibbles of
    /// bytes `32i..32i + 32`).
    const QS: usize;
    /// Byte offset of the fifth bits (Q5_K: bit `j` of byte `i` for element `32j + i`).
    const QH: Option<usize>;
}

impl K4Rows for BlockQ4_K {
    const QS: usize = 16;
    const QH: Option<usize> = None;
}

impl K4Rows for BlockQ5_K {
    const QS: usize = 48;
    const QH: Option<usize> = Some(16);
}

/// What [`TileK4`] keeps per super-block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepK4 {
    /// Each token's `bsums` summed in pairs (eight i16, one per 32-value chunk).
    q8s: [__m128i; TILE_TOKENS_512],
    /// `d_a(t)` of each token.
    d_a: [f32; TILE_TOKENS_512],
}

/// Most tokens per K-quant tile (each keeps a 512-bit and a 256-bit accumulator; the
/// driver still compiles the larger tiles, unused).
const TILE_TOKENS_K: usize = 8;

/// The tile of a Q4_K or Q5_K super-block against Q8_K activations.
pub(crate) struct TileK4<B>(std::marker::PhantomData<B>);

impl<B: K4Rows> PairTile for TileK4<B> {
    type W = B;
    type A = BlockQ8_K;
    type Prep = PrepK4;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_K, nb: usize, prep: &mut [PrepK4]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            for t in 0..T {
                let y = &*a.add(t * nb + b);
                let bs = y.bsums.as_ptr();
                p.q8s[t] = _mm_hadd_epi16(
                    _mm_loadu_si128(bs.cast()),
                    _mm_loadu_si128(bs.add(8).cast()),
                );
                p.d_a[t] = y.d;
            }
        }
    }

    /// Per super-block and output, as the twins (`vec_dot_q5_k_q8_k_ref`,
    /// `vec_dot_q4_k_q8_k_ref`): lane `l` sums over the eight chunks `sc[c] × (four
    /// products)` (`vpmaddubsw`, then `vpdpwssd` with the chunk's scale) and the mins'
    /// correction takes four lanes per row (`mins · bsum pairs`). Q5_K then adds
    /// `(d_a d_w) * sumi` lane by lane and `(-d_a dmin_w) * prod`; Q4_K sums the lanes
    /// (exact) and takes one FMA each, `(d_w d_a)` and `(dmin_w d_a)`, subtracting the
    /// mins at the end. A row pair's chunks and chunk scales are unpacked once for the
    /// tile's tokens.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens read best indexed
    unsafe fn tile<const T: usize>(
        w0: *const B,
        w1: *const B,
        a: *const BlockQ8_K,
        prep: &[PrepK4],
        nb: usize,
    ) -> [[f32; T]; 2] {
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); T];
        let mut acc_m = [_mm256_setzero_ps(); T];
        // Q4_K's accumulators per group of four tokens and row: (scales, mins), a token a
        // lane.
        let mut acc4 = [[(_mm_setzero_ps(), _mm_setzero_ps()); 2]; TILE_TOKENS_512 / 4];
        // Q4_K's integer sums of one super-block per token, before their reduction.
        let mut sums = [_mm512_setzero_si512(); TILE_TOKENS_512];
        let mut mins_t = [_mm256_setzero_si256(); TILE_TOKENS_512];
        for (b, p) in prep.iter().enumerate().take(nb) {
            let (x0, x1) = (w0.add(b).cast::<u8>(), w1.add(b).cast::<u8>());
            if T == 1 {
                // Streaming weights (decode): the rows ahead are on their way in.
                prefetch_rows_ahead(w0, nb, b);
            }
            let (sc0, m0) = k4_scales_mins(&*x0.add(4).cast::<[u8; 12]>());
            let (sc1, m1) = k4_scales_mins(&*x1.add(4).cast::<[u8; 12]>());
            // Each chunk's scale in every i16 of its row's half; the mins as i16, row w0's
            // in the low 128 bits.
            let sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_set_epi64x(
                i64::from_le_bytes(sc1),
                i64::from_le_bytes(sc0),
            )));
            let mins = _mm256_cvtepu8_epi16(_mm_set_epi64x(
                i64::from_le_bytes(m1),
                i64::from_le_bytes(m0),
            ));
            let mut chunks = [_mm512_setzero_si512(); 8];
            let mut scales = [_mm512_setzero_si512(); 8];
            for i in 0..4 {
                let raw = pair(x0.add(B::QS + 32 * i), x1.add(B::QS + 32 * i));
                chunks[2 * i] = _mm512_and_si512(raw, m4);
                chunks[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
            }
            if let Some(o) = B::QH {
                let qh = pair(x0.add(o), x1.add(o));
                for (j, c) in chunks.iter_mut().enumerate() {
                    let k = _mm512_test_epi8_mask(qh, _mm512_set1_epi8(1 << j));
                    *c = _mm512_mask_add_epi8(*c, k, *c, _mm512_set1_epi8(16));
                }
            }
            for (j, s) in scales.iter_mut().enumerate() {
                let j = j as i16;
                let idx = _mm512_set_epi16(
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    8 + j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                    j,
                );
                *s = _mm512_permutexvar_epi16(idx, sc);
            }
            let dm = _mm_cvtph_ps(words2(x0, x1)); // [d_w0, dmin_w0, d_w1, dmin_w1]
            let d_w = spread::<2>(dm);
            let dmin_w = _mm256_permutexvar_ps(
                _mm256_set_epi32(3, 3, 3, 3, 1, 1, 1, 1),
                _mm256_castps128_ps256(dm),
            );
            // [d_w0, dmin_w0, d_w1, dmin_w1] as scalars (Q4_K's FMAs).
            let mut dmw = [0.0f32; 4];
            _mm_storeu_ps(dmw.as_mut_ptr(), dm);
            for t in 0..T {
                let qs = (*a.add(t * nb + b)).qs.as_ptr();
                // Two chains of four (the integer sums are exact in any order).
                let mut sumi = [_mm512_setzero_si512(); 2];
                for j in 0..8 {
                    let q8 = _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * j).cast()));
                    sumi[j % 2] = _mm512_dpwssd_epi32(
                        sumi[j % 2],
                        _mm512_maddubs_epi16(chunks[j], q8),
                        scales[j],
                    );
                }
                let sumi = _mm512_add_epi32(sumi[0], sumi[1]);
                let d_a = p.d_a[t];
                if B::QH.is_none() {
                    sums[t] = sumi;
                    mins_t[t] = _mm256_madd_epi16(mins, _mm256_broadcastsi128_si256(p.q8s[t]));
                    continue;
                }
                acc[t] = _mm512_fmadd_ps(
                    _mm512_mul_ps(_mm512_set1_ps(d_a), d_w),
                    _mm512_cvtepi32_ps(sumi),
                    acc[t],
                );
                let prod = _mm256_madd_epi16(mins, _mm256_broadcastsi128_si256(p.q8s[t]));
                acc_m[t] = _mm256_fmadd_ps(
                    _mm256_mul_ps(_mm256_set1_ps(-d_a), dmin_w),
                    _mm256_cvtepi32_ps(prod),
                    acc_m[t],
                );
            }
            if B::QH.is_none() {
                // Q4_K: each token's whole integer sums per row (exact), four tokens a
                // vector, then one FMA each with `(d_w d_a)` and `(dmin_w d_a)`, lane by
                // lane the twin's scalar FMAs.
                for (g, acc) in acc4.iter_mut().enumerate().take(T.div_ceil(4)) {
                    let (s0, s1) = sum_rows4(&sums[4 * g..4 * g + 4]);
                    let (m0, m1) = sum_mins4(&mins_t[4 * g..4 * g + 4]);
                    let d_a = _mm_loadu_ps(p.d_a.as_ptr().add(4 * g));
                    let f = |acc: __m128, i: __m128i, dw: f32| {
                        _mm_fmadd_ps(_mm_cvtepi32_ps(i), _mm_mul_ps(_mm_set1_ps(dw), d_a), acc)
                    };
                    acc[0] = (f(acc[0].0, s0, dmw[0]), f(acc[0].1, m0, dmw[1]));
                    acc[1] = (f(acc[1].0, s1, dmw[2]), f(acc[1].1, m1, dmw[3]));
                }
            }
        }
        let mut res = [[0.0f32; T]; 2];
        for t in 0..T {
            if B::QH.is_none() {
                let lane = |v: __m128| {
                    let mut l = [0.0f32; 4];
                    _mm_storeu_ps(l.as_mut_ptr(), v);
                    l[t % 4]
                };
                for h in 0..2 {
                    let (sc, mn) = acc4[t / 4][h];
                    res[h][t] = lane(sc) - lane(mn);
                }
                continue;
            }
            let [h0, h1] = hsum_halves(acc[t]);
            res[0][t] = h0 + hsum4(_mm256_castps256_ps128(acc_m[t]));
            res[1][t] = h1 + hsum4(_mm256_extractf128_ps::<1>(acc_m[t]));
        }
        res
    }
}

/// The four tokens' integer sums `v[t]` (row `w0` in lanes 0..8, row `w1` in 8..16)
/// reduced per row: (row `w0`'s sums, row `w1`'s), token `t` in lane `t`.
#[inline(always)]
unsafe fn sum_rows4(v: &[__m512i]) -> (__m128i, __m128i) {
    // Pairs of tokens interleaved, then quads: each 128-bit block ends with one partial
    // sum per token; the two blocks of a row then add.
    let ab = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[0], v[1]),
        _mm512_unpackhi_epi32(v[0], v[1]),
    );
    let cd = _mm512_add_epi32(
        _mm512_unpacklo_epi32(v[2], v[3]),
        _mm512_unpackhi_epi32(v[2], v[3]),
    );
    let abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let r = _mm512_add_epi32(abcd, _mm512_shuffle_i32x4::<0b10_11_00_01>(abcd, abcd));
    (_mm512_castsi512_si128(r), _mm512_extracti32x4_epi32::<2>(r))
}

/// The four tokens' mins products `v[t]` (row `w0` in lanes 0..4, row `w1` in 4..8)
/// reduced per row, as [`sum_rows4`].
#[inline(always)]
unsafe fn sum_mins4(v: &[__m256i]) -> (__m128i, __m128i) {
    let ab = _mm256_add_epi32(
        _mm256_unpacklo_epi32(v[0], v[1]),
        _mm256_unpackhi_epi32(v[0], v[1]),
    );
    let cd = _mm256_add_epi32(
        _mm256_unpacklo_epi32(v[2], v[3]),
        _mm256_unpackhi_epi32(v[2], v[3]),
    );
    let abcd = _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
    (
        _mm256_castsi256_si128(abcd),
        _mm256_extracti128_si256::<1>(abcd),
    )
}

/// The 32 bytes at `p0` in the low half, those at `p1` in the high half.
#[inline(always)]
unsafe fn pair(p0: *const u8, p1: *const u8) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_loadu_si256(p0.cast())),
        _mm256_loadu_si256(p1.cast()),
    )
}

/// What [`TileQ6K`] keeps per super-block for a tile of tokens.
#[derive(Clone, Copy)]
pub(crate) struct PrepQ6K {
    /// Each token's quants, per 32-value chunk.
    qa: [[__m256i; 8]; TILE_TOKENS_K],
    /// Each token's 16 `bsums`.
    bsums: [__m256i; TILE_TOKENS_K],
    /// `d_a(t)` of each token.
    d_a: [f32; TILE_TOKENS_512],
}

/// The tile of a Q6_K super-block against Q8_K activations.
///
/// As the AVX2 tile: the unsigned quants (`0..=63`) take `vpmaddubsw`'s unsigned side and
/// the activations its signed side; each token's sum starts from minus its offset lanes
/// (`32 × (bsums[2l] s[2l] + bsums[2l+1] s[2l+1])`, the twin's).
pub(crate) struct TileQ6K;

impl PairTile for TileQ6K {
    type W = BlockQ6_K;
    type A = BlockQ8_K;
    type Prep = PrepQ6K;

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_K, nb: usize, prep: &mut [PrepQ6K]) {
        // (The driver compiles tiles up to 16 tokens; only up to TILE_TOKENS_K run.)
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            for t in 0..T.min(TILE_TOKENS_K) {
                let y = &*a.add(t * nb + b);
                for (c, u) in p.qa[t].iter_mut().enumerate() {
                    *u = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
                }
                p.bsums[t] = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                p.d_a[t] = y.d;
            }
        }
    }

    /// Per super-block and output, as [`crate::vec_dot_q6_k_q8_k_ref`]: lane `l` of
    /// chunk `c` sums four products scaled by sub-block `2c` (lanes 0..4) or `2c + 1`
    /// (lanes 4..8) (`vpmaddubsw`, then `vpdpwssd` with the scales), `acc += (d_a d_w) *
    /// sumi`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // tokens read best indexed
    unsafe fn tile<const T: usize>(
        w0: *const BlockQ6_K,
        w1: *const BlockQ6_K,
        _a: *const BlockQ8_K,
        prep: &[PrepQ6K],
        nb: usize,
    ) -> [[f32; T]; 2] {
        const { assert!(T <= TILE_TOKENS_512) };
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, p) in prep.iter().enumerate().take(nb) {
            let (x0, x1) = (&*w0.add(b), &*w1.add(b));
            // The 16 sub-block scales of both rows as i16, row w0's first.
            let sc = _mm512_cvtepi8_epi16(_mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_loadu_si128(x0.scales.as_ptr().cast())),
                _mm_loadu_si128(x1.scales.as_ptr().cast()),
            ));
            let mut ws = [_mm512_setzero_si512(); 8];
            let mut scales = [_mm512_setzero_si512(); 8];
            for c in 0..8 {
                let (h, k) = (c / 4, c % 4);
                let bits = pair(
                    x0.ql.as_ptr().add(64 * h + 32 * (k % 2)),
                    x1.ql.as_ptr().add(64 * h + 32 * (k % 2)),
                );
                let qh = pair(x0.qh.as_ptr().add(32 * h), x1.qh.as_ptr().add(32 * h));
                let low = if k < 2 {
                    _mm512_and_si512(bits, m4)
                } else {
                    _mm512_and_si512(_mm512_srli_epi16::<4>(bits), m4)
                };
                // Bits 2k, 2k + 1 of each qh byte moved to bits 4, 5.
                let high = match k {
                    0 => _mm512_slli_epi16::<4>(qh),
                    1 => _mm512_slli_epi16::<2>(qh),
                    2 => qh,
                    _ => _mm512_srli_epi16::<2>(qh),
                };
                let q = _mm512_or_si512(low, _mm512_and_si512(high, _mm512_set1_epi8(0x30)));
                ws[c] = q;
                let c = c as i16;
                let (s0, s1) = (2 * c, 2 * c + 1);
                scales[c as usize] = _mm512_permutexvar_epi16(
                    _mm512_set_epi16(
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s1,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        16 + s0,
                        s1,
                        s1,
                        s1,
                        s1,
                        s1,
                        s1,
                        s1,
                        s1,
                        s0,
                        s0,
                        s0,
                        s0,
                        s0,
                        s0,
                        s0,
                        s0,
                    ),
                    sc,
                );
            }
            let d_w = spread::<1>(f16_2(
                std::ptr::addr_of!(x0.d).cast(),
                std::ptr::addr_of!(x1.d).cast(),
            ));
            for t in 0..T {
                // Two chains of four (the integer sums are exact in any order), the first
                // from minus the token's offset lanes for both rows.
                let offset = _mm512_slli_epi32::<5>(_mm512_madd_epi16(
                    _mm512_broadcast_i64x4(p.bsums[t]),
                    sc,
                ));
                let mut sumi = [
                    _mm512_sub_epi32(_mm512_setzero_si512(), offset),
                    _mm512_setzero_si512(),
                ];
                for c in 0..8 {
                    let p16 = _mm512_maddubs_epi16(ws[c], _mm512_broadcast_i64x4(p.qa[t][c]));
                    sumi[c % 2] = _mm512_dpwssd_epi32(sumi[c % 2], p16, scales[c]);
                }
                let sumi = _mm512_add_epi32(sumi[0], sumi[1]);
                acc[t] = _mm512_fmadd_ps(
                    _mm512_mul_ps(_mm512_set1_ps(p.d_a[t]), d_w),
                    _mm512_cvtepi32_ps(sumi),
                    acc[t],
                );
            }
        }
        let mut res = [[0.0f32; T]; 2];
        for t in 0..T {
            [res[0][t], res[1][t]] = hsum_halves(acc[t]);
        }
        res
    }
}

macro_rules! gemm_fn {
    ($(#[$doc:meta])* $name:ident, $w:ty, $a:ty, $tile:ty) => {
        gemm_fn!($(#[$doc])* $name, $w, $a, $tile, TILE_TOKENS_512);
    };
    ($(#[$doc:meta])* $name:ident, $w:ty, $a:ty, $tile:ty, $max_t:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub unsafe fn $name<'o>(nb: usize, w: &[$w], a: &[$a], out: impl crate::IntoGemmOut<'o>) {
            gemm::<$tile, { $max_t }>(nb, w, a, out)
        }
    };
}

gemm_fn!(
    /// Tiled Q4_0 × Q8_0: `out[t * n_rows + r]` is [`crate::vec_dot_q4_0_q8_0_ref`] of
    /// weight row `r` and activation row `t` (rows of `nb` blocks), bit for bit.
    gemm_q4_0_q8_0, BlockQ4_0, BlockQ8_0, TileSigned<BlockQ4_0>
);
gemm_fn!(
    /// Tiled Q4_1 × Q8_1, bit for bit [`crate::vec_dot_q4_1_q8_1_ref`] per output.
    gemm_q4_1_q8_1, BlockQ4_1, BlockQ8_1, TileMin<BlockQ4_1>
);
gemm_fn!(
    /// Tiled Q5_0 × Q8_0, bit for bit [`crate::vec_dot_q5_0_q8_0_ref`] per output.
    gemm_q5_0_q8_0, BlockQ5_0, BlockQ8_0, TileSigned<BlockQ5_0>
);
gemm_fn!(
    /// Tiled Q5_1 × Q8_1, bit for bit [`crate::vec_dot_q5_1_q8_1_ref`] per output.
    gemm_q5_1_q8_1, BlockQ5_1, BlockQ8_1, TileMin<BlockQ5_1>
);
gemm_fn!(
    /// Tiled Q8_0 × Q8_0, bit for bit [`crate::vec_dot_q8_0_q8_0_ref`] per output (any
    /// quants, -128 included).
    gemm_q8_0_q8_0, BlockQ8_0, BlockQ8_0, TileSigned<BlockQ8_0>
);
gemm_fn!(
    /// Tiled Q4_K × Q8_K, bit for bit [`crate::vec_dot_q4_k_q8_k_ref`] per output.
    gemm_q4_k_q8_k, BlockQ4_K, BlockQ8_K, TileK4<BlockQ4_K>, TILE_TOKENS_K
);
gemm_fn!(
    /// Tiled Q5_K × Q8_K, bit for bit [`crate::vec_dot_q5_k_q8_k_ref`] per output.
    gemm_q5_k_q8_k, BlockQ5_K, BlockQ8_K, TileK4<BlockQ5_K>, TILE_TOKENS_K
);
gemm_fn!(
    /// Tiled Q6_K × Q8_K, bit for bit [`crate::vec_dot_q6_k_q8_k_ref`] per output.
    gemm_q6_k_q8_k, BlockQ6_K, BlockQ8_K, TileQ6K, TILE_TOKENS_K
);
