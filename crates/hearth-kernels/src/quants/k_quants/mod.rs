//! K-quants: ggml's "super-block" formats Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the Q8_K
//! activation format they are dotted with.
//!
//! Every K-quant block covers [`QK_K`] = 256 values, split into sub-blocks that each carry
//! a small integer scale (and, for the "affine" types Q2_K/Q4_K/Q5_K, an integer min);
//! those small scales are in turn multiplied by one or two f16 super-block scales
//! (`d`, `dmin`). The structs below are `#[repr(C)]` with ggml's field names and order,
//! so a slice of them can be read straight out of a GGUF tensor.
//!
//! The code is a scalar reference that reproduces ggml bit for bit:
//! - `quantize_row` is ggml's `quantize_row_qX_K_ref` (the deterministic reference
//!   quantizer used to create model files without an importance matrix): the same
//!   scale searches (`make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`) with the
//!   same constants, the same round-half-to-even `nearest_int`, and the same packing;
//! - `dequantize_row` is ggml's `dequantize_row_qX_K`, evaluated in the same order;
//! - `vec_dot` is ggml's generic `ggml_vec_dot_qX_K_q8_K`: exact integer sums per
//!   sub-block, the `dmin * bsums` correction for the affine types, and f32
//!   accumulation in eight lanes (element index mod 8) exactly as the C code does.
//!
//! Bit-exactness with a C build holds when the C compiler does not contract `a*b + c`
//! into fused multiply-adds (plain x86-64 builds; an `-march=native` build with FMA may
//! differ in the last bit of some values). Rust never contracts.

use half::f16;

use super::q8::hsum8;
use crate::{Quantize, WeightBlock};

mod search;

use search::{make_q3_quants, make_qkx2_quants, make_qx_quants, nearest_int, Qkx2};

/// Values per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q3_K, Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

// ---------------------------------------------------------------------------------------
// Block layouts
// ---------------------------------------------------------------------------------------

/// 2-bit affine K-quant, 2.625 bits per weight.
///
/// 16 sub-blocks of 16 values. Value `i` is
/// `d * (scales[i/16] & 0xF) * q - dmin * (scales[i/16] >> 4)` with `q` in `0..=3`:
/// each `scales` byte holds a 4-bit scale (low nibble) and a 4-bit min (high nibble).
/// `qs` packs four 2-bit values per byte: within each half of 128 values, value
/// `128*h + 32*k + l` (`l < 32`) sits in bits `2k..2k+2` of `qs[32*h + l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ2_K {
    /// Per sub-block: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ2_K>() == 2 * 2 + QK_K / 16 + QK_K / 4);
const _: () = assert!(core::mem::size_of::<BlockQ2_K>() == 84);

/// 3-bit symmetric K-quant, 3.4375 bits per weight.
///
/// 16 sub-blocks of 16 values. Value `i` is `d * (s[i/16] - 32) * (q - 4)`, where `q` is
/// 3 bits: the low 2 bits are packed in `qs` as in Q2_K (value `128*h + 32*k + l` in
/// bits `2k..2k+2` of `qs[32*h + l]`) and the high bit is bit `i/32` of `hmask[i % 32]`.
/// The 16 six-bit scales `s` are packed in `scales` (12 bytes): the low nibble of
/// `s[j]` is the low nibble of `scales[j]` for `j < 8` and the high nibble of
/// `scales[j-8]` for `j >= 8`; its top 2 bits are bits `2*(j/4)..` of `scales[8 + j%4]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ3_K {
    /// High bit of each quant: bit `i/32` of byte `i % 32`.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each quant, four per byte.
    pub qs: [u8; QK_K / 4],
    /// 16 six-bit scales (biased by 32), packed in 12 bytes.
    pub scales: [u8; K_SCALE_SIZE],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ3_K>() == 2 + QK_K / 4 + QK_K / 8 + 12);
const _: () = assert!(core::mem::size_of::<BlockQ3_K>() == 110);

/// 4-bit affine K-quant, 4.5 bits per weight (the bulk of a Q4_K_M model).
///
/// 8 sub-blocks of 32 values. Value `i` is `d * sc[i/32] * q - dmin * m[i/32]` with `q`
/// in `0..=15`. Within each group of 64 values, value `64*g + l` (`l < 32`) is the low
/// nibble of `qs[32*g + l]` and value `64*g + 32 + l` its high nibble.
/// The eight 6-bit scales `sc` and mins `m` are packed in `scales` (12 bytes) as ggml's
/// `get_scale_min_k4` reads them: for `j < 4`, `sc[j] = scales[j] & 63` and
/// `m[j] = scales[j+4] & 63`; for `j >= 4`, the low 4 bits come from the nibbles of
/// `scales[j+4]` (scale low, min high) and the top 2 bits from bits 6..8 of
/// `scales[j-4]` (scale) and `scales[j]` (min).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ4_K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed in 12 bytes.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants, two per byte.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_K>() == 2 * 2 + K_SCALE_SIZE + QK_K / 2);
const _: () = assert!(core::mem::size_of::<BlockQ4_K>() == 144);

/// 5-bit affine K-quant, 5.5 bits per weight.
///
/// As [`BlockQ4_K`] (8 sub-blocks of 32, same scale/min packing, same nibble layout in
/// `qs`), plus a fifth bit per value: value `i` has `q = nibble + 16 * bit`, where the
/// bit is bit `i/32` of `qh[i % 32]`. Value `i` is `d * sc[i/32] * q - dmin * m[i/32]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ5_K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bit of each quant: bit `i/32` of byte `i % 32`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of each quant, two per byte.
    pub qs: [u8; QK_K / 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ5_K>() == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8);
const _: () = assert!(core::mem::size_of::<BlockQ5_K>() == 176);

/// 6-bit symmetric K-quant, 6.5625 bits per weight.
///
/// 16 sub-blocks of 16 values, each with a signed 8-bit scale. Value `i` is
/// `d * scales[i/16] * (q - 32)` with `q` in `0..=63`. Within each half `h` of 128
/// values, for `l < 32`:
/// - value `128h + l`: low nibble of `ql[64h + l]`, bits 0..2 of `qh[32h + l]`;
/// - value `128h + 32 + l`: low nibble of `ql[64h + 32 + l]`, bits 2..4 of `qh[32h + l]`;
/// - value `128h + 64 + l`: high nibble of `ql[64h + l]`, bits 4..6 of `qh[32h + l]`;
/// - value `128h + 96 + l`: high nibble of `ql[64h + 32 + l]`, bits 6..8 of `qh[32h + l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ6_K {
    /// Low 4 bits of each quant.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of each quant.
    pub qh: [u8; QK_K / 4],
    /// Per sub-block signed scale.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ6_K>() == 2 + QK_K / 16 + 3 * QK_K / 4);
const _: () = assert!(core::mem::size_of::<BlockQ6_K>() == 210);

/// 8-bit activation format for the K-quant dot products (ggml's `vec_dot_type` of
/// every K-quant).
///
/// Value `i` is `d * qs[i]`; `d` is a full f32. `bsums[j]` is the sum of
/// `qs[16*j..16*j + 16]`, which the affine types use to apply their mins without
/// touching every value.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[allow(non_camel_case_types)]
pub struct BlockQ8_K {
    /// Scale.
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_K>() == 4 + QK_K + QK_K / 16 * 2);
const _: () = assert!(core::mem::size_of::<BlockQ8_K>() == 292);

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a
/// Q4_K/Q5_K block.
#[inline(always)]
fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All eight `(scale, min)` pairs of a Q4_K/Q5_K block.
#[inline(always)]
fn scales_mins_k4(q: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = get_scale_min_k4(j, q);
    }
    (sc, m)
}

/// Packs eight 6-bit scales and mins in the Q4_K/Q5_K layout (inverse of
/// [`get_scale_min_k4`]), the way ggml's reference quantizers write them.
fn pack_scales_mins_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The 16 six-bit scales of a Q3_K block, minus their bias of 32.
#[inline(always)]
fn q3_k_scales(s: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Sum over the 256 positions of `scale[p / SUB] * a[p] * q8[p]`, split into eight
/// integer lanes by `p % 8` — the lanes of ggml's generic K-quant dot products. All
/// arithmetic is exact in i32 for every valid block, so only the lane split matters.
#[inline(always)]
fn scaled_lanes<const SUB: usize>(a: &[i8; QK_K], q8: &[i8; QK_K], scales: &[i32]) -> [i32; 8] {
    let mut acc = [0i32; 8];
    for ((ac, qc), &sc) in a.chunks_exact(SUB).zip(q8.chunks_exact(SUB)).zip(scales) {
        let mut s = [0i32; 8];
        for (a8, q8c) in ac.chunks_exact(8).zip(qc.chunks_exact(8)) {
            for l in 0..8 {
                s[l] += i32::from(a8[l]) * i32::from(q8c[l]);
            }
        }
        for l in 0..8 {
            acc[l] += sc * s[l];
        }
    }
    acc
}

/// Splits a row into super-blocks of 256 as fixed-size arrays.
#[inline(always)]
fn blocks_of(x: &[f32]) -> impl Iterator<Item = &[f32; QK_K]> {
    x.chunks_exact(QK_K)
        .map(|c| c.try_into().expect("chunk of QK_K"))
}

/// Splits an output row into super-blocks of 256 as fixed-size arrays.
#[inline(always)]
fn blocks_of_mut(y: &mut [f32]) -> impl Iterator<Item = &mut [f32; QK_K]> {
    y.chunks_exact_mut(QK_K)
        .map(|c| c.try_into().expect("chunk of QK_K"))
}

#[inline(always)]
fn sub16(x: &[f32; QK_K], j: usize) -> &[f32; 16] {
    x[16 * j..16 * j + 16].try_into().expect("16 values")
}

#[inline(always)]
fn sub32(x: &[f32; QK_K], j: usize) -> &[f32; 32] {
    x[32 * j..32 * j + 32].try_into().expect("32 values")
}

fn check_quant_lens(name: &str, nx: usize, ny: usize) {
    assert_eq!(
        nx,
        ny * QK_K,
        "{name}: {nx} values for {ny} blocks of {QK_K}"
    );
}

/// Packs 256 2-bit values (`0..=3`) the Q2_K/Q3_K way.
#[inline(always)]
fn pack_2bit(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for h in 0..2 {
        for i in 0..32 {
            let b = 128 * h + i;
            qs[32 * h + i] = l[b] | (l[b + 32] << 2) | (l[b + 64] << 4) | (l[b + 96] << 6);
        }
    }
    qs
}

/// Unpacks the Q2_K/Q3_K 2-bit layout into 256 values in `0..=3`.
#[inline(always)]
fn unpack_2bit(qs: &[u8; QK_K / 4]) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for (half, q) in out.chunks_exact_mut(128).zip(qs.chunks_exact(32)) {
        for (k, o) in half.chunks_exact_mut(32).enumerate() {
            let shift = 2 * k;
            for (o, &b) in o.iter_mut().zip(q) {
                *o = ((b >> shift) & 3) as i8;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Q8_K
// ---------------------------------------------------------------------------------------

impl BlockQ8_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        let max = super::signed_absmax(x);
        let amax = max.abs();
        // ggml leaves `bsums` untouched for an all-zero block; here they are zero.
        let mut b = <Self as bytemuck::Zeroable>::zeroed();
        if amax == 0.0 {
            return b;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| i16::from(v)).sum();
        }
        b.d = 1.0 / iscale;
        b
    }
}

impl Quantize for BlockQ8_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q8_K_ref`: `d = max / -127` where `max` is the signed value
    /// of largest magnitude, `qs = min(127, nearest_int(x / d))`, plus the 16 group sums.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q8_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q8_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            for (o, &q) in yb.iter_mut().zip(&b.qs) {
                *o = b.d * f32::from(q);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Q2_K
// ---------------------------------------------------------------------------------------

impl BlockQ2_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        const Q4SCALE: f32 = 15.0;
        const P: Qkx2 = Qkx2 {
            nmax: 3,
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
            use_mad: true,
        };
        let mut l_all = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..16 {
            let xs = sub16(x, j);
            let weights = xs.map(f32::abs);
            let lj: &mut [u8; 16] = (&mut l_all[16 * j..16 * j + 16]).try_into().unwrap();
            (scales[j], mins[j]) = make_qkx2_quants(&P, xs, &weights, lj);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        let mut b = <Self as bytemuck::Zeroable>::zeroed();
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (s, &sc) in b.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * sc) as u8;
            }
            b.d = f16::from_f32(max_scale / Q4SCALE);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (s, &m) in b.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * m) << 4) as u8;
            }
            b.dmin = f16::from_f32(max_min / Q4SCALE);
        }
        let d_all = b.d.to_f32();
        let m_all = b.dmin.to_f32();
        for j in 0..16 {
            let d = d_all * f32::from(b.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let dm = m_all * f32::from(b.scales[j] >> 4);
            for (o, &v) in l_all[16 * j..16 * j + 16].iter_mut().zip(sub16(x, j)) {
                *o = nearest_int((v + dm) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_2bit(&l_all);
        b
    }

    fn dequantize_block(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        let q = unpack_2bit(&self.qs);
        for ((ys, qs), &sc) in y
            .chunks_exact_mut(16)
            .zip(q.chunks_exact(16))
            .zip(&self.scales)
        {
            let dl = d * f32::from(sc & 0xF);
            let ml = min * f32::from(sc >> 4);
            for (o, &v) in ys.iter_mut().zip(qs) {
                *o = dl * f32::from(v) - ml;
            }
        }
    }
}

impl Quantize for BlockQ2_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q2_K_ref`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q2_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    /// ggml's `dequantize_row_q2_K`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q2_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            b.dequantize_block(yb);
        }
    }
}

impl WeightBlock for BlockQ2_K {
    type Act = BlockQ8_K;

    /// The AVX2 kernel when the ISA allows, else its scalar twin [`vec_dot_q2_k_q8_k_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::vec_dot_q2_k_q8_k(w, a) };
        }
        vec_dot_q2_k_q8_k_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::gemm_q2_k_q8_k(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q2_k_q8_k_ref)
    }
}

impl BlockQ2_K {
    /// ggml's `ggml_vec_dot_q2_K_q8_K_generic`, kept as a test oracle: per block,
    /// `sum += (a.d * d) * isum - (a.d * dmin) * sum_j bsums[j] * min[j]`.
    pub fn vec_dot_generic(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "Q2_K vec_dot: block counts differ");
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            let mut summs = 0i32;
            for (&bs, &sc) in y.bsums.iter().zip(&x.scales) {
                summs += i32::from(bs) * i32::from(sc >> 4);
            }
            let dall = y.d * x.d.to_f32();
            let dmin = y.d * x.dmin.to_f32();
            let q = unpack_2bit(&x.qs);
            let sc = x.scales.map(|s| i32::from(s & 0xF));
            let isum: i32 = scaled_lanes::<16>(&q, &y.qs, &sc).iter().sum();
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }
}

// ---------------------------------------------------------------------------------------
// Q3_K
// ---------------------------------------------------------------------------------------

impl BlockQ3_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        let mut l_all = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..16 {
            let lj: &mut [i8; 16] = (&mut l_all[16 * j..16 * j + 16]).try_into().unwrap();
            scales[j] = make_q3_quants(4, sub16(x, j), lj);
            let a = scales[j].abs();
            if a > amax {
                amax = a;
                max_scale = scales[j];
            }
        }

        let mut b = <Self as bytemuck::Zeroable>::zeroed();
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &sc) in scales.iter().enumerate() {
                let l = i32::from(nearest_int(iscale * sc) as i8).clamp(-32, 31) + 32;
                if j < 8 {
                    b.scales[j] = (l & 0xF) as u8;
                } else {
                    b.scales[j - 8] |= ((l & 0xF) << 4) as u8;
                }
                b.scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
            }
            b.d = f16::from_f32(1.0 / iscale);
        }

        let d_all = b.d.to_f32();
        for (j, &sc) in q3_k_scales(&b.scales).iter().enumerate() {
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            for (o, &v) in l_all[16 * j..16 * j + 16].iter_mut().zip(sub16(x, j)) {
                *o = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
            }
        }

        // High bit of value j goes to bit j/32 of hmask[j % 32]; the rest is 2-bit packed.
        let mut low = [0u8; QK_K];
        for (j, (&l, lo)) in l_all.iter().zip(low.iter_mut()).enumerate() {
            let mut l = l as u8;
            if l > 3 {
                b.hmask[j % 32] |= 1 << (j / 32);
                l -= 4;
            }
            *lo = l;
        }
        b.qs = pack_2bit(&low);
        b
    }

    /// The 256 quants as signed values in `-4..=3`.
    #[inline(always)]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = unpack_2bit(&self.qs);
        for (k, chunk) in q.chunks_exact_mut(32).enumerate() {
            let m = 1u8 << k;
            for (v, &h) in chunk.iter_mut().zip(&self.hmask) {
                *v -= if h & m != 0 { 0 } else { 4 };
            }
        }
        q
    }

    fn dequantize_block(&self, y: &mut [f32; QK_K]) {
        let d_all = self.d.to_f32();
        let q = self.quants();
        let sc = q3_k_scales(&self.scales);
        for ((ys, qs), &s) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).zip(&sc) {
            let dl = d_all * f32::from(s);
            for (o, &v) in ys.iter_mut().zip(qs) {
                *o = dl * f32::from(v);
            }
        }
    }
}

impl Quantize for BlockQ3_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q3_K_ref`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q3_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    /// ggml's `dequantize_row_q3_K`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q3_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            b.dequantize_block(yb);
        }
    }
}

impl WeightBlock for BlockQ3_K {
    type Act = BlockQ8_K;

    /// The AVX2 kernel when the ISA allows, else its scalar twin [`vec_dot_q3_k_q8_k_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::vec_dot_q3_k_q8_k(w, a) };
        }
        vec_dot_q3_k_q8_k_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::gemm_q3_k_q8_k(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q3_k_q8_k_ref)
    }
}

impl BlockQ3_K {
    /// ggml's `ggml_vec_dot_q3_K_q8_K_generic`, kept as a test oracle: eight f32 lanes,
    /// each accumulating `(d * a.d) * lane_isum` over the blocks, summed at the end.
    pub fn vec_dot_generic(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "Q3_K vec_dot: block counts differ");
        let mut sums = [0.0f32; 8];
        for (x, y) in w.iter().zip(a) {
            let q = x.quants();
            let sc = q3_k_scales(&x.scales).map(i32::from);
            let lanes = scaled_lanes::<16>(&q, &y.qs, &sc);
            let d = x.d.to_f32() * y.d;
            for (s, &l) in sums.iter_mut().zip(&lanes) {
                *s += d * l as f32;
            }
        }
        sums.iter().fold(0.0f32, |acc, &s| acc + s)
    }
}

// ---------------------------------------------------------------------------------------
// Q4_K and Q5_K (shared scale search)
// ---------------------------------------------------------------------------------------

/// The first half of ggml's Q4_K/Q5_K reference quantizers: per sub-block of 32, an
/// affine `make_qkx2_quants` fit weighted by `rms(x) + |x|`; then the scales and mins are
/// quantized to 6 bits against the block maxima and the values requantized with the
/// rounded scales. Returns `(d, dmin, packed scales, L)` with `L` in `0..=nmax`.
fn quantize_k4_affine(x: &[f32; QK_K], p: &Qkx2) -> (f16, f16, [u8; K_SCALE_SIZE], [u8; QK_K]) {
    let mut l_all = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = sub32(x, j);
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights = xs.map(|v| av_x + v.abs());
        let lj: &mut [u8; 32] = (&mut l_all[32 * j..32 * j + 32]).try_into().unwrap();
        (scales[j], mins[j]) = make_qkx2_quants(p, xs, &weights, lj);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // The conversion to u8 wraps as C's does before the clamp to 63.
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    let packed = pack_scales_mins_k4(&ls, &lm);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);

    let nmax = p.nmax;
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = d.to_f32() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for (o, &v) in l_all[32 * j..32 * j + 32].iter_mut().zip(sub32(x, j)) {
            *o = nearest_int((v + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l_all)
}

/// Shared tail of the Q4_K/Q5_K dot products (ggml's generic code): `q` holds the 256
/// unsigned quants of one block. Adds the eight lane sums into `sums` and returns
/// the min correction `dmin * a.d * sum_j bsums[j] * m[j/2]` (to subtract).
#[inline(always)]
fn k4_block_dot(
    d: f16,
    dmin: f16,
    scales: &[u8; K_SCALE_SIZE],
    q: &[i8; QK_K],
    y: &BlockQ8_K,
    sums: &mut [f32; 8],
) -> f32 {
    let (sc, m) = scales_mins_k4(scales);
    let mut sumi = 0i32;
    for (j, &bs) in y.bsums.iter().enumerate() {
        sumi += i32::from(bs) * i32::from(m[j / 2]);
    }
    let lanes = scaled_lanes::<32>(q, &y.qs, &sc.map(i32::from));
    let dd = d.to_f32() * y.d;
    for (s, &l) in sums.iter_mut().zip(&lanes) {
        *s += dd * l as f32;
    }
    dmin.to_f32() * y.d * sumi as f32
}

// ---------------------------------------------------------------------------------------
// Q4_K
// ---------------------------------------------------------------------------------------

impl BlockQ4_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        const P: Qkx2 = Qkx2 {
            nmax: 15,
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
            use_mad: false,
        };
        let (d, dmin, scales, l) = quantize_k4_affine(x, &P);
        let mut qs = [0u8; QK_K / 2];
        for (q, lg) in qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
            let (lo, hi) = lg.split_at(32);
            for ((q, &a), &b) in q.iter_mut().zip(lo).zip(hi) {
                *q = a | (b << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
            qs,
        }
    }

    /// The 256 quants in `0..=15`.
    #[inline(always)]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (out, qs) in q.chunks_exact_mut(64).zip(self.qs.chunks_exact(32)) {
            let (lo, hi) = out.split_at_mut(32);
            for ((l, h), &b) in lo.iter_mut().zip(hi.iter_mut()).zip(qs) {
                *l = (b & 0xF) as i8;
                *h = (b >> 4) as i8;
            }
        }
        q
    }

    fn dequantize_block(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        let (sc, m) = scales_mins_k4(&self.scales);
        for (g, (ys, qs)) in y
            .chunks_exact_mut(64)
            .zip(self.qs.chunks_exact(32))
            .enumerate()
        {
            let d1 = d * f32::from(sc[2 * g]);
            let m1 = min * f32::from(m[2 * g]);
            let d2 = d * f32::from(sc[2 * g + 1]);
            let m2 = min * f32::from(m[2 * g + 1]);
            let (lo, hi) = ys.split_at_mut(32);
            for ((l, h), &b) in lo.iter_mut().zip(hi.iter_mut()).zip(qs) {
                *l = d1 * f32::from(b & 0xF) - m1;
                *h = d2 * f32::from(b >> 4) - m2;
            }
        }
    }
}

impl Quantize for BlockQ4_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q4_K_ref`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q4_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    /// ggml's `dequantize_row_q4_K`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q4_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            b.dequantize_block(yb);
        }
    }
}

impl WeightBlock for BlockQ4_K {
    type Act = BlockQ8_K;

    /// The AVX2 kernel when the ISA allows, else its scalar twin [`vec_dot_q4_k_q8_k_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::vec_dot_q4_k_q8_k(w, a) };
        }
        vec_dot_q4_k_q8_k_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 && a.len() > nb {
            // (Batches only: for one token the AVX2 tile measured 5% faster.)
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q4_k_q8_k(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::gemm_q4_k_q8_k(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q4_k_q8_k_ref)
    }
}

impl BlockQ4_K {
    /// ggml's `ggml_vec_dot_q4_K_q8_K_generic`, kept as a test oracle: eight f32 lanes of
    /// `(d * a.d) * lane_isum`, a running `-(dmin * a.d) * sum(bsums * mins)`, and the
    /// lanes added to it at the end.
    pub fn vec_dot_generic(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "Q4_K vec_dot: block counts differ");
        let mut sums = [0.0f32; 8];
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            sumf -= k4_block_dot(x.d, x.dmin, &x.scales, &x.quants(), y, &mut sums);
        }
        sums.iter().fold(sumf, |acc, &s| acc + s)
    }
}

// ---------------------------------------------------------------------------------------
// Q5_K
// ---------------------------------------------------------------------------------------

impl BlockQ5_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        const P: Qkx2 = Qkx2 {
            nmax: 31,
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
            use_mad: false,
        };
        let (d, dmin, scales, l) = quantize_k4_affine(x, &P);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for (g, (q, lg)) in qs.chunks_exact_mut(32).zip(l.chunks_exact(64)).enumerate() {
            let (lo, hi) = lg.split_at(32);
            let (m1, m2) = (1u8 << (2 * g), 2u8 << (2 * g));
            for (i, ((q, &a), &b)) in q.iter_mut().zip(lo).zip(hi).enumerate() {
                let mut a = a;
                let mut b = b;
                if a > 15 {
                    a -= 16;
                    qh[i] |= m1;
                }
                if b > 15 {
                    b -= 16;
                    qh[i] |= m2;
                }
                *q = a | (b << 4);
            }
        }
        Self {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }

    /// The 256 quants in `0..=31`.
    #[inline(always)]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (g, (out, qs)) in q
            .chunks_exact_mut(64)
            .zip(self.qs.chunks_exact(32))
            .enumerate()
        {
            let (lo, hi) = out.split_at_mut(32);
            let (m1, m2) = (1u8 << (2 * g), 2u8 << (2 * g));
            for (((l, h), &b), &hb) in lo.iter_mut().zip(hi.iter_mut()).zip(qs).zip(&self.qh) {
                *l = ((b & 0xF) + if hb & m1 != 0 { 16 } else { 0 }) as i8;
                *h = ((b >> 4) + if hb & m2 != 0 { 16 } else { 0 }) as i8;
            }
        }
        q
    }

    fn dequantize_block(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        let (sc, m) = scales_mins_k4(&self.scales);
        let q = self.quants();
        for ((ys, qs), (&s, &mm)) in y
            .chunks_exact_mut(32)
            .zip(q.chunks_exact(32))
            .zip(sc.iter().zip(&m))
        {
            let dl = d * f32::from(s);
            let ml = min * f32::from(mm);
            for (o, &v) in ys.iter_mut().zip(qs) {
                *o = dl * f32::from(v) - ml;
            }
        }
    }
}

impl Quantize for BlockQ5_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q5_K_ref`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q5_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    /// ggml's `dequantize_row_q5_K`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q5_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            b.dequantize_block(yb);
        }
    }
}

impl WeightBlock for BlockQ5_K {
    type Act = BlockQ8_K;

    /// The AVX2 kernel when the ISA allows, else its scalar twin [`vec_dot_q5_k_q8_k_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::vec_dot_q5_k_q8_k(w, a) };
        }
        vec_dot_q5_k_q8_k_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 && a.len() > nb {
            // (Batches only: for one token the AVX2 tile measured 5% faster.)
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q5_k_q8_k(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::gemm_q5_k_q8_k(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q5_k_q8_k_ref)
    }
}

impl BlockQ5_K {
    /// ggml's `ggml_vec_dot_q5_K_q8_K_generic` (same accumulation as Q4_K), kept as a
    /// test oracle.
    pub fn vec_dot_generic(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "Q5_K vec_dot: block counts differ");
        let mut sums = [0.0f32; 8];
        let mut sumf = 0.0f32;
        for (x, y) in w.iter().zip(a) {
            sumf -= k4_block_dot(x.d, x.dmin, &x.scales, &x.quants(), y, &mut sums);
        }
        sums.iter().fold(sumf, |acc, &s| acc + s)
    }
}

// ---------------------------------------------------------------------------------------
// Q6_K
// ---------------------------------------------------------------------------------------

impl BlockQ6_K {
    fn quantize_block(x: &[f32; QK_K]) -> Self {
        let mut l_all = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for j in 0..16 {
            let lj: &mut [i8; 16] = (&mut l_all[16 * j..16 * j + 16]).try_into().unwrap();
            scales[j] = make_qx_quants(32, sub16(x, j), lj);
            let a = scales[j].abs();
            if a > max_abs_scale {
                max_abs_scale = a;
                max_scale = scales[j];
            }
        }

        let mut b = <Self as bytemuck::Zeroable>::zeroed();
        if max_abs_scale < GROUP_MAX_EPS {
            return b;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16::from_f32(1.0 / iscale);
        for (s, &sc) in b.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * sc).min(127) as i8;
        }
        let d_all = b.d.to_f32();
        for j in 0..16 {
            let d = d_all * f32::from(b.scales[j]);
            if d == 0.0 {
                continue;
            }
            for (o, &v) in l_all[16 * j..16 * j + 16].iter_mut().zip(sub16(x, j)) {
                *o = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
            }
        }

        for (h, lh) in l_all.chunks_exact(128).enumerate() {
            for l in 0..32 {
                let q = [
                    lh[l] as u8,
                    lh[l + 32] as u8,
                    lh[l + 64] as u8,
                    lh[l + 96] as u8,
                ];
                b.ql[64 * h + l] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                b.ql[64 * h + l + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                b.qh[32 * h + l] =
                    (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        b
    }

    /// The 256 quants as signed values in `-32..=31`.
    #[inline(always)]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for ((out, ql), qh) in q
            .chunks_exact_mut(128)
            .zip(self.ql.chunks_exact(64))
            .zip(self.qh.chunks_exact(32))
        {
            let (ql0, ql1) = ql.split_at(32);
            let (o01, o23) = out.split_at_mut(64);
            let (o0, o1) = o01.split_at_mut(32);
            let (o2, o3) = o23.split_at_mut(32);
            for l in 0..32 {
                let h = qh[l];
                o0[l] = ((ql0[l] & 0xF) | ((h & 3) << 4)) as i8 - 32;
                o1[l] = ((ql1[l] & 0xF) | (((h >> 2) & 3) << 4)) as i8 - 32;
                o2[l] = ((ql0[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
                o3[l] = ((ql1[l] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        q
    }

    fn dequantize_block(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        let q = self.quants();
        for ((ys, qs), &sc) in y
            .chunks_exact_mut(16)
            .zip(q.chunks_exact(16))
            .zip(&self.scales)
        {
            let ds = d * f32::from(sc);
            for (o, &v) in ys.iter_mut().zip(qs) {
                *o = ds * f32::from(v);
            }
        }
    }
}

impl Quantize for BlockQ6_K {
    const QK: usize = QK_K;

    /// ggml's `quantize_row_q6_K_ref`.
    fn quantize_row(x: &[f32], y: &mut [Self]) {
        check_quant_lens("Q6_K", x.len(), y.len());
        for (b, xb) in y.iter_mut().zip(blocks_of(x)) {
            *b = Self::quantize_block(xb);
        }
    }

    /// ggml's `dequantize_row_q6_K`.
    fn dequantize_row(x: &[Self], y: &mut [f32]) {
        check_quant_lens("Q6_K", y.len(), x.len());
        for (b, yb) in x.iter().zip(blocks_of_mut(y)) {
            b.dequantize_block(yb);
        }
    }
}

impl WeightBlock for BlockQ6_K {
    type Act = BlockQ8_K;

    /// The AVX2 kernel when the ISA allows, else its scalar twin [`vec_dot_q6_k_q8_k_ref`].
    #[inline]
    fn vec_dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::vec_dot_q6_k_q8_k(w, a) };
        }
        vec_dot_q6_k_q8_k_ref(w, a)
    }

    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl crate::IntoGemmOut<'o>) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx512 && a.len() > nb {
            // (Batches only: one token keeps the AVX2 tile, as for Q4_K.)
            // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
            // when the CPU has them.
            return unsafe { crate::simd::x86_avx512::gemm_q6_k_q8_k(nb, w, a, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            // SAFETY: `isa()` reports AVX2 (with FMA and F16C) only when the CPU has them.
            return unsafe { crate::simd::x86_kquants::gemm_q6_k_q8_k(nb, w, a, out) };
        }
        crate::gemm_with(nb, w, a, out, vec_dot_q6_k_q8_k_ref)
    }
}

impl BlockQ6_K {
    /// ggml's `ggml_vec_dot_q6_K_q8_K_generic` (same accumulation as Q3_K), kept as a
    /// test oracle.
    pub fn vec_dot_generic(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "Q6_K vec_dot: block counts differ");
        let mut sums = [0.0f32; 8];
        for (x, y) in w.iter().zip(a) {
            let q = x.quants();
            let sc = x.scales.map(i32::from);
            let lanes = scaled_lanes::<16>(&q, &y.qs, &sc);
            let d = x.d.to_f32() * y.d;
            for (s, &l) in sums.iter_mut().zip(&lanes) {
                *s += d * l as f32;
            }
        }
        sums.iter().fold(0.0f32, |acc, &s| acc + s)
    }
}

// ---------------------------------------------------------------------------------------
// Scalar twins of the AVX2 kernels (`simd/x86_kquants.rs`)
// ---------------------------------------------------------------------------------------

/// The eight 6-bit scales and mins of a Q4_K/Q5_K block (for the SIMD kernels).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn k4_scales_mins(q: &[u8; K_SCALE_SIZE]) -> ([u8; 8], [u8; 8]) {
    scales_mins_k4(q)
}

/// The SIMD kernels' integer lanes: lane `l` sums, over the 32-value chunks `c`,
/// `scale(c, l) * sum_{i < 4} q[32c + 4l + i] * a[32c + 4l + i]` (exact in i32).
#[inline(always)]
fn chunk_lanes(q: &[i8; QK_K], a: &[i8; QK_K], scale: impl Fn(usize, usize) -> i32) -> [i32; 8] {
    let mut sumi = [0i32; 8];
    for c in 0..QK_K / 32 {
        for (l, s) in sumi.iter_mut().enumerate() {
            let base = 32 * c + 4 * l;
            let p: i32 = (base..base + 4)
                .map(|i| i32::from(q[i]) * i32::from(a[i]))
                .sum();
            *s += scale(c, l) * p;
        }
    }
    sumi
}

/// Q5_K twin body: `acc[l] += (a.d * d) * sumi[l]` (fused), and
/// `acc_m[k] += (-a.d * dmin) * (m[2k] s[2k] + m[2k+1] s[2k+1])` (fused), `s[j]` the sum
/// of `bsums[2j], bsums[2j+1]`.
#[inline(always)]
fn k4_twin_block(
    d: f16,
    dmin: f16,
    scales: &[u8; K_SCALE_SIZE],
    q: &[i8; QK_K],
    y: &BlockQ8_K,
    acc: &mut [f32; 8],
    acc_m: &mut [f32; 4],
) {
    let dd = y.d * super::float::fp16_to_fp32(d);
    let dm = -y.d * super::float::fp16_to_fp32(dmin);
    let (sc, m) = scales_mins_k4(scales);
    let s: [i32; 8] =
        std::array::from_fn(|j| i32::from(y.bsums[2 * j]) + i32::from(y.bsums[2 * j + 1]));
    for (k, am) in acc_m.iter_mut().enumerate() {
        let p = i32::from(m[2 * k]) * s[2 * k] + i32::from(m[2 * k + 1]) * s[2 * k + 1];
        *am = dm.mul_add(p as f32, *am);
    }
    let sumi = chunk_lanes(q, &y.qs, |c, _| i32::from(sc[c]));
    for (a, &v) in acc.iter_mut().zip(&sumi) {
        *a = dd.mul_add(v as f32, *a);
    }
}

/// Scalar twin of the AVX2 Q4_K kernel (same f32 operations in the same order).
#[inline]
pub fn vec_dot_q4_k_q8_k_ref(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q4_K vec_dot: block counts differ");
    let (mut acc, mut acc_m) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(a) {
        let (sc, m) = scales_mins_k4(&x.scales);
        let q = x.quants();
        let mut isum = 0i32;
        for (j, (qc, ac)) in q.chunks_exact(32).zip(y.qs.chunks_exact(32)).enumerate() {
            let dot: i32 = qc
                .iter()
                .zip(ac)
                .map(|(&w, &a)| i32::from(w) * i32::from(a))
                .sum();
            isum += i32::from(sc[j]) * dot;
        }
        let imin: i32 = (0..8)
            .map(|j| i32::from(m[j]) * (i32::from(y.bsums[2 * j]) + i32::from(y.bsums[2 * j + 1])))
            .sum();
        acc = (isum as f32).mul_add(super::float::fp16_to_fp32(x.d) * y.d, acc);
        acc_m = (imin as f32).mul_add(super::float::fp16_to_fp32(x.dmin) * y.d, acc_m);
    }
    acc - acc_m
}

/// Scalar twin of the AVX2 Q5_K kernel (same f32 operations in the same order).
#[inline]
pub fn vec_dot_q5_k_q8_k_ref(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q5_K vec_dot: block counts differ");
    let (mut acc, mut acc_m) = ([0.0f32; 8], [0.0f32; 4]);
    for (x, y) in w.iter().zip(a) {
        k4_twin_block(x.d, x.dmin, &x.scales, &x.quants(), y, &mut acc, &mut acc_m);
    }
    hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
}

/// Scalar twin of the Q6_K kernels, in the reference engine's order: lane `l` sums, over
/// the eight 32-value chunks `c`, the unsigned quants (`0..=63`) times the activations of
/// elements `32c + 4l .. 32c + 4l + 4`, scaled by their sub-block's scale, minus `32 ×
/// (bsums[2l] s[2l] + bsums[2l+1] s[2l+1])` (the quants' offset of 32, taken per pair of
/// sub-blocks); then `acc[l] += (a.d * d) * sumi[l]` (fused), the lanes summed as
/// [`hsum8`]. The sums are exact integers; which of them share a lane decides the f32
/// roundings.
#[inline]
pub fn vec_dot_q6_k_q8_k_ref(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q6_K vec_dot: block counts differ");
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let d = y.d * super::float::fp16_to_fp32(x.d);
        // The quants plus 32: 0..=63.
        let q: [i8; QK_K] = x.quants().map(|v| v + 32);
        let sumi = chunk_lanes(&q, &y.qs, |c, l| i32::from(x.scales[(32 * c + 4 * l) / 16]));
        for (l, (a, &v)) in acc.iter_mut().zip(&sumi).enumerate() {
            let offset = i32::from(y.bsums[2 * l]) * i32::from(x.scales[2 * l])
                + i32::from(y.bsums[2 * l + 1]) * i32::from(x.scales[2 * l + 1]);
            *a = d.mul_add((v - 32 * offset) as f32, *a);
        }
    }
    hsum8(acc)
}

/// The 16 signed scales of a Q3_K block (for the SIMD kernel).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn q3_k_scales16(s: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
    q3_k_scales(s)
}

/// Scalar twin of the AVX2 Q3_K kernel (the lanes and order of the Q6_K twin).
#[inline]
pub fn vec_dot_q3_k_q8_k_ref(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q3_K vec_dot: block counts differ");
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let d = y.d * super::float::fp16_to_fp32(x.d);
        let sc = q3_k_scales(&x.scales);
        let sumi = chunk_lanes(&x.quants(), &y.qs, |c, l| {
            i32::from(sc[(32 * c + 4 * l) / 16])
        });
        for (a, &v) in acc.iter_mut().zip(&sumi) {
            *a = d.mul_add(v as f32, *a);
        }
    }
    hsum8(acc)
}

/// Scalar twin of the AVX2 Q2_K kernel: per block, `acc[l] += (-a.d * dmin) *
/// (m[2l] bsums[2l] + m[2l+1] bsums[2l+1])` (fused), then `acc[l] += (a.d * d) *
/// sumi[l]` (fused) with the lanes of [`chunk_lanes`].
#[inline]
pub fn vec_dot_q2_k_q8_k_ref(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    assert_eq!(w.len(), a.len(), "Q2_K vec_dot: block counts differ");
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let d = y.d * super::float::fp16_to_fp32(x.d);
        let dmin = -y.d * super::float::fp16_to_fp32(x.dmin);
        let m = |j: usize| i32::from(x.scales[j] >> 4);
        for (l, a) in acc.iter_mut().enumerate() {
            let p =
                m(2 * l) * i32::from(y.bsums[2 * l]) + m(2 * l + 1) * i32::from(y.bsums[2 * l + 1]);
            *a = dmin.mul_add(p as f32, *a);
        }
        let sumi = chunk_lanes(&unpack_2bit(&x.qs), &y.qs, |c, l| {
            i32::from(x.scales[(32 * c + 4 * l) / 16] & 0xF)
        });
        for (a, &v) in acc.iter_mut().zip(&sumi) {
            *a = d.mul_add(v as f32, *a);
        }
    }
    hsum8(acc)
}
