//! Pure functions over slices: GGUF block types, dequantize / quantize / vec_dot
//! for every weight type, and the float kernels of the forward pass.
//!
//! Every quantized type is a `#[repr(C)]` block struct, bit-compatible with GGUF, that
//! implements [`Quantize`]; weight types also implement [`WeightBlock`], which names the
//! activation format their dot product pairs with (as ggml's `vec_dot_type` does).
//! This crate is a leaf: it knows nothing about files, models or requests.

pub mod attention;
pub mod dispatch;
pub mod fallback;
pub mod gemm_out;
pub mod ops;
pub mod quants;
pub mod simd;

pub use dispatch::{isa, with_isa, Isa};
pub use gemm_out::{GemmOut, IntoGemmOut};
pub use quants::*;

/// A block of `QK` values stored in a GGUF-compatible layout.
pub trait Quantize: bytemuck::Pod + Send + Sync {
    /// Values per block (32 for legacy quants, 256 for K-quants, 1 for plain floats).
    const QK: usize;
    /// Reference (scalar) quantization of `x` into `y`; `x.len() == y.len() * QK`.
    fn quantize_row(x: &[f32], y: &mut [Self]);
    /// Dequantization of `x` into `y`; `y.len() == x.len() * QK`.
    fn dequantize_row(x: &[Self], y: &mut [f32]);
    /// Quantization of a matmul input (an activation row). The same as
    /// [`Quantize::quantize_row`] except for the 8-bit activation formats, which follow the
    /// arithmetic the reference engine uses for its inputs on x86 (`id = 127 / amax`,
    /// round half to even) rather than its file-writing reference quantizer; the two
    /// differ in the last rounding of some values.
    fn quantize_row_act(x: &[f32], y: &mut [Self]) {
        Self::quantize_row(x, y)
    }
}

/// A weight format: a row of `Self` blocks is dotted with a row of `Self::Act` blocks,
/// the activation format the input is quantized to once per matrix product.
pub trait WeightBlock: Quantize {
    type Act: Quantize;
    /// `sum_i w[i] * a[i]` over one row; `w.len() * Self::QK == a.len() * Self::Act::QK`.
    fn vec_dot(w: &[Self], a: &[Self::Act]) -> f32;

    /// Many dot products: output (token `t`, row `r`) is `Self::vec_dot(row r of w, row
    /// t of a)` for the `n_rows` weight rows of `nb` blocks in `w` and the `n_tokens`
    /// activation rows in `a`; `out` is a `[n_tokens][n_rows]` slice or a [`GemmOut`] of
    /// that shape. Types with a tiled SIMD kernel override it; every output is
    /// bit-identical to its `vec_dot` whatever the shape.
    #[inline]
    fn gemm<'o>(nb: usize, w: &[Self], a: &[Self::Act], out: impl IntoGemmOut<'o>) {
        gemm_with(nb, w, a, out, Self::vec_dot)
    }
}

/// [`WeightBlock::gemm`] as one `dot` call per output: the scalar twin of the tiled
/// kernels (each output's arithmetic is exactly its one-row dot product).
#[inline]
pub fn gemm_with<'o, W: WeightBlock>(
    nb: usize,
    w: &[W],
    a: &[W::Act],
    out: impl IntoGemmOut<'o>,
    dot: impl Fn(&[W], &[W::Act]) -> f32,
) {
    let na = nb * W::QK / <W::Act as Quantize>::QK;
    assert!(
        nb > 0 && na > 0 && w.len().is_multiple_of(nb) && a.len() % na == 0,
        "gemm: lengths are not whole rows"
    );
    let mut out = out.into_gemm_out(w.len() / nb, a.len() / na);
    for (t, ar) in a.chunks_exact(na).enumerate() {
        for (r, wr) in w.chunks_exact(nb).enumerate() {
            out.set(t, r, dot(wr, ar));
        }
    }
}
