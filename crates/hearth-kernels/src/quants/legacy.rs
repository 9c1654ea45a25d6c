//! The legacy 4- and 5-bit blocks of 32 values: `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`.
//!
//! Layout (as ggml): element `j < 16` sits in the low nibble of `qs[j]`, element `j + 16`
//! in its high nibble. For the 5-bit types the fifth bit of element `j` (0..32) is bit
//! `j` of `qh` read as a little-endian `u32`.
//!
//! Quantization reproduces ggml's `quantize_row_q*_ref` bit for bit (same f32 arithmetic,
//! truncating float → int conversions, f16 scales rounded to nearest even). The dot
//! products follow ggml's generic `ggml_vec_dot_q*_q8_*`: an exact i32 sum per block,
//! scaled and accumulated in f32 in block order.

use half::f16;

use super::float::{fp16_to_fp32, fp32_to_fp16};
use super::q8::{hsum8, BlockQ8_0, BlockQ8_1};
use super::signed_absmax;
use crate::{Quantize, WeightBlock};

/// Values per Q4_0 block.
pub const QK4_0: usize = 32;
/// Values per Q4_1 block.
pub const QK4_1: usize = 32;
/// Values per Q5_0 block.
pub const QK5_0: usize = 32;
/// Values per Q5_1 block.
pub const QK5_1: usize = 32;

/// ggml `block_q4_0`: value `j` is `d * (q_j - 8)` with 4-bit `q_j`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// ggml `block_q4_1`: value `j` is `d * q_j + m` with 4-bit `q_j`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

/// ggml `block_q5_0`: value `j` is `d * (q_j - 16)` with 5-bit `q_j`: low four bits in
/// `qs` (as Q4_0), the fifth in bit `j` of `qh` (a little-endian `u32`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits, little-endian `u32`: bit `j` belongs to element `j`.
    pub qh: [u8; 4],
    /// Low nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);

/// ggml `block_q5_1`: value `j` is `d * q_j + m` with 5-bit `q_j` (bits as in Q5_0).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Fifth bits, little-endian `u32`: bit `j` belongs to element `j`.
    pub qh: [u8; 4],
    /// Low nibbles: element `j` low, element `j + 16` high.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);

/// ggml's min/max scan: `min` starts at `f32::MAX`, `max` at `-f32::MAX`.
#[inline(always)]
fn min_max(x: &[f32; 32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Spreads the eight bits of a byte `b` over eight bytes: byte `k` is `set` if bit `k`
/// of `b` is set, else `clear`.
const fn spread_table(set: u8, clear: u8) -> [[u8; 8]; 256] {
    let mut t = [[0u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            t[b][k] = if b & (1 << k) != 0 { set } else { clear };
            k += 1;
        }
        b += 1;
    }
    t
}

/// Q5_1 fifth bits as byte values: `0x10` where set. OR-ed onto a low nibble `n` this
/// gives the quant `n + 16 * bit`.
const QH_SPREAD_Q5_1: [[u8; 8]; 256] = spread_table(0x10, 0x00);
/// Q5_0 fifth bits: `0x00` where set, `0xF0` where clear. OR-ed onto a low nibble `n`
/// this gives the byte of the signed value `n + 16 * bit - 16` (0xF0 | n is n - 16).
const QH_SPREAD_Q5_0: [[u8; 8]; 256] = spread_table(0x00, 0xf0);

/// The 32 four-bit quants of `qs` in element order, plus `off` (-8 for Q4_0, 0 for Q4_1).
#[inline(always)]
fn unpack_q4(qs: &[u8; 16], off: i8) -> [i8; 32] {
    let mut v = [0i8; 32];
    let (lo, hi) = v.split_at_mut(16);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = (q & 0x0f) as i8 + off;
        *h = (q >> 4) as i8 + off;
    }
    v
}

/// The 32 five-bit quants in element order as i8 (low nibbles from `qs`, bit `j` of the
/// little-endian `qh` as bit 4 of element `j`), with `table` supplying the fifth bits
/// (and the offset): [`QH_SPREAD_Q5_0`] gives `q - 16`, [`QH_SPREAD_Q5_1`] gives `q`.
/// The table replaces per-element bit tests (which LLVM scalarizes on baseline x86-64)
/// with four 8-byte loads; the rest is masks and ORs over 16-byte rows, as in Q4.
#[inline(always)]
fn unpack_q5(qs: &[u8; 16], qh: &[u8; 4], table: &[[u8; 8]; 256]) -> [i8; 32] {
    let mut h = [0u8; 32];
    for (c, &b) in h.chunks_exact_mut(8).zip(qh) {
        c.copy_from_slice(&table[usize::from(b)]);
    }
    let (h_lo, h_hi) = h.split_at(16);
    let mut v = [0i8; 32];
    let (lo, hi) = v.split_at_mut(16);
    for ((((&q, &b0), &b1), l), u) in qs.iter().zip(h_lo).zip(h_hi).zip(lo).zip(hi) {
        *l = ((q & 0x0f) | b0) as i8;
        *u = ((q >> 4) | b1) as i8;
    }
    v
}

/// Packs 5-bit quants (ggml order) into `qs` and `qh`.
#[inline(always)]
fn pack_q5(q: &[u8; 32], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= u32::from((v & 0x10) >> 4) << j;
    }
    let (lo, hi) = q.split_at(16);
    for ((o, &a), &b) in qs.iter_mut().zip(lo).zip(hi) {
        *o = (a & 0x0f) | ((b & 0x0f) << 4);
    }
    *qh = h.to_le_bytes();
}

impl Quantize for BlockQ4_0 {
    const QK: usize = QK4_0;

    /// ggml's `quantize_row_q4_0_ref`: `max` is the signed value of largest magnitude,
    /// `d = max / -8`, `q = min(15, trunc(x / d + 8.5))`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK4_0,
            "quantize_row q4_0: length mismatch"
        );
        for (xb, yb) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
            let xb: &[f32; QK4_0] = xb.try_into().unwrap();
            let max = signed_absmax(xb);
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            yb.d = fp32_to_fp16(d);
            let (lo, hi) = xb.split_at(QK4_0 / 2);
            for ((q, &v0), &v1) in yb.qs.iter_mut().zip(lo).zip(hi) {
                let q0 = ((v0 * id + 8.5) as i8).min(15) as u8;
                let q1 = ((v1 * id + 8.5) as i8).min(15) as u8;
                *q = q0 | (q1 << 4);
            }
        }
    }

    /// ggml's `dequantize_row_q4_0`: `y = (q - 8) * d`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK4_0,
            "dequantize_row q4_0: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
            let d = fp16_to_fp32(xb.d);
            for (o, &q) in yb.iter_mut().zip(&unpack_q4(&xb.qs, -8)) {
                *o = f32::from(q) * d;
            }
        }
    }
}

impl WeightBlock for BlockQ4_0 {
    type Act = BlockQ8_0;

    /// ggml's `ggml_vec_dot_q4_0_q8_0_generic`: per block `sumi * d_w * d_a` in f32.
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::vec_dot_q4_0_q8_0(w, a) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return unsafe { crate::simd::neon::vec_dot_q4_0_q8_0(w, a) };
        }
        vec_dot_q4_0_q8_0_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q4_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::gemm_q4_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return crate::gemm_with(nb, w, a, out, |w, a| unsafe {
                crate::simd::neon::vec_dot_q4_0_q8_0(w, a)
            });
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q4_0_q8_0_ref)
    }
}

impl Quantize for BlockQ4_1 {
    const QK: usize = QK4_1;

    /// ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
    /// `q = min(15, trunc((x - min) / d + 0.5))`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK4_1,
            "quantize_row q4_1: length mismatch"
        );
        for (xb, yb) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
            let xb: &[f32; QK4_1] = xb.try_into().unwrap();
            let (min, max) = min_max(xb);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            yb.d = fp32_to_fp16(d);
            yb.m = fp32_to_fp16(min);
            let (lo, hi) = xb.split_at(QK4_1 / 2);
            for ((q, &v0), &v1) in yb.qs.iter_mut().zip(lo).zip(hi) {
                let x0 = (v0 - min) * id;
                let x1 = (v1 - min) * id;
                let q0 = ((x0 + 0.5) as i8).min(15) as u8;
                let q1 = ((x1 + 0.5) as i8).min(15) as u8;
                *q = q0 | (q1 << 4);
            }
        }
    }

    /// ggml's `dequantize_row_q4_1`: `y = q * d + m`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK4_1,
            "dequantize_row q4_1: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
            let d = fp16_to_fp32(xb.d);
            let m = fp16_to_fp32(xb.m);
            for (o, &q) in yb.iter_mut().zip(&unpack_q4(&xb.qs, 0)) {
                *o = f32::from(q) * d + m;
            }
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    type Act = BlockQ8_1;

    /// ggml's `ggml_vec_dot_q4_1_q8_1_generic`: per block
    /// `(d_w * d_a) * sumi + m_w * s_a` in f32.
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::vec_dot_q4_1_q8_1(w, a) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return unsafe { crate::simd::neon::vec_dot_q4_1_q8_1(w, a) };
        }
        vec_dot_q4_1_q8_1_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q4_1_q8_1(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86::gemm_q4_1_q8_1(nb, w, a, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return crate::gemm_with(nb, w, a, out, |w, a| unsafe {
                crate::simd::neon::vec_dot_q4_1_q8_1(w, a)
            });
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q4_1_q8_1_ref)
    }
}

impl Quantize for BlockQ5_0 {
    const QK: usize = QK5_0;

    /// ggml's `quantize_row_q5_0_ref`: `d = max / -16` (signed max-abs value),
    /// `q = min(31, trunc(x / d + 16.5))`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK5_0,
            "quantize_row q5_0: length mismatch"
        );
        for (xb, yb) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
            let xb: &[f32; QK5_0] = xb.try_into().unwrap();
            let max = signed_absmax(xb);
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            yb.d = fp32_to_fp16(d);
            let mut q = [0u8; QK5_0];
            for (q, &v) in q.iter_mut().zip(xb) {
                *q = ((v * id + 16.5) as i8).min(31) as u8;
            }
            pack_q5(&q, &mut yb.qs, &mut yb.qh);
        }
    }

    /// ggml's `dequantize_row_q5_0`: `y = (q - 16) * d`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK5_0,
            "dequantize_row q5_0: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
            let d = fp16_to_fp32(xb.d);
            for (o, &q) in yb
                .iter_mut()
                .zip(&unpack_q5(&xb.qs, &xb.qh, &QH_SPREAD_Q5_0))
            {
                *o = f32::from(q) * d;
            }
        }
    }
}

impl WeightBlock for BlockQ5_0 {
    type Act = BlockQ8_0;

    /// The AVX2 kernel when the ISA allows, else its scalar twin
    /// [`vec_dot_q5_0_q8_0_ref`] (eight lanes; ggml's generic code sums each block's
    /// `(d_w * d_a) * sumi` in one f32, so results differ from it by f32 rounding).
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_legacy::vec_dot_q5_0_q8_0(w, a) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return unsafe { crate::simd::neon::vec_dot_q5_0_q8_0(w, a) };
        }
        vec_dot_q5_0_q8_0_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q5_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_legacy::gemm_q5_0_q8_0(nb, w, a, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return crate::gemm_with(nb, w, a, out, |w, a| unsafe {
                crate::simd::neon::vec_dot_q5_0_q8_0(w, a)
            });
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q5_0_q8_0_ref)
    }
}

impl Quantize for BlockQ5_1 {
    const QK: usize = QK5_1;

    /// ggml's `quantize_row_q5_1_ref`: `d = (max - min) / 31`, `m = min`,
    /// `q = trunc((x - min) / d + 0.5)` (no clamp, as ggml: it cannot exceed 31).
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(
            x.len(),
            y.len() * QK5_1,
            "quantize_row q5_1: length mismatch"
        );
        for (xb, yb) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
            let xb: &[f32; QK5_1] = xb.try_into().unwrap();
            let (min, max) = min_max(xb);
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            yb.d = fp32_to_fp16(d);
            yb.m = fp32_to_fp16(min);
            let mut q = [0u8; QK5_1];
            for (q, &v) in q.iter_mut().zip(xb) {
                *q = ((v - min) * id + 0.5) as u8;
            }
            pack_q5(&q, &mut yb.qs, &mut yb.qh);
        }
    }

    /// ggml's `dequantize_row_q5_1`: `y = q * d + m`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        assert_eq!(
            y.len(),
            x.len() * QK5_1,
            "dequantize_row q5_1: length mismatch"
        );
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
            let d = fp16_to_fp32(xb.d);
            let m = fp16_to_fp32(xb.m);
            for (o, &q) in yb
                .iter_mut()
                .zip(&unpack_q5(&xb.qs, &xb.qh, &QH_SPREAD_Q5_1))
            {
                *o = f32::from(q) * d + m;
            }
        }
    }
}

impl WeightBlock for BlockQ5_1 {
    type Act = BlockQ8_1;

    /// The AVX2 kernel when the ISA allows, else its scalar twin
    /// [`vec_dot_q5_1_q8_1_ref`] (the lane order of Q4_1; ggml's generic code differs
    /// from it by f32 rounding).
    #[inline]
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_legacy::vec_dot_q5_1_q8_1(w, a) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return unsafe { crate::simd::neon::vec_dot_q5_1_q8_1(w, a) };
        }
        vec_dot_q5_1_q8_1_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 {
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q5_1_q8_1(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_legacy::gemm_q5_1_q8_1(nb, w, a, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if crate::isa() == crate::Isa::Neon {
            // SAFETY: NEON is part of the aarch64 base ISA.
            return crate::gemm_with(nb, w, a, out, |w, a| unsafe {
                crate::simd::neon::vec_dot_q5_1_q8_1(w, a)
            });
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q5_1_q8_1_ref)
    }
}

/// Scalar twin of the SIMD `vec_dot_q4_1_q8_1`, in the same order: per block, eight lane
/// sums of four products (elements `4l..4l+4`) scaled into eight f32 accumulators with a
/// fused multiply-add, `m_w * s_a` summed apart; so the scalar and SIMD paths give
/// bit-identical results (and so does the reference engine's x86 kernel).
#[inline]
pub fn vec_dot_q4_1_q8_1_ref(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_1: row lengths differ");
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        summs += fp16_to_fp32(bw.m) * fp16_to_fp32(ba.s);
        let q = unpack_q4(&bw.qs, 0);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi: i32 = (4 * l..4 * l + 4)
                .map(|i| i32::from(q[i]) * i32::from(ba.qs[i]))
                .sum();
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc) + summs
}

/// Scalar twin of the SIMD `vec_dot_q4_0_q8_0`, in the same order (see
/// [`vec_dot_q4_1_q8_1_ref`]).
#[inline]
pub fn vec_dot_q4_0_q8_0_ref(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_0: row lengths differ");
    let mut acc = [0.0f32; 8];
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        let q = unpack_q4(&bw.qs, -8);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi: i32 = (4 * l..4 * l + 4)
                .map(|i| i32::from(q[i]) * i32::from(ba.qs[i]))
                .sum();
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc)
}

/// Scalar twin of the SIMD `vec_dot_q5_0_q8_0`, in the same order (see
/// [`vec_dot_q4_1_q8_1_ref`]): eight lane sums of four products per block, scaled by
/// `d_w * d_a` into eight f32 accumulators with a fused multiply-add.
#[inline]
pub fn vec_dot_q5_0_q8_0_ref(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_0: row lengths differ");
    let mut acc = [0.0f32; 8];
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        let q = unpack_q5(&bw.qs, &bw.qh, &QH_SPREAD_Q5_0);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi: i32 = (4 * l..4 * l + 4)
                .map(|i| i32::from(q[i]) * i32::from(ba.qs[i]))
                .sum();
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc)
}

/// Scalar twin of the SIMD `vec_dot_q5_1_q8_1`, in the order of
/// [`vec_dot_q4_1_q8_1_ref`].
#[inline]
pub fn vec_dot_q5_1_q8_1_ref(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_1: row lengths differ");
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let d = fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d);
        summs += fp16_to_fp32(bw.m) * fp16_to_fp32(ba.s);
        let q = unpack_q5(&bw.qs, &bw.qh, &QH_SPREAD_Q5_1);
        for (l, acc) in acc.iter_mut().enumerate() {
            let sumi: i32 = (4 * l..4 * l + 4)
                .map(|i| i32::from(q[i]) * i32::from(ba.qs[i]))
                .sum();
            *acc = d.mul_add(sumi as f32, *acc);
        }
    }
    hsum8(acc) + summs
}
