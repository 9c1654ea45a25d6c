//! Feed-forward blocks: a dense gated FFN (SwiGLU, GeGLU), or a mixture of experts
//! ([`super::moe::Moe`]) whose experts are gated FFNs themselves.

use hearth_kernels::ops;

use super::for_rows;
use super::moe::Moe;
use crate::tensor::QTensor;

/// The gate's activation in `act(gate) * up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU: SwiGLU (llama, Qwen, Phi-3).
    Silu,
    /// GELU, tanh approximation: GeGLU (Gemma).
    GeluTanh,
}

/// `down(act(gate x) * up x)`.
pub struct GatedFfn {
    pub act: Activation,
    /// `[n_embd] -> [n_ff]` (a view of the first half of a fused `ffn_up`, for Phi-3; of
    /// one expert's slice of `ffn_gate_exps`, in a mixture of experts).
    pub gate: QTensor,
    /// `[n_embd] -> [n_ff]`
    pub up: QTensor,
    /// `[n_ff] -> [n_embd]`
    pub down: QTensor,
}

/// A feed-forward block.
#[allow(clippy::large_enum_variant)] // one per layer: its size does not matter
pub enum Ffn {
    Gated(GatedFfn),
    Moe(Moe),
}

/// Scratch rows of one batch, `[n_tokens][n_ff]` each, kept for all the layers of a
/// forward pass.
pub struct FfnScratch {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    /// A mixture of experts' outputs, `[n_tokens * n_used][n_embd]` (grown on first use).
    pub experts_out: Vec<f32>,
}

impl FfnScratch {
    pub fn new(n: usize, n_ff: usize) -> FfnScratch {
        FfnScratch {
            gate: vec![0.0; n * n_ff],
            up: vec![0.0; n * n_ff],
            experts_out: Vec::new(),
        }
    }
}

impl GatedFfn {
    /// Width of the hidden layer.
    pub fn n_ff(&self) -> usize {
        self.up.ne[1]
    }

    /// The hidden rows `act(gate xn) * up xn` of the rows of `xn` (`[n][n_embd]`), in
    /// `s.gate[..n * n_ff]`; `s` holds at least `n` rows.
    pub fn hidden(&self, xn: &[f32], s: &mut FfnScratch) {
        let n_ff = self.n_ff();
        let n = xn.len() / self.up.ne[0];
        let (gate, up) = (&mut s.gate[..n * n_ff], &mut s.up[..n * n_ff]);
        QTensor::matmul_many(&[&self.gate, &self.up], xn, &mut [&mut *gate, &mut *up]);
        self.act.apply(gate, up, n_ff);
    }
}

impl Activation {
    /// `gate = act(gate) * up`, row by row (`[n][n_ff]` each).
    pub fn apply(self, gate: &mut [f32], up: &[f32], n_ff: usize) {
        match self {
            Activation::Silu => for_rows(gate, n_ff, up, n_ff, ops::swiglu),
            Activation::GeluTanh => for_rows(gate, n_ff, up, n_ff, ops::geglu),
        }
    }
}

impl Ffn {
    /// Width of the scratch rows [`Ffn::forward`] needs.
    pub fn n_ff(&self) -> usize {
        match self {
            Ffn::Gated(f) => f.n_ff(),
            Ffn::Moe(m) => m.n_ff(),
        }
    }

    /// `xn = ffn(xn)` for the batch (`[n][n_embd]`).
    pub fn forward(&self, xn: &mut [f32], s: &mut FfnScratch) {
        match self {
            Ffn::Gated(f) => {
                f.hidden(xn, s);
                let n = xn.len() / f.up.ne[0];
                f.down.matmul(&s.gate[..n * f.n_ff()], xn);
            }
            Ffn::Moe(m) => m.forward(xn, s),
        }
    }
}
