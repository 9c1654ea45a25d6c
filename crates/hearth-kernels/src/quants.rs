//! Quantized block types.
