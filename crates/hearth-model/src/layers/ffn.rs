//! Feed-forward blocks. Dense gated FFNs (SwiGLU, GeGLU) today; a mixture-of-experts
//! block is another variant of [`Ffn`] with the same `forward`.

use hearth_kernels::ops;

use super::for_rows;
use crate::tensor::QTensor;

/// The gate's activation in `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU: SwiGLU (llama, Qwen, Phi-3).
    Silu,
    /// GELU, tanh approximation: GeGLU (Gemma).
    GeluTanh,
}

/// A feed-forward block.
pub enum Ffn {
    /// `down(act(gate x) * up x)`.
    Gated {
        act: Activation,
        /// `[n_embd] -> [n_ff]` (a view of the first half of a fused `ffn_up`, for Phi-3).
        gate: QTensor,
        /// `[n_embd] -> [n_ff]`
        up: QTensor,
        /// `[n_ff] -> [n_embd]`
        down: QTensor,
    },
}

/// Scratch rows of one batch, `[n_tokens][n_ff]` each.
pub struct FfnScratch {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
}

impl FfnScratch {
    pub fn new(n: usize, n_ff: usize) -> FfnScratch {
        FfnScratch {
            gate: vec![0.0; n * n_ff],
            up: vec![0.0; n * n_ff],
        }
    }
}

impl Ffn {
    /// Width of the hidden layer.
    pub fn n_ff(&self) -> usize {
        match self {
            Ffn::Gated { up, .. } => up.ne[1],
        }
    }

    /// `xn = ffn(xn)` for the batch (`[n][n_embd]`).
    pub fn forward(&self, xn: &mut [f32], s: &mut FfnScratch) {
        match self {
            Ffn::Gated {
                act,
                gate,
                up,
                down,
            } => {
                let n_ff = up.ne[1];
                QTensor::matmul_many(&[gate, up], &*xn, &mut [&mut s.gate, &mut s.up]);
                match act {
                    Activation::Silu => for_rows(&mut s.gate, n_ff, &s.up, n_ff, ops::swiglu),
                    Activation::GeluTanh => for_rows(&mut s.gate, n_ff, &s.up, n_ff, ops::geglu),
                }
                down.matmul(&s.gate, xn);
            }
        }
    }
}
