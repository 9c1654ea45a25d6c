//! The AVX2 kernels of the float, Q5_0 and K-quant weight types against their scalar
//! twins, bit for bit (`vec_dot` and the tiled `gemm`), and the twins against an f64
//! reference within the type's error bound. Under `HEARTH_ISA=scalar` the dispatching
//! `vec_dot`/`gemm` run the twins, and the direct SIMD calls still run when the CPU
//! has AVX2.

use half::{bf16, f16};
use hearth_kernels::*;
use rand::{Rng, SeedableRng};

fn quantize<T: Quantize>(x: &[f32]) -> Vec<T> {
    let mut q = vec![T::zeroed(); x.len() / T::QK];
    T::quantize_row(x, &mut q);
    q
}

fn quantize_act<T: Quantize>(x: &[f32]) -> Vec<T> {
    let mut q = vec![T::zeroed(); x.len() / T::QK];
    T::quantize_row_act(x, &mut q);
    q
}

fn dequantize<T: Quantize>(q: &[T]) -> Vec<f32> {
    let mut y = vec![0.0; q.len() * T::QK];
    T::dequantize_row(q, &mut y);
    y
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-2.0f32..2.0)).collect()
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Row lengths to test for a type of block size `qk`: one block, several, and the
/// default model's 576 and 1536 (rounded up to whole blocks), plus odd lengths for the
/// plain floats.
fn lengths(qk: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [
        qk,
        2 * qk,
        5 * qk,
        576usize.div_ceil(qk) * qk,
        1536usize.div_ceil(qk) * qk,
    ]
    .into();
    if qk == 1 {
        v.extend([1, 7, 15, 17, 33, 100]);
    }
    v.dedup();
    v
}

/// `|twin - exact|` within `tol * sum |w_i a_i|` (+ a tiny absolute slack), where `exact`
/// is the f64 dot of the dequantized weight and activation rows.
fn twin_close_to_f64<W: WeightBlock>(name: &str, twin: fn(&[W], &[W::Act]) -> f32, tol: f64) {
    for n in lengths(W::QK) {
        for seed in 0..3u64 {
            let w = quantize::<W>(&data(n, 10 + seed));
            let a = quantize_act::<W::Act>(&data(n, 20 + seed));
            let (wd, ad) = (dequantize(&w), dequantize(&a));
            let exact: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let mag: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
                .sum();
            let got = f64::from(twin(&w, &a));
            assert!(
                (got - exact).abs() <= tol * mag + 1e-6,
                "{name} n {n}: twin {got} vs exact {exact} (mag {mag})"
            );
        }
    }
}

/// `W::gemm` against one `W::vec_dot` per output (bit for bit) for token counts around
/// the tile sizes and odd row counts; a token alone gives the same bits as in a batch.
fn gemm_is_vec_dot<W: WeightBlock>(name: &str) {
    for ne0 in [576usize.div_ceil(W::QK) * W::QK, 1536] {
        let nb = ne0 / W::QK;
        for n_rows in [1, 3, 4, 5, 7] {
            let w = quantize::<W>(&data(ne0 * n_rows, ne0 as u64 + n_rows as u64));
            for n_tokens in [1, 2, 3, 4, 5, 6, 7, 9, 15] {
                let a = quantize_act::<W::Act>(&data(ne0 * n_tokens, 7 + n_tokens as u64));
                let mut got = vec![f32::NAN; n_rows * n_tokens];
                W::gemm(nb, &w, &a, &mut got);
                let per = a.len() / n_tokens;
                for t in 0..n_tokens {
                    let at = &a[t * per..(t + 1) * per];
                    for r in 0..n_rows {
                        let want = W::vec_dot(&w[r * nb..(r + 1) * nb], at);
                        assert_eq!(
                            got[t * n_rows + r].to_bits(),
                            want.to_bits(),
                            "{name} ne0 {ne0} rows {n_rows} tokens {n_tokens}: out[{t}][{r}]"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn float_twins_are_close_to_exact() {
    // Products of f16 (bf16) values are exact; only the f32 sums round.
    twin_close_to_f64::<f16>("f16", vec_dot_f16_ref, 1e-6);
    // f32 products round too.
    twin_close_to_f64::<f32>("f32", vec_dot_f32_ref, 1e-5);
    twin_close_to_f64::<bf16>("bf16", vec_dot_bf16_ref, 1e-6);
}

#[test]
fn legacy_twins_are_close_to_exact() {
    // Exact integer sums per block; the bound covers the f16 `s` of Q8_1 and f32 sums.
    twin_close_to_f64::<BlockQ5_0>("q5_0", vec_dot_q5_0_q8_0_ref, 1e-5);
    twin_close_to_f64::<BlockQ5_1>("q5_1", vec_dot_q5_1_q8_1_ref, 2e-3);
}

#[test]
fn k_quant_twins_are_close_to_exact() {
    // Exact integer sums; only the f32 scaling and sums round.
    twin_close_to_f64::<BlockQ2_K>("q2_K", vec_dot_q2_k_q8_k_ref, 1e-5);
    twin_close_to_f64::<BlockQ3_K>("q3_K", vec_dot_q3_k_q8_k_ref, 1e-5);
    twin_close_to_f64::<BlockQ4_K>("q4_K", vec_dot_q4_k_q8_k_ref, 1e-5);
    twin_close_to_f64::<BlockQ5_K>("q5_K", vec_dot_q5_k_q8_k_ref, 1e-5);
    twin_close_to_f64::<BlockQ6_K>("q6_K", vec_dot_q6_k_q8_k_ref, 1e-5);
}

/// The twins (SIMD lane order) against ggml's generic order: the same exact integers,
/// f32 rounding apart.
#[test]
fn k_quant_twins_are_close_to_ggml_order() {
    fn check<W: WeightBlock<Act = BlockQ8_K>>(
        name: &str,
        twin: fn(&[W], &[BlockQ8_K]) -> f32,
        generic: fn(&[W], &[BlockQ8_K]) -> f32,
    ) {
        for n in lengths(256) {
            let w = quantize::<W>(&data(n, 40));
            let a = quantize_act::<BlockQ8_K>(&data(n, 41));
            let mag: f64 = dequantize(&w)
                .iter()
                .zip(dequantize(&a))
                .map(|(&x, y)| (f64::from(x) * f64::from(y)).abs())
                .sum();
            let (t, g) = (twin(&w, &a), generic(&w, &a));
            assert!(
                (f64::from(t) - f64::from(g)).abs() <= 1e-6 * mag,
                "{name} n {n}: {t} vs {g}"
            );
        }
    }
    check::<BlockQ2_K>("q2_K", vec_dot_q2_k_q8_k_ref, BlockQ2_K::vec_dot_generic);
    check::<BlockQ3_K>("q3_K", vec_dot_q3_k_q8_k_ref, BlockQ3_K::vec_dot_generic);
    check::<BlockQ4_K>("q4_K", vec_dot_q4_k_q8_k_ref, BlockQ4_K::vec_dot_generic);
    check::<BlockQ5_K>("q5_K", vec_dot_q5_k_q8_k_ref, BlockQ5_K::vec_dot_generic);
    check::<BlockQ6_K>("q6_K", vec_dot_q6_k_q8_k_ref, BlockQ6_K::vec_dot_generic);
}

#[test]
fn gemm_is_vec_dot_per_output_more_types() {
    gemm_is_vec_dot::<f16>("f16");
    gemm_is_vec_dot::<bf16>("bf16");
    gemm_is_vec_dot::<BlockQ5_0>("q5_0");
    gemm_is_vec_dot::<BlockQ5_1>("q5_1");
    gemm_is_vec_dot::<BlockQ2_K>("q2_K");
    gemm_is_vec_dot::<BlockQ3_K>("q3_K");
    gemm_is_vec_dot::<BlockQ4_K>("q4_K");
    gemm_is_vec_dot::<BlockQ5_K>("q5_K");
    gemm_is_vec_dot::<BlockQ6_K>("q6_K");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use hearth_kernels::simd::{x86_float, x86_kquants, x86_legacy};
    use proptest::prelude::*;

    fn have_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// `simd(w, a) == twin(w, a)` bit for bit on quantized rows of every test length.
    fn vec_dot_matches<W: WeightBlock>(
        name: &str,
        simd: unsafe fn(&[W], &[W::Act]) -> f32,
        twin: fn(&[W], &[W::Act]) -> f32,
    ) {
        for n in lengths(W::QK) {
            for seed in 0..4u64 {
                let w = quantize::<W>(&data(n, 100 + seed));
                let a = quantize_act::<W::Act>(&data(n, 200 + seed));
                // SAFETY: the callers check AVX2, FMA and F16C first.
                let s = unsafe { simd(&w, &a) };
                assert_eq!(
                    s.to_bits(),
                    twin(&w, &a).to_bits(),
                    "{name} n {n} seed {seed}: simd {s} twin {}",
                    twin(&w, &a)
                );
            }
        }
    }

    /// The tiled `simd` kernel (`(nb, weights, activations, out)`) against the scalar twin
    /// run once per output.
    fn gemm_matches<W: WeightBlock>(
        name: &str,
        simd: impl Fn(usize, &[W], &[W::Act], &mut [f32]),
        twin: fn(&[W], &[W::Act]) -> f32,
    ) {
        for n in lengths(W::QK) {
            let nb = n / W::QK;
            for n_rows in [1, 2, 3, 5, 8, 9] {
                let w = quantize::<W>(&data(n * n_rows, n as u64 * 31 + n_rows as u64));
                for n_tokens in [1, 2, 3, 4, 5, 6, 7, 13, 16] {
                    let a = quantize_act::<W::Act>(&data(n * n_tokens, 500 + n_tokens as u64));
                    let (mut s, mut r) =
                        (vec![0.0; n_rows * n_tokens], vec![0.0; n_rows * n_tokens]);
                    simd(nb, &w, &a, &mut s);
                    gemm_with(nb, &w, &a, &mut r, twin);
                    assert_eq!(
                        bits(&s),
                        bits(&r),
                        "{name} n {n} rows {n_rows} tokens {n_tokens}"
                    );
                }
            }
        }
    }

    #[test]
    fn avx2_float_kernels_match_twins() {
        if !have_avx2() {
            eprintln!("no AVX2 on this CPU: SIMD kernels not exercised");
            return;
        }
        vec_dot_matches::<f32>("f32", x86_float::vec_dot_f32, vec_dot_f32_ref);
        vec_dot_matches::<f16>("f16", x86_float::vec_dot_f16, vec_dot_f16_ref);
        vec_dot_matches::<bf16>("bf16", x86_float::vec_dot_bf16, vec_dot_bf16_ref);
        // SAFETY (each gemm call below): AVX2, FMA and F16C were checked above.
        gemm_matches::<f32>(
            "f32",
            |nb, w, a, o| unsafe { x86_float::gemm_f32(nb, w, a, o) },
            vec_dot_f32_ref,
        );
        gemm_matches::<f16>(
            "f16",
            |nb, w, a, o| unsafe { x86_float::gemm_f16(nb, w, a, o) },
            vec_dot_f16_ref,
        );
        gemm_matches::<bf16>(
            "bf16",
            |nb, w, a, o| unsafe { x86_float::gemm_bf16(nb, w, a, o) },
            vec_dot_bf16_ref,
        );
    }

    #[test]
    fn avx512_f32_tiles_match_twin() {
        let avx512 = have_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        if !avx512 {
            eprintln!("no AVX-512 on this CPU: its F32 tiles not exercised");
            return;
        }
        // SAFETY: AVX-512 F, AVX2 and FMA were checked above.
        gemm_matches::<f32>(
            "f32 avx512",
            |nb, w, a, o| unsafe { hearth_kernels::simd::x86_avx512_float::gemm_f32(nb, w, a, o) },
            vec_dot_f32_ref,
        );
        // The dispatching entry point, with whatever ISA this process runs.
        gemm_matches::<f32>(
            "f32 dispatched",
            |nb, w, a, o| f32::gemm(nb, w, a, o),
            vec_dot_f32_ref,
        );
    }

    #[test]
    fn avx2_q5_kernels_match_twins() {
        if !have_avx2() {
            return;
        }
        vec_dot_matches::<BlockQ5_0>("q5_0", x86_legacy::vec_dot_q5_0_q8_0, vec_dot_q5_0_q8_0_ref);
        vec_dot_matches::<BlockQ5_1>("q5_1", x86_legacy::vec_dot_q5_1_q8_1, vec_dot_q5_1_q8_1_ref);
        // SAFETY (each gemm call below): AVX2, FMA and F16C were checked above.
        gemm_matches::<BlockQ5_0>(
            "q5_0",
            |nb, w, a, o| unsafe { x86_legacy::gemm_q5_0_q8_0(nb, w, a, o) },
            vec_dot_q5_0_q8_0_ref,
        );
        gemm_matches::<BlockQ5_1>(
            "q5_1",
            |nb, w, a, o| unsafe { x86_legacy::gemm_q5_1_q8_1(nb, w, a, o) },
            vec_dot_q5_1_q8_1_ref,
        );
    }

    #[test]
    fn avx2_k_quant_kernels_match_twins() {
        if !have_avx2() {
            return;
        }
        vec_dot_matches::<BlockQ2_K>(
            "q2_K",
            x86_kquants::vec_dot_q2_k_q8_k,
            vec_dot_q2_k_q8_k_ref,
        );
        vec_dot_matches::<BlockQ3_K>(
            "q3_K",
            x86_kquants::vec_dot_q3_k_q8_k,
            vec_dot_q3_k_q8_k_ref,
        );
        vec_dot_matches::<BlockQ4_K>(
            "q4_K",
            x86_kquants::vec_dot_q4_k_q8_k,
            vec_dot_q4_k_q8_k_ref,
        );
        vec_dot_matches::<BlockQ5_K>(
            "q5_K",
            x86_kquants::vec_dot_q5_k_q8_k,
            vec_dot_q5_k_q8_k_ref,
        );
        vec_dot_matches::<BlockQ6_K>(
            "q6_K",
            x86_kquants::vec_dot_q6_k_q8_k,
            vec_dot_q6_k_q8_k_ref,
        );
        // SAFETY (each gemm call below): AVX2, FMA and F16C were checked above.
        gemm_matches::<BlockQ2_K>(
            "q2_K",
            |nb, w, a, o| unsafe { x86_kquants::gemm_q2_k_q8_k(nb, w, a, o) },
            vec_dot_q2_k_q8_k_ref,
        );
        gemm_matches::<BlockQ3_K>(
            "q3_K",
            |nb, w, a, o| unsafe { x86_kquants::gemm_q3_k_q8_k(nb, w, a, o) },
            vec_dot_q3_k_q8_k_ref,
        );
        gemm_matches::<BlockQ4_K>(
            "q4_K",
            |nb, w, a, o| unsafe { x86_kquants::gemm_q4_k_q8_k(nb, w, a, o) },
            vec_dot_q4_k_q8_k_ref,
        );
        gemm_matches::<BlockQ5_K>(
            "q5_K",
            |nb, w, a, o| unsafe { x86_kquants::gemm_q5_k_q8_k(nb, w, a, o) },
            vec_dot_q5_k_q8_k_ref,
        );
        gemm_matches::<BlockQ6_K>(
            "q6_K",
            |nb, w, a, o| unsafe { x86_kquants::gemm_q6_k_q8_k(nb, w, a, o) },
            vec_dot_q6_k_q8_k_ref,
        );
    }

    /// Blocks of arbitrary bytes (every quant, scale and high-bit pattern) with finite
    /// f16 scales, against activations of arbitrary bytes with consistent `bsums`.
    fn arbitrary_k<W: bytemuck::Pod>(bytes: &[u8], fix: impl Fn(&mut W)) -> Vec<W> {
        bytes
            .chunks_exact(std::mem::size_of::<W>())
            .map(|c| {
                let mut b: W = bytemuck::pod_read_unaligned(c);
                fix(&mut b);
                b
            })
            .collect()
    }

    fn arbitrary_q8_k(qs: &[i8], d: f32) -> Vec<BlockQ8_K> {
        qs.chunks_exact(256)
            .map(|c| {
                let mut b = <BlockQ8_K as bytemuck::Zeroable>::zeroed();
                b.d = d;
                b.qs.copy_from_slice(c);
                for (s, g) in b.bsums.iter_mut().zip(c.chunks_exact(16)) {
                    *s = g.iter().map(|&v| i16::from(v)).sum();
                }
                b
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn avx2_k_quants_match_twins_on_arbitrary_blocks(bytes in prop::collection::vec(any::<u8>(), 2 * 210..=2 * 210), qa in prop::collection::vec(-127i8..=127, 512..=512)) {
            prop_assume!(have_avx2());
            let a = arbitrary_q8_k(&qa, 0.011);
            let w6: Vec<BlockQ6_K> = arbitrary_k(&bytes, |b: &mut BlockQ6_K| b.d = f16::from_f32(0.02));
            let w4: Vec<BlockQ4_K> = arbitrary_k(&bytes[..2 * 144], |b: &mut BlockQ4_K| { b.d = f16::from_f32(0.03); b.dmin = f16::from_f32(0.05) });
            let w5: Vec<BlockQ5_K> = arbitrary_k(&bytes[..2 * 176], |b: &mut BlockQ5_K| { b.d = f16::from_f32(0.03); b.dmin = f16::from_f32(-0.05) });
            // SAFETY: AVX2, FMA and F16C were detected (prop_assume above).
            let (s6, s4, s5) = unsafe { (x86_kquants::vec_dot_q6_k_q8_k(&w6, &a), x86_kquants::vec_dot_q4_k_q8_k(&w4, &a), x86_kquants::vec_dot_q5_k_q8_k(&w5, &a)) };
            prop_assert_eq!(s6.to_bits(), vec_dot_q6_k_q8_k_ref(&w6, &a).to_bits());
            prop_assert_eq!(s4.to_bits(), vec_dot_q4_k_q8_k_ref(&w4, &a).to_bits());
            prop_assert_eq!(s5.to_bits(), vec_dot_q5_k_q8_k_ref(&w5, &a).to_bits());
            let w2: Vec<BlockQ2_K> = arbitrary_k(&bytes[..2 * 84], |b: &mut BlockQ2_K| { b.d = f16::from_f32(0.03); b.dmin = f16::from_f32(0.07) });
            let w3: Vec<BlockQ3_K> = arbitrary_k(&bytes[..2 * 110], |b: &mut BlockQ3_K| b.d = f16::from_f32(-0.04));
            // SAFETY: as above.
            let (s2, s3) = unsafe { (x86_kquants::vec_dot_q2_k_q8_k(&w2, &a), x86_kquants::vec_dot_q3_k_q8_k(&w3, &a)) };
            prop_assert_eq!(s2.to_bits(), vec_dot_q2_k_q8_k_ref(&w2, &a).to_bits());
            prop_assert_eq!(s3.to_bits(), vec_dot_q3_k_q8_k_ref(&w3, &a).to_bits());
        }

        /// The tiled K-quant kernels on arbitrary blocks, against activations over the whole
        /// i8 range (-128 included): 4 rows, tiles of one and of three tokens.
        #[test]
        fn avx2_k_quant_tiles_match_twins_on_arbitrary_blocks(bytes in prop::collection::vec(any::<u8>(), 4 * 210..=4 * 210), qa in prop::collection::vec(any::<i8>(), 3 * 256..=3 * 256)) {
            prop_assume!(have_avx2());
            let w6: Vec<BlockQ6_K> = arbitrary_k(&bytes, |b: &mut BlockQ6_K| b.d = f16::from_f32(0.02));
            let w4: Vec<BlockQ4_K> = arbitrary_k(&bytes[..4 * 144], |b: &mut BlockQ4_K| { b.d = f16::from_f32(0.03); b.dmin = f16::from_f32(0.05) });
            for n_tokens in [1, 3] {
                let a = arbitrary_q8_k(&qa[..256 * n_tokens], 0.011);
                let (mut s, mut r) = (vec![0.0; 4 * n_tokens], vec![0.0; 4 * n_tokens]);
                // SAFETY: AVX2, FMA and F16C were detected (prop_assume above).
                unsafe { x86_kquants::gemm_q6_k_q8_k(1, &w6, &a, &mut s) };
                gemm_with(1, &w6, &a, &mut r, vec_dot_q6_k_q8_k_ref);
                prop_assert_eq!(bits(&s), bits(&r));
                // SAFETY: as above.
                unsafe { x86_kquants::gemm_q4_k_q8_k(1, &w4, &a, &mut s) };
                gemm_with(1, &w4, &a, &mut r, vec_dot_q4_k_q8_k_ref);
                prop_assert_eq!(bits(&s), bits(&r));
            }
        }

        /// Arbitrary quant bytes (every fifth-bit pattern) and activation bytes.
        #[test]
        fn avx2_q5_match_twins_on_arbitrary_blocks(qs in prop::collection::vec(any::<u8>(), 48..=48), qh in any::<[u32; 3]>(), qa in prop::collection::vec(any::<i8>(), 96..=96)) {
            prop_assume!(have_avx2());
            let w0: Vec<BlockQ5_0> = (0..3).map(|b| BlockQ5_0 { d: f16::from_f32(0.1), qh: qh[b].to_le_bytes(), qs: qs[16 * b..16 * b + 16].try_into().unwrap() }).collect();
            let w1: Vec<BlockQ5_1> = (0..3).map(|b| BlockQ5_1 { d: f16::from_f32(0.1), m: f16::from_f32(-0.7), qh: qh[b].to_le_bytes(), qs: qs[16 * b..16 * b + 16].try_into().unwrap() }).collect();
            let a0: Vec<BlockQ8_0> = qa.chunks_exact(32).map(|c| BlockQ8_0 { d: f16::from_f32(0.03), qs: c.try_into().unwrap() }).collect();
            let a1: Vec<BlockQ8_1> = qa.chunks_exact(32).map(|c| BlockQ8_1 { d: f16::from_f32(0.03), s: f16::from_f32(1.5), qs: c.try_into().unwrap() }).collect();
            // SAFETY: AVX2, FMA and F16C were detected (prop_assume above).
            let (s0, s1) = unsafe { (x86_legacy::vec_dot_q5_0_q8_0(&w0, &a0), x86_legacy::vec_dot_q5_1_q8_1(&w1, &a1)) };
            prop_assert_eq!(s0.to_bits(), vec_dot_q5_0_q8_0_ref(&w0, &a0).to_bits());
            prop_assert_eq!(s1.to_bits(), vec_dot_q5_1_q8_1_ref(&w1, &a1).to_bits());
        }
    }

    #[test]
    fn avx2_float_kernels_match_twins_at_the_extremes() {
        if !have_avx2() {
            return;
        }
        // Large, tiny (subnormal) and signed-zero values: F16's FMA stays exact, BF16's
        // separate multiply and add round as the twin does (products may underflow).
        let specials = [
            65504.0f32, -65504.0, 6.0e-8, -6.0e-8, 0.0, -0.0, 1.0, -3.5e-5, 1e-38, -1e38, 3e38,
        ];
        let vals: Vec<f32> = (0..67)
            .map(|i| specials[i % specials.len()] * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let rev: Vec<f32> = vals.iter().rev().copied().collect();
        let (w16, a16) = (quantize::<f16>(&vals), quantize::<f16>(&rev));
        let (wb, ab) = (quantize::<bf16>(&vals), quantize::<bf16>(&rev));
        for n in [1, 16, 17, 67] {
            // SAFETY: AVX2, FMA and F16C were detected above.
            let (s16, sb) = unsafe {
                (
                    x86_float::vec_dot_f16(&w16[..n], &a16[..n]),
                    x86_float::vec_dot_bf16(&wb[..n], &ab[..n]),
                )
            };
            let (t16, tb) = (
                vec_dot_f16_ref(&w16[..n], &a16[..n]),
                vec_dot_bf16_ref(&wb[..n], &ab[..n]),
            );
            assert!(
                s16.to_bits() == t16.to_bits() || (s16.is_nan() && t16.is_nan()),
                "f16 n {n}: {s16} vs {t16}"
            );
            assert!(
                sb.to_bits() == tb.to_bits() || (sb.is_nan() && tb.is_nan()),
                "bf16 n {n}: {sb} vs {tb}"
            );
        }
    }
}
