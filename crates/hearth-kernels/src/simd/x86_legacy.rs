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

use super::x86::{
    dot_u8_i8, f16x2, gemm, hsum, nibbles_at, prefetch_next_tile, OffsetBlock, Tile, TileOffset,
    TILE_TOKENS,
};
use crate::quants::{BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// The 32 unsigned 5-bit quants of a block in element order: nibbles of `qs` (low, then
/// high) with bit `j` of the little-endian `qh` as bit 4 of byte `j`.
#[inline(always)]
unsafe fn quants5(qs: &[u8; 16], qh: &[u8; 4]) -> __m256i {
    // Byte j gets byte j/8 of qh, masked to its bit j % 8: equal to the mask iff set.
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(*qh)), shuf);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_or_si256(
        nibbles_at(qs.as_ptr()),
        _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
    )
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
        let sumi = _mm256_sub_epi32(
            dot_u8_i8(quants5(&bw.qs, &bw.qh), qa),
            _mm256_slli_epi32(qa_sum, 4),
        );
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

// ---------------------------------------------------------------------------------------
// Tiled products: several weight rows × several tokens per step
// ---------------------------------------------------------------------------------------
//
// As the tiled kernels of `x86.rs`: every output keeps its own eight-lane accumulator and
// sees the f32 operations of the one-row `vec_dot_*` above in the same order, so it is
// bit-identical to it whatever the tile shape; a weight block is loaded and unpacked once
// for all the tokens of a tile, and the activations' scales and lane sums are prepared
// once per call. The tile driver is `x86.rs`'s.

impl OffsetBlock for BlockQ5_0 {
    const SHIFT: i32 = 4;
    #[inline(always)]
    unsafe fn scale(&self) -> __m128 {
        f16x2(self.d, self.d)
    }
    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        quants5(&self.qs, &self.qh)
    }
}

/// Tiled Q5_0 × Q8_0: `out[t * n_rows + r]` is [`vec_dot_q5_0_q8_0`] of weight row `r`
/// and activation row `t` (rows of `nb` blocks), bit for bit.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q5_0_q8_0<'o>(
    nb: usize,
    w: &[BlockQ5_0],
    a: &[BlockQ8_0],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileOffset<BlockQ5_0>, TILE_TOKENS>(nb, w, a, out)
}

struct TileQ5_1;

impl Tile for TileQ5_1 {
    type W = BlockQ5_1;
    type A = BlockQ8_1;
    /// `[d_a(t) for t < 4, s_a(t) for t < 4]` as f32 (zero past `T`), and each `d_a(t)`
    /// in all lanes of a register (tiles of at most four tokens).
    type Prep = ([f32; 8], [__m256; 4]);

    #[inline(always)]
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_1, nb: usize, prep: &mut [Self::Prep]) {
        for (b, (p, d)) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u16; 8];
            for t in 0..T {
                let blk = &*a.add(t * nb + b);
                h[t] = blk.d.to_bits();
                h[4 + t] = blk.s.to_bits();
            }
            _mm256_storeu_ps(
                p.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast())),
            );
            for t in 0..T {
                d[t] = _mm256_set1_ps(p[t]);
            }
        }
    }

    /// Per block and output, as [`vec_dot_q5_1_q8_1`]: `acc += (d_w d_a) * sumi` (one FMA
    /// over the eight lanes), `summs += m_w * s_a`; the `summs` of a row's tokens share
    /// one register, one lane per token.
    #[inline(always)]
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ5_1,
        a: *const BlockQ8_1,
        prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut summs = [_mm_setzero_ps(); R];
        for (b, (sc, d_a)) in prep.iter().enumerate().take(nb) {
            if T <= 2 {
                prefetch_next_tile::<BlockQ5_1, R>(w, nb, b);
            }
            let qa: [__m256i; T] = std::array::from_fn(|t| {
                _mm256_loadu_si256((*a.add(t * nb + b)).qs.as_ptr().cast())
            });
            let s_a = _mm_loadu_ps(sc.as_ptr().add(4));
            for r in 0..R {
                let bw = &*w.add(r * nb + b);
                let dm = f16x2(bw.d, bw.m); // [d_w, m_w]
                summs[r] = _mm_add_ps(summs[r], _mm_mul_ps(_mm_shuffle_ps(dm, dm, 0x55), s_a));
                let q = quants5(&bw.qs, &bw.qh);
                let d_w = _mm256_broadcastss_ps(dm);
                for t in 0..T {
                    let d = _mm256_mul_ps(d_w, d_a[t]);
                    acc[r][t] =
                        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_i8(q, qa[t])), acc[r][t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            let mut m = [0.0f32; 4];
            _mm_storeu_ps(m.as_mut_ptr(), summs[r]);
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]) + m[t];
            }
        }
        res
    }
}

/// Tiled Q5_1 × Q8_1, bit for bit [`vec_dot_q5_1_q8_1`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q5_1_q8_1<'o>(
    nb: usize,
    w: &[BlockQ5_1],
    a: &[BlockQ8_1],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ5_1, 4>(nb, w, a, out)
}
