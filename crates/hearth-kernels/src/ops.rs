//! Float kernels of the forward pass: RMSNorm, RoPE (normal and NeoX, scaled), SwiGLU,
//! GeGLU, log-sum-exp.
//! Plain scalar code; callers run it under `with_isa` so it is compiled for the chosen ISA
//! (`rope_rotate` and `swiglu` pick their ISA themselves).

/// `y = x / sqrt(mean(x^2) + eps) * w`, row by row over `x.len() / w.len()` rows.
/// The sum of squares is accumulated in f64, in element order, as ggml does. Rows go four
/// at a time, their four sums interleaved: each is still its own chain in its own order
/// (so a row's result does not depend on its neighbours), but four chains are in flight
/// instead of one, and a 576-wide row no longer waits out 576 dependent adds.
#[inline(always)]
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let n = w.len();
    debug_assert_eq!(x.len(), y.len());
    for (x4, y4) in x.chunks(4 * n).zip(y.chunks_mut(4 * n)) {
        let mut sum = [0.0f64; 4];
        if x4.len() == 4 * n {
            for i in 0..n {
                for (r, s) in sum.iter_mut().enumerate() {
                    let v = x4[r * n + i];
                    *s += (v * v) as f64;
                }
            }
        } else {
            for (s, xr) in sum.iter_mut().zip(x4.chunks_exact(n)) {
                for &v in xr {
                    *s += (v * v) as f64;
                }
            }
        }
        for ((xr, yr), &sum) in x4.chunks_exact(n).zip(y4.chunks_exact_mut(n)).zip(&sum) {
            let mean = (sum / n as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for ((yv, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
                *yv = xv * scale * wv;
            }
        }
    }
}

/// The residual step and the next norm in one pass: `x += d`, then `d =`
/// [`rms_norm`]`(x)`, row by row (the same arithmetic as the two apart).
#[inline(always)]
pub fn add_rms_norm(x: &mut [f32], d: &mut [f32], w: &[f32], eps: f32) {
    x.iter_mut().zip(d.iter()).for_each(|(a, b)| *a += b);
    rms_norm(x, w, eps, d);
}

/// Rotary position embedding, "normal" (GPT-J) style: adjacent pairs `(x[2i], x[2i+1])`
/// of each head are rotated by `pos * theta^(-2i / n_rot)`, only the first `n_rot` dims
/// of each head. This gives the angles, [`rope_rotate`] applies them.
///
/// Rotates the first `2 * cs.len()` dims of each head of `x` (`[n_head][head_dim]`) by
/// the angles of [`rope_angles`]. Compiled for AVX2/FMA where the CPU has them (on
/// baseline x86-64 each `mul_add` is a library call); the arithmetic is the same.
pub fn rope_rotate(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
            rope_rotate_heads(x, head_dim, cs)
        }
        // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
        return unsafe { avx2(x, head_dim, cs) };
    }
    rope_rotate_heads(x, head_dim, cs)
}

/// [`rope_rotate`]'s loop.
#[inline(always)]
fn rope_rotate_heads(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(cos, sin)) in head[..2 * cs.len()].chunks_exact_mut(2).zip(cs) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0.mul_add(cos, -(x1 * sin));
            pair[1] = x0.mul_add(sin, x1 * cos);
        }
    }
}

/// Rotary position embedding, NeoX style: pair `i` of a head is `(x[i], x[i + n_rot/2])`
/// (GPT-NeoX, Qwen, Gemma, Phi-3), rotated by the same angles as [`rope_rotate`]
/// (`cs.len() = n_rot / 2`). Compiled for AVX2/FMA where the CPU has them: the two halves
/// are contiguous, so the loop runs eight pairs per instruction; the arithmetic is the
/// same on every ISA.
pub fn rope_rotate_neox(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
            rope_rotate_neox_ref(x, head_dim, cs)
        }
        // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
        return unsafe { avx2(x, head_dim, cs) };
    }
    rope_rotate_neox_ref(x, head_dim, cs)
}

/// Scalar twin of [`rope_rotate_neox`].
#[inline(always)]
pub fn rope_rotate_neox_ref(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    let half = cs.len();
    for head in x.chunks_exact_mut(head_dim) {
        let (a, b) = head[..2 * half].split_at_mut(half);
        for ((x0, x1), &(cos, sin)) in a.iter_mut().zip(b.iter_mut()).zip(cs) {
            let (v0, v1) = (*x0, *x1);
            *x0 = v0.mul_add(cos, -(v1 * sin));
            *x1 = v0.mul_add(sin, v1 * cos);
        }
    }
}

/// How RoPE's angles are stretched for contexts longer than the training one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScale {
    /// Interpolation factor applied to every angle (`1 / rope.scaling.factor`), 1 for none.
    pub freq_scale: f32,
    /// YaRN's mix of interpolated and extrapolated angles (0: plain interpolation).
    pub ext_factor: f32,
    /// YaRN's correction range, in pairs: below `corr_dims[0]` extrapolate, above
    /// `corr_dims[1]` interpolate, a linear ramp between.
    pub corr_dims: [f32; 2],
    /// Magnitude factor for `cos` and `sin` (YaRN's attention factor; 1 for none).
    pub attn_factor: f32,
}

impl RopeScale {
    /// No scaling.
    pub const NONE: RopeScale = RopeScale {
        freq_scale: 1.0,
        ext_factor: 0.0,
        corr_dims: [0.0, 0.0],
        attn_factor: 1.0,
    };

    /// YaRN (Peng et al., 2023) for a context stretched by `1 / freq_scale` from
    /// `n_ctx_orig`: the pairs whose wavelength fits in the original context more than
    /// `beta_fast` times keep their angle, those fitting fewer than `beta_slow` times are
    /// interpolated, and `cos`/`sin` are scaled by `1 + 0.1 ln(1 / freq_scale)`.
    pub fn yarn(
        freq_scale: f32,
        n_rot: usize,
        n_ctx_orig: usize,
        freq_base: f32,
        beta_fast: f32,
        beta_slow: f32,
        attn_factor: f32,
    ) -> RopeScale {
        // The pair index whose wavelength is `n_ctx_orig / beta`.
        let corr_dim = |beta: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * freq_base.ln())
        };
        let lo = corr_dim(beta_fast).floor().max(0.0);
        let hi = corr_dim(beta_slow).ceil().min(n_rot as f32 - 1.0);
        RopeScale {
            freq_scale,
            ext_factor: 1.0,
            corr_dims: [lo, hi],
            attn_factor,
        }
    }
}

/// `(cos, sin)` of position `pos`'s rotation angle for each of the `n_rot / 2` pairs
/// (`cs.len()`): pair `i`'s angle is `pos * base^(-2i/n_rot)`, the factor stepping by
/// `base^(-2 / n_rot)` from `pos` as the reference engine steps it, divided by
/// `freq_factors[i]` (Llama 3.1's `rope_freqs`; empty for none), interpolated by
/// `scale.freq_scale` (and, for YaRN, mixed with the unscaled angle by the ramp over
/// `corr_dims`, `cos` and `sin` scaled). With no factors and [`RopeScale::NONE`] the steps
/// divide and multiply by 1, exactly. The same for every head and layer, so computed once
/// per position.
pub fn rope_angles(
    pos: u32,
    n_rot: usize,
    freq_base: f32,
    freq_factors: &[f32],
    scale: &RopeScale,
    cs: &mut [(f32, f32)],
) {
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for (i, cs) in cs.iter_mut().enumerate() {
        let extrap = theta / freq_factors.get(i).copied().unwrap_or(1.0);
        let interp = scale.freq_scale * extrap;
        let (mut angle, mut mscale) = (interp, scale.attn_factor);
        if scale.ext_factor != 0.0 {
            let y = (i as f32 - scale.corr_dims[0])
                / (scale.corr_dims[1] - scale.corr_dims[0]).max(0.001);
            let ramp = (1.0 - y.clamp(0.0, 1.0)) * scale.ext_factor;
            angle = interp * (1.0 - ramp) + extrap * ramp;
            mscale *= 1.0 + 0.1 * (1.0 / scale.freq_scale).ln();
        }
        let (sin, cos) = angle.sin_cos();
        *cs = (cos * mscale, sin * mscale);
        theta *= theta_scale;
    }
}

/// GELU with the error function, `0.5 x (1 + erf(x / sqrt 2))` (BERT's), in f32. `erf` is
/// Abramowitz and Stegun's 7.1.26, `1 - t (a1 + t (a2 + … t a5)) e^(-z²)` with
/// `t = 1 / (1 + p z)`, `z = |x / sqrt 2|` (absolute error below 1.5e-7; the tanh
/// approximation some engines use is off by up to 1e-3), `e^` by [`expf_poly`]. It is
/// written once, in fused steps that a vector unit has, so that [`gelu_erf_rows`] runs
/// sixteen lanes of exactly this.
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / ERF_P.mul_add(z, 1.0);
    let poly = ERF_A[4]
        .mul_add(t, ERF_A[3])
        .mul_add(t, ERF_A[2])
        .mul_add(t, ERF_A[1])
        .mul_add(t, ERF_A[0])
        * t;
    let e = expf_poly(0.0 - z * z);
    let erf = (-poly).mul_add(e, 1.0).copysign(x);
    0.5 * x * (1.0 + erf)
}

/// Abramowitz and Stegun 7.1.26: `p`, and `a1..a5`.
pub(crate) const ERF_P: f32 = 0.327_591_1;
pub(crate) const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_8,
    -1.453_152,
    1.061_405_4,
];

/// [`gelu_erf`] on every element, sixteen lanes at a time where AVX-512 is available (bit
/// for bit the scalar function).
pub fn gelu_erf_rows(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() == crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (with AVX2 and FMA) only when the CPU has them.
        return unsafe { crate::simd::x86_avx512_ops::gelu_erf(x) };
    }
    gelu_erf_rows_ref(x)
}

/// Scalar twin of [`gelu_erf_rows`].
#[inline]
pub fn gelu_erf_rows_ref(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_erf(*v));
}

/// The tanh approximation of GELU, `0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))`,
/// in f32.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// [`gelu_tanh`] of every f16 value, rounded to f16 and widened back to f32, indexed by
/// the f16's bits: the reference engine evaluates GELU this way (the input rounded to f16,
/// a table lookup), so Hearth's GeGLU reproduces it. 256 KiB, built on first use.
pub fn gelu_table() -> &'static [f32; 1 << 16] {
    static TABLE: std::sync::OnceLock<Box<[f32; 1 << 16]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0.0f32; 1 << 16]);
        for (i, v) in t.iter_mut().enumerate() {
            let x = half::f16::from_bits(i as u16).to_f32();
            *v = half::f16::from_f32(gelu_tanh(x)).to_f32();
        }
        t
    })
}

/// GeGLU: `gate[i] = gelu(gate[i]) * up[i]`, GELU as the reference engine takes it: 0 at
/// or below -10, the identity at or above 10, else [`gelu_table`] at the input rounded to
/// f16. Eight lanes with an AVX2 gather where the CPU has it, else [`geglu_ref`]; the same
/// bits either way.
#[inline]
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
        return unsafe { crate::simd::x86_ops::geglu(gate, up, gelu_table()) };
    }
    geglu_ref(gate, up)
}

/// Scalar twin of [`geglu`].
#[inline]
pub fn geglu_ref(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "geglu: lengths differ");
    let table = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let gelu = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            table[half::f16::from_f32(x).to_bits() as usize]
        };
        *g = gelu * u;
    }
}

/// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`, with [`silu`]: sixteen lanes at a time
/// where the CPU has AVX-512, else [`swiglu_ref`]; the same bits either way.
#[inline]
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() == crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (with AVX2 and FMA) only when the CPU has them.
        return unsafe { crate::simd::x86_avx512_ops::swiglu(gate, up) };
    }
    swiglu_ref(gate, up)
}

/// Scalar twin of [`swiglu`].
#[inline]
pub fn swiglu_ref(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths differ");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// `x / (1 + e^-x)`, with `e^-x` from [`expf_poly`] as the reference engine computes it
/// (its vectorized SiLU), so that Hearth's activations round the same way.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf_poly(0.0 - x))
}

/// `e^x` by the reference engine's vectorized polynomial (its AVX-512 form: a degree-5
/// polynomial on the reduced argument, then an exact scaling by `2^n`); max error about
/// 1.5 ulp. This is its exact sequence of fused and unfused operations, element by element.
#[inline]
pub fn expf_poly(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let p = f32::from_bits(0x3c07_2010).mul_add(b, f32::from_bits(0x3d2b_9f17));
    let q = f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb));
    let j = p
        .mul_add(u, q)
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0));
    // j * 2^n, rounded once (exact in f64 for |n| <= 192).
    (f64::from(j) * pow2(n as i32)) as f32
}

/// `e^x` as the C library computes it (the reference engine's attention calls `expf`):
/// `x · 32/ln2 = k + r`, then `2^(k/32)` from a table times a degree-3 polynomial in `r`,
/// in f64 with the same fused multiply-adds, rounded once to f32 (error below 0.502 ulp).
/// Bit-identical to glibc's x86-64 `expf` for every input (a test checks the range the
/// attention kernels use); [`crate::simd::x86_attention::expf8`] is its eight-lane twin.
#[inline]
pub fn expf(x: f32) -> f32 {
    if x.is_nan() {
        return x + x;
    }
    if x < EXPF_UNDERFLOW {
        return 0.0;
    }
    if x < EXPF_MAY_UNDERFLOW {
        return f32::from_bits(1); // the smallest subnormal, as the C library rounds here
    }
    if x > EXPF_OVERFLOW {
        return f32::INFINITY;
    }
    let xd = f64::from(x);
    let kd = EXPF_INVLN2_N.mul_add(xd, EXPF_SHIFT);
    let ki = kd.to_bits();
    let kd = kd - EXPF_SHIFT;
    let r = EXPF_INVLN2_N.mul_add(xd, -kd);
    let s = f64::from_bits(EXPF_TABLE[(ki % 32) as usize].wrapping_add(ki << 47));
    let z = r.mul_add(EXPF_POLY[0], EXPF_POLY[1]);
    let y = r.mul_add(EXPF_POLY[2], 1.0);
    let y = z.mul_add(r * r, y);
    (y * s) as f32
}

/// Below this [`expf`] is 0.
pub(crate) const EXPF_UNDERFLOW: f32 = f32::from_bits(0xc2cf_f1b4); // -0x1.9fe368p6
/// Below this (and above [`EXPF_UNDERFLOW`]) [`expf`] is the smallest subnormal.
pub(crate) const EXPF_MAY_UNDERFLOW: f32 = f32::from_bits(0xc2ce_8ecf); // -0x1.9d1d9ep6
/// Above this [`expf`] is infinite.
pub(crate) const EXPF_OVERFLOW: f32 = f32::from_bits(0x42b1_7217); // 0x1.62e42ep6
/// `32 / ln 2`.
pub(crate) const EXPF_INVLN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe); // 0x1.71547652b82fep+5
/// `1.5 · 2^52`: adding it rounds to an integer held in the low mantissa bits.
pub(crate) const EXPF_SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
/// Coefficients of `r^3, r^2, r` of `2^(r/32)`'s polynomial.
pub(crate) const EXPF_POLY: [f64; 3] = [
    f64::from_bits(0x3ebc_6af8_4b91_2394), // 0x1.c6af84b912394p-20
    f64::from_bits(0x3f2e_bfce_50fa_c4f3), // 0x1.ebfce50fac4f3p-13
    f64::from_bits(0x3f96_2e42_ff0c_52d6), // 0x1.62e42ff0c52d6p-6
];
/// `bits(2^(i/32)) - (i << 47)`: adding `k << 47` to entry `k % 32` gives `2^(k/32)`.
pub(crate) const EXPF_TABLE: [u64; 32] = [
    0x3ff0_0000_0000_0000,
    0x3fef_d9b0_d315_8574,
    0x3fef_b558_6cf9_890f,
    0x3fef_9301_d012_5b51,
    0x3fef_72b8_3c7d_517b,
    0x3fef_5487_3168_b9aa,
    0x3fef_387a_6e75_6238,
    0x3fef_1e9d_f51f_dee1,
    0x3fef_06fe_0a31_b715,
    0x3fee_f1a7_373a_a9cb,
    0x3fee_dea6_4c12_3422,
    0x3fee_ce08_6061_892d,
    0x3fee_bfda_d536_2a27,
    0x3fee_b42b_569d_4f82,
    0x3fee_ab07_dd48_5429,
    0x3fee_a47e_b03a_5585,
    0x3fee_a09e_667f_3bcd,
    0x3fee_9f75_e8ec_5f74,
    0x3fee_a114_73eb_0187,
    0x3fee_a589_994c_ce13,
    0x3fee_ace5_422a_a0db,
    0x3fee_b737_b0cd_c5e5,
    0x3fee_c491_82a3_f090,
    0x3fee_d503_b23e_255d,
    0x3fee_e89f_995a_d3ad,
    0x3fee_ff76_f2fb_5e47,
    0x3fef_199b_dd85_529c,
    0x3fef_3720_dcef_9069,
    0x3fef_5818_dcfb_a487,
    0x3fef_7c97_337b_9b5f,
    0x3fef_a4af_a2a4_90da,
    0x3fef_d076_5b6e_4540,
];

/// `2^n` exactly, for `|n| <= 1022`, from its bits (what `2f64.powi(n)` gives there, but
/// without a call to the runtime's `__powidf2` per value).
#[inline(always)]
fn pow2(n: i32) -> f64 {
    f64::from_bits(((i64::from(n) + 1023) as u64) << 52)
}

/// Log-softmax of one value given the row: `x[i] - logsumexp(x)`.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_weight_gives_unit_rms() {
        let x = [1.0, -2.0, 3.0, -4.0];
        let mut y = [0.0; 4];
        rms_norm(&x, &[1.0; 4], 0.0, &mut y);
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rms_norm_of_a_row_does_not_depend_on_its_neighbours() {
        // Seven rows: one group of four interleaved sums, then three alone.
        let n = 576;
        let x: Vec<f32> = (0..7 * n)
            .map(|i| ((i as f32) * 0.731).sin() * (1.0 + (i % 13) as f32))
            .collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + (i as f32 * 0.1).cos()).collect();
        let mut all = vec![0.0; x.len()];
        rms_norm(&x, &w, 1e-5, &mut all);
        for (xr, yr) in x.chunks_exact(n).zip(all.chunks_exact(n)) {
            let mut alone = vec![0.0; n];
            rms_norm(xr, &w, 1e-5, &mut alone);
            let sum: f64 = xr.iter().fold(0.0, |s, &v| s + (v * v) as f64);
            let scale = 1.0 / ((sum / n as f64) as f32 + 1e-5).sqrt();
            let sequential: Vec<f32> = xr.iter().zip(&w).map(|(&v, &w)| v * scale * w).collect();
            assert_eq!(
                yr.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(
                alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                sequential.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        let (mut xa, mut d) = (x.clone(), x.iter().map(|v| v * 0.5).collect::<Vec<_>>());
        let added: Vec<f32> = x.iter().zip(&d).map(|(a, b)| a + b).collect();
        add_rms_norm(&mut xa, &mut d, &w, 1e-5);
        let mut apart = vec![0.0; x.len()];
        rms_norm(&added, &w, 1e-5, &mut apart);
        assert_eq!(xa, added);
        assert_eq!(d, apart);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let mut x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
        let orig = x.clone();
        let rope = |x: &mut [f32], pos| {
            let mut cs = [(0.0, 0.0); 32];
            rope_angles(pos, 64, 10000.0, &[], &RopeScale::NONE, &mut cs);
            rope_rotate(x, 64, &cs);
        };
        rope(&mut x, 0);
        assert_eq!(x, orig);
        rope(&mut x, 17);
        let n0: f32 = orig.iter().map(|v| v * v).sum();
        let n1: f32 = x.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-3);
        // the first pair rotates by exactly `pos` radians
        let (s, c) = 17f32.sin_cos();
        assert!((x[0] - (orig[0] * c - orig[1] * s)).abs() < 1e-5);
    }

    #[test]
    fn pow2_is_powi() {
        for n in -1022..=1022 {
            assert_eq!(pow2(n).to_bits(), 2f64.powi(n).to_bits(), "2^{n}");
        }
    }

    #[test]
    fn expf_poly_is_close_to_exp_and_saturates() {
        for i in -2000..2000 {
            let x = i as f32 * 0.043;
            let (got, want) = (expf_poly(x), (x as f64).exp());
            assert!(
                ((got as f64) - want).abs() <= 3e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(expf_poly(-200.0), 0.0);
        assert_eq!(expf_poly(200.0), f32::INFINITY);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }

    /// The AVX2 GeGLU against its scalar twin, bit for bit: every f16 value's neighbourhood
    /// (so every table entry and both rounding directions), the ±10 edges, specials and
    /// every tail length.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn geglu_avx2_is_its_scalar_twin() {
        if crate::isa() < crate::Isa::Avx2 {
            eprintln!("skipped: no AVX2");
            return;
        }
        let mut gate: Vec<f32> = (0..=u16::MAX)
            .flat_map(|b| {
                let x = half::f16::from_bits(b).to_f32();
                [
                    x,
                    f32::from_bits(x.to_bits().wrapping_add(4096)),
                    f32::from_bits(x.to_bits().wrapping_sub(4096)),
                ]
            })
            .collect();
        gate.extend([
            -10.0,
            10.0,
            -10.000001,
            9.999999,
            10.000001,
            -9.999999,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-45,
        ]);
        let up: Vec<f32> = (0..gate.len())
            .map(|i| ((i % 13) as f32 - 6.0) * 0.37 + 0.1)
            .collect();
        for len in (0..24).chain([gate.len()]) {
            let (mut want, mut got) = (gate[..len].to_vec(), gate[..len].to_vec());
            geglu_ref(&mut want, &up[..len]);
            // SAFETY: `isa()` reported AVX2.
            unsafe { crate::simd::x86_ops::geglu(&mut got, &up[..len], gelu_table()) };
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!(
                    w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()),
                    "geglu({}, {}): {g} != {w}",
                    gate[i],
                    up[i]
                );
            }
        }
    }

    #[test]
    fn gelu_table_follows_gelu() {
        for i in -400..400 {
            let x = i as f32 * 0.02;
            let mut g = [x];
            geglu_ref(&mut g, &[1.0]);
            assert!(
                (g[0] - gelu_tanh(x)).abs() <= 2e-3 * (1.0 + x.abs()),
                "gelu({x}) = {}",
                g[0]
            );
        }
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
    }

    /// NeoX RoPE on AVX2 against its twin, and against the normal pairing with the
    /// dimensions permuted (pair `i` is `(i, i + n_rot/2)` instead of `(2i, 2i + 1)`).
    #[test]
    fn rope_neox_is_normal_rope_on_permuted_dims() {
        let (hd, n_rot) = (128, 96);
        let x: Vec<f32> = (0..2 * hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut cs = vec![(0.0, 0.0); n_rot / 2];
        rope_angles(37, n_rot, 10000.0, &[], &RopeScale::NONE, &mut cs);
        let (mut a, mut b) = (x.clone(), x.clone());
        rope_rotate_neox(&mut a, hd, &cs);
        rope_rotate_neox_ref(&mut b, hd, &cs);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let perm = |d: usize| {
            if d >= n_rot {
                d
            } else if d.is_multiple_of(2) {
                d / 2
            } else {
                n_rot / 2 + d / 2
            }
        };
        let mut p: Vec<f32> = (0..2 * hd)
            .map(|i| x[(i / hd) * hd + perm(i % hd)])
            .collect();
        rope_rotate(&mut p, hd, &cs);
        for i in 0..2 * hd {
            assert_eq!(
                p[i].to_bits(),
                a[(i / hd) * hd + perm(i % hd)].to_bits(),
                "dim {i}"
            );
        }
    }

    #[test]
    fn rope_freq_factors_divide_the_angle_and_yarn_keeps_fast_pairs() {
        let mut cs = [(0.0, 0.0); 4];
        rope_angles(
            10,
            8,
            10000.0,
            &[1.0, 2.0, 4.0, 8.0],
            &RopeScale::NONE,
            &mut cs,
        );
        let theta = |i: i32| 10.0 * 10000f32.powf(-2.0 * i as f32 / 8.0);
        for (i, f) in [1.0, 2.0, 4.0, 8.0].iter().enumerate() {
            assert!((cs[i].0 - (theta(i as i32) / f).cos()).abs() < 1e-5);
        }
        let yarn = RopeScale::yarn(0.25, 64, 4096, 10000.0, 32.0, 1.0, 1.0);
        let mut y = [(0.0, 0.0); 32];
        rope_angles(100, 64, 10000.0, &[], &yarn, &mut y);
        let m = 1.0 + 0.1 * 4f32.ln();
        // The first pair (fastest) keeps its angle; the last is interpolated by 1/4.
        assert!((y[0].1 - 100f32.sin() * m).abs() < 1e-4);
        let last = 100.0 * 10000f32.powf(-62.0 / 64.0);
        assert!((y[31].1 - (last * 0.25).sin() * m).abs() < 1e-4);
    }

    /// GELU's erf within its bound of the exact function (f64), over the range BERT's
    /// activations use and beyond, and exact at the ends.
    #[test]
    fn gelu_erf_is_close_to_the_exact_function() {
        let mut worst = 0.0f64;
        for i in -120_000..120_000 {
            let x = i as f32 * 1e-4;
            let exact = 0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / 2f64.sqrt()));
            let err = (f64::from(gelu_erf(x)) - exact).abs();
            worst = worst.max(err / (1.0 + f64::from(x).abs()));
        }
        assert!(worst < 3e-7, "worst error {worst}");
        assert_eq!(gelu_erf(0.0), 0.0);
        assert_eq!(gelu_erf(30.0), 30.0);
        assert_eq!(gelu_erf(-30.0), 0.0);
    }

    /// Inputs for a twin test: every 9973rd f32 bit pattern (every exponent, both
    /// signs, NaNs), 80,000 steps of `step` around zero, and the special values.
    #[cfg(target_arch = "x86_64")]
    fn sweep(step: f32) -> Vec<f32> {
        let mut x: Vec<f32> = (0..=u32::MAX / 9973)
            .map(|i| f32::from_bits(i.wrapping_mul(9973)))
            .collect();
        x.extend((-40000..40000).map(|i| i as f32 * step));
        x.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
        ]);
        x
    }

    /// The AVX-512 GELU against its scalar twin, bit for bit (NaN for NaN), over every
    /// exponent of both signs, the special values and every tail length.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn gelu_erf_avx512_is_its_scalar_twin() {
        if crate::isa() != crate::Isa::Avx512 {
            eprintln!("skipped: no AVX-512");
            return;
        }
        let x = sweep(0.0005);
        for len in (0..48).chain([x.len()]) {
            let (mut want, mut got) = (x[..len].to_vec(), x[..len].to_vec());
            gelu_erf_rows_ref(&mut want);
            // SAFETY: `isa()` reported AVX-512.
            unsafe { crate::simd::x86_avx512_ops::gelu_erf(&mut got) };
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!(
                    w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()),
                    "gelu_erf({}): {g} != {w}",
                    x[i]
                );
            }
        }
    }

    /// The AVX-512 SwiGLU against its scalar twin, bit for bit (NaN for NaN): a sweep of
    /// gate values over every exponent (both signs, the saturation edges near ±88 and
    /// ±133, subnormal results), the special values, and every tail length.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn swiglu_avx512_is_its_scalar_twin() {
        if crate::isa() != crate::Isa::Avx512 {
            eprintln!("skipped: no AVX-512");
            return;
        }
        let mut gate = sweep(0.005);
        gate.extend([
            87.3, 88.7, 103.0, 104.0, 132.9, 133.1, 134.0, -87.3, -88.7, -103.0, -104.0, -132.9,
            -133.1, -134.0,
        ]);
        let up: Vec<f32> = (0..gate.len())
            .map(|i| ((i % 17) as f32 - 8.0) * 0.75 + 0.1)
            .collect();
        for len in (0..48).chain([gate.len()]) {
            let (mut want, mut got) = (gate[..len].to_vec(), gate[..len].to_vec());
            swiglu_ref(&mut want, &up[..len]);
            // SAFETY: `isa()` reported AVX-512.
            unsafe { crate::simd::x86_avx512_ops::swiglu(&mut got, &up[..len]) };
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!(
                    w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()),
                    "swiglu({}, {}): {g} != {w}",
                    gate[i],
                    up[i]
                );
            }
        }
    }
}

#[cfg(test)]
mod expf_tests {
    use super::expf;

    /// Every `step`-th f32 bit pattern from `lo` to `hi` (as u32 bits, inclusive).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn sweep(lo: u32, hi: u32, step: u32) -> impl Iterator<Item = f32> {
        (lo..=hi).step_by(step as usize).map(f32::from_bits)
    }

    /// The C library's `expf`, bit for bit, over a sweep of negative inputs (what the
    /// attention kernels pass: score minus running maximum), positives, and the specials.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    fn expf_is_the_c_library_expf() {
        let negatives = sweep(0x8000_0000, 0xff80_0000, 97);
        let positives = sweep(0, 0x7f80_0000, 1009);
        let specials = [
            0.0,
            -0.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -103.97,
            -103.5,
            -103.2,
            -87.5,
            88.72,
            88.73,
            -1e-30,
            1e-30,
        ];
        for x in negatives.chain(positives).chain(specials) {
            assert_eq!(expf(x).to_bits(), x.exp().to_bits(), "expf({x:e})");
        }
        assert!(expf(f32::NAN).is_nan());
    }

    #[test]
    fn expf_values() {
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(100.0), f32::INFINITY);
        for i in -1000..1000 {
            let x = i as f32 * 0.0871;
            let want = (x as f64).exp();
            assert!(
                ((expf(x) as f64) - want).abs() <= 1.2e-7 * want,
                "expf({x})"
            );
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn expf8_is_expf() {
        if crate::isa() < crate::Isa::Avx2 {
            return;
        }
        let xs: Vec<f32> = sweep(0x8000_0000, 0xff80_0000, 1013)
            .chain(sweep(0, 0x7f80_0000, 4099))
            .chain([
                f32::NAN,
                f32::NEG_INFINITY,
                f32::INFINITY,
                -103.5,
                -103.1,
                -0.0,
            ])
            .collect();
        for chunk in xs.chunks(8) {
            let mut x = [0.0f32; 8];
            x[..chunk.len()].copy_from_slice(chunk);
            let mut y = [0.0f32; 8];
            // SAFETY: the ISA check above found AVX2, FMA and F16C.
            unsafe { crate::simd::x86_attention::expf8_slice(&x, &mut y) };
            for (x, y) in x.iter().zip(y) {
                let want = expf(*x);
                assert!(
                    y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                    "expf8({x:e}) = {y:e}, expf = {want:e}"
                );
            }
        }
    }
}
