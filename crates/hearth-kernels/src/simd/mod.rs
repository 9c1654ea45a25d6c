//! Hand-written SIMD kernels. Each has a scalar twin (the `WeightBlock::vec_dot` reference
//! in `quants/`, or `vec_dot_q8_0_exact_ref` for the output layer) that the tests compare
//! it with; callers reach them only through the block types' `vec_dot` and `gemm`, or
//! `gemm_q8_0x16` and `gemm_rows16` for the interleaved layouts, which pick one by
//! [`crate::isa`].

#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub mod x86_attention;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512_attention;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512_float;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512_ops;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512_q4_1x16;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512_q5_0x16;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_x16;
#[cfg(target_arch = "x86_64")]
pub mod x86_float;
#[cfg(target_arch = "x86_64")]
pub mod x86_kquants;
#[cfg(target_arch = "x86_64")]
pub mod x86_legacy;
#[cfg(target_arch = "x86_64")]
pub mod x86_ops;
#[cfg(target_arch = "x86_64")]
pub mod x86_q8_0x16;
