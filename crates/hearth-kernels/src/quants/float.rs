//! Plain float "block" types: `f32`, `half::f16` and `half::bf16`, each a block of one.
//!
//! Conversions follow ggml: f32 → f16 and f32 → bf16 round to nearest, ties to even;
//! NaNs become quiet NaNs (f16: the canonical `0x7E00` with the sign kept, as ggml's
//! `GGML_FP32_TO_FP16`; bf16: the high half with the quiet bit forced, as
//! `GGML_FP32_TO_BF16`). f16 → f32 and bf16 → f32 are exact.
//!
//! As in ggml, an F16 weight row is dotted with activations converted to f16 and a BF16
//! row with activations converted to bf16. The products of two f16 (or two bf16)
//! values are exact in f32; the dot products accumulate them in 16 independent f32
//! lanes (a fixed summation order, so results are deterministic) that are summed
//! pairwise at the end, the way ggml's SIMD paths do (its scalar fallback accumulates in
//! f64 instead, so results differ from that fallback by float rounding only).

use half::{bf16, f16};

use crate::{Quantize, WeightBlock};

/// Exact f16 → f32, branch-free so that loops over it vectorize.
///
/// Finite values: the 15 magnitude bits shifted into an f32's exponent/mantissa position
/// form `value * 2^-112` exactly (for normals and subnormals alike), so one exact
/// multiplication by 2^112 gives the value. Infinities and NaNs get the all-ones f32
/// exponent with the mantissa kept.
#[inline(always)]
pub fn fp16_to_fp32(h: f16) -> f32 {
    let h = u32::from(h.to_bits());
    let sign = (h & 0x8000) << 16;
    let mag = h & 0x7fff;
    let finite = f32::from_bits(mag << 13) * f32::from_bits(0x7780_0000); // 2^112
    let bits = if mag >= 0x7c00 {
        (mag << 13) | 0x7f80_0000
    } else {
        finite.to_bits()
    };
    f32::from_bits(bits | sign)
}

/// f32 → f16, round to nearest even; a NaN becomes `0x7E00` with its sign (as ggml).
#[inline]
pub fn fp32_to_fp16(x: f32) -> f16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        f16::from_bits(sign | 0x7e00)
    } else {
        f16::from_f32(x)
    }
}

/// Exact bf16 → f32 (the bf16 bits are the high half of the f32).
#[inline(always)]
pub fn bf16_to_fp32(h: bf16) -> f32 {
    f32::from_bits(u32::from(h.to_bits()) << 16)
}

/// f32 → bf16 as ggml's `GGML_FP32_TO_BF16`: round to nearest even; a NaN keeps its high
/// half with the quiet bit forced on.
#[inline(always)]
pub fn fp32_to_bf16(x: f32) -> bf16 {
    let u = x.to_bits();
    let bits = if (u & 0x7fff_ffff) > 0x7f80_0000 {
        (u >> 16) | 0x40
    } else {
        // Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry out of the
        // mantissa correctly bumps the exponent (up to infinity).
        u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16
    };
    bf16::from_bits(bits as u16)
}

/// Number of independent f32 accumulators in the float dot products.
const LANES: usize = 16;

/// `sum_i cvt(x[i]) * cvt(y[i])` with `LANES` f32 accumulators: element `i` goes to lane
/// `i % LANES`, lanes are summed pairwise at the end. A partial last chunk is padded
/// with `zero` (adding `0 * 0` leaves a lane's sum unchanged).
#[inline(always)]
fn dot_lanes<T: Copy>(x: &[T], y: &[T], zero: T, cvt: impl Fn(T) -> f32 + Copy) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot: row lengths differ");
    #[inline(always)]
    fn step<T: Copy>(
        acc: &mut [f32; LANES],
        x: &[T; LANES],
        y: &[T; LANES],
        cvt: impl Fn(T) -> f32,
    ) {
        for ((a, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *a += cvt(u) * cvt(v);
        }
    }
    let mut acc = [0.0f32; LANES];
    let xs = x.chunks_exact(LANES);
    let ys = y.chunks_exact(LANES);
    let (xr, yr) = (xs.remainder(), ys.remainder());
    for (xc, yc) in xs.zip(ys) {
        step(
            &mut acc,
            xc.try_into().unwrap(),
            yc.try_into().unwrap(),
            cvt,
        );
    }
    if !xr.is_empty() {
        let mut xp = [zero; LANES];
        let mut yp = [zero; LANES];
        xp[..xr.len()].copy_from_slice(xr);
        yp[..yr.len()].copy_from_slice(yr);
        step(&mut acc, &xp, &yp, cvt);
    }
    reduce_lanes(acc)
}

/// Pairwise sum of the lanes (fixed order).
#[inline(always)]
fn reduce_lanes(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for k in 0..width {
            acc[k] += acc[k + width];
        }
        width /= 2;
    }
    acc[0]
}

impl Quantize for f32 {
    const QK: usize = 1;

    /// Plain copy.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        y.copy_from_slice(x);
    }

    /// Plain copy.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        y.copy_from_slice(x);
    }
}

impl WeightBlock for f32 {
    type Act = f32;

    /// The AVX2 kernel when the ISA allows, else the scalar twin [`vec_dot_f32_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::vec_dot_f32(w, a) };
        }
        vec_dot_f32_ref(w, a)
    }

    /// AVX-512's wider tiles, else AVX2's, else the twin per output.
    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (with AVX2 and FMA) only when the CPU has
            // them.
            return unsafe { crate::simd::x86_avx512_float::gemm_f32(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::gemm_f32(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_f32_ref)
    }
}

/// Scalar twin of the AVX2 F32 kernels: 16 f32 lanes (element `i` in lane `i % 16`),
/// each step `w.mul_add(a, acc)` (one rounding, as the kernels' FMA), a partial last
/// chunk padded with zeros, lanes summed pairwise at the end.
#[inline]
pub fn vec_dot_f32_ref(w: &[f32], a: &[f32]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot: row lengths differ");
    let mut acc = [0.0f32; LANES];
    let (wc, ac) = (w.chunks_exact(LANES), a.chunks_exact(LANES));
    let (wr, ar) = (wc.remainder(), ac.remainder());
    for (wc, ac) in wc.zip(ac) {
        for ((s, &x), &y) in acc.iter_mut().zip(wc).zip(ac) {
            *s = x.mul_add(y, *s);
        }
    }
    if !wr.is_empty() {
        // Padded with zeros, as the kernels do (`0 * 0 + acc` also turns -0 into +0).
        let (mut wp, mut ap) = ([0.0f32; LANES], [0.0f32; LANES]);
        wp[..wr.len()].copy_from_slice(wr);
        ap[..ar.len()].copy_from_slice(ar);
        for ((s, &x), &y) in acc.iter_mut().zip(&wp).zip(&ap) {
            *s = x.mul_add(y, *s);
        }
    }
    reduce_lanes(acc)
}

impl Quantize for f16 {
    const QK: usize = 1;

    /// Round to nearest even (ggml's `GGML_FP32_TO_FP16`).
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(x.len(), y.len(), "quantize_row f16: length mismatch");
        for (d, &s) in y.iter_mut().zip(x) {
            *d = fp32_to_fp16(s);
        }
    }

    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "dequantize_row f16: length mismatch");
        for (d, &s) in y.iter_mut().zip(x) {
            *d = fp16_to_fp32(s);
        }
    }
}

impl WeightBlock for f16 {
    /// ggml's `vec_dot_type` for F16 is F16: activations are converted to f16.
    type Act = f16;

    /// The AVX2 kernel when the ISA allows, else the scalar twin [`vec_dot_f16_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::vec_dot_f16(w, a) };
        }
        vec_dot_f16_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::gemm_f16(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_f16_ref)
    }
}

/// Scalar twin of the AVX2 F16 kernels: 16 f32 lanes (element `i` in lane `i % 16`),
/// summed pairwise at the end.
#[inline]
pub fn vec_dot_f16_ref(w: &[f16], a: &[f16]) -> f32 {
    dot_lanes(w, a, f16::ZERO, fp16_to_fp32)
}

/// Scalar twin of the AVX2 BF16 kernels (the same lanes as [`vec_dot_f16_ref`]).
#[inline]
pub fn vec_dot_bf16_ref(w: &[bf16], a: &[bf16]) -> f32 {
    dot_lanes(w, a, bf16::ZERO, bf16_to_fp32)
}

impl Quantize for bf16 {
    const QK: usize = 1;

    /// Round to nearest even with quiet NaNs (ggml's `GGML_FP32_TO_BF16`).
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(x.len(), y.len(), "quantize_row bf16: length mismatch");
        for (d, &s) in y.iter_mut().zip(x) {
            *d = fp32_to_bf16(s);
        }
    }

    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "dequantize_row bf16: length mismatch");
        for (d, &s) in y.iter_mut().zip(x) {
            *d = bf16_to_fp32(s);
        }
    }
}

impl WeightBlock for bf16 {
    /// ggml's `vec_dot_type` for BF16 is BF16: activations are converted to bf16.
    type Act = bf16;

    /// The AVX2 kernel when the ISA allows, else the scalar twin [`vec_dot_bf16_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::vec_dot_bf16(w, a) };
        }
        vec_dot_bf16_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_float::gemm_bf16(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_bf16_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_to_fp32_matches_half_for_all_bit_patterns() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            let got = fp16_to_fp32(h);
            let want = h.to_f32();
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
                assert_eq!(
                    got.is_sign_negative(),
                    want.is_sign_negative(),
                    "{bits:#06x}"
                );
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn fp32_to_fp16_rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1).
        assert_eq!(fp32_to_fp16(1.0 + 2f32.powi(-11)).to_bits(), 0x3c00);
        // 1 + 3*2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: ties to 1 + 2^-9.
        assert_eq!(fp32_to_fp16(1.0 + 3.0 * 2f32.powi(-11)).to_bits(), 0x3c02);
        assert_eq!(fp32_to_fp16(65520.0).to_bits(), 0x7c00); // rounds up to +inf
        assert_eq!(fp32_to_fp16(2f32.powi(-25)).to_bits(), 0x0000); // tie to even zero
        assert_eq!(fp32_to_fp16(-f32::NAN).to_bits(), 0xfe00);
        assert_eq!(fp32_to_fp16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7e00);
    }

    /// Straightforward restatement of ggml's bf16 rounding, for comparison.
    fn bf16_reference(x: f32) -> u16 {
        let u = x.to_bits();
        if x.is_nan() {
            return ((u >> 16) | 0x40) as u16;
        }
        let hi = u >> 16;
        let lo = u & 0xffff;
        let up = lo > 0x8000 || (lo == 0x8000 && hi & 1 == 1);
        (hi + u32::from(up)) as u16
    }

    #[test]
    fn fp32_to_bf16_matches_rounding_rule() {
        let samples = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            2.718_281_7,
            1e-40,
            -1e-40,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::from_bits(0x3f80_8001),
            f32::from_bits(0x7f7f_8000),
        ];
        for &x in &samples {
            assert_eq!(
                fp32_to_bf16(x).to_bits(),
                bf16_reference(x),
                "{x:e} ({:#010x})",
                x.to_bits()
            );
        }
        // A sweep of bit patterns.
        let mut u = 1u32;
        while u != 0 {
            let x = f32::from_bits(u.wrapping_mul(2_654_435_761));
            assert_eq!(
                fp32_to_bf16(x).to_bits(),
                bf16_reference(x),
                "{:#010x}",
                x.to_bits()
            );
            u = u.wrapping_add(65_537);
            if u < 65_537 {
                break;
            }
        }
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80); // tie, even
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82); // tie, odd up
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7f7f_8000)).to_bits(), 0x7f80);
        // to +inf
    }

    #[test]
    fn reduce_lanes_is_pairwise() {
        let mut acc = [0.0f32; LANES];
        for (k, a) in acc.iter_mut().enumerate() {
            *a = k as f32;
        }
        assert_eq!(reduce_lanes(acc), (0..LANES).sum::<usize>() as f32);
    }
}
