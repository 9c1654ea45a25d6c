//! `Q5_0` weight rows sixteen at a time: the same product as [`BlockQ5_0`]'s, bit for bit
//! (the scalar twin is [`crate::vec_dot_q5_0_q8_0_ref`]), in a layout where a 512-bit
//! register holds one of the twin's eight lanes for sixteen rows, as
//! [`super::q4_1x16`] does for `Q4_1`.
//!
//! The twin's lane `l` takes the exact sum of the four products of elements `4l..4l+4`
//! of each block (quants `q - 16`), scaled by `d_w * d_a` in one FMA. Here the quants go
//! in unsigned (`q`, `0..32`) and each lane's sum starts from `-16` times the token's four
//! activations: the same integer.

use half::f16;

use super::legacy::{BlockQ5_0, QK5_0};
use super::x16::{interleave_rows16, nibbles, put_nibbles, Rows16};
use bytemuck::Zeroable;

/// Rows per [`BlockQ5_0x16`].
pub const Q5_0X16_ROWS: usize = 16;

/// Block `b` of sixteen `Q5_0` rows: `qs[64 c + 4 r + j]` is row `r`'s nibble byte `4 c +
/// j` (`c < 4`, `j < 4`): its low nibble is element `4 c + j`, its high nibble element
/// `16 + 4 c + j`; `qh[r]` is row `r`'s fifth bits (bit `j` for element `j`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0x16 {
    /// `[16]`: each row's scale.
    pub d: [f16; Q5_0X16_ROWS],
    /// `[16]`: each row's fifth bits, little-endian.
    pub qh: [u32; Q5_0X16_ROWS],
    /// `[4][16][4]`: byte groups, rows, bytes.
    pub qs: [u8; Q5_0X16_ROWS * QK5_0 / 2],
}
const _: () = assert!(
    core::mem::size_of::<BlockQ5_0x16>() == Q5_0X16_ROWS * core::mem::size_of::<BlockQ5_0>()
);

/// Interleaves `Q5_0` rows of `nb` blocks, sixteen at a time (see
/// [`interleave_rows16`]).
pub fn interleave_q5_0x16(rows: &[BlockQ5_0], nb: usize) -> Vec<BlockQ5_0x16> {
    interleave_rows16(rows, nb)
}

impl Rows16 for BlockQ5_0x16 {
    type Plain = BlockQ5_0;

    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm_avx512<'o>(
        nb: usize,
        w: &[Self],
        a: &[super::q8::BlockQ8_0],
        out: impl crate::IntoGemmOut<'o>,
    ) {
        // SAFETY: forwarded to the caller.
        unsafe { crate::simd::x86_avx512_q5_0x16::gemm_q5_0x16(nb, w, a, out) }
    }

    fn pack(rows: [&BlockQ5_0; 16]) -> Self {
        let mut x = BlockQ5_0x16::zeroed();
        for (r, blk) in rows.iter().enumerate() {
            (x.d[r], x.qh[r]) = (blk.d, u32::from_le_bytes(blk.qh));
            put_nibbles(&mut x.qs, r, &blk.qs);
        }
        x
    }

    fn row(&self, r: usize) -> BlockQ5_0 {
        BlockQ5_0 {
            d: self.d[r],
            qh: self.qh[r].to_le_bytes(),
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
        crate::quants::x16::tests::product_is_the_twin::<BlockQ5_0x16>(
            interleave_q5_0x16,
            |nb, w, a, out| gemm_rows16(nb, w, a, out),
            crate::vec_dot_q5_0_q8_0_ref,
            |w, nb| {
                (w[nb].qs, w[nb].qh) = ([0xff; 16], [0xff; 4]);
                (w[2 * nb].qs, w[2 * nb].qh) = ([0; 16], [0; 4]);
                w[3 * nb].qh = [0x5a, 0xa5, 0x0f, 0xf0];
                w[4 * nb].d = f16::ZERO;
            },
        );
    }
}
