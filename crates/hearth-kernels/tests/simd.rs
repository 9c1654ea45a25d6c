//! Every SIMD kernel against its scalar twin (bit for bit), on quantized data and on
//! arbitrary blocks,
//! for each ISA this CPU can run. (Forcing `HEARTH_ISA=scalar` runs the whole suite on
//! the scalar twins.)

use hearth_kernels::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn quantize<T: Quantize>(x: &[f32]) -> Vec<T> {
    let mut q = vec![T::zeroed(); x.len() / T::QK];
    T::quantize_row(x, &mut q);
    q
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-2.0f32..2.0)).collect()
}

/// The SIMD kernels and their scalar twins do the same operations in the same order.
fn close(simd: f32, scalar: f32, _n: usize) -> bool {
    simd.to_bits() == scalar.to_bits()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use hearth_kernels::simd::x86;
    use hearth_kernels::attention::KvSpan;

    fn have_avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }

    #[test]
    fn avx2_kernels_match_scalar_twins_on_quantized_rows() {
        if !have_avx2() {
            eprintln!("no AVX2 on this CPU: SIMD kernels not exercised");
            return;
        }
        for (n, seed) in [(32, 1), (576, 2), (1536, 3), (4096, 4)] {
            let (w, a) = (data(n, seed), data(n, seed + 100));
            let (w41, a81) = (quantize::<BlockQ4_1>(&w), quantize::<BlockQ8_1>(&a));
            let (w40, w80, a80) = (quantize::<BlockQ4_0>(&w), quantize::<BlockQ8_0>(&w), quantize::<BlockQ8_0>(&a));
            // SAFETY: AVX2 and FMA were detected above.
            let (s41, s40, s80) = unsafe {
                (x86::vec_dot_q4_1_q8_1(&w41, &a81), x86::vec_dot_q4_0_q8_0(&w40, &a80), x86::vec_dot_q8_0_q8_0(&w80, &a80))
            };
            assert!(close(s41, vec_dot_q4_1_q8_1_ref(&w41, &a81), n), "q4_1 n={n}");
            assert!(close(s40, vec_dot_q4_0_q8_0_ref(&w40, &a80), n), "q4_0 n={n}");
            assert!(close(s80, vec_dot_q8_0_q8_0_ref(&w80, &a80), n), "q8_0 n={n}");
        }
    }

    #[test]
    fn avx2_attention_is_bit_identical_to_its_twin() {
        if !have_avx2() {
            return;
        }
        let (n_pos, stride) = (37, 192);
        let k = data(n_pos * stride, 7);
        let v = data(n_pos * stride, 8);
        for (offset, seed) in [(0, 9), (64, 10), (128, 11)] {
            let q = data(64, seed);
            for len in [1, 2, 17, n_pos] {
                let (mut a, mut b) = ([0.0f32; 64], [0.0f32; 64]);
                // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v.
                let whole = [KvSpan { k: &k[..], v: &v[..], n_pos: len }];
                unsafe { x86::attend_head_64(&q, &whole, stride, offset, 0.125, &mut a) };
                attention::attend_head_ref(&q, &whole, stride, offset, 0.125, &mut b);
                assert_eq!(a, b, "offset {offset} len {len}");
                // The same positions split into blocks, as a paged cache holds them.
                for bs in [1, 5, 16] {
                    let spans: Vec<_> = (0..len)
                        .step_by(bs)
                        .map(|p0| KvSpan { k: &k[p0 * stride..], v: &v[p0 * stride..], n_pos: bs.min(len - p0) })
                        .collect();
                    let (mut c, mut d) = ([0.0f32; 64], [0.0f32; 64]);
                    // SAFETY: as above.
                    unsafe { x86::attend_head_64(&q, &spans, stride, offset, 0.125, &mut c) };
                    attention::attend_head_ref(&q, &spans, stride, offset, 0.125, &mut d);
                    assert_eq!(a, c, "blocks of {bs}, offset {offset} len {len}");
                    assert_eq!(a, d, "blocks of {bs} (twin), offset {offset} len {len}");
                }
                // Read in place from an f16 cache: the same as from its f32 widening.
                let (k16, v16): (Vec<half::f16>, Vec<half::f16>) =
                    (k.iter().map(|&x| half::f16::from_f32(x)).collect(), v.iter().map(|&x| half::f16::from_f32(x)).collect());
                let (kw, vw): (Vec<f32>, Vec<f32>) = (k16.iter().map(|x| x.to_f32()).collect(), v16.iter().map(|x| x.to_f32()).collect());
                let (mut c, mut d, mut e) = ([0.0f32; 64], [0.0f32; 64], [0.0f32; 64]);
                // SAFETY: as above.
                let s16 = [KvSpan { k: &k16[..], v: &v16[..], n_pos: len }];
                let sw = [KvSpan { k: &kw[..], v: &vw[..], n_pos: len }];
                unsafe { x86::attend_head_64(&q, &s16, stride, offset, 0.125, &mut c) };
                attention::attend_head_ref(&q, &s16, stride, offset, 0.125, &mut d);
                attention::attend_head_ref(&q, &sw, stride, offset, 0.125, &mut e);
                assert_eq!(c, d, "f16 offset {offset} len {len}");
                assert_eq!(d, e, "f16 vs widened, offset {offset} len {len}");
            }
        }
    }

    fn block_q8_0(d: f32, qs: [i8; 32]) -> BlockQ8_0 {
        BlockQ8_0 { d: half::f16::from_f32(d), qs }
    }

    #[test]
    fn avx2_q8_0_is_exact_at_the_extremes() {
        if !have_avx2() {
            return;
        }
        let w = block_q8_0(1.0, [-128; 32]);
        // SAFETY: AVX2 and FMA were detected above.
        assert_eq!(unsafe { x86::vec_dot_q8_0_q8_0(&[w], &[w]) }, 32.0 * 16384.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn avx2_q8_0_matches_scalar_on_arbitrary_blocks(qs in proptest::collection::vec(any::<i8>(), 64..=64), qa in proptest::collection::vec(any::<i8>(), 64..=64)) {
            prop_assume!(have_avx2());
            let mk = |q: &[i8], d: f32| -> Vec<BlockQ8_0> {
                q.chunks_exact(32).map(|c| block_q8_0(d, c.try_into().unwrap())).collect()
            };
            let (w, a) = (mk(&qs, 0.5), mk(&qa, 0.25));
            // SAFETY: AVX2 and FMA were detected (prop_assume above).
            let s = unsafe { x86::vec_dot_q8_0_q8_0(&w, &a) };
            prop_assert!(close(s, vec_dot_q8_0_q8_0_ref(&w, &a), 64));
        }

        #[test]
        fn avx2_q4_1_matches_scalar_on_arbitrary_blocks(bytes in proptest::collection::vec(any::<u8>(), 64..=64), qa in proptest::collection::vec(any::<i8>(), 128..=128)) {
            prop_assume!(have_avx2());
            let w: Vec<BlockQ4_1> = bytes.chunks_exact(16).map(|c| BlockQ4_1 {
                d: half::f16::from_f32(0.1), m: half::f16::from_f32(-0.3), qs: c.try_into().unwrap(),
            }).collect();
            let a: Vec<BlockQ8_1> = qa.chunks_exact(32).map(|c| {
                let qs: [i8; 32] = c.try_into().unwrap();
                let s = qs.iter().map(|&q| q as f32).sum::<f32>() * 0.02;
                BlockQ8_1 { d: half::f16::from_f32(0.02), s: half::f16::from_f32(s), qs }
            }).collect();
            // SAFETY: AVX2 and FMA were detected (prop_assume above).
            let s = unsafe { x86::vec_dot_q4_1_q8_1(&w, &a) };
            prop_assert!(close(s, vec_dot_q4_1_q8_1_ref(&w, &a), 128));
        }
    }
}
