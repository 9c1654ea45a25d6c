//! Where a matrix product writes its outputs: [`GemmOut`].

use std::marker::PhantomData;

/// The outputs of one product of `n_rows` weight rows with `n_tokens` activation rows:
/// output (token `t`, row `r`) goes to element `t * ld + r`.
///
/// A compact `[n_tokens][n_rows]` slice has `ld == n_rows` ([`IntoGemmOut`]). A task that
/// computes some rows of a wider product writes its part straight into the shared
/// `[n_tokens][ld]` output ([`GemmOut::from_raw_parts`]): the tasks' parts interleave in
/// memory but never overlap, so no task needs a tile of its own and a copy afterwards.
pub struct GemmOut<'a> {
    ptr: *mut f32,
    ld: usize,
    n_rows: usize,
    n_tokens: usize,
    _out: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `GemmOut` is the unique writer of its elements (the constructors' contract),
// as a `&mut [f32]` is of its own.
unsafe impl Send for GemmOut<'_> {}

impl<'a> GemmOut<'a> {
    /// Elements `t * ld + r` from `ptr`, for `t < n_tokens` and `r < n_rows`.
    ///
    /// # Safety
    /// Each of those elements must be valid for writes for `'a`, and nothing else may read
    /// or write them while the `GemmOut` lives (other elements between them may belong to
    /// others).
    pub unsafe fn from_raw_parts(ptr: *mut f32, ld: usize, n_rows: usize, n_tokens: usize) -> Self {
        assert!(n_rows <= ld || n_tokens <= 1, "gemm: output rows overlap");
        GemmOut {
            ptr,
            ld,
            n_rows,
            n_tokens,
            _out: PhantomData,
        }
    }

    /// Weight rows (outputs per token).
    #[inline(always)]
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Tokens (activation rows).
    #[inline(always)]
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// Writes output (token `t`, row `r`); panics if it is outside the product.
    #[inline(always)]
    pub fn set(&mut self, t: usize, r: usize, v: f32) {
        assert!(
            t < self.n_tokens && r < self.n_rows,
            "gemm: output ({t}, {r}) out of range"
        );
        // SAFETY: in range (checked), and this `GemmOut` is its only writer (constructors).
        unsafe { self.ptr.add(t * self.ld + r).write(v) }
    }
}

/// What a product's kernels accept as output: a compact `[n_tokens][n_rows]` slice, or a
/// [`GemmOut`] of that shape.
pub trait IntoGemmOut<'a> {
    /// Panics unless the output has the shape `n_rows × n_tokens`.
    fn into_gemm_out(self, n_rows: usize, n_tokens: usize) -> GemmOut<'a>;
}

impl<'a> IntoGemmOut<'a> for &'a mut [f32] {
    #[inline(always)]
    fn into_gemm_out(self, n_rows: usize, n_tokens: usize) -> GemmOut<'a> {
        assert_eq!(self.len(), n_rows * n_tokens, "gemm: output length");
        GemmOut {
            ptr: self.as_mut_ptr(),
            ld: n_rows,
            n_rows,
            n_tokens,
            _out: PhantomData,
        }
    }
}

impl<'a> IntoGemmOut<'a> for &'a mut Vec<f32> {
    #[inline(always)]
    fn into_gemm_out(self, n_rows: usize, n_tokens: usize) -> GemmOut<'a> {
        self.as_mut_slice().into_gemm_out(n_rows, n_tokens)
    }
}

impl<'a> IntoGemmOut<'a> for GemmOut<'a> {
    #[inline(always)]
    fn into_gemm_out(self, n_rows: usize, n_tokens: usize) -> GemmOut<'a> {
        assert!(
            self.n_rows == n_rows && self.n_tokens == n_tokens,
            "gemm: output shape"
        );
        self
    }
}
