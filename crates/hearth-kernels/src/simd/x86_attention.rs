//! AVX2 attention kernels: one head (or a group of heads sharing a KV head) of
//! attention over the KV cache, for every head width that is a multiple of 32 up to 256,
//! each bit for bit its scalar twin in [`crate::attention`]; and the eight-lane `expf`
//! they use.

use std::arch::x86_64::*;

use half::f16;

use super::x86::{f16x2, hsum, hsum_x8, widen_i8};
use crate::attention::{KvElem, KvSpan};
use crate::quants::BlockQ8_0;

/// Eight-lane twin of [`crate::ops::expf`] (the C library's `expf`), bit for bit: the
/// same f64 steps on two halves of four lanes, the table read by a gather, then the
/// out-of-range lanes replaced as the scalar function does.
#[inline(always)]
pub(crate) unsafe fn expf8(x: __m256) -> __m256 {
    use crate::ops::{EXPF_MAY_UNDERFLOW, EXPF_OVERFLOW, EXPF_UNDERFLOW};
    let lo = expf4_main(_mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    let hi = expf4_main(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    let mut y = _mm256_set_m128(hi, lo);
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXPF_MAY_UNDERFLOW));
    y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(1)), tiny);
    y = _mm256_blendv_ps(
        y,
        _mm256_setzero_ps(),
        _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXPF_UNDERFLOW)),
    );
    y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXPF_OVERFLOW)),
    );
    _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// The in-range steps of [`crate::ops::expf`] on four lanes of f64.
#[inline(always)]
unsafe fn expf4_main(xd: __m256d) -> __m128 {
    use crate::ops::{EXPF_INVLN2_N, EXPF_POLY, EXPF_SHIFT, EXPF_TABLE};
    let inv = _mm256_set1_pd(EXPF_INVLN2_N);
    let shift = _mm256_set1_pd(EXPF_SHIFT);
    let kd = _mm256_fmadd_pd(inv, xd, shift);
    let ki = _mm256_castpd_si256(kd);
    let kd = _mm256_sub_pd(kd, shift);
    let r = _mm256_fmsub_pd(inv, xd, kd);
    let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    let t = _mm256_i64gather_epi64::<8>(EXPF_TABLE.as_ptr().cast(), idx);
    let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
    let z = _mm256_fmadd_pd(
        r,
        _mm256_set1_pd(EXPF_POLY[0]),
        _mm256_set1_pd(EXPF_POLY[1]),
    );
    let y = _mm256_fmadd_pd(r, _mm256_set1_pd(EXPF_POLY[2]), _mm256_set1_pd(1.0));
    let y = _mm256_fmadd_pd(z, _mm256_mul_pd(r, r), y);
    _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
}

/// [`expf8`] for a test: `out[i] = expf(x[i])`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn expf8_slice(x: &[f32; 8], out: &mut [f32; 8]) {
    _mm256_storeu_ps(out.as_mut_ptr(), expf8(_mm256_loadu_ps(x.as_ptr())));
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

// ---------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------
//
// Every kernel is generic over the head width: a head of `8 * NR` dims is `NR` registers
// of eight f32 lanes (`NR / 2` of sixteen for AVX-512, `NR / 4` Q8_0 blocks), and each
// supported width is its own instance ([`with_head_width`]), so the loops over a head's
// registers unroll and small heads keep their rows in registers. A head's arithmetic is
// its scalar twin's for every width: the twins are written for any width.

/// Widest head the attention kernels take.
pub const MAX_HEAD_DIM: usize = 256;

/// Whether the attention kernels of this module and of `x86_avx512_attention` take heads
/// of `head_dim` dims: every multiple of 32 up to [`MAX_HEAD_DIM`] (32, 64, 96, 128, 160,
/// 192, 224, 256). For any other width the dispatchers of [`crate::attention`] run the
/// scalar twins (and note it in [`crate::fallback`]).
pub const fn attention_head_dim_supported(head_dim: usize) -> bool {
    head_dim > 0 && head_dim.is_multiple_of(32) && head_dim <= MAX_HEAD_DIM
}

/// `$body` with the shape of a head of `$head_dim` dims as constants: `$nr` registers of
/// eight f32 lanes, `$nb` Q8_0 blocks, `$nz` registers of sixteen lanes. Panics on a width
/// that [`attention_head_dim_supported`] refuses.
macro_rules! with_head_width {
    ($head_dim:expr, $nr:ident, $nb:ident, $nz:ident => $body:expr) => {
        match $head_dim {
            32 => $crate::simd::x86_attention::with_head_width!(@ 32, $nr, $nb, $nz => $body),
            64 => $crate::simd::x86_attention::with_head_width!(@ 64, $nr, $nb, $nz => $body),
            96 => $crate::simd::x86_attention::with_head_width!(@ 96, $nr, $nb, $nz => $body),
            128 => $crate::simd::x86_attention::with_head_width!(@ 128, $nr, $nb, $nz => $body),
            160 => $crate::simd::x86_attention::with_head_width!(@ 160, $nr, $nb, $nz => $body),
            192 => $crate::simd::x86_attention::with_head_width!(@ 192, $nr, $nb, $nz => $body),
            224 => $crate::simd::x86_attention::with_head_width!(@ 224, $nr, $nb, $nz => $body),
            256 => $crate::simd::x86_attention::with_head_width!(@ 256, $nr, $nb, $nz => $body),
            hd => panic!("attention: no SIMD kernel for heads of {hd}"),
        }
    };
    (@ $hd:literal, $nr:ident, $nb:ident, $nz:ident => $body:expr) => {{
        #[allow(dead_code)]
        const $nr: usize = $hd / 8;
        #[allow(dead_code)]
        const $nb: usize = $hd / 32;
        #[allow(dead_code)]
        const $nz: usize = $hd / 16;
        $body
    }};
}
pub(crate) use with_head_width;

/// AVX2 twin of [`crate::attention::attend_heads`] for heads of `head_dim` dims (a width
/// [`attention_head_dim_supported`] takes): the heads of `q` (`[g][head_dim]`) share the
/// keys and values at `offset` (grouped-query attention). Each head sees the same
/// operations in the same order as [`crate::attention::attend_head_ref`]: the score's
/// 64 lanes of fused multiply-adds over each whole 64 dims, reduced as there, then (for
/// a width that is not a multiple of 64) the last 32 products added one by one in f64;
/// the f16 value accumulator rounded after every key. So the results are bit-identical
/// to it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C. (The width, `q.len() == out.len()`, a
/// non-zero multiple of `head_dim`, and each span holding its rows are checked.)
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn attend_heads<T: KvElem>(
    q: &[f32],
    head_dim: usize,
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(
        attention_head_dim_supported(head_dim),
        "attention: no SIMD kernel for heads of {head_dim}"
    );
    assert!(
        q.len() == out.len() && q.len().is_multiple_of(head_dim) && !q.is_empty(),
        "attention: q and out must be whole heads"
    );
    with_head_width!(head_dim, NR, _NB, _NZ => {
        float_heads::<T, NR>(q, spans, stride, offset, scale, out)
    })
}

/// Most heads [`attend_heads`] takes per pass over the cache for heads of `8 * nr` dims:
/// four up to 128 dims, two above (measured no slower for wide heads, and each group size
/// is more code).
const fn float_group_max(nr: usize) -> usize {
    if nr <= 16 {
        4
    } else {
        2
    }
}

/// [`attend_heads`] for heads of `8 * NR` dims: up to [`float_group_max`] heads per pass
/// over the cache.
#[inline(always)]
unsafe fn float_heads<T: KvElem, const NR: usize>(
    q: &[f32],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (hd, g_max) = (8 * NR, float_group_max(NR));
    for (q, out) in q.chunks(g_max * hd).zip(out.chunks_mut(g_max * hd)) {
        // (An inline const condition: the larger groups are not even instantiated for
        // wide heads.)
        if const { float_group_max(NR) == 4 } {
            match q.len() / hd {
                1 => attend_group::<T, 1, 8, NR>(q, spans, stride, offset, scale, out),
                2 => attend_group::<T, 2, 4, NR>(q, spans, stride, offset, scale, out),
                3 => attend_group::<T, 3, 4, NR>(q, spans, stride, offset, scale, out),
                _ => attend_group::<T, 4, 2, NR>(q, spans, stride, offset, scale, out),
            }
        } else {
            match q.len() / hd {
                1 => attend_group::<T, 1, 8, NR>(q, spans, stride, offset, scale, out),
                _ => attend_group::<T, 2, 4, NR>(q, spans, stride, offset, scale, out),
            }
        }
    }
}

/// AVX2 twin of [`crate::attention::attend_heads_tiled`] for heads of `head_dim` dims (a
/// width [`attention_head_dim_supported`] takes): `q` and `out` are `[n_q][g][head_dim]`
/// (`n_q = lens.len()`), query `i` sees the first `lens[i]` positions. Each (query,
/// head) takes the operations of [`crate::attention::attend_head_tiled`] in its order
/// (score lane `l` summing dims `l, l + 8, ..` by fused multiply-adds, whatever the
/// width), so the results are bit-identical to it.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C. (The width, `q.len() == out.len()`, a
/// non-zero multiple of `head_dim * lens.len()`, `lens.len() <= TILED_QUERIES` and each
/// span holding its rows are checked.)
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attend_tiled<T: KvElem>(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(
        attention_head_dim_supported(head_dim),
        "attention: no SIMD kernel for heads of {head_dim}"
    );
    with_head_width!(head_dim, NR, _NB, _NZ => {
        tiled_heads::<FloatKv<T, NR>, NR>(q, lens, spans, stride, offset, scale, out)
    })
}

/// AVX2 twin of [`crate::attention::attend_heads_quant_tiled`] over a `Q8_0` cache, for
/// heads of `head_dim` dims (a width [`attention_head_dim_supported`] takes: `head_dim /
/// 32` blocks per head; `offset` counts blocks): as [`attend_tiled`], with each (query,
/// head) taking the operations of [`crate::attention::attend_head_quant`] in its order
/// (the query quantized to Q8_0, each score [`crate::vec_dot_q8_0_paired_ref`]'s, one FMA per block,
/// the value rows `q * d`), so the results are bit-identical to it.
///
/// # Safety
/// As [`attend_tiled`].
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attend_tiled_q8_0(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, BlockQ8_0>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(
        attention_head_dim_supported(head_dim),
        "attention: no SIMD kernel for heads of {head_dim}"
    );
    with_head_width!(head_dim, NR, NB, _NZ => {
        tiled_heads::<Q8_0Kv<NB>, NR>(q, lens, spans, stride, offset, scale, out)
    })
}

/// [`attend_tiled`] and [`attend_tiled_q8_0`]: the heads of each query in groups of up to
/// four, at every width (fewer heads per group read the cache more often: heads of 256
/// in pairs decoded up to 40% slower).
#[inline(always)]
unsafe fn tiled_heads<K: TiledKv, const NR: usize>(
    q: &[f32],
    lens: &[usize],
    spans: &[KvSpan<'_, K::Elem>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    use crate::attention::TILED_QUERIES;
    const { assert!(K::HEAD_DIM == 8 * NR) };
    let (n_q, hd) = (lens.len(), K::HEAD_DIM);
    assert!(
        n_q > 0
            && n_q <= TILED_QUERIES
            && q.len() == out.len()
            && q.len().is_multiple_of(hd * n_q)
            && !q.is_empty()
    );
    let g = q.len() / (hd * n_q);
    let mut h0 = 0;
    while h0 < g {
        h0 += match g - h0 {
            1 => attend_tiled_group::<K, 1, NR>(q, g, h0, lens, spans, stride, offset, scale, out),
            2 => attend_tiled_group::<K, 2, NR>(q, g, h0, lens, spans, stride, offset, scale, out),
            3 => attend_tiled_group::<K, 3, NR>(q, g, h0, lens, spans, stride, offset, scale, out),
            _ => attend_tiled_group::<K, 4, NR>(q, g, h0, lens, spans, stride, offset, scale, out),
        };
    }
}

/// What the multi-query tile loop needs of a cache type, for heads of `HEAD_DIM` dims.
pub(crate) trait TiledKv {
    type Elem;
    /// A query head (prepared once per call) or a key row (once per tile, for every
    /// query and head), in the form the scores read.
    type Row: Copy;
    /// Dims of a head.
    const HEAD_DIM: usize;
    /// Cache elements one head spans in a row.
    const HEAD_ELEMS: usize;
    unsafe fn query(q: *const f32) -> Self::Row;
    unsafe fn key(k: *const Self::Elem) -> Self::Row;
    /// A row of zeros (the unused queries, and a tile's rows before the first).
    unsafe fn zero() -> Self::Row;
    /// The value row at `v` as f32, dims `8r..8r + 8` in `out[r]` (`NR` is `HEAD_DIM / 8`).
    unsafe fn value<const NR: usize>(v: *const Self::Elem, out: &mut [__m256; NR]);
    /// Each key's score with `q` (before the scale) as eight lanes whose [`hsum`] is
    /// the score.
    unsafe fn scores(q: &Self::Row, keys: &[Self::Row; 8]) -> [__m256; 8];
}

/// An f16 or f32 cache, heads of `8 * NR` dims: queries and keys as `NR` registers of
/// f32; a score's lane `l` sums dims `l, l + 8, ..` by fused multiply-adds in dim order.
struct FloatKv<T, const NR: usize>(std::marker::PhantomData<T>);

impl<T: KvElem, const NR: usize> TiledKv for FloatKv<T, NR> {
    type Elem = T;
    type Row = [__m256; NR];
    const HEAD_DIM: usize = 8 * NR;
    const HEAD_ELEMS: usize = 8 * NR;
    #[inline(always)]
    unsafe fn query(q: *const f32) -> [__m256; NR] {
        let mut row = [_mm256_setzero_ps(); NR];
        for (i, r) in row.iter_mut().enumerate() {
            *r = _mm256_loadu_ps(q.add(8 * i));
        }
        row
    }
    #[inline(always)]
    unsafe fn key(k: *const T) -> [__m256; NR] {
        let mut row = [_mm256_setzero_ps(); NR];
        for (i, r) in row.iter_mut().enumerate() {
            *r = load8(k.add(8 * i));
        }
        row
    }
    #[inline(always)]
    unsafe fn zero() -> [__m256; NR] {
        [_mm256_setzero_ps(); NR]
    }
    #[inline(always)]
    unsafe fn value<const N: usize>(v: *const T, out: &mut [__m256; N]) {
        const { assert!(N == NR) };
        for (i, r) in out.iter_mut().enumerate() {
            *r = load8(v.add(8 * i));
        }
    }
    #[inline(always)]
    unsafe fn scores(q: &[__m256; NR], keys: &[[__m256; NR]; 8]) -> [__m256; 8] {
        // All eight keys' chains interleaved.
        let mut parts = [_mm256_setzero_ps(); 8];
        for i in 0..NR {
            for j in 0..8 {
                parts[j] = _mm256_fmadd_ps(q[i], keys[j][i], parts[j]);
            }
        }
        parts
    }
}

/// A query head of `32 * NB` dims quantized to `NB` Q8_0 blocks, as the cache holds keys.
#[inline(always)]
pub(crate) unsafe fn quantize_head<const NB: usize>(q: *const f32) -> [BlockQ8_0; NB] {
    use crate::Quantize;
    let mut qq = [BlockQ8_0 {
        d: f16::ZERO,
        qs: [0; 32],
    }; NB];
    BlockQ8_0::quantize_row_act(std::slice::from_raw_parts(q, 32 * NB), &mut qq);
    qq
}

/// The `NB` block scales of the Q8_0 head at `k`, as f32 (two per conversion).
#[inline(always)]
pub(crate) unsafe fn head_scales<const NB: usize>(k: *const BlockQ8_0) -> [f32; NB] {
    let mut d = [0.0f32; NB];
    let mut b = 0;
    while b + 2 <= NB {
        let x = f16x2((*k.add(b)).d, (*k.add(b + 1)).d);
        (d[b], d[b + 1]) = (_mm_cvtss_f32(x), _mm_cvtss_f32(_mm_movehdup_ps(x)));
        b += 2;
    }
    if b < NB {
        d[b] = _mm_cvtss_f32(f16x2((*k.add(b)).d, f16::ZERO));
    }
    d
}

/// A Q8_0 cache, heads of `NB` blocks: queries quantized to Q8_0, and keys, widened to
/// i16 with their block scales as f32.
pub(crate) struct Q8_0Kv<const NB: usize>;

impl<const NB: usize> TiledKv for Q8_0Kv<NB> {
    type Elem = BlockQ8_0;
    type Row = ([[__m256i; 2]; NB], [f32; NB]);
    const HEAD_DIM: usize = 32 * NB;
    const HEAD_ELEMS: usize = NB;
    #[inline(always)]
    unsafe fn query(q: *const f32) -> Self::Row {
        Self::key(quantize_head::<NB>(q).as_ptr())
    }
    #[inline(always)]
    unsafe fn key(k: *const BlockQ8_0) -> Self::Row {
        let mut q16 = [[_mm256_setzero_si256(); 2]; NB];
        for (b, q16) in q16.iter_mut().enumerate() {
            *q16 = widen_i8((*k.add(b)).qs.as_ptr());
        }
        (q16, head_scales::<NB>(k))
    }
    #[inline(always)]
    unsafe fn zero() -> Self::Row {
        ([[_mm256_setzero_si256(); 2]; NB], [0.0; NB])
    }
    #[inline(always)]
    unsafe fn value<const NR: usize>(v: *const BlockQ8_0, out: &mut [__m256; NR]) {
        const { assert!(NR == 4 * NB) };
        for b in 0..NB {
            let vb = &*v.add(b);
            let d = _mm256_broadcastss_ps(f16x2(vb.d, vb.d));
            for i in 0..4 {
                let bytes = _mm_loadl_epi64(vb.qs.as_ptr().add(8 * i).cast());
                out[4 * b + i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), d);
            }
        }
    }
    /// As [`crate::vec_dot_q8_0_paired_ref`]: per block, `d_k * d_q` (one f32 product) and one FMA of
    /// the lane sums.
    #[inline(always)]
    unsafe fn scores(q: &Self::Row, keys: &[Self::Row; 8]) -> [__m256; 8] {
        let mut parts = [_mm256_setzero_ps(); 8];
        for j in 0..8 {
            let (k16, kd) = &keys[j];
            for b in 0..NB {
                let d = _mm256_set1_ps(kd[b] * q.1[b]);
                let sumi = _mm256_add_epi32(
                    _mm256_madd_epi16(k16[b][0], q.0[b][0]),
                    _mm256_madd_epi16(k16[b][1], q.0[b][1]),
                );
                parts[j] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), parts[j]);
            }
        }
        parts
    }
}

/// Heads `h0..h0 + G` (of `g` per query) of [`tiled_heads`], heads of `8 * NR` dims;
/// returns `G`. Per tile of eight positions, the key and value rows are prepared once
/// for every query and head; then three passes over the (query, head) pairs (scores,
/// softmax step, values), so that the pairs' dependency chains overlap instead of
/// running one after another. The value pass takes a query's heads two at a time, four
/// registers of a row per step, so each value register feeds two accumulators (a head's
/// accumulators and its row would fill the registers alone); a lone head takes eight
/// registers per step.
///
/// Each shape is a function of its own, called once per group: inlined into one entry
/// point, every width's loops made a single function that compiled several times slower.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)] // lanes, heads and rows read best indexed
unsafe fn attend_tiled_group<K: TiledKv, const G: usize, const NR: usize>(
    q: &[f32],
    g: usize,
    h0: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, K::Elem>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) -> usize {
    use crate::attention::{KV_TILE, TILED_QUERIES};
    let n_q = lens.len();
    let mut walk = TileWalk::<K, G>::new(q, g, h0, lens, spans, stride, offset, scale);
    let mut acc = [[[_mm256_setzero_ps(); NR]; G]; TILED_QUERIES];
    let (mut m, mut s_sum) = (
        [[f32::NEG_INFINITY; G]; TILED_QUERIES],
        [[0.0f32; G]; TILED_QUERIES],
    );
    // Rows past a tile's end keep the previous tile's (stale) contents; they are never read.
    let mut vals = [[_mm256_setzero_ps(); NR]; KV_TILE];
    while let Some(TileScores {
        rows,
        n,
        nq,
        scores,
    }) = walk.next()
    {
        for j in 0..n {
            K::value(rows[j].1, &mut vals[j]);
        }
        // 2. The softmax step: new maxima rescale the accumulators; the weights.
        let mut w = [[[0.0f32; 8]; G]; TILED_QUERIES];
        let mut live = [[false; G]; TILED_QUERIES];
        for qi in 0..n_q {
            for h in 0..G {
                let Some(ms) = softmax_step(
                    scores[qi][h],
                    &mut m[qi][h],
                    &mut s_sum[qi][h],
                    &mut w[qi][h],
                ) else {
                    continue;
                };
                live[qi][h] = true;
                if let Some(ms) = ms {
                    let msv = _mm256_set1_ps(ms);
                    for x in acc[qi][h].iter_mut() {
                        *x = _mm256_mul_ps(*x, msv);
                    }
                }
            }
        }
        // 3. The value rows, in position order, times their weights (the first `nq`).
        for qi in 0..n_q {
            let mut h = 0;
            while h < G {
                if h + 1 < G && live[qi][h] && live[qi][h + 1] {
                    // Two heads, four registers at a time: each value register feeds both.
                    let (a, b) = acc[qi].split_at_mut(h + 1);
                    let mut c = 0;
                    while c < NR {
                        add_values_pair(
                            &mut a[h],
                            &mut b[0],
                            c,
                            &vals,
                            &w[qi][h],
                            &w[qi][h + 1],
                            nq[qi],
                        );
                        c += 4;
                    }
                    h += 2;
                    continue;
                }
                if live[qi][h] {
                    let mut c = 0;
                    while c + 8 <= NR {
                        add_values::<8, NR>(&mut acc[qi][h], c, &vals, &w[qi][h], nq[qi]);
                        c += 8;
                    }
                    if c < NR {
                        add_values::<4, NR>(&mut acc[qi][h], c, &vals, &w[qi][h], nq[qi]);
                    }
                }
                h += 1;
            }
        }
    }
    for qi in 0..n_q {
        let at = (qi * g + h0) * 8 * NR;
        store_heads(&acc[qi], &s_sum[qi], &mut out[at..]);
    }
    G
}

/// `acc[c..c + W] += vals[j][c..c + W] * w[j]` for the first `n` value rows in order
/// (a fused multiply-add per element and row), in `W` registers.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows read best indexed
unsafe fn add_values<const W: usize, const NR: usize>(
    acc: &mut [__m256; NR],
    c: usize,
    vals: &[[__m256; NR]; crate::attention::KV_TILE],
    w: &[f32; 8],
    n: usize,
) {
    let mut a = [_mm256_setzero_ps(); W];
    a.copy_from_slice(&acc[c..c + W]);
    for j in 0..n {
        let pj = _mm256_set1_ps(w[j]);
        for r in 0..W {
            a[r] = _mm256_fmadd_ps(vals[j][c + r], pj, a[r]);
        }
    }
    acc[c..c + W].copy_from_slice(&a);
}

/// [`add_values`] for two heads at once (registers `c..c + 4`), each value register
/// feeding both.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows read best indexed
unsafe fn add_values_pair<const NR: usize>(
    acc_a: &mut [__m256; NR],
    acc_b: &mut [__m256; NR],
    c: usize,
    vals: &[[__m256; NR]; crate::attention::KV_TILE],
    wa: &[f32; 8],
    wb: &[f32; 8],
    n: usize,
) {
    let (mut a, mut b) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
    a.copy_from_slice(&acc_a[c..c + 4]);
    b.copy_from_slice(&acc_b[c..c + 4]);
    for j in 0..n {
        let (pa, pb) = (_mm256_set1_ps(wa[j]), _mm256_set1_ps(wb[j]));
        for r in 0..4 {
            let v = vals[j][c + r];
            a[r] = _mm256_fmadd_ps(v, pa, a[r]);
            b[r] = _mm256_fmadd_ps(v, pb, b[r]);
        }
    }
    acc_a[c..c + 4].copy_from_slice(&a);
    acc_b[c..c + 4].copy_from_slice(&b);
}

/// One tile of [`TileWalk`]: its key and value rows (the first `n`), how many of them
/// each query sees, and each (query, head)'s scores (scaled; -inf where not seen).
pub(crate) struct TileScores<E, const G: usize> {
    pub(crate) rows: [(*const E, *const E); crate::attention::KV_TILE],
    pub(crate) n: usize,
    pub(crate) nq: [usize; crate::attention::TILED_QUERIES],
    pub(crate) scores: [[__m256; G]; crate::attention::TILED_QUERIES],
}

/// The score side of the tiled attention loop, shared by its AVX2 and AVX-512 forms:
/// walks the positions in tiles of eight (the next tile's rows found, and their lines
/// requested, a tile ahead: the cache rows of a long context come from L3 or memory,
/// and a tile's first key load would otherwise stall), reads each tile's keys once for
/// every query and head, and scores them.
pub(crate) struct TileWalk<'s, 'a, K: TiledKv, const G: usize> {
    queries: [[K::Row; G]; crate::attention::TILED_QUERIES],
    lens: &'s [usize],
    n_max: usize,
    tiles: crate::attention::Tiles<'s, 'a, K::Elem>,
    ahead: [(*const K::Elem, *const K::Elem); crate::attention::KV_TILE],
    n_ahead: usize,
    /// Rows past a tile's end keep the previous tile's (stale) keys: their scores only
    /// reach lanes that are replaced by -inf.
    keys: [K::Row; crate::attention::KV_TILE],
    t0: usize,
    scale: f32,
}

impl<'s, 'a, K: TiledKv, const G: usize> TileWalk<'s, 'a, K, G> {
    /// Heads `h0..h0 + G` (of `g` per query) of the queries `q` (`[n_q][g][K::HEAD_DIM]`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn new(
        q: &[f32],
        g: usize,
        h0: usize,
        lens: &'s [usize],
        spans: &'s [KvSpan<'a, K::Elem>],
        stride: usize,
        offset: usize,
        scale: f32,
    ) -> Self {
        use crate::attention::{Tiles, KV_TILE, TILED_QUERIES};
        let n_q = lens.len();
        assert!(n_q <= TILED_QUERIES && q.len() >= n_q * g * K::HEAD_DIM && h0 + G <= g);
        // Loops, not `array::from_fn`: its closures would not inherit the caller's target
        // features, and where the compiler keeps them out of line their intrinsics become
        // calls.
        let mut queries = [[K::zero(); G]; TILED_QUERIES];
        for (qi, row) in queries.iter_mut().enumerate().take(n_q) {
            for (h, r) in row.iter_mut().enumerate() {
                *r = K::query(q.as_ptr().add((qi * g + h0 + h) * K::HEAD_DIM));
            }
        }
        let mut tiles = Tiles::new(spans, stride, offset, K::HEAD_ELEMS);
        let mut ahead = [(std::ptr::null(), std::ptr::null()); KV_TILE];
        let n_ahead = tiles.next(&mut ahead);
        let n_max = lens.iter().copied().max().unwrap_or(0);
        TileWalk {
            queries,
            lens,
            n_max,
            tiles,
            ahead,
            n_ahead,
            keys: [K::zero(); KV_TILE],
            t0: 0,
            scale,
        }
    }

    /// The next tile, `None` at the end.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // queries and heads read best indexed
    pub(crate) unsafe fn next(&mut self) -> Option<TileScores<K::Elem, G>> {
        use crate::attention::TILED_QUERIES;
        if self.t0 >= self.n_max {
            return None;
        }
        let rows = self.ahead;
        let n = self.n_ahead.min(self.n_max - self.t0);
        if n == 0 {
            return None;
        }
        self.n_ahead = self.tiles.next(&mut self.ahead);
        for &(k, v) in &self.ahead[..self.n_ahead] {
            prefetch_head::<K>(k);
            prefetch_head::<K>(v);
        }
        for j in 0..n {
            self.keys[j] = K::key(rows[j].0);
        }
        let (n_q, t0) = (self.lens.len(), self.t0);
        let nq: [usize; TILED_QUERIES] = std::array::from_fn(|qi| {
            if qi < n_q {
                n.min(self.lens[qi].saturating_sub(t0))
            } else {
                0
            }
        });
        let (scale_v, ninf) = (
            _mm256_set1_ps(self.scale),
            _mm256_set1_ps(f32::NEG_INFINITY),
        );
        let mut scores = [[ninf; G]; TILED_QUERIES];
        for qi in 0..n_q {
            if nq[qi] == 0 {
                continue;
            }
            let valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                _mm256_set1_epi32(nq[qi] as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            ));
            for h in 0..G {
                let parts = K::scores(&self.queries[qi][h], &self.keys);
                scores[qi][h] =
                    _mm256_blendv_ps(ninf, _mm256_mul_ps(hsum_x8(&parts), scale_v), valid);
            }
        }
        self.t0 += n;
        Some(TileScores {
            rows,
            n,
            nq,
            scores,
        })
    }
}

/// One (query, head)'s softmax step over a tile's scores `s` (invalid positions -inf),
/// with its running maximum `m` and weight sum `s_sum`: the tile's weights go to `w`.
/// `None` if the tile has no valid position (nothing changed); else `Some(ms)`, where a
/// new maximum gives the factor `ms` the head's accumulator is to be multiplied by
/// before this tile's values are added (`s_sum` already has it).
#[inline(always)]
pub(crate) unsafe fn softmax_step(
    s: __m256,
    m: &mut f32,
    s_sum: &mut f32,
    w: &mut [f32; 8],
) -> Option<Option<f32>> {
    let t_max = hmax(s);
    if t_max == f32::NEG_INFINITY {
        return None;
    }
    let mut rescale = None;
    if t_max > *m {
        let ms = crate::ops::expf(*m - t_max);
        *s_sum *= ms;
        *m = t_max;
        rescale = Some(ms);
    }
    let p = expf8(_mm256_sub_ps(s, _mm256_set1_ps(*m)));
    *s_sum += hsum(p);
    _mm256_storeu_ps(w.as_mut_ptr(), p);
    Some(rescale)
}

/// Requests the cache lines of one head's row at `p` (a prefetch never faults).
#[inline(always)]
unsafe fn prefetch_head<K: TiledKv>(p: *const K::Elem) {
    let bytes = K::HEAD_ELEMS * std::mem::size_of::<K::Elem>();
    let p = p.cast::<i8>();
    let mut at = 0;
    while at < bytes {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at));
        at += 64;
    }
    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(bytes - 1));
}

/// `out[h] = acc[h] / s_sum[h]` for each head of `8 * NR` dims (zero where the weights sum
/// to 0), as the scalar kernels finish.
#[inline(always)]
unsafe fn store_heads<const G: usize, const NR: usize>(
    acc: &[[__m256; NR]; G],
    s_sum: &[f32; G],
    out: &mut [f32],
) {
    assert!(out.len() >= 8 * NR * G);
    for h in 0..G {
        let inv = _mm256_set1_ps(if s_sum[h] == 0.0 { 0.0 } else { 1.0 / s_sum[h] });
        for (i, a) in acc[h].iter().enumerate() {
            _mm256_storeu_ps(
                out.as_mut_ptr().add(8 * (NR * h + i)),
                _mm256_mul_ps(*a, inv),
            );
        }
    }
}

/// The maximum of eight lanes in [`crate::attention::hmax8`]'s order (`maxps` keeps its
/// first operand where it is greater, else the second).
#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v)); // l vs l+4
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m)); // 0 vs 2, 1 vs 3
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// The queries of an f16 or f32 cache, heads of `8 * NR` dims: each rounded to f16, as
/// `NR` registers of 8 lanes (dims `8i..8i + 8` in register `i`). The accumulator is
/// rounded to f16 after every operation, as the reference engine's is.
struct FloatHeads<T, const G: usize, const NR: usize> {
    qv: [[__m256; NR]; G],
    _elem: std::marker::PhantomData<T>,
}

impl<T: KvElem, const G: usize, const NR: usize> FloatHeads<T, G, NR> {
    /// Registers of a head in whole 64-lane chunks of the score order.
    const MAIN: usize = NR / 8 * 8;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn new(q: &[f32]) -> Self {
        assert!(q.len() >= 8 * NR * G);
        let mut qv = [[_mm256_setzero_ps(); NR]; G];
        for (h, qv) in qv.iter_mut().enumerate() {
            for (i, r) in qv.iter_mut().enumerate() {
                *r = round_f16(_mm256_loadu_ps(q.as_ptr().add(8 * (NR * h + i))));
            }
        }
        FloatHeads {
            qv,
            _elem: std::marker::PhantomData,
        }
    }

    /// Each head's score of the key row at `k` (before the scale) over the whole 64-lane
    /// chunks of its dims, as eight lanes whose [`hsum`] is that part of the score (zero
    /// for a head of 32): the loop sums eight keys' at once with [`hsum_x8`], and
    /// [`FloatHeads::add_tail`] adds the rest.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn score_parts(&self, k: *const T) -> [__m256; G] {
        let mut kv = [_mm256_setzero_ps(); NR];
        for (i, r) in kv.iter_mut().enumerate().take(Self::MAIN) {
            *r = load8(k.add(8 * i));
        }
        let mut parts = [_mm256_setzero_ps(); G];
        for (p, qv) in parts.iter_mut().zip(&self.qv) {
            *p = score_parts_main(qv, &kv);
        }
        parts
    }

    /// For a head whose width is not a multiple of 64: adds to each head's scores of the
    /// `n` keys at `keys` (before the scale) the products of its last 32 dims one by one
    /// in f64, as [`crate::attention::dot_f16_order`] does past its last whole 64, and
    /// rounds the sums back to f32. Each product is an f32 multiply; the keys go in the
    /// lanes (the tail of their rows transposed), so one register adds a dim's products
    /// of four keys, and the heads' chains interleave.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::needless_range_loop)] // dims, keys and heads read best indexed
    unsafe fn add_tail(&self, keys: &[*const T; 8], n: usize, scores: &mut [[f32; 8]; G]) {
        let tail = NR - Self::MAIN;
        if tail == 0 {
            return;
        }
        debug_assert!(tail == 4);
        // kt[8r + i]: dim 8 (MAIN + r) + i of each key (lane j: key j; zero past `n`).
        let mut kt = [_mm256_setzero_ps(); 32];
        for r in 0..4 {
            let mut rows = [_mm256_setzero_ps(); 8];
            for j in 0..n {
                rows[j] = load8(keys[j].add(8 * (Self::MAIN + r)));
            }
            kt[8 * r..8 * r + 8].copy_from_slice(&transpose8(rows));
        }
        let (mut lo, mut hi) = ([_mm256_setzero_pd(); G], [_mm256_setzero_pd(); G]);
        for h in 0..G {
            let s = _mm256_loadu_ps(scores[h].as_ptr());
            lo[h] = _mm256_cvtps_pd(_mm256_castps256_ps128(s));
            hi[h] = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(s));
        }
        for i in 0..32 {
            for h in 0..G {
                let qf: *const f32 = self.qv[h].as_ptr().cast();
                let p = _mm256_mul_ps(_mm256_broadcast_ss(&*qf.add(8 * Self::MAIN + i)), kt[i]);
                lo[h] = _mm256_add_pd(lo[h], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
                hi[h] = _mm256_add_pd(hi[h], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(p)));
            }
        }
        for h in 0..G {
            _mm256_storeu_ps(
                scores[h].as_mut_ptr(),
                _mm256_set_m128(_mm256_cvtpd_ps(hi[h]), _mm256_cvtpd_ps(lo[h])),
            );
        }
    }
}

/// The 8×8 transpose of `r`: lane `j` of register `i` is lane `i` of `r[j]`.
#[inline(always)]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // Lanes i and i + 4 of rows 0..4 (u0..u3) and of rows 4..8 (u4..u7).
    let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// The one-key-at-a-time online softmax of the `G` heads of `q`, of `8 * NR` dims each,
/// over a float cache.
/// Keys go eight at a time: each key row is read once for every head's score, the
/// exponentials of a head's eight keys come from one [`expf8`] (their arguments depend
/// only on the scores and the running maximum), and the value rows then update `D` of
/// each head's accumulator registers per pass, so `G * D` independent chains are in
/// flight. (A function of its own for each shape, as [`attend_tiled_group`].)
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
unsafe fn attend_group<T: KvElem, const G: usize, const D: usize, const NR: usize>(
    q: &[f32],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let heads = FloatHeads::<T, G, NR>::new(q);
    let mut acc = [[_mm256_setzero_ps(); NR]; G];
    let (mut m, mut s_sum) = ([f32::NEG_INFINITY; G], [0.0f32; G]);
    for span in spans {
        assert!(
            span.holds(stride, offset, 8 * NR),
            "attention span out of bounds"
        );
        let mut p0 = 0;
        while p0 < span.n_pos {
            let n = (span.n_pos - p0).min(8);
            // Exponent arguments against each head's running maximum, as the one-key
            // loop forms them: `m - s` (and a new maximum) when the score exceeds it,
            // else `s - m`.
            let mut parts = [[_mm256_setzero_ps(); 8]; G];
            let mut keys = [std::ptr::null(); 8];
            for j in 0..n {
                keys[j] = span.k.as_ptr().add((p0 + j) * stride + offset);
                let p = heads.score_parts(keys[j]);
                for h in 0..G {
                    parts[h][j] = p[h];
                }
            }
            let mut scores = [[0.0f32; 8]; G];
            for h in 0..G {
                _mm256_storeu_ps(scores[h].as_mut_ptr(), hsum_x8(&parts[h]));
            }
            heads.add_tail(&keys, n, &mut scores);
            let (mut arg, mut new_max) = ([[0.0f32; 8]; G], [[false; 8]; G]);
            for j in 0..n {
                for h in 0..G {
                    let s = scores[h][j] * scale;
                    if s > m[h] {
                        (arg[h][j], new_max[h][j]) = (m[h] - s, true);
                        m[h] = s;
                    } else {
                        arg[h][j] = s - m[h];
                    }
                }
            }
            let mut e = [[0.0f32; 8]; G];
            for h in 0..G {
                _mm256_storeu_ps(e[h].as_mut_ptr(), expf8(_mm256_loadu_ps(arg[h].as_ptr())));
            }
            // (ms, vs) of each key: the rescale of the accumulator and the value weight.
            // (Loops, not `array::from_fn`: the compiler kept its closures out of line.)
            let mut w = [[(1.0f32, 1.0f32); 8]; G];
            for h in 0..G {
                for j in 0..8 {
                    w[h][j] = if new_max[h][j] {
                        (e[h][j], 1.0)
                    } else {
                        (1.0, e[h][j])
                    };
                }
            }
            let rows = span.v.as_ptr().add(p0 * stride + offset);
            let mut c = 0;
            while c + D <= NR {
                add_values_f16::<T, G, D, NR>(&mut acc, c, rows, stride, n, &w, &new_max);
                c += D;
            }
            if c < NR {
                // Only D = 8 leaves a rest, of four registers.
                add_values_f16::<T, G, 4, NR>(&mut acc, c, rows, stride, n, &w, &new_max);
            }
            for h in 0..G {
                for &(ms, vs) in &w[h][..n] {
                    s_sum[h] = s_sum[h].mul_add(ms, vs);
                }
            }
            p0 += n;
        }
    }
    store_heads(&acc, &s_sum, out);
}

/// Registers `c..c + W` of each head's f16 accumulator over the `n` value rows at `rows`
/// (`stride` apart), in order: where key `j` set a new maximum the accumulator is first
/// scaled by its `ms`, then `acc = v * vs + acc` by a fused multiply-add, each result
/// rounded to f16.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)] // tokens and rows read best indexed
unsafe fn add_values_f16<T: KvElem, const G: usize, const W: usize, const NR: usize>(
    acc: &mut [[__m256; NR]; G],
    c: usize,
    rows: *const T,
    stride: usize,
    n: usize,
    w: &[[(f32, f32); 8]; G],
    new_max: &[[bool; 8]; G],
) {
    let mut a = [[_mm256_setzero_ps(); W]; G];
    for h in 0..G {
        a[h].copy_from_slice(&acc[h][c..c + W]);
    }
    for j in 0..n {
        let row = rows.add(j * stride);
        let mut v = [_mm256_setzero_ps(); W];
        for (i, v) in v.iter_mut().enumerate() {
            *v = load8(row.add(8 * (c + i)));
        }
        for h in 0..G {
            let (ms, vs) = w[h][j];
            if new_max[h][j] {
                let msv = _mm256_set1_ps(ms);
                for x in a[h].iter_mut() {
                    *x = round_f16(_mm256_mul_ps(*x, msv));
                }
            }
            let vsv = _mm256_set1_ps(vs);
            for (x, v) in a[h].iter_mut().zip(&v) {
                *x = round_f16(_mm256_fmadd_ps(*v, vsv, *x));
            }
        }
    }
    for h in 0..G {
        acc[h][c..c + W].copy_from_slice(&a[h]);
    }
}

/// The part of `q · k` over the whole 64-lane chunks of a head (`q` and `k` as `NR`
/// registers of 8 lanes, registers past the last whole chunk unread) in the order of
/// [`crate::attention::dot_f16_order`]: lane `l` of each 64 (group `l / 16`, in register
/// `l / 8` of the chunk) accumulates by fused multiply-adds from zero, chunk by chunk;
/// then the groups are added as there, up to the last eight lanes: their [`hsum`] is the
/// part. All zero lanes when the head has no whole chunk.
#[inline(always)]
unsafe fn score_parts_main<const NR: usize>(qv: &[__m256; NR], kv: &[__m256; NR]) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut c = 0;
    while c + 8 <= NR {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(qv[c + i], kv[c + i], *a);
        }
        c += 8;
    }
    // groups: 0+2, 1+3, then 0+1 (per register half).
    let g02 = [_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[1], acc[5])];
    let g13 = [_mm256_add_ps(acc[2], acc[6]), _mm256_add_ps(acc[3], acc[7])];
    let lo = _mm256_add_ps(g02[0], g13[0]); // lanes 0..8 of the 16-lane sum
    let hi = _mm256_add_ps(g02[1], g13[1]); // lanes 8..16
    _mm256_add_ps(hi, lo) // l + l+8; hsum then adds l + l+4, (0+2), (1+3)
}
