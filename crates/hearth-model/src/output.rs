//! The output layer's weights: `[n_vocab][n_embd]`, the product that turns the last
//! hidden state into logits.
//!
//! `Q8_0` output weights (the usual type of a tied embedding) whose rows come in whole
//! groups of sixteen are interleaved once at load ([`BlockQ8_0x16`]) and take the
//! exact-block-sum product ([`gemm_q8_0x16`]); any other type is a plain [`QTensor`]
//! product. Nothing downstream of the logits quantizes them again, so the cheaper
//! arithmetic costs no accuracy (see `hearth_kernels`' `q8_0x16`).

use hearth_gguf::GgmlType;
use hearth_kernels::{
    gemm_q8_0x16, interleave_q8_0x16, BlockQ8_0, BlockQ8_0x16, Q8_0X16_ROWS, QK8_0,
};

use crate::tensor::{product, QTensor};

/// The output layer's weights, in the layout its product reads.
pub enum OutputWeights {
    /// Any type, used in place.
    Plain(QTensor),
    /// `Q8_0`, sixteen rows interleaved.
    Q8_0x16 {
        /// `[ne1 / 16][ne0 / 32]`: groups of sixteen rows, blocks.
        blocks: Vec<BlockQ8_0x16>,
        /// `[ne0, ne1]`: row length and rows, as [`QTensor::ne`].
        ne: [usize; 2],
    },
}

impl OutputWeights {
    /// Interleaves `t` when it is `Q8_0` in whole groups of sixteen rows; else keeps it.
    pub fn new(t: QTensor) -> OutputWeights {
        if t.ggml_type != GgmlType::Q8_0 || !t.ne[1].is_multiple_of(Q8_0X16_ROWS) || t.ne[0] == 0 {
            return OutputWeights::Plain(t);
        }
        let blocks = interleave_q8_0x16(bytemuck::cast_slice(t.bytes()), t.ne[0] / QK8_0);
        // The product reads the copy; a tied embedding's lookups fault in only the rows
        // they read.
        t.release();
        OutputWeights::Q8_0x16 { blocks, ne: t.ne }
    }

    /// `out[t][r] = dot(row r, x[t])` for `x: [n_tokens][ne0]`, `out: [n_tokens][ne1]`, in
    /// parallel as [`QTensor::matmul`]; batch-invariant.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        let (blocks, [ne0, ne1]) = match self {
            OutputWeights::Plain(t) => return t.matmul(x, out),
            OutputWeights::Q8_0x16 { blocks, ne } => (blocks, *ne),
        };
        let n_tokens = x.len() / ne0;
        assert_eq!(x.len(), n_tokens * ne0);
        assert_eq!(out.len(), n_tokens * ne1);
        let nb = ne0 / QK8_0;
        product::<BlockQ8_0>(
            ne0,
            &[ne1],
            x,
            n_tokens,
            &mut [out],
            Q8_0X16_ROWS,
            |_, r0, r1, a, out| {
                gemm_q8_0x16(
                    nb,
                    &blocks[r0 / Q8_0X16_ROWS * nb..r1 / Q8_0X16_ROWS * nb],
                    a,
                    out,
                )
            },
        );
    }
}
