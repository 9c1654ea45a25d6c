//! Float kernels of the forward pass: RMSNorm, RoPE, SwiGLU, log-sum-exp.
//! Plain scalar code; callers run it under `with_isa` so it is compiled for the chosen ISA.

/// `y = x / sqrt(mean(x^2) + eps) * w`, row by row over `x.len() / w.len()` rows.
/// The sum of squares is accumulated in f64, as ggml does.
#[inline]
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let n = w.len();
    debug_assert_eq!(x.len(), y.len());
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        // Squares in f32, summed in f64, as the reference engine does.
        let sum: f64 = xr.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((yv, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *yv = xv * scale * wv;
        }
    }
}

/// Rotary position embedding, "normal" (GPT-J) style: adjacent pairs `(x[2i], x[2i+1])`
/// of each head are rotated by `pos * theta^(-2i / n_rot)`. `x` is `[n_head][head_dim]`;
/// only the first `n_rot` dims of each head rotate.
#[inline]
pub fn rope_norm(x: &mut [f32], head_dim: usize, n_rot: usize, pos: u32, freq_base: f32) {
    let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
    for head in x.chunks_exact_mut(head_dim) {
        let mut theta = pos as f32;
        for pair in head[..n_rot].chunks_exact_mut(2) {
            let (sin, cos) = theta.sin_cos();
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0.mul_add(cos, -(x1 * sin));
            pair[1] = x0.mul_add(sin, x1 * cos);
            theta *= theta_scale;
        }
    }
}

/// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`, with [`silu`].
#[inline]
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
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
    let b = (-n).mul_add(f32::from_bits(0x35bf_be8e), (-n).mul_add(f32::from_bits(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let p = f32::from_bits(0x3c07_2010).mul_add(b, f32::from_bits(0x3d2b_9f17));
    let q = f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb));
    let j = p.mul_add(u, q).mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0));
    // j * 2^n, rounded once (exact in f64 for |n| <= 192).
    (f64::from(j) * pow2(n as i32)) as f32
}

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
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let mut x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
        let orig = x.clone();
        rope_norm(&mut x, 64, 64, 0, 10000.0);
        assert_eq!(x, orig);
        rope_norm(&mut x, 64, 64, 17, 10000.0);
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
            assert!(((got as f64) - want).abs() <= 3e-7 * want, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(expf_poly(-200.0), 0.0);
        assert_eq!(expf_poly(200.0), f32::INFINITY);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
