//! AVX-512 tiled product for F32 weights × f32 activations.
//!
//! The scalar twin is `vec_dot_f32_ref` (`quants/float.rs`): sixteen f32 lanes, element
//! `i` in lane `i % 16`, each step one fused multiply-add, a partial last chunk padded with
//! zeros, the lanes summed pairwise at the end (`l + l+8`, `l + l+4`, `(0+2) + (1+3)`). A
//! 512-bit register holds all sixteen lanes, so one accumulator per output does the twin's
//! arithmetic exactly, as the AVX2 kernel's two registers do. What the wider registers buy
//! is the tile: four weight rows × four tokens is 16 accumulators, with 8 loads for every
//! 16 multiply-adds of sixteen lanes (the AVX2 tile of one row × six tokens needs 14 loads
//! for 12 of eight lanes). Activations are read in place.

use std::arch::x86_64::*;

use crate::GemmOut;

/// `R` weight rows (row `r` at `w + r * n`) × `T` tokens (token `t` at `a + t * n`), rows
/// of `n` elements: `out[r][t]`, each output the twin's dot product.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows and tokens read best indexed
unsafe fn tile<const R: usize, const T: usize>(
    w: *const f32,
    n: usize,
    a: *const f32,
) -> [[f32; T]; R] {
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut i = 0;
    while i + 16 <= n {
        step::<R, T>(&mut acc, w, n, a, i, 0xffff);
        i += 16;
    }
    if i < n {
        // The twin pads the last chunk of both rows with zeros: it is read under a mask,
        // which gives zeros past the row and reads nothing there.
        step::<R, T>(
            &mut acc,
            w,
            n,
            a,
            i,
            super::x86_avx512_ops::tail_mask(n - i),
        );
    }
    let mut res = [[0.0f32; T]; R];
    if R == 4 && T == 4 {
        // Sixteen outputs reduced together, lane-wise in the same order.
        let mut v = [_mm512_setzero_ps(); 16];
        for r in 0..R {
            for t in 0..T {
                v[4 * r + t] = acc[r][t];
            }
        }
        let sums = hsum16x16(v);
        for r in 0..R {
            for t in 0..T {
                res[r][t] = sums[4 * t + r];
            }
        }
        return res;
    }
    for r in 0..R {
        for t in 0..T {
            res[r][t] = hsum16(acc[r][t]);
        }
    }
    res
}

/// One chunk of sixteen elements (those in `m`) at `i` into the tile's accumulators.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn step<const R: usize, const T: usize>(
    acc: &mut [[__m512; T]; R],
    w: *const f32,
    n: usize,
    a: *const f32,
    i: usize,
    m: __mmask16,
) {
    let mut wv = [_mm512_setzero_ps(); R];
    for r in 0..R {
        wv[r] = _mm512_maskz_loadu_ps(m, w.add(r * n + i));
    }
    for t in 0..T {
        let av = _mm512_maskz_loadu_ps(m, a.add(t * n + i));
        for r in 0..R {
            acc[r][t] = _mm512_fmadd_ps(wv[r], av, acc[r][t]);
        }
    }
}

/// The sixteen lanes summed in the twin's order: `l + l+8`, `l + l+4`, `(0+2) + (1+3)`.
#[inline(always)]
unsafe fn hsum16(v: __m512) -> f32 {
    let s = _mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
    );
    let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// [`hsum16`] of sixteen registers at once, each add the twin's: register `4m + k`'s sum
/// lands in element `4k + m`.
#[inline(always)]
unsafe fn hsum16x16(v: [__m512; 16]) -> [f32; 16] {
    // `l + l+8`: two registers' halves side by side, then added; output 2j and 2j+1 in
    // the low and high half of s[j].
    let mut s = [_mm512_setzero_ps(); 8];
    for j in 0..8 {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        s[j] = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xee>(a, b),
        );
    }
    // `l + l+4`: 128-bit lane k of t[m] holds output 4m + k's four partial sums.
    let mut t = [_mm512_setzero_ps(); 4];
    for m in 0..4 {
        let (p, q) = (s[2 * m], s[2 * m + 1]);
        t[m] = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(p, q),
            _mm512_shuffle_f32x4::<0xdd>(p, q),
        );
    }
    // `(0+2) + (1+3)`: a 4×4 transpose inside each 128-bit lane gives e[i] = partial sum
    // i of every output, element 4k + m for output 4m + k.
    let pd = _mm512_castps_pd;
    let lo_ab = pd(_mm512_unpacklo_ps(t[0], t[1]));
    let lo_cd = pd(_mm512_unpacklo_ps(t[2], t[3]));
    let hi_ab = pd(_mm512_unpackhi_ps(t[0], t[1]));
    let hi_cd = pd(_mm512_unpackhi_ps(t[2], t[3]));
    let e0 = _mm512_castpd_ps(_mm512_unpacklo_pd(lo_ab, lo_cd));
    let e1 = _mm512_castpd_ps(_mm512_unpackhi_pd(lo_ab, lo_cd));
    let e2 = _mm512_castpd_ps(_mm512_unpacklo_pd(hi_ab, hi_cd));
    let e3 = _mm512_castpd_ps(_mm512_unpackhi_pd(hi_ab, hi_cd));
    let sum = _mm512_add_ps(_mm512_add_ps(e0, e2), _mm512_add_ps(e1, e3));
    let mut out = [0.0f32; 16];
    _mm512_storeu_ps(out.as_mut_ptr(), sum);
    out
}

/// Rows `r..r + R` of `w` against tokens `t0..t1` of `a` (rows of `n` elements), four
/// tokens a tile, the last one to three together.
#[inline(always)]
unsafe fn tokens<const R: usize>(
    w: &[f32],
    n: usize,
    r: usize,
    a: &[f32],
    (t0, t1): (usize, usize),
    out: &mut GemmOut<'_>,
) {
    let wr = w.as_ptr().add(r * n);
    let mut t = t0;
    while t < t1 {
        let at = a.as_ptr().add(t * n);
        t += match t1 - t {
            1 => put(out, r, t, tile::<R, 1>(wr, n, at)),
            2 => put(out, r, t, tile::<R, 2>(wr, n, at)),
            3 => put(out, r, t, tile::<R, 3>(wr, n, at)),
            _ => put(out, r, t, tile::<R, 4>(wr, n, at)),
        };
    }
}

/// A tile's outputs (rows from `r`, tokens from `t`) into `out`; the tokens it covered.
#[inline(always)]
fn put<const R: usize, const T: usize>(
    out: &mut GemmOut<'_>,
    r: usize,
    t: usize,
    v: [[f32; T]; R],
) -> usize {
    for (i, v) in v.iter().enumerate() {
        for (j, &x) in v.iter().enumerate() {
            out.set(t + j, r + i, x);
        }
    }
    T
}

/// Tiled F32 × f32: output (token `t`, row `r`) is `vec_dot_f32_ref` of weight row `r` and
/// activation row `t` (rows of `n` elements), bit for bit.
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn gemm_f32<'o>(n: usize, w: &[f32], a: &[f32], out: impl crate::IntoGemmOut<'o>) {
    assert!(
        n > 0 && w.len().is_multiple_of(n) && a.len().is_multiple_of(n),
        "gemm: lengths are not whole rows"
    );
    let (n_rows, n_tokens) = (w.len() / n, a.len() / n);
    let out = &mut out.into_gemm_out(n_rows, n_tokens);
    // Tiles of four rows × up to four tokens: 16 accumulators, four weight registers, one
    // for the token being read (wider tiles made the compiler spill accumulators). The
    // tokens go in blocks that stay in L1 (24 KiB) while every row meets them, so each
    // row's weights are read from L2 once per block, then reused from L1 by its tiles.
    let block = (24 * 1024 / (4 * n)).clamp(4, 64) / 4 * 4;
    for b0 in (0..n_tokens).step_by(block) {
        let span = (b0, (b0 + block).min(n_tokens));
        let mut r = 0;
        while r + 4 <= n_rows {
            tokens::<4>(w, n, r, a, span, out);
            r += 4;
        }
        while r < n_rows {
            tokens::<1>(w, n, r, a, span, out);
            r += 1;
        }
    }
}
