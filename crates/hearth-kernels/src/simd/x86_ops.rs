//! AVX2 twins of element-wise steps in `ops` whose scalar form is not a plain loop the
//! compiler vectorizes (a table lookup): eight lanes of exactly the scalar operations.

use std::arch::x86_64::*;

/// [`crate::ops::geglu_ref`] on eight lanes at a time (the last few scalar):
/// `gate[i] = gelu(gate[i]) * up[i]`, GELU looked up in `table` (the f16-indexed
/// [`crate::ops::gelu_table`]) at the input rounded to f16 (`vcvtps2ph`, round to nearest
/// even, as `half::f16::from_f32`), 0 at or below -10 and the identity at or above 10.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn geglu(gate: &mut [f32], up: &[f32], table: &[f32; 1 << 16]) {
    assert_eq!(gate.len(), up.len(), "geglu: lengths differ");
    let n = gate.len() / 8 * 8;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    for i in (0..n).step_by(8) {
        // SAFETY: `i + 8 <= n <= len` for both slices.
        let x = _mm256_loadu_ps(gate.as_ptr().add(i));
        let u = _mm256_loadu_ps(up.as_ptr().add(i));
        let idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
        // SAFETY: every index is a u16, inside the 65,536-entry table.
        let g = _mm256_i32gather_ps::<4>(table.as_ptr(), idx);
        // Ordered compares: NaN takes the table (as in the scalar `if` chain).
        let g = _mm256_blendv_ps(g, x, _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
        let g = _mm256_blendv_ps(g, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(x, lo));
        _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(g, u));
    }
    crate::ops::geglu_ref(&mut gate[n..], &up[n..]);
}
