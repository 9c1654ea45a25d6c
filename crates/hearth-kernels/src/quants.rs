//! Quantized block types, bit-compatible with GGUF, and their scalar reference code.

pub(crate) mod float;
mod k_quants;
mod legacy;
mod q4_1x16;
mod q5_0x16;
pub(crate) mod q8;
mod q8_0x16;
mod x16;

pub use float::*;
pub use k_quants::*;
pub use legacy::*;
pub use q4_1x16::*;
pub use q5_0x16::*;
pub use q8::*;
pub use q8_0x16::*;
pub use x16::{gemm_rows16, rows16_pay, Rows16};

/// ggml's signed max-abs scan (Q4_0/Q5_0, the K-quants' groups, Q8_K): the first value
/// with the largest magnitude, sign kept (`amax < |v|` strictly, so ties keep the earlier
/// value; NaNs are skipped). Its magnitude is the block's `amax`.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}
