//! AVX-512 twins of element-wise steps in `ops`: sixteen lanes of exactly the scalar
//! operations, so every element is bit for bit the scalar result.

use std::arch::x86_64::*;

/// [`crate::ops::swiglu_ref`] on sixteen lanes at a time (a masked last chunk):
/// `gate[i] = silu(gate[i]) * up[i]`.
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths differ");
    let n = gate.len();
    let mut i = 0;
    while i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask covers elements i..min(i + 16, n) of both slices only.
        let x = _mm512_maskz_loadu_ps(m, gate.as_ptr().add(i));
        let u = _mm512_maskz_loadu_ps(m, up.as_ptr().add(i));
        _mm512_mask_storeu_ps(gate.as_mut_ptr().add(i), m, _mm512_mul_ps(silu(x), u));
        i += 16;
    }
}

/// [`crate::ops::gelu_erf_rows_ref`] on sixteen lanes at a time (a masked last chunk).
///
/// # Safety
/// The CPU must support AVX-512 F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub unsafe fn gelu_erf(x: &mut [f32]) {
    use crate::ops::{ERF_A, ERF_P};
    let n = x.len();
    let c = _mm512_set1_ps;
    let one = c(1.0);
    let sign = _mm512_set1_epi32(i32::MIN);
    let mut i = 0;
    while i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask covers elements i..min(i + 16, n) only.
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        let z = _mm512_abs_ps(_mm512_mul_ps(v, c(std::f32::consts::FRAC_1_SQRT_2)));
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(c(ERF_P), z, one));
        let mut poly = _mm512_fmadd_ps(c(ERF_A[4]), t, c(ERF_A[3]));
        poly = _mm512_fmadd_ps(poly, t, c(ERF_A[2]));
        poly = _mm512_fmadd_ps(poly, t, c(ERF_A[1]));
        poly = _mm512_fmadd_ps(poly, t, c(ERF_A[0]));
        poly = _mm512_mul_ps(poly, t);
        let e = expf_poly(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z)));
        // fnmadd(a, b, c) = fma(-a, b, c); then the magnitude with x's sign (copysign).
        let erf = _mm512_castps_si512(_mm512_fnmadd_ps(poly, e, one));
        let erf = _mm512_or_si512(
            _mm512_andnot_si512(sign, erf),
            _mm512_and_si512(sign, _mm512_castps_si512(v)),
        );
        let y = _mm512_mul_ps(
            _mm512_mul_ps(c(0.5), v),
            _mm512_add_ps(one, _mm512_castsi512_ps(erf)),
        );
        _mm512_mask_storeu_ps(x.as_mut_ptr().add(i), m, y);
        i += 16;
    }
}

/// The lanes of a chunk with `left` elements still to go: all sixteen, or the first
/// `left`.
#[inline(always)]
pub(crate) fn tail_mask(left: usize) -> __mmask16 {
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as u16
    }
}

/// [`crate::ops::silu`]: `x / (1 + e^(0 - x))`.
#[inline(always)]
unsafe fn silu(x: __m512) -> __m512 {
    let e = expf_poly(_mm512_sub_ps(_mm512_setzero_ps(), x));
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// [`crate::ops::expf_poly`], operation for operation. Its last step, `j · 2^n` rounded
/// once (in f64, then to f32), is `vscalefps`: the exact product, rounded once, subnormal
/// results included.
#[inline(always)]
unsafe fn expf_poly(x: __m512) -> __m512 {
    let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm512_sub_ps(z, r);
    // fnmadd(n, k, y) = fma(-n, k, y): the product's sign flips exactly.
    let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
    let u = _mm512_mul_ps(b, b);
    let p = _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17));
    let q = _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb));
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(p, u, q),
        u,
        _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
    );
    let e = _mm512_scalef_ps(j, n);
    // |n| > 192: 0 for n <= 0, infinity above.
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(n, _mm512_setzero_ps());
    let saturated = _mm512_mask_blend_ps(above, _mm512_setzero_ps(), _mm512_set1_ps(f32::INFINITY));
    _mm512_mask_blend_ps(big, e, saturated)
}
