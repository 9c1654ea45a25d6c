//! The output layer's weights: `[n_vocab][n_embd]`, the product that turns the last
//! hidden state into logits.
//!
//! `Q8_0` output weights (the usual type of a tied embedding) whose rows come in whole
//! groups of sixteen are interleaved once at load ([`BlockQ8_0x16`]) and take the
//! exact-block-sum product ([`gemm_q8_0x16`]); any other type is a plain [`QTensor`]
//! product. Nothing downstream of the logits quantizes them again, so the cheaper
//! arithmetic costs no accuracy (see `hearth_kernels`' `q8_0x16`).

use hearth_gguf::GgmlType;
use hearth_kernels::{gemm_q8_0x16, interleave_q8_0x16, BlockQ8_0, BlockQ8_0x16, GemmOut, Q8_0X16_ROWS, QK8_0};

use crate::team::par_each;
use crate::tensor::{quantize_input, QTensor, SharedOut, TOKENS_PER_CHUNK};

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
        let xq = quantize_input::<BlockQ8_0>(x, ne0, n_tokens);
        // Tasks as `QTensor::matmul`'s (about eight per thread, at most 256 rows), in
        // whole groups of sixteen rows.
        let n_threads = rayon::current_num_threads().max(1);
        let rows_per_task = (ne1 / (n_threads * 8)).clamp(Q8_0X16_ROWS, 256) / Q8_0X16_ROWS * Q8_0X16_ROWS;
        let tokens_per_chunk = n_tokens.min(TOKENS_PER_CHUNK);
        let tasks: Vec<(usize, usize)> = (0..n_tokens)
            .step_by(tokens_per_chunk.max(1))
            .flat_map(|t0| (0..ne1).step_by(rows_per_task).map(move |r0| (r0, t0)))
            .collect();
        let dst = SharedOut(out.as_mut_ptr());
        par_each(tasks, |(r0, t0)| {
            let (n_rows, nt) = (rows_per_task.min(ne1 - r0), tokens_per_chunk.min(n_tokens - t0));
            let w = &blocks[r0 / Q8_0X16_ROWS * nb..(r0 + n_rows) / Q8_0X16_ROWS * nb];
            // SAFETY: elements (t0 + t) * ne1 + r0 + r (t < nt, r < n_rows) lie inside `out`
            // (r0 + n_rows <= ne1, t0 + nt <= n_tokens), which lives through this call, and
            // belong to this task's rows and tokens alone.
            let o = unsafe { GemmOut::from_raw_parts(dst.ptr().add(t0 * ne1 + r0), ne1, n_rows, nt) };
            gemm_q8_0x16(nb, w, &xq[t0 * nb..(t0 + nt) * nb], o);
        });
    }
}
