//! AVX2 kernels: dot products of legacy quant rows with 8-bit activations, their tiled
//! products, and the horizontal sums the other kernel files share (attention is in
//! `x86_attention`).
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
pub(crate) unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

#[inline(always)]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// `[hsum(v[0]), .., hsum(v[7])]`: eight horizontal sums at once, each added in
/// [`hsum`]'s order (`l + l+4`, then `(0+2) + (1+3)`), so each lane is bit-identical to
/// it, in 21 shuffles and adds instead of 48.
#[inline(always)]
pub(crate) unsafe fn hsum_x8(v: &[__m256; 8]) -> __m256 {
    // l + l+4 of v[i] (lanes 0..4) and of v[i + 4] (lanes 4..8). (No closures here: they
    // would not inherit the caller's target features.)
    let mut s = [_mm256_setzero_ps(); 4];
    for (i, s) in s.iter_mut().enumerate() {
        *s = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(v[i], v[i + 4]),
            _mm256_permute2f128_ps::<0x31>(v[i], v[i + 4]),
        );
    }
    // [0+2 of s0, of s1, 1+3 of s0, of s1] per half, and the same for s2, s3.
    let p01 = _mm256_add_ps(
        _mm256_unpacklo_ps(s[0], s[1]),
        _mm256_unpackhi_ps(s[0], s[1]),
    );
    let p23 = _mm256_add_ps(
        _mm256_unpacklo_ps(s[2], s[3]),
        _mm256_unpackhi_ps(s[2], s[3]),
    );
    // (0+2) + (1+3) of each: lanes in the order of v.
    _mm256_add_ps(
        _mm256_shuffle_ps::<0b01_00_01_00>(p01, p23),
        _mm256_shuffle_ps::<0b11_10_11_10>(p01, p23),
    )
}

/// Two f16 values to f32 lanes 0 and 1 (hardware F16C; exact).
#[inline(always)]
pub(crate) unsafe fn f16x2(lo: f16, hi: f16) -> __m128 {
    let bits = u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16);
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

#[inline(always)]
pub(crate) unsafe fn load_i8x32(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr().cast())
}

/// One block of the activation quantizer ([`crate::quantize_row_q8_0_act_ref`]'s twin):
/// `amax = max |x|`, `d = amax / 127`, `q = round_half_even(x * 127 / amax)` (a NaN
/// product gives 0, as the scalar cast does); returns `d` and the sum of the quants.
/// Bit-identical: the maximum is exact, the scales are the same scalar divisions, and
/// `_mm256_round_ps` rounds half to even as the scalar's magic-number addition does.
#[inline(always)]
unsafe fn quantize_block_q8_act(x: *const f32, qs: *mut i8) -> (f32, i32) {
    // (Loops, not closures: a closure would not inherit the caller's target features.)
    let mut v = [_mm256_setzero_ps(); 4];
    for (i, v) in v.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(x.add(8 * i));
    }
    let abs = _mm256_set1_ps(-0.0);
    // max_ps returns its second operand when the first is NaN: NaNs drop out, as in
    // the scalar `f32::max`.
    let mut m = _mm256_setzero_ps();
    for v in v {
        m = _mm256_max_ps(_mm256_andnot_ps(abs, v), m);
    }
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let mut q = [_mm256_setzero_si256(); 4];
    for i in 0..4 {
        let r = _mm256_round_ps(
            _mm256_mul_ps(v[i], id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        q[i] = _mm256_cvtps_epi32(_mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)));
    }
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256(sum, 1),
    );
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01)));
    // Packing interleaves the 128-bit halves; the permute restores element order.
    let p = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(qs.cast(), p);
    (d, sum)
}

/// AVX2 twin of [`crate::quantize_row_q8_0_act_ref`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0_act(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * 32,
        "quantize_row_act q8_0: length mismatch"
    );
    for (b, yb) in y.iter_mut().enumerate() {
        let (d, _) = quantize_block_q8_act(x.as_ptr().add(32 * b), yb.qs.as_mut_ptr());
        yb.d = crate::quants::fp32_to_fp16(d);
    }
}

/// AVX2 twin of [`crate::quantize_row_q8_1_act_ref`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1_act(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * 32,
        "quantize_row_act q8_1: length mismatch"
    );
    for (b, yb) in y.iter_mut().enumerate() {
        let (d, sum) = quantize_block_q8_act(x.as_ptr().add(32 * b), yb.qs.as_mut_ptr());
        yb.d = crate::quants::fp32_to_fp16(d);
        yb.s = crate::quants::fp32_to_fp16(d * sum as f32);
    }
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
        let sumi = dot_i8_i8_quads(load_i8x32(&bw.qs), load_i8x32(&ba.qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum(quads_in_order(acc))
}

/// Exact signed byte dot product for any inputs (both may be -128, where the
/// `vpmaddubsw` form saturates), via 16-bit products, as eight i32 sums of four
/// consecutive elements: positions hold elements `[0..4, 4..8, 16..20, 20..24, 8..12,
/// 12..16, 24..28, 28..32]` (the in-lane `vphaddd` order; [`quads_in_order`] puts
/// accumulators of them back in element order).
#[inline(always)]
unsafe fn dot_i8_i8_quads(a: __m256i, b: __m256i) -> __m256i {
    let a_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
    let a_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1));
    let b_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b));
    let b_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1));
    _mm256_hadd_epi32(_mm256_madd_epi16(a_lo, b_lo), _mm256_madd_epi16(a_hi, b_hi))
}

/// Lanes accumulated from [`dot_i8_i8_quads`] in element order (lane `l` the sums of
/// elements `4l..4l+4`): the 64-bit pairs `0, 2, 1, 3`.
#[inline(always)]
unsafe fn quads_in_order(acc: __m256) -> __m256 {
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
        acc,
    )))
}

// ---------------------------------------------------------------------------------------
// Tiled products: several weight rows × several tokens per step
// ---------------------------------------------------------------------------------------
//
// `gemm_*` computes `out[t * n_rows + r] = vec_dot(row r, token t)` for every weight row
// and every activation row. Each output keeps its own eight-lane accumulator and sees the
// same f32 operations in the same order as the one-row `vec_dot_*` kernel above (the
// block's integer sum in the same lanes, the same products of the same scales, one FMA
// per block, the same horizontal sum), so the results are bit-identical to it and to the
// scalar twin, whatever the tile shape or the number of tokens. What a tile shares is
// everything that is not an output's own arithmetic: a weight block is loaded and
// unpacked once for all the tokens of the tile, an activation block once for all its
// rows, and the activations' f16 scales (and, per type, their widened or summed quants)
// are converted once per call instead of once per row.

/// Most tokens per tile: the accumulators of a tile's outputs stay in registers.
pub(crate) const TILE_TOKENS: usize = 8;

/// A tile kernel for one weight type: `prepare` converts the activation-side data of up
/// to [`TILE_TOKENS`] tokens once, `tile` computes `R × T` outputs.
pub(crate) trait Tile {
    type W;
    type A;
    /// Activation-side data per block, for a tile of tokens.
    type Prep: Copy;
    /// `prep[b]` (`prep.len() == nb`) for `T` activation rows of `nb` blocks at `a`.
    unsafe fn prepare<const T: usize>(a: *const Self::A, nb: usize, prep: &mut [Self::Prep]);
    /// `out[r][t]` for `R` weight rows at `w` (row `r` at `w + r * nb`) and the tokens
    /// of `prep` (and `a`, row `t` at `a + t * nb`).
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const Self::W,
        a: *const Self::A,
        prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R];
}

/// Runs a tile kernel over `n_rows × n_tokens` outputs: tokens in tiles of `MAX_T`
/// (at most [`TILE_TOKENS`]; the rest in one tile of their number, so a weight row is
/// read once per `MAX_T` tokens), rows four at a time for a lone token, two for two
/// tokens, else one (larger tiles spill registers).
#[inline(always)]
pub(crate) unsafe fn gemm<'o, K: Tile, const MAX_T: usize>(
    nb: usize,
    w: &[K::W],
    a: &[K::A],
    out: impl crate::IntoGemmOut<'o>,
) {
    const { assert!(MAX_T >= 1 && MAX_T <= TILE_TOKENS) };
    assert!(
        nb > 0 && w.len() % nb == 0 && a.len() % nb == 0,
        "gemm: lengths are not whole rows"
    );
    let (n_rows, n_tokens) = (w.len() / nb, a.len() / nb);
    let out = &mut out.into_gemm_out(n_rows, n_tokens);
    // The closure-free shape matters: a closure here would not inherit this function's
    // target features, and its intrinsics would become calls.
    let mut buf = SCRATCH.with(|c| c.take());
    let prep = scratch::<K::Prep>(&mut buf, nb);
    let mut t0 = 0;
    while t0 < n_tokens {
        let ap = a.as_ptr().add(t0 * nb);
        t0 += match (n_tokens - t0).min(MAX_T) {
            1 => rows::<K, 4, 1>(nb, w, ap, t0, prep, out),
            2 => rows::<K, 2, 2>(nb, w, ap, t0, prep, out),
            3 => rows::<K, 1, 3>(nb, w, ap, t0, prep, out),
            4 => rows::<K, 1, 4>(nb, w, ap, t0, prep, out),
            5 => rows::<K, 1, 5>(nb, w, ap, t0, prep, out),
            6 => rows::<K, 1, 6>(nb, w, ap, t0, prep, out),
            7 => rows::<K, 1, 7>(nb, w, ap, t0, prep, out),
            _ => rows::<K, 1, 8>(nb, w, ap, t0, prep, out),
        };
    }
    SCRATCH.with(|c| c.set(buf));
}

thread_local! {
    /// Per-thread scratch for [`Tile::prepare`] (and the AVX-512 tiles'), kept between calls: a matmul runs
    /// thousands of small tasks per token, and a fresh allocation each was measurable.
    pub(crate) static SCRATCH: std::cell::Cell<Vec<__m256i>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `n` values of `P` in `buf`, grown (zero-filled) as needed; they hold whatever the
/// last user left. `P` must be plain data (floats and SIMD integers: any bit pattern is
/// a value) aligned to at most 32.
#[inline(always)]
pub(crate) fn scratch<P: Copy>(buf: &mut Vec<__m256i>, n: usize) -> &mut [P] {
    const { assert!(std::mem::align_of::<P>() <= 32) };
    let words = (n * std::mem::size_of::<P>()).div_ceil(32);
    if buf.len() < words {
        // SAFETY: an all-zero __m256i is a valid value.
        buf.resize(words, unsafe { std::mem::zeroed() });
    }
    // SAFETY: the buffer holds at least n * size_of::<P>() initialised bytes, aligned to
    // 32 >= align_of::<P>(), and P (floats and SIMD integers) is valid for any bits.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<P>(), n) }
}

/// All rows against the `T` tokens at `a` (tokens `t0..t0 + T` of the output); returns `T`.
#[inline(always)]
unsafe fn rows<K: Tile, const R: usize, const T: usize>(
    nb: usize,
    w: &[K::W],
    a: *const K::A,
    t0: usize,
    prep: &mut [K::Prep],
    out: &mut crate::GemmOut<'_>,
) -> usize {
    let n_rows = w.len() / nb;
    K::prepare::<T>(a, nb, prep);
    let store = |out: &mut crate::GemmOut<'_>, r: usize, v: &[f32; T]| {
        for (t, &v) in v.iter().enumerate() {
            out.set(t0 + t, r, v);
        }
    };
    let mut r = 0;
    while r + R <= n_rows {
        let v = K::tile::<R, T>(w.as_ptr().add(r * nb), a, prep, nb);
        for (i, v) in v.iter().enumerate() {
            store(out, r + i, v);
        }
        r += R;
    }
    while r < n_rows {
        let [v] = K::tile::<1, T>(w.as_ptr().add(r * nb), a, prep, nb);
        store(out, r, &v);
        r += 1;
    }
    T
}

/// The 32 nibbles of a 16-byte block at `qs` as bytes in element order (low nibbles,
/// then high), from one broadcast load: the upper half is shifted down by four.
#[inline(always)]
pub(crate) unsafe fn nibbles_at(qs: *const u8) -> __m256i {
    let b = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs.cast()));
    _mm256_and_si256(
        _mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)),
        _mm256_set1_epi8(0x0f),
    )
}

/// One f16 at `p` as f32 lane 0 (lane 1 is the f16 after it).
#[inline(always)]
unsafe fn f16_pair_at(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p.cast::<i32>())))
}

/// Prefetches the part of the next row tile (the `R` rows after the current ones) that
/// lies `b / nb` of the way through it, so the next tile's weights stream in while this
/// one computes. The address may be past the weights; a prefetch never faults.
#[inline(always)]
pub(crate) unsafe fn prefetch_next_tile<W, const R: usize>(w: *const W, nb: usize, b: usize) {
    let step = R * std::mem::size_of::<W>();
    let p = w.wrapping_add(R * nb).cast::<i8>().wrapping_add(b * step);
    let mut k = 0;
    while k < step {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(k));
        k += 64;
    }
}

struct TileQ4_1;

/// What [`TileQ4_1`] keeps per block for a tile of tokens.
#[derive(Clone, Copy)]
struct PrepQ4_1 {
    /// `[d_a(t), s_a(t)]` of each token as f32 (lanes `2t`, `2t + 1`; zero past `T`).
    ds: [f32; 2 * TILE_TOKENS],
    /// The tokens' quants side by side (aligned: in the activation rows a block's quants
    /// straddle cache lines).
    qa: [__m256i; TILE_TOKENS],
    /// Per weight row of the tile in turn, `[d_w, m_w] × ds` of each group of four tokens:
    /// `d_w d_a(t)` in lane `2t`, `m_w s_a(t)` in lane `2t + 1` (written by `tile`).
    dm_ds: [f32; 2 * TILE_TOKENS],
}

impl Tile for TileQ4_1 {
    type W = BlockQ4_1;
    type A = BlockQ8_1;
    type Prep = PrepQ4_1;

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_1, nb: usize, prep: &mut [PrepQ4_1]) {
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            let mut h = [0u32; TILE_TOKENS];
            for t in 0..T {
                let blk = a.add(t * nb + b);
                h[t] = std::ptr::read_unaligned(blk.cast::<u32>()); // d, s
                p.qa[t] = load_i8x32(&(*blk).qs);
            }
            _mm256_storeu_ps(
                p.ds.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast())),
            );
            _mm256_storeu_ps(
                p.ds.as_mut_ptr().add(8),
                _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().add(4).cast())),
            );
        }
    }

    /// Per block and output, as [`vec_dot_q4_1_q8_1`]: `acc += (d_w d_a) * sumi` (one
    /// FMA over the eight lanes), `summs += m_w * s_a`.
    ///
    /// Several tokens: a first pass over the blocks multiplies each row's `[d_w, m_w]`
    /// by the tokens' `[d_a, s_a]` (both products of four tokens in one multiply), sums
    /// the `m_w s_a` and stores the products; the integer pass then reads each `d_w d_a`
    /// back with a broadcast load, which costs a load port instead of a multiply per
    /// token: the same product, rounded once, so the same result. Two passes, not one,
    /// keep the integer pass's registers for its accumulators and constants.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ4_1,
        _a: *const BlockQ8_1,
        prep: &mut [PrepQ4_1],
        nb: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        if T == 1 {
            // One token: one product per row as in the one-row kernel.
            let mut summs = [_mm_setzero_ps(); R];
            for (b, p) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the next tile's bytes are on their way in.
                prefetch_next_tile::<BlockQ4_1, R>(w, nb, b);
                let ds = _mm_loadu_ps(p.ds.as_ptr()); // [d_a, s_a, 0, 0]
                for r in 0..R {
                    let bw = w.add(r * nb + b);
                    let dm_ds = _mm_mul_ps(f16_pair_at(bw.cast()), ds); // [d_w d_a, m_w s_a, ..]
                    summs[r] = _mm_add_ps(summs[r], dm_ds);
                    let sumi = dot_u8_i8(nibbles_at((*bw).qs.as_ptr()), p.qa[0]);
                    acc[r][0] = _mm256_fmadd_ps(
                        _mm256_broadcastss_ps(dm_ds),
                        _mm256_cvtepi32_ps(sumi),
                        acc[r][0],
                    );
                }
            }
            let mut res = [[0.0f32; T]; R];
            for r in 0..R {
                res[r][0] = hsum(acc[r][0]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r]));
            }
            return res;
        }
        // Groups of four tokens; row r's group h at dm_ds[8 (r G + h)..].
        let groups = T.div_ceil(4);
        const { assert!(T == 1 || R * T.div_ceil(4) <= 2, "dm_ds holds two groups") };
        let mut summs = [[_mm256_setzero_ps(); 2]; R]; // lane 2t + 1: token 4h + t
        for (b, p) in prep.iter_mut().enumerate().take(nb) {
            for r in 0..R {
                // [d_w, m_w] in every pair of lanes.
                let dm = _mm256_cvtph_ps(_mm_set1_epi32(std::ptr::read_unaligned(
                    w.add(r * nb + b).cast::<i32>(),
                )));
                for h in 0..groups {
                    let dm_ds = _mm256_mul_ps(dm, _mm256_loadu_ps(p.ds.as_ptr().add(8 * h)));
                    summs[r][h] = _mm256_add_ps(summs[r][h], dm_ds);
                    _mm256_storeu_ps(p.dm_ds.as_mut_ptr().add(8 * (r * groups + h)), dm_ds);
                }
            }
        }
        // The sums go to memory before the integer pass: kept in registers across it,
        // they pushed its constants out (a reload per block, entry 26 of docs/perf.md).
        let mut m = [[0.0f32; 2 * TILE_TOKENS]; R];
        for r in 0..R {
            for h in 0..groups {
                _mm256_storeu_ps(m[r].as_mut_ptr().add(8 * h), summs[r][h]);
            }
        }
        for (b, p) in prep.iter().enumerate().take(nb) {
            for r in 0..R {
                let q = nibbles_at((*w.add(r * nb + b)).qs.as_ptr());
                for t in 0..T {
                    let d = _mm256_broadcast_ss(&p.dm_ds[8 * (r * groups + t / 4) + 2 * (t % 4)]);
                    acc[r][t] =
                        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_i8(q, p.qa[t])), acc[r][t]);
                }
            }
        }
        let mut res = [[0.0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                res[r][t] = hsum(acc[r][t]) + m[r][2 * t + 1];
            }
        }
        res
    }
}

/// Tiled Q4_1 × Q8_1: `out[t * n_rows + r]` is [`vec_dot_q4_1_q8_1`] of weight row `r`
/// and activation row `t` (rows of `nb` blocks), bit for bit.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_1_q8_1<'o>(
    nb: usize,
    w: &[BlockQ4_1],
    a: &[BlockQ8_1],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ4_1, TILE_TOKENS>(nb, w, a, out)
}

/// A weight block of unsigned quants stored with an offset, `w = d (q - 2^SHIFT)` (Q4_0,
/// Q5_0), dotted with Q8_0 activations as `q·a - 2^SHIFT Σa` in the lanes.
pub(crate) trait OffsetBlock {
    /// log2 of the offset: 3 for Q4_0's 8, 4 for Q5_0's 16.
    const SHIFT: i32;
    /// The block's scale as f32 lane 0.
    unsafe fn scale(&self) -> __m128;
    /// The 32 unsigned quants in element order.
    unsafe fn quants(&self) -> __m256i;
}

impl OffsetBlock for BlockQ4_0 {
    const SHIFT: i32 = 3;
    #[inline(always)]
    unsafe fn scale(&self) -> __m128 {
        f16x2(self.d, self.d)
    }
    #[inline(always)]
    unsafe fn quants(&self) -> __m256i {
        nibbles_at(self.qs.as_ptr())
    }
}

/// The tile kernel of an [`OffsetBlock`] type.
pub(crate) struct TileOffset<W>(std::marker::PhantomData<W>);

/// What the Q8_0-activation tiles keep per block for a tile of tokens, besides their own
/// form of the quants.
#[derive(Clone, Copy)]
pub(crate) struct ScalesQ8_0 {
    /// `d_a` of each token as f32 (zero past `T`).
    d_a: [f32; TILE_TOKENS],
    /// Per weight row of the tile in turn, `d_w × d_a` of each token (written by the
    /// tile's scale pass).
    dd: [f32; 2 * TILE_TOKENS],
}

impl ScalesQ8_0 {
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
    unsafe fn new<const T: usize>(a: *const BlockQ8_0, nb: usize) -> Self {
        let mut h = [0u16; TILE_TOKENS];
        for t in 0..T {
            h[t] = (*a.add(t * nb)).d.to_bits();
        }
        let mut d_a = [0.0f32; TILE_TOKENS];
        _mm256_storeu_ps(
            d_a.as_mut_ptr(),
            _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast())),
        );
        Self {
            d_a,
            dd: [0.0; 2 * TILE_TOKENS],
        }
    }

    /// Stores `d_w × d_a(t)` for row `r` (`d_w` in all lanes of `d_w`).
    #[inline(always)]
    unsafe fn set_products(&mut self, r: usize, d_w: __m256) {
        _mm256_storeu_ps(
            self.dd.as_mut_ptr().add(8 * r),
            _mm256_mul_ps(d_w, _mm256_loadu_ps(self.d_a.as_ptr())),
        );
    }

    /// Row `r`, token `t`'s product in all lanes: a broadcast load (a load port, not a
    /// multiply per token; the same product, rounded once, so the same result).
    #[inline(always)]
    unsafe fn product(&self, r: usize, t: usize) -> __m256 {
        _mm256_broadcast_ss(&self.dd[8 * r + t])
    }
}

/// `acc[r][t]` horizontally summed, in [`hsum`]'s order.
#[inline(always)]
unsafe fn hsums<const R: usize, const T: usize>(acc: &[[__m256; T]; R]) -> [[f32; T]; R] {
    // (Loops, not closures: a closure would not inherit the caller's target features.)
    let mut res = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            res[r][t] = hsum(acc[r][t]);
        }
    }
    res
}

/// [`hsums`] of accumulators in [`dot_i8_i8_quads`]' lane order.
#[inline(always)]
unsafe fn hsums_quads<const R: usize, const T: usize>(acc: &[[__m256; T]; R]) -> [[f32; T]; R] {
    let mut res = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            res[r][t] = hsum(quads_in_order(acc[r][t]));
        }
    }
    res
}

impl<W: OffsetBlock> Tile for TileOffset<W> {
    type W = W;
    type A = BlockQ8_0;
    /// The scales, and `2^SHIFT × (lane sums of the quants)` of each token.
    type Prep = (ScalesQ8_0, [__m256i; TILE_TOKENS]);

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_0, nb: usize, prep: &mut [Self::Prep]) {
        // Only the first T tokens' entries are written (and read).
        let shift = _mm_cvtsi32_si128(W::SHIFT);
        for (b, (sc, s)) in prep.iter_mut().enumerate().take(nb) {
            *sc = ScalesQ8_0::new::<T>(a.add(b), nb);
            for t in 0..T {
                let blk = &*a.add(t * nb + b);
                s[t] = _mm256_sll_epi32(dot_u8_i8(_mm256_set1_epi8(1), load_i8x32(&blk.qs)), shift);
            }
        }
    }

    /// Per block and output, as the type's one-row `vec_dot`: `acc += (d_w d_a) * sumi`
    /// with `sumi = q·a - 2^SHIFT Σa` in the same lanes. Several tokens: the scale
    /// products of each block row first, then the integer pass (see [`TileQ4_1`]).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // acc[r][t] reads best indexed
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const W,
        a: *const BlockQ8_0,
        prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        if T == 1 {
            for (b, (sc, s)) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the next tile's bytes are on their way in.
                prefetch_next_tile::<W, R>(w, nb, b);
                let qa = load_i8x32(&(*a.add(b)).qs);
                for r in 0..R {
                    let bw = &*w.add(r * nb + b);
                    let d = _mm256_mul_ps(
                        _mm256_broadcastss_ps(bw.scale()),
                        _mm256_broadcast_ss(&sc.d_a[0]),
                    );
                    let sumi = _mm256_sub_epi32(dot_u8_i8(bw.quants(), qa), s[0]);
                    acc[r][0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[r][0]);
                }
            }
            return hsums(&acc);
        }
        const { assert!(T == 1 || R <= 2, "ScalesQ8_0 holds two rows") };
        for (b, (sc, _)) in prep.iter_mut().enumerate().take(nb) {
            for r in 0..R {
                sc.set_products(r, _mm256_broadcastss_ps((*w.add(r * nb + b)).scale()));
            }
        }
        for (b, (sc, s)) in prep.iter().enumerate().take(nb) {
            let qa: [__m256i; T] = std::array::from_fn(|t| load_i8x32(&(*a.add(t * nb + b)).qs));
            for r in 0..R {
                let q = (*w.add(r * nb + b)).quants();
                for t in 0..T {
                    let sumi = _mm256_sub_epi32(dot_u8_i8(q, qa[t]), s[t]);
                    acc[r][t] =
                        _mm256_fmadd_ps(sc.product(r, t), _mm256_cvtepi32_ps(sumi), acc[r][t]);
                }
            }
        }
        hsums(&acc)
    }
}

/// Tiled Q4_0 × Q8_0, bit for bit [`vec_dot_q4_0_q8_0`] per output (see
/// [`gemm_q4_1_q8_1`]).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q4_0_q8_0<'o>(
    nb: usize,
    w: &[BlockQ4_0],
    a: &[BlockQ8_0],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileOffset<BlockQ4_0>, TILE_TOKENS>(nb, w, a, out)
}

struct TileQ8_0;

impl Tile for TileQ8_0 {
    type W = BlockQ8_0;
    type A = BlockQ8_0;
    /// The scales, and each token's quants widened to i16 (elements 0..16 and 16..32).
    type Prep = (ScalesQ8_0, [[__m256i; 2]; TILE_TOKENS]);

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
    unsafe fn prepare<const T: usize>(a: *const BlockQ8_0, nb: usize, prep: &mut [Self::Prep]) {
        // Only the first T tokens' entries are written (and read).
        for (b, (sc, q16)) in prep.iter_mut().enumerate().take(nb) {
            *sc = ScalesQ8_0::new::<T>(a.add(b), nb);
            for t in 0..T {
                q16[t] = widen_i8((*a.add(t * nb + b)).qs.as_ptr());
            }
        }
    }

    /// Per block and output, as [`vec_dot_q8_0_q8_0`]: the lanes sum four consecutive
    /// elements each ([`dot_i8_i8_quads`]' order); `acc += (d_w d_a) * sumi`. Several
    /// tokens: the scale products of each block row first, then the integer pass (see
    /// [`TileQ4_1`]).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // acc[r][t] reads best indexed
    unsafe fn tile<const R: usize, const T: usize>(
        w: *const BlockQ8_0,
        _a: *const BlockQ8_0,
        prep: &mut [Self::Prep],
        nb: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        if T == 1 {
            for (b, (sc, q16)) in prep.iter().enumerate().take(nb) {
                // Streaming weights (decode): the next tile's bytes are on their way in.
                prefetch_next_tile::<BlockQ8_0, R>(w, nb, b);
                for r in 0..R {
                    let bw = w.add(r * nb + b);
                    let d = _mm256_mul_ps(
                        _mm256_broadcastss_ps(f16_pair_at(bw.cast())),
                        _mm256_broadcast_ss(&sc.d_a[0]),
                    );
                    let [w_lo, w_hi] = widen_i8((*bw).qs.as_ptr().cast());
                    let sumi = _mm256_hadd_epi32(
                        _mm256_madd_epi16(w_lo, q16[0][0]),
                        _mm256_madd_epi16(w_hi, q16[0][1]),
                    );
                    acc[r][0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[r][0]);
                }
            }
            return hsums_quads(&acc);
        }
        const { assert!(T == 1 || R <= 2, "ScalesQ8_0 holds two rows") };
        for (b, (sc, _)) in prep.iter_mut().enumerate().take(nb) {
            for r in 0..R {
                sc.set_products(
                    r,
                    _mm256_broadcastss_ps(f16_pair_at(w.add(r * nb + b).cast())),
                );
            }
        }
        for (b, (sc, q16)) in prep.iter().enumerate().take(nb) {
            for r in 0..R {
                let [w_lo, w_hi] = widen_i8((*w.add(r * nb + b)).qs.as_ptr().cast());
                for t in 0..T {
                    let sumi = _mm256_hadd_epi32(
                        _mm256_madd_epi16(w_lo, q16[t][0]),
                        _mm256_madd_epi16(w_hi, q16[t][1]),
                    );
                    acc[r][t] =
                        _mm256_fmadd_ps(sc.product(r, t), _mm256_cvtepi32_ps(sumi), acc[r][t]);
                }
            }
        }
        hsums_quads(&acc)
    }
}

/// The 32 signed bytes at `p` widened to i16: elements 0..16 and 16..32.
#[inline(always)]
pub(crate) unsafe fn widen_i8(p: *const i8) -> [__m256i; 2] {
    [
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast())),
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16).cast())),
    ]
}

/// Tiled Q8_0 × Q8_0, bit for bit [`vec_dot_q8_0_q8_0`] per output (see
/// [`gemm_q4_1_q8_1`]).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_q8_0_q8_0<'o>(
    nb: usize,
    w: &[BlockQ8_0],
    a: &[BlockQ8_0],
    out: impl crate::IntoGemmOut<'o>,
) {
    gemm::<TileQ8_0, TILE_TOKENS>(nb, w, a, out)
}
