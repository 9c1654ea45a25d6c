//! AVX2 kernels for plain-float weights: F32 (× f32 activations), F16 (× f16) and BF16
//! (× bf16).
//!
//! The scalar twin is `dot_lanes` in `quants/float.rs`: element `i` goes to f32 lane
//! `i % 16` (here: lanes 0..8 in one register, 8..16 in another), a partial last chunk is
//! padded with zeros, and the lanes are summed pairwise at the end (`reduce_lanes`:
//! `l + l+8`, `l + l+4`, `(0+2) + (1+3)`), which is [`hsum`] of the two registers' sum.
//!
//! F16: the product of two f16 values is exact in f32 (11 × 11 significant bits, and the
//! exponents stay in f32's normal range), so `fma(w, a, acc)` rounds exactly as
//! `acc + w * a` does: the FMA kernels are bit-identical to the twin. BF16 products
//! (8 × 8 bits) can leave f32's range, so the BF16 kernels multiply and add separately,
//! as the twin does. F32 fuses: its twin computes `w.mul_add(a, acc)`, one rounding,
//! which is also the more accurate sum.
//!
//! The tiled products (`gemm_*`) widen the activations to f32 once per call (exact), then
//! run tiles of rows × tokens in which every output keeps its own two accumulators and
//! sees exactly the operations of its one-row dot product: a weight chunk is loaded and
//! widened once for all the tokens of the tile.

use std::arch::x86_64::*;

use half::{bf16, f16};

/// Horizontal sum in the twin's order: `l + l+4`, then `(0+2) + (1+3)`.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// A plain-float element type the kernels widen to f32.
trait Elem: Copy {
    const ZERO: Self;
    /// FMA is exact for this type's products (see the module comment).
    const FUSED: bool;
    /// Eight elements at `p` as f32 lanes (exact).
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    const FUSED: bool = true;
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_loadu_ps(p)
    }
}

impl Elem for f16 {
    const ZERO: Self = f16::ZERO;
    const FUSED: bool = true;
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
}

impl Elem for bf16 {
    const ZERO: Self = bf16::ZERO;
    const FUSED: bool = false;
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())),
            16,
        ))
    }
}

/// `acc + w * a`, one rounding (exact product) or two, as the twin for type `E`.
#[inline(always)]
unsafe fn madd<E: Elem>(w: __m256, a: __m256, acc: __m256) -> __m256 {
    if E::FUSED {
        _mm256_fmadd_ps(w, a, acc)
    } else {
        _mm256_add_ps(acc, _mm256_mul_ps(w, a))
    }
}

/// The last `n % 16` elements of a row at `p`, zero-padded to 16.
#[inline(always)]
unsafe fn tail16<E: Elem>(p: *const E, n: usize) -> [E; 16] {
    let mut t = [E::ZERO; 16];
    let k = n % 16;
    std::ptr::copy_nonoverlapping(p.add(n - k), t.as_mut_ptr(), k);
    t
}

#[inline(always)]
unsafe fn vec_dot<E: Elem>(w: &[E], a: &[E]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot: row lengths differ");
    let n = w.len();
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        acc0 = madd::<E>(E::load8(wp.add(i)), E::load8(ap.add(i)), acc0);
        acc1 = madd::<E>(E::load8(wp.add(i + 8)), E::load8(ap.add(i + 8)), acc1);
        i += 16;
    }
    if !n.is_multiple_of(16) {
        let (tw, ta) = (tail16(wp, n), tail16(ap, n));
        acc0 = madd::<E>(E::load8(tw.as_ptr()), E::load8(ta.as_ptr()), acc0);
        acc1 = madd::<E>(
            E::load8(tw.as_ptr().add(8)),
            E::load8(ta.as_ptr().add(8)),
            acc1,
        );
    }
    hsum(_mm256_add_ps(acc0, acc1))
}

/// F32 × f32 dot product, bit for bit the scalar `f32::vec_dot` twin.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32(w: &[f32], a: &[f32]) -> f32 {
    vec_dot(w, a)
}

/// F16 × f16 dot product, bit for bit the scalar `f16::vec_dot` twin.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(w: &[f16], a: &[f16]) -> f32 {
    vec_dot(w, a)
}

/// BF16 × bf16 dot product, bit for bit the scalar `bf16::vec_dot` twin.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    vec_dot(w, a)
}

thread_local! {
    /// Per-thread f32 copy of the activations of one call, kept between calls.
    static SCRATCH: std::cell::Cell<Vec<__m256>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `R` weight rows (row `r` at `w + r * n`) × `T` tokens (f32, token `t` at `a + t * np`,
/// zero-padded to `np`, a multiple of 16): `out[r][t]`, each as the one-row dot product.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // lanes, tokens and rows read best indexed
unsafe fn tile<E: Elem, const R: usize, const T: usize>(
    w: *const E,
    n: usize,
    a: *const f32,
    np: usize,
) -> [[f32; T]; R] {
    let mut acc = [[[_mm256_setzero_ps(); 2]; T]; R];
    let mut i = 0;
    while i + 16 <= n {
        if T <= 2 && i.is_multiple_of(32) {
            // Streaming weights (decode): the next row tile's bytes are on their way in
            // (one 64-byte line per row every 32 elements; a prefetch never faults).
            for r in 0..R {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((R + r) * n + i).cast::<i8>());
            }
        }
        for r in 0..R {
            let w0 = E::load8(w.add(r * n + i));
            let w1 = E::load8(w.add(r * n + i + 8));
            for t in 0..T {
                let at = a.add(t * np + i);
                acc[r][t][0] = madd::<E>(w0, _mm256_loadu_ps(at), acc[r][t][0]);
                acc[r][t][1] = madd::<E>(w1, _mm256_loadu_ps(at.add(8)), acc[r][t][1]);
            }
        }
        i += 16;
    }
    if !n.is_multiple_of(16) {
        for r in 0..R {
            let tw = tail16(w.add(r * n), n);
            let (w0, w1) = (E::load8(tw.as_ptr()), E::load8(tw.as_ptr().add(8)));
            for t in 0..T {
                let at = a.add(t * np + i);
                acc[r][t][0] = madd::<E>(w0, _mm256_loadu_ps(at), acc[r][t][0]);
                acc[r][t][1] = madd::<E>(w1, _mm256_loadu_ps(at.add(8)), acc[r][t][1]);
            }
        }
    }
    let mut res = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            res[r][t] = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
        }
    }
    res
}

/// All rows against the `T` tokens from `t0`: rows `R` at a time, the rest one by one.
#[inline(always)]
unsafe fn rows<E: Elem, const R: usize, const T: usize>(
    w: &[E],
    n: usize,
    a: *const f32,
    np: usize,
    t0: usize,
    out: &mut crate::GemmOut<'_>,
) -> usize {
    let n_rows = w.len() / n;
    let mut r = 0;
    while r < n_rows {
        if r + R <= n_rows {
            let v = tile::<E, R, T>(w.as_ptr().add(r * n), n, a, np);
            for (i, v) in v.iter().enumerate() {
                for (t, &x) in v.iter().enumerate() {
                    out.set(t0 + t, r + i, x);
                }
            }
            r += R;
        } else {
            let [v] = tile::<E, 1, T>(w.as_ptr().add(r * n), n, a, np);
            for (t, &x) in v.iter().enumerate() {
                out.set(t0 + t, r, x);
            }
            r += 1;
        }
    }
    T
}

/// Output (token `t`, row `r`) `= vec_dot(row r of w, row t of a)` for rows of `n` elements.
#[inline(always)]
unsafe fn gemm<'o, E: Elem>(n: usize, w: &[E], a: &[E], out: impl crate::IntoGemmOut<'o>) {
    assert!(
        n > 0 && w.len().is_multiple_of(n) && a.len().is_multiple_of(n),
        "gemm: lengths are not whole rows"
    );
    let (n_rows, n_tokens) = (w.len() / n, a.len() / n);
    let out = &mut out.into_gemm_out(n_rows, n_tokens);
    // Activations widened to f32 once, each row zero-padded to a multiple of 16.
    let np = n.div_ceil(16) * 16;
    let mut buf = SCRATCH.with(|c| c.take());
    let words = n_tokens * np / 8;
    if buf.len() < words {
        buf.resize(words, _mm256_setzero_ps());
    }
    let af = buf.as_mut_ptr().cast::<f32>();
    for t in 0..n_tokens {
        let src = a.as_ptr().add(t * n);
        let dst = af.add(t * np);
        let mut i = 0;
        while i + 16 <= n {
            _mm256_storeu_ps(dst.add(i), E::load8(src.add(i)));
            _mm256_storeu_ps(dst.add(i + 8), E::load8(src.add(i + 8)));
            i += 16;
        }
        if !n.is_multiple_of(16) {
            let tp = tail16(src, n);
            _mm256_storeu_ps(dst.add(i), E::load8(tp.as_ptr()));
            _mm256_storeu_ps(dst.add(i + 8), E::load8(tp.as_ptr().add(8)));
        }
    }
    // Tiles of up to twelve accumulators beside the two weight registers: 1 row × up to
    // 6 tokens, 2 × 2 for two tokens, 4 rows × 1 token for decode. A speculative verify
    // batch of up to six tokens reads the weights once.
    let mut t0 = 0;
    while t0 < n_tokens {
        let ap = af.add(t0 * np);
        t0 += match n_tokens - t0 {
            1 => rows::<E, 4, 1>(w, n, ap, np, t0, out),
            2 => rows::<E, 2, 2>(w, n, ap, np, t0, out),
            3 => rows::<E, 1, 3>(w, n, ap, np, t0, out),
            4 => rows::<E, 1, 4>(w, n, ap, np, t0, out),
            5 => rows::<E, 1, 5>(w, n, ap, np, t0, out),
            _ => rows::<E, 1, 6>(w, n, ap, np, t0, out),
        };
    }
    SCRATCH.with(|c| c.set(buf));
}

/// Tiled F32 × f32: `out[t * n_rows + r]` is [`vec_dot_f32`] of weight row `r` and
/// activation row `t` (rows of `n` elements), bit for bit.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_f32<'o>(n: usize, w: &[f32], a: &[f32], out: impl crate::IntoGemmOut<'o>) {
    gemm(n, w, a, out)
}

/// Tiled F16 × f16: `out[t * n_rows + r]` is [`vec_dot_f16`] of weight row `r` and
/// activation row `t` (rows of `n` elements), bit for bit.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_f16<'o>(n: usize, w: &[f16], a: &[f16], out: impl crate::IntoGemmOut<'o>) {
    gemm(n, w, a, out)
}

/// Tiled BF16 × bf16, bit for bit [`vec_dot_bf16`] per output.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gemm_bf16<'o>(n: usize, w: &[bf16], a: &[bf16], out: impl crate::IntoGemmOut<'o>) {
    gemm(n, w, a, out)
}
