//! NEON dot products for aarch64 (NEON is part of the base ISA there, so nothing is
//! detected at run time): the legacy block types, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, against
//! their 8-bit activations (the default model, its output layer, and the types the K-quant
//! mixes fall back to).
//!
//! The functions are marked `#[target_feature(enable = "neon")]` so the intrinsics are
//! safe to call inside them; callers outside assert that NEON is there (it always is).
//!
//! Each is bit-identical to its scalar twin in `quants/`: the eight lane sums of a block
//! are exact integers (widening multiplies, pairwise adds; any grouping of an integer sum
//! is the same sum), and the f32 steps are the twin's: `d_w * d_a` as one scalar product,
//! one fused multiply-add per lane and block into eight accumulators (two registers of
//! four lanes: lanes 0..4, 4..8), then [`crate::quants::q8::hsum8`]'s order.

use std::arch::aarch64::*;

use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// `[sum of products of elements 4l..4l+4]` for `l` in 0..4 of 16 byte pairs.
#[inline]
#[target_feature(enable = "neon")]
fn quad_sums(w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a))); // pairs of 0..8
    let hi = vpaddlq_s16(vmull_high_s8(w, a)); // pairs of 8..16
    vpaddq_s32(lo, hi)
}

/// `[sum of products of elements 2l, 2l+1]` for `l` in 0..8 of 16 byte pairs, as lanes
/// 0..4 and 4..8.
#[inline]
#[target_feature(enable = "neon")]
fn pair_sums(w: int8x16_t, a: int8x16_t) -> (int32x4_t, int32x4_t) {
    (
        vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a))),
        vpaddlq_s16(vmull_high_s8(w, a)),
    )
}

/// The 32 nibbles of a 16-byte block in element order: low nibbles (elements 0..16),
/// then high (16..32).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: the load reads the block's 16 bytes.
    let b = unsafe { vld1q_u8(qs.as_ptr()) };
    (vandq_u8(b, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(b))
}

/// `acc += d * sumi` per lane, fused (the twin's `d.mul_add(sumi as f32, acc)`).
#[inline]
#[target_feature(enable = "neon")]
fn scale_add(acc: float32x4_t, d: f32, sumi: int32x4_t) -> float32x4_t {
    vfmaq_f32(acc, vcvtq_f32_s32(sumi), vdupq_n_f32(d))
}

/// The twin's horizontal sum of lanes 0..4 (`lo`) and 4..8 (`hi`): `l + l+4`, then
/// `(0+2) + (1+3)`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let s = vaddq_f32(lo, hi);
    (vgetq_lane_f32::<0>(s) + vgetq_lane_f32::<2>(s))
        + (vgetq_lane_f32::<1>(s) + vgetq_lane_f32::<3>(s))
}

/// Q4_1 × Q8_1, bit for bit [`crate::vec_dot_q4_1_q8_1_ref`].
///
/// # Safety
/// The CPU must support NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_1: row lengths differ");
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut summs = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let d = bw.d.to_f32() * ba.d.to_f32();
        summs += bw.m.to_f32() * ba.s.to_f32();
        // SAFETY: NEON is always present on aarch64; the loads read the blocks' 16- and
        // 32-byte arrays.
        unsafe {
            let (q_lo, q_hi) = nibbles(&bw.qs);
            let (q_lo, q_hi) = (vreinterpretq_s8_u8(q_lo), vreinterpretq_s8_u8(q_hi));
            lo = scale_add(lo, d, quad_sums(q_lo, vld1q_s8(ba.qs.as_ptr())));
            hi = scale_add(hi, d, quad_sums(q_hi, vld1q_s8(ba.qs.as_ptr().add(16))));
        }
    }
    hsum8(lo, hi) + summs
}

/// Q4_0 × Q8_0, bit for bit [`crate::vec_dot_q4_0_q8_0_ref`].
///
/// # Safety
/// The CPU must support NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q4_0: row lengths differ");
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (bw, ba) in w.iter().zip(a) {
        let d = bw.d.to_f32() * ba.d.to_f32();
        // SAFETY: as in `vec_dot_q4_1_q8_1`.
        unsafe {
            let (q_lo, q_hi) = nibbles(&bw.qs);
            let eight = vdupq_n_s8(8);
            let (q_lo, q_hi) = (
                vsubq_s8(vreinterpretq_s8_u8(q_lo), eight),
                vsubq_s8(vreinterpretq_s8_u8(q_hi), eight),
            );
            lo = scale_add(lo, d, quad_sums(q_lo, vld1q_s8(ba.qs.as_ptr())));
            hi = scale_add(hi, d, quad_sums(q_hi, vld1q_s8(ba.qs.as_ptr().add(16))));
        }
    }
    hsum8(lo, hi)
}

/// Q8_0 × Q8_0, bit for bit [`crate::vec_dot_q8_0_q8_0_ref`]: lane `l` sums elements
/// `4l..4l+4`.
///
/// # Safety
/// The CPU must support NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q8_0: row lengths differ");
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (bw, ba) in w.iter().zip(a) {
        let d = bw.d.to_f32() * ba.d.to_f32();
        // SAFETY: as in `vec_dot_q4_1_q8_1`.
        unsafe {
            let (w0, w1) = (vld1q_s8(bw.qs.as_ptr()), vld1q_s8(bw.qs.as_ptr().add(16)));
            let (a0, a1) = (vld1q_s8(ba.qs.as_ptr()), vld1q_s8(ba.qs.as_ptr().add(16)));
            let ((p0, p1), (p2, p3)) = (pair_sums(w0, a0), pair_sums(w1, a1));
            // Adjacent pair sums: elements 4l..4l+4, lanes 0..4 then 4..8.
            lo = scale_add(lo, d, vpaddq_s32(p0, p1));
            hi = scale_add(hi, d, vpaddq_s32(p2, p3));
        }
    }
    hsum8(lo, hi)
}

/// The 32 five-bit quants of a block in element order as two registers (elements 0..16,
/// 16..32): nibbles of `qs` (low, then high) with bit `j` of the little-endian `qh` as
/// bit 4 of element `j`.
#[inline]
#[target_feature(enable = "neon")]
fn quants5(qs: &[u8; 16], qh: &[u8; 4]) -> (uint8x16_t, uint8x16_t) {
    let (lo, hi) = nibbles(qs);
    let bits = vcombine_u8(
        vcreate_u8(0x8040_2010_0804_0201),
        vcreate_u8(0x8040_2010_0804_0201),
    );
    // Byte j of a half gets byte j/8 of its two qh bytes; its bit j % 8, tested, as 0x10.
    let fifth = |q0: u8, q1: u8| {
        vandq_u8(
            vtstq_u8(vcombine_u8(vdup_n_u8(q0), vdup_n_u8(q1)), bits),
            vdupq_n_u8(0x10),
        )
    };
    (
        vorrq_u8(lo, fifth(qh[0], qh[1])),
        vorrq_u8(hi, fifth(qh[2], qh[3])),
    )
}

/// Q5_0 × Q8_0, bit for bit [`crate::vec_dot_q5_0_q8_0_ref`].
///
/// # Safety
/// The CPU must support NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_0: row lengths differ");
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    for (bw, ba) in w.iter().zip(a) {
        let d = bw.d.to_f32() * ba.d.to_f32();
        let (q0, q1) = quants5(&bw.qs, &bw.qh);
        let sixteen = vdupq_n_s8(16);
        let (q0, q1) = (
            vsubq_s8(vreinterpretq_s8_u8(q0), sixteen),
            vsubq_s8(vreinterpretq_s8_u8(q1), sixteen),
        );
        // SAFETY: the loads read the block's 32 quants.
        let (a0, a1) = unsafe { (vld1q_s8(ba.qs.as_ptr()), vld1q_s8(ba.qs.as_ptr().add(16))) };
        lo = scale_add(lo, d, quad_sums(q0, a0));
        hi = scale_add(hi, d, quad_sums(q1, a1));
    }
    hsum8(lo, hi)
}

/// Q5_1 × Q8_1, bit for bit [`crate::vec_dot_q5_1_q8_1_ref`].
///
/// # Safety
/// The CPU must support NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), a.len(), "vec_dot q5_1: row lengths differ");
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut summs = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let d = bw.d.to_f32() * ba.d.to_f32();
        summs += bw.m.to_f32() * ba.s.to_f32();
        let (q0, q1) = quants5(&bw.qs, &bw.qh);
        // SAFETY: the loads read the block's 32 quants.
        let (a0, a1) = unsafe { (vld1q_s8(ba.qs.as_ptr()), vld1q_s8(ba.qs.as_ptr().add(16))) };
        lo = scale_add(lo, d, quad_sums(vreinterpretq_s8_u8(q0), a0));
        hi = scale_add(hi, d, quad_sums(vreinterpretq_s8_u8(q1), a1));
    }
    hsum8(lo, hi) + summs
}

/// NEON kernel of the output layer's product ([`crate::gemm_q8_0x16`]): per block,
/// sixteen rows' exact sums ([`quad_sums`] of four rows' four quants against the token's
/// four matching activations, repeated), then per row `(d_w * d_a) * sumi + acc` in one
/// rounding, as the twin ([`crate::vec_dot_q8_0_exact_ref`]).
///
/// # Safety
/// `nb > 0`, and `w` and `a` are whole rows of `nb` blocks.
#[target_feature(enable = "neon")]
pub unsafe fn gemm_q8_0x16<'o>(
    nb: usize,
    w: &[crate::BlockQ8_0x16],
    a: &[BlockQ8_0],
    out: impl crate::IntoGemmOut<'o>,
) {
    use crate::quants::float::fp16_to_fp32;
    use crate::Q8_0X16_ROWS;
    let mut out = out.into_gemm_out(w.len() / nb * Q8_0X16_ROWS, a.len() / nb);
    let bias = vdupq_n_u8(128);
    for (gi, group) in w.chunks_exact(nb).enumerate() {
        for (t, ar) in a.chunks_exact(nb).enumerate() {
            let mut acc = [vdupq_n_f32(0.0); 4];
            for (bw, ba) in group.iter().zip(ar) {
                let mut sumi = [vdupq_n_s32(0); 4];
                for k in 0..8 {
                    let y = vreinterpretq_s8_s32(vdupq_n_s32(std::ptr::read_unaligned(
                        ba.qs.as_ptr().add(4 * k).cast::<i32>(),
                    )));
                    for (c, s) in sumi.iter_mut().enumerate() {
                        // Rows 4c..4c+4, signed again.
                        let q = vreinterpretq_s8_u8(veorq_u8(
                            vld1q_u8(bw.qu.as_ptr().add(64 * k + 16 * c)),
                            bias,
                        ));
                        *s = vaddq_s32(*s, quad_sums(q, y));
                    }
                }
                let d_a = fp16_to_fp32(ba.d);
                for (c, acc) in acc.iter_mut().enumerate() {
                    let d: [f32; 4] = std::array::from_fn(|r| fp16_to_fp32(bw.d[4 * c + r]) * d_a);
                    *acc = vfmaq_f32(*acc, vld1q_f32(d.as_ptr()), vcvtq_f32_s32(sumi[c]));
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                let mut v = [0.0f32; 4];
                vst1q_f32(v.as_mut_ptr(), *acc);
                for (r, &v) in v.iter().enumerate() {
                    out.set(t, gi * Q8_0X16_ROWS + 4 * c + r, v);
                }
            }
        }
    }
}
