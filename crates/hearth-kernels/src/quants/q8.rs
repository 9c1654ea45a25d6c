//! 8-bit blocks of 32: `Q8_0` (a weight type, and the activation format of Q4_0, Q5_0
//! and Q8_0) and `Q8_1` (the activation format of Q4_1 and Q5_1).
//!
//! Quantization is ggml's `quantize_row_q8_0_ref` / `quantize_row_q8_1_ref`, bit for bit:
//! `d = amax / 127`, `q = round(x / d)` (halves away from zero), `d` stored as f16.

use half::f16;

use super::float::{fp16_to_fp32, fp32_to_fp16};
use crate::{Quantize, WeightBlock};

/// Values per Q8_0 block.
pub const QK8_0: usize = 32;
/// Values per Q8_1 block.
pub const QK8_1: usize = 32;

/// ggml `block_q8_0`: value `j` is `d * qs[j]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// ggml `block_q8_1`: value `j` is `d * qs[j]`; `s` caches `d * sum(qs)` (computed with
/// the f32 scale before it is rounded to f16), used by the Q4_1/Q5_1 dot products.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK8_1],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_1>() == 36);

/// Shared by Q8_0 and Q8_1: quantizes 32 values into `qs`, returns the f32 scale `d`.
#[inline(always)]
fn quantize_block_q8(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    // ggml: amax = MAX(amax, fabsf(v)), i.e. `amax > |v| ? amax : |v|`.
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        // roundf: halves away from zero; |v * id| <= 127 (up to rounding) fits i8.
        *q = (v * id).round() as i8;
    }
    d
}

/// The blocks of [`BlockQ8_0::quantize_row`] (lengths checked by the caller).
#[inline(always)]
fn quantize_blocks_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let xb: &[f32; QK8_0] = xb.try_into().unwrap();
        let d = quantize_block_q8(xb, &mut yb.qs);
        yb.d = fp32_to_fp16(d);
    }
}

/// Activation variant of [`quantize_block_q8`]: `id = 127 / amax` and round half to even,
/// as ggml's x86 `quantize_row_q8_0` / `quantize_row_q8_1` compute it. Returns `d`.
#[inline(always)]
fn quantize_block_q8_act(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in x {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_half_even_small(v * id) as i8;
    }
    d
}

/// `x.round_ties_even()` for `|x| < 2^22` (and NaN stays NaN), by adding and removing
/// `1.5 * 2^23`: the sum's unit in the last place is 1, so the addition rounds to the
/// nearest integer, ties to even. Unlike `round_ties_even`, which is a libm call on
/// baseline x86-64, this vectorizes on any target. Activation quants are within ±128.
#[inline(always)]
fn round_half_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}

impl Quantize for BlockQ8_0 {
    const QK: usize = QK8_0;

    /// ggml's `quantize_row_q8_0_ref`. Compiled for AVX2 where the CPU has it (the KV
    /// cache quantizes every new row with it): baseline x86-64 has no rounding
    /// instruction and calls `roundf` per value. The arithmetic is the same either way.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK8_0,
            "quantize_row q8_0: length mismatch"
        );
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn avx2(x: &[f32], y: &mut [BlockQ8_0]) {
                quantize_blocks_q8_0(x, y)
            }
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { avx2(x, y) };
        }
        quantize_blocks_q8_0(x, y)
    }

    /// ggml's `dequantize_row_q8_0`: `y = qs * d`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK8_0,
            "dequantize_row q8_0: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
            let d = fp16_to_fp32(xb.d);
            for (o, &q) in yb.iter_mut().zip(&xb.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    /// The reference engine's x86 activation quantizer (see [`Quantize::quantize_row_act`]).
    fn quantize_row_act(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK8_0,
            "quantize_row_act q8_0: length mismatch"
        );
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::quantize_row_q8_0_act(x, y) };
        }
        quantize_row_q8_0_act_ref(x, y)
    }
}

impl WeightBlock for BlockQ8_0 {
    type Act = BlockQ8_0;

    /// ggml's `ggml_vec_dot_q8_0_q8_0_generic`: per block `sumi * (d_w * d_a)` in f32.
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::vec_dot_q8_0_q8_0(w, a) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return unsafe { crate::simd::neon::vec_dot_q8_0_q8_0(w, a) };
        }
        vec_dot_q8_0_q8_0_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q8_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::gemm_q8_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return crate::gemm_with(nb, w, a, out, |w, a| unsafe {
                crate::simd::neon::vec_dot_q8_0_q8_0(w, a)
            });
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q8_0_q8_0_ref)
    }
}

impl Quantize for BlockQ8_1 {
    const QK: usize = QK8_1;

    /// ggml's `quantize_row_q8_1_ref`; `s = f16(sum(qs) * d)` with the f32 `d`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK8_1,
            "quantize_row q8_1: length mismatch"
        );
        for (xb, yb) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
            let xb: &[f32; QK8_1] = xb.try_into().unwrap();
            let d = quantize_block_q8(xb, &mut yb.qs);
            let sum: i32 = yb.qs.iter().map(|&q| i32::from(q)).sum();
            yb.d = fp32_to_fp16(d);
            yb.s = fp32_to_fp16(sum as f32 * d);
        }
    }

    /// `y = qs * d` (`s` is not needed).
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK8_1,
            "dequantize_row q8_1: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
            let d = fp16_to_fp32(xb.d);
            for (o, &q) in yb.iter_mut().zip(&xb.qs) {
                *o = f32::from(q) * d;
            }
        }
    }

    /// The reference engine's x86 activation quantizer (see [`Quantize::quantize_row_act`]).
    fn quantize_row_act(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK8_1,
            "quantize_row_act q8_1: length mismatch"
        );
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::quantize_row_q8_1_act(x, y) };
        }
        quantize_row_q8_1_act_ref(x, y)
    }
}

/// Scalar twin of the SIMD activation quantizer into Q8_0 blocks.
pub fn quantize_row_q8_0_act_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_0,
        "quantize_row_act q8_0: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let xb: &[f32; QK8_0] = xb.try_into().unwrap();
        yb.d = fp32_to_fp16(quantize_block_q8_act(xb, &mut yb.qs));
    }
}

/// Scalar twin of the SIMD activation quantizer into Q8_1 blocks (`s = f16(d * sum(qs))`
/// with the f32 `d`).
pub fn quantize_row_q8_1_act_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK8_1,
        "quantize_row_act q8_1: length mismatch"
    );
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let xb: &[f32; QK8_1] = xb.try_into().unwrap();
        let d = quantize_block_q8_act(xb, &mut yb.qs);
        let sum: i32 = yb.qs.iter().map(|&q| i32::from(q)).sum();
        yb.d = fp32_to_fp16(d);
        yb.s = fp32_to_fp16(d * sum as f32);
    }
}

/// Scalar twin of the SIMD `vec_dot_q8_0_q8_0`, in the same order, which is the reference
/// engine's on x86 with VNNI (`vpdpbusd`): per block, lane `l` sums elements `4l..4l+4`
/// exactly, scaled into eight f32 accumulators with a fused multiply-add; the lanes are
/// then summed as [`hsum8`]. Bit-identical to the SIMD paths.
#[inline]
pub fn vec_dot_q8_0_q8_0_ref(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q8_0: row lengths differ");
    let mut acc = [0.0f32; 8];
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi: i32 = (4 * l..4 * l + 4)
                .map(|i| i32::from(bw.qs[i]) * i32::from(ba.qs[i]))
                .sum();
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc)
}

/// The score order of the `Q8_0` KV-cache attention (`attention::attend_head_quant` and
/// its SIMD kernels): as [`vec_dot_q8_0_q8_0_ref`], with lane `l` summing elements `2l,
/// 2l+1, 16+2l, 17+2l` (the 16-bit product pairs of each half, which the kernels widen
/// once per key and reuse for every query).
#[inline]
pub fn vec_dot_q8_0_paired_ref(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q8_0: row lengths differ");
    let mut acc = [0.0f32; 8];
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        let p = |i: usize| i32::from(bw.qs[i]) * i32::from(ba.qs[i]);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi = (p(2 * l) + p(2 * l + 1)) + (p(16 + 2 * l) + p(17 + 2 * l));
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc)
}

/// Horizontal sum of eight lanes in the order of the SIMD kernels: `l + l+4`, then
/// `(0+2) + (1+3)`.
#[inline(always)]
pub(crate) fn hsum8(acc: [f32; 8]) -> f32 {
    let s: [f32; 4] = std::array::from_fn(|i| acc[i] + acc[i + 4]);
    (s[0] + s[2]) + (s[1] + s[3])
}

#[cfg(test)]
mod tests {
    use super::round_half_even_small;

    #[test]
    fn magic_rounding_is_round_ties_even_in_the_activation_range() {
        let ties = [-127.5f32, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 126.5, 127.5];
        let steps = (-140_000..=140_000).map(|i| i as f32 / 1000.0);
        for x in
            ties.into_iter()
                .chain(steps)
                .chain([f32::INFINITY, f32::NEG_INFINITY, 1e-30, -1e-30])
        {
            assert_eq!(
                round_half_even_small(x) as i8,
                x.round_ties_even() as i8,
                "{x}"
            );
            assert_eq!(round_half_even_small(x), x.round_ties_even() + 0.0, "{x}");
        }
        assert!(round_half_even_small(f32::NAN).is_nan());
    }
}
