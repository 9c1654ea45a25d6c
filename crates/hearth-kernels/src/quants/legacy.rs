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
use super::q8::BlockQ8_1;
use crate::{Quantize, WeightBlock};

/// Values per Q4_1 block.
pub const QK4_1: usize = 32;

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

/// `sum_j q_j * a_j` where `q_j` are the 32 unsigned nibbles of `qs` (ggml order).
#[inline(always)]
fn dot_u4_i8(qs: &[u8; 16], a: &[i8; 32]) -> i32 {
    let (lo, hi) = a.split_at(16);
    let mut sumi = 0i32;
    for ((&q, &l), &h) in qs.iter().zip(lo).zip(hi) {
        sumi += i32::from(q & 0x0f) * i32::from(l) + i32::from(q >> 4) * i32::from(h);
    }
    sumi
}

impl Quantize for BlockQ4_1 {
    const QK: usize = QK4_1;

    /// ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
    /// `q = min(15, trunc((x - min) / d + 0.5))`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        assert_eq!(x.len(), y.len() * QK4_1, "quantize_row q4_1: length mismatch");
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
        assert_eq!(y.len(), x.len() * QK4_1, "dequantize_row q4_1: length mismatch");
        for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
            let d = fp16_to_fp32(xb.d);
            let m = fp16_to_fp32(xb.m);
            let (lo, hi) = yb.split_at_mut(QK4_1 / 2);
            for ((&q, o0), o1) in xb.qs.iter().zip(lo).zip(hi) {
                *o0 = f32::from(q & 0x0f) * d + m;
                *o1 = f32::from(q >> 4) * d + m;
            }
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    type Act = BlockQ8_1;

    /// ggml's `ggml_vec_dot_q4_1_q8_1_generic`: per block
    /// `(d_w * d_a) * sumi + m_w * s_a` in f32.
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32 {
        assert_eq!(w.len(), a.len(), "vec_dot q4_1: row lengths differ");
        let mut sumf = 0.0f32;
        for (bw, ba) in w.iter().zip(a) {
            let sumi = dot_u4_i8(&bw.qs, &ba.qs);
            sumf += (fp16_to_fp32(bw.d) * fp16_to_fp32(ba.d)) * sumi as f32
                + fp16_to_fp32(bw.m) * fp16_to_fp32(ba.s);
        }
        sumf
    }
}
