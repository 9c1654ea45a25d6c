//! Shared helpers for the block-type tests (legacy quants, floats, K-quants).
//!
//! The method follows ggml's `tests/test-quantize-fns.cpp`: synthetic data
//! `0.1 + 2*cos(i + offset)`, a quantize→dequantize error and a dot-product error per
//! type, each compared with ggml's thresholds. On top of that there are seeded random
//! inputs and a consistency check between `vec_dot` and "dequantize, then f32 dot".
//!
//! The function names and signatures here are shared with other test files: keep them
//! stable (add new helpers rather than changing existing ones).
#![allow(dead_code)]

use hearth_kernels::{Quantize, WeightBlock};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Elements per test vector, as in ggml's test (`32 * 128`).
pub const TEST_SIZE: usize = 32 * 128;

/// ggml's thresholds (test-quantize-fns.cpp), for use with [`ggml_rmse`] and [`dot_error`].
pub const MAX_QUANTIZATION_TOTAL_ERROR: f32 = 0.002;
pub const MAX_QUANTIZATION_TOTAL_ERROR_TERNARY: f32 = 0.01;
pub const MAX_QUANTIZATION_TOTAL_ERROR_2BITS: f32 = 0.0075;
pub const MAX_QUANTIZATION_TOTAL_ERROR_3BITS: f32 = 0.0040;
pub const MAX_QUANTIZATION_TOTAL_ERROR_3BITS_XXS: f32 = 0.0050;
pub const MAX_DOT_PRODUCT_ERROR: f32 = 0.02;
pub const MAX_DOT_PRODUCT_ERROR_LOWBIT: f32 = 0.04;
pub const MAX_DOT_PRODUCT_ERROR_TERNARY: f32 = 0.5;

/// Relative tolerance (of `sum |w_i a_i|`) of [`check_type`]'s comparison of `vec_dot`
/// with the dot of the dequantized blocks. Not tighter than this because Q4_1 and Q5_1
/// use Q8_1's `s = f16(d * sum(qs))`, which differs from the dequantized sum by f16
/// rounding (~2^-11 relative); exact types deserve their own tighter checks.
pub const CHECK_TYPE_DOT_REL_TOL: f64 = 2e-3;

/// ggml's synthetic test data: `x[i] = 0.1 + 2*cos(i + offset)`, evaluated with the
/// same precisions as the C code (cosine in f32, the sum in f64, stored as f32).
pub fn synth(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1f64 + f64::from(2.0 * (i as f32 + offset).cos())) as f32)
        .collect()
}

/// `n` values uniform in `[-1, 1)` from a seeded generator (reproducible).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    random_range(n, seed, -1.0, 1.0)
}

/// `n` values uniform in `[lo, hi)` from a seeded generator (reproducible).
pub fn random_range(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

/// Roughly weight-like data: mostly small values with occasional outliers, seeded.
pub fn random_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Sum of uniforms ~ bell shape; one value in 64 scaled up as an outlier.
            let v: f32 = (0..4).map(|_| rng.gen_range(-0.5f32..0.5)).sum::<f32>() * 0.1;
            if rng.gen_range(0..64) == 0 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

/// True root-mean-square difference: `sqrt(sum((a-b)^2) / n)` (0 for empty input).
pub fn rms_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum();
    (sum / a.len() as f64).sqrt() as f32
}

/// ggml's `array_rmse`: `sqrt(sum((a-b)^2)) / n`. Note: not the usual RMS (the division
/// is outside the root); ggml's `MAX_QUANTIZATION_TOTAL_ERROR*` thresholds are on this.
pub fn ggml_rmse(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum();
    sum.sqrt() as f32 / a.len() as f32
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Dot product accumulated in f64, returned as f32 (ggml's test reference).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    dot_f64(a, b) as f32
}

/// Dot product accumulated in f64.
pub fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// `sum |a_i * b_i|` in f64: the scale for rounding tolerances of a dot product.
pub fn dot_abs_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
        .sum()
}

/// Quantize `x` (length a multiple of `Q::QK`) into a new vector of blocks.
pub fn quantize<Q: Quantize>(x: &[f32]) -> Vec<Q> {
    assert_eq!(
        x.len() % Q::QK,
        0,
        "length {} not a multiple of QK={}",
        x.len(),
        Q::QK
    );
    let mut y = vec![<Q as bytemuck::Zeroable>::zeroed(); x.len() / Q::QK];
    Q::quantize_row(x, &mut y);
    y
}

/// Dequantize blocks into a new f32 vector.
pub fn dequantize<Q: Quantize>(q: &[Q]) -> Vec<f32> {
    let mut y = vec![0.0f32; q.len() * Q::QK];
    Q::dequantize_row(q, &mut y);
    y
}

/// `dequantize(quantize(x))`.
pub fn round_trip<Q: Quantize>(x: &[f32]) -> Vec<f32> {
    dequantize(&quantize::<Q>(x))
}

/// ggml's total quantization error: [`ggml_rmse`] of `x` against `dequantize(quantize(x))`.
pub fn quantization_error<Q: Quantize>(x: &[f32]) -> f32 {
    ggml_rmse(x, &round_trip::<Q>(x))
}

/// `vec_dot` of the quantized weights `w` with the activations `a` quantized to `W::Act`.
pub fn quantized_dot<W: WeightBlock>(w: &[f32], a: &[f32]) -> f32 {
    let wq = quantize::<W>(w);
    let aq = quantize::<W::Act>(a);
    W::vec_dot(&wq, &aq)
}

/// ggml's dot-product error: `|vec_dot(q(w), q_act(a)) - dot(w, a)| / n`.
pub fn dot_error<W: WeightBlock>(w: &[f32], a: &[f32]) -> f32 {
    let got = quantized_dot::<W>(w, a);
    let want = dot_f32(w, a);
    (got - want).abs() / w.len() as f32
}

/// Checks that `vec_dot` over already-quantized rows equals the f64 dot product of their
/// dequantized values up to float rounding: `|diff| <= rel_tol * sum|w_i a_i| + 1e-6`.
/// Returns `(vec_dot, reference)`.
pub fn assert_dot_consistent<W: WeightBlock>(wq: &[W], aq: &[W::Act], rel_tol: f64) -> (f32, f64) {
    let got = W::vec_dot(wq, aq);
    let wd = dequantize(wq);
    let ad = dequantize(aq);
    let want = dot_f64(&wd, &ad);
    let scale = dot_abs_f64(&wd, &ad);
    let diff = (f64::from(got) - want).abs();
    assert!(
        diff <= rel_tol * scale + 1e-6,
        "vec_dot {got} vs dequantized dot {want} (diff {diff}, scale {scale}, n {})",
        wd.len()
    );
    (got, want)
}

/// Like [`assert_dot_consistent`], quantizing `w` and `a` first.
pub fn assert_dot_consistent_f32<W: WeightBlock>(w: &[f32], a: &[f32], rel_tol: f64) -> (f32, f64) {
    let wq = quantize::<W>(w);
    let aq = quantize::<W::Act>(a);
    assert_dot_consistent::<W>(&wq, &aq, rel_tol)
}

/// Re-quantizing dequantized values reproduces them exactly: with
/// `y1 = dequantize(quantize(x))`, asserts `dequantize(quantize(y1)) == y1` bit for bit.
/// (Holds for the legacy quants and floats; not expected of the iterative K-quant searches.)
pub fn assert_fixed_point<Q: Quantize>(name: &str, x: &[f32]) {
    let y1 = round_trip::<Q>(x);
    let y2 = round_trip::<Q>(&y1);
    for (i, (a, b)) in y1.iter().zip(&y2).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{name}: not a fixed point at {i}: {a} then {b}"
        );
    }
}

/// The standard per-type check, as ggml's test-quantize-fns does it, plus seeded random
/// data and `vec_dot` consistency:
/// - quantize→dequantize error ([`ggml_rmse`]) of `synth(TEST_SIZE, 0)` `< max_quant_err`;
/// - dot-product error ([`dot_error`]) of `synth(TEST_SIZE, 0)` · `synth(TEST_SIZE, 1)`
///   `< max_dot_err`;
/// - the same two checks on seeded random data in `[-1, 1)`;
/// - `vec_dot` agrees with the dot of the dequantized blocks within
///   [`CHECK_TYPE_DOT_REL_TOL`] of `sum |w_i a_i|`.
pub fn check_type<W: WeightBlock>(name: &str, max_quant_err: f32, max_dot_err: f32) {
    let inputs = [
        ("synth", synth(TEST_SIZE, 0.0), synth(TEST_SIZE, 1.0)),
        (
            "random",
            random(TEST_SIZE, 0x5eed_0001),
            random(TEST_SIZE, 0x5eed_0002),
        ),
    ];
    for (kind, w, a) in &inputs {
        let qerr = quantization_error::<W>(w);
        assert!(
            qerr < max_quant_err,
            "{name} ({kind}): quantization error {qerr} >= {max_quant_err}"
        );
        let derr = dot_error::<W>(w, a);
        assert!(
            derr < max_dot_err,
            "{name} ({kind}): dot product error {derr} >= {max_dot_err}"
        );
        assert_dot_consistent_f32::<W>(w, a, CHECK_TYPE_DOT_REL_TOL);
    }
}
