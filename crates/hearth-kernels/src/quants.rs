//! Quantized block types, bit-compatible with GGUF, and their scalar reference code.

mod float;
mod k_quants;
mod legacy;
mod q8;

pub use float::*;
pub use k_quants::*;
pub use legacy::*;
pub use q8::*;
