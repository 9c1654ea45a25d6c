//! `Q4_1` weight rows sixteen at a time: the same product as [`BlockQ4_1`]'s, bit for bit
//! (the scalar twin is [`crate::vec_dot_q4_1_q8_1_ref`]), in a layout where a 512-bit
//! register holds one of the twin's eight lanes for sixteen rows.
//!
//! The twin keeps eight f32 lanes per output; lane `l` takes the exact sum of the four
//! products of elements `4l..4l+4` of each block, scaled by `d_w * d_a` in one FMA. With
//! rows side by side, one `vpdpbusd` makes lane `l`'s sums for sixteen rows, and the
//! scale `d_w * d_a` is one register for all eight lanes of the sixteen rows: per block
//! and token, eight sums, eight conversions, eight FMAs and one multiply. With two rows
//! per register (the plain layout's kernel) each sum needs its own multiply of the
//! scales, and each row pair its own unpacking and scale shuffles.

use half::f16;

use super::legacy::{BlockQ4_1, QK4_1};
use super::x16::{interleave_rows16, nibbles, put_nibbles, Rows16};
use bytemuck::Zeroable;

/// Rows per [`BlockQ4_1x16`].
pub const Q4_1X16_ROWS: usize = 16;

/// Block `b` of sixteen `Q4_1` rows: `qs[64 c + 4 r + j]` is row `r`'s nibble byte
/// `4 c + j` (`c < 4`, `j < 4`): its low nibble is element `4 c + j`, its high nibble
/// element `16 + 4 c + j`. So 64 bytes hold lanes `c` (low nibbles) and `c + 4` (high
/// nibbles) of every row.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1x16 {
    /// `[16]`: each row's scale.
    pub d: [f16; Q4_1X16_ROWS],
    /// `[16]`: each row's minimum.
    pub m: [f16; Q4_1X16_ROWS],
    /// `[4][16][4]`: byte groups, rows, bytes.
    pub qs: [u8; Q4_1X16_ROWS * QK4_1 / 2],
}
const _: () = assert!(
    core::mem::size_of::<BlockQ4_1x16>() == Q4_1X16_ROWS * core::mem::size_of::<BlockQ4_1>()
);

/// Interleaves `Q4_1` rows of `nb` blocks, sixteen at a time (see
/// [`interleave_rows16`]).
pub fn interleave_q4_1x16(rows: &[BlockQ4_1], nb: usize) -> Vec<BlockQ4_1x16> {
    interleave_rows16(rows, nb)
}

impl Rows16 for BlockQ4_1x16 {
    type Plain = BlockQ4_1;

    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm_avx512<'o>(
        nb: usize,
        w: &[Self],
        a: &[super::q8::BlockQ8_1],
        out: impl crate::IntoGemmOut<'o>,
    ) {
        // SAFETY: forwarded to the caller.
        unsafe { crate::simd::x86_avx512_q4_1x16::gemm_q4_1x16(nb, w, a, out) }
    }

    fn pack(rows: [&BlockQ4_1; 16]) -> Self {
        let mut x = BlockQ4_1x16::zeroed();
        for (r, blk) in rows.iter().enumerate() {
            (x.d[r], x.m[r]) = (blk.d, blk.m);
            put_nibbles(&mut x.qs, r, &blk.qs);
        }
        x
    }

    fn row(&self, r: usize) -> BlockQ4_1 {
        BlockQ4_1 {
            d: self.d[r],
            m: self.m[r],
            qs: nibbles(&self.qs, r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm_rows16;

    #[test]
    fn product_is_the_twin_bit_for_bit() {
        crate::quants::x16::tests::product_is_the_twin::<BlockQ4_1x16>(
            interleave_q4_1x16,
            |nb, w, a, out| gemm_rows16(nb, w, a, out),
            crate::vec_dot_q4_1_q8_1_ref,
            |w, nb| {
                w[nb].qs = [0xff; 16];
                w[2 * nb].qs = [0; 16];
                w[3 * nb].d = f16::ZERO;
                w[4 * nb].m = f16::from_f32(-3.0);
            },
        );
    }
}
