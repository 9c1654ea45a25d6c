//! Every SIMD kernel against its scalar twin (bit for bit), on quantized data and on
//! arbitrary blocks,
//! for each ISA this CPU can run. (Forcing `HEARTH_ISA=scalar` runs the whole suite on
//! the scalar twins.)

use hearth_kernels::*;
#[cfg(target_arch = "x86_64")]
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

/// `W::gemm` (the tiled kernel on this ISA) against one `W::vec_dot` per output, bit for
/// bit, for token counts around the tile sizes and odd row counts; every output is also
/// independent of the other tokens in the batch.
fn gemm_matches_vec_dot<W: WeightBlock>(name: &str) {
    for (ne0, seed) in [(32, 11), (576, 12)] {
        let nb = ne0 / W::QK;
        for n_rows in [1, 3, 4, 5, 7, 13] {
            let w = quantize::<W>(&data(ne0 * n_rows, seed + n_rows as u64));
            for n_tokens in [1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16] {
                let x = data(ne0 * n_tokens, seed + 1000 + n_tokens as u64);
                let mut a = quantize::<W::Act>(&x);
                W::Act::quantize_row_act(&x, &mut a);
                let mut got = vec![f32::NAN; n_rows * n_tokens];
                W::gemm(nb, &w, &a, &mut got);
                let per_token = a.len() / n_tokens;
                for t in 0..n_tokens {
                    let at = &a[t * per_token..(t + 1) * per_token];
                    let mut alone = vec![f32::NAN; n_rows];
                    W::gemm(nb, &w, at, &mut alone);
                    for r in 0..n_rows {
                        let want = W::vec_dot(&w[r * nb..(r + 1) * nb], at);
                        let g = got[t * n_rows + r];
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "{name} ne0 {ne0} rows {n_rows} tokens {n_tokens}: out[{t}][{r}]"
                        );
                        assert_eq!(
                            alone[r].to_bits(),
                            want.to_bits(),
                            "{name}: token {t} alone, row {r}"
                        );
                    }
                }
            }
        }
    }
}

/// `W::gemm` into a task's rows of a wider output (`GemmOut::from_raw_parts`, row length
/// `ld > n_rows`) writes exactly what the compact product holds, and nothing between.
fn gemm_strided_matches_compact<W: WeightBlock>(name: &str, ne0: usize) {
    let nb = ne0 / W::QK;
    for n_rows in [1, 2, 5, 8] {
        let w = quantize::<W>(&data(ne0 * n_rows, 40 + n_rows as u64));
        for n_tokens in [1, 2, 3, 8, 9, 17] {
            let x = data(ne0 * n_tokens, 60 + n_tokens as u64);
            let mut a = quantize::<W::Act>(&x);
            W::Act::quantize_row_act(&x, &mut a);
            let mut compact = vec![f32::NAN; n_rows * n_tokens];
            W::gemm(nb, &w, &a, &mut compact);
            let (first, ld) = (3, n_rows + 5);
            let mut wide = vec![f32::NAN; first + n_tokens * ld];
            // SAFETY: elements first + t * ld + r (t < n_tokens, r < n_rows) lie in `wide`,
            // which nothing else touches during the call.
            W::gemm(nb, &w, &a, unsafe {
                GemmOut::from_raw_parts(wide.as_mut_ptr().add(first), ld, n_rows, n_tokens)
            });
            for (i, v) in wide.iter().enumerate() {
                let (t, r) = (i.wrapping_sub(first) / ld, i.wrapping_sub(first) % ld);
                if i >= first && r < n_rows {
                    assert_eq!(
                        v.to_bits(),
                        compact[t * n_rows + r].to_bits(),
                        "{name} rows {n_rows} tokens {n_tokens}: ({t}, {r})"
                    );
                } else {
                    assert!(v.is_nan(), "{name} rows {n_rows} tokens {n_tokens}: wrote element {i}, outside its rows");
                }
            }
        }
    }
}

#[test]
fn gemm_writes_strided_outputs() {
    gemm_strided_matches_compact::<BlockQ4_0>("q4_0", 576);
    gemm_strided_matches_compact::<BlockQ4_1>("q4_1", 576);
    gemm_strided_matches_compact::<BlockQ5_0>("q5_0", 576);
    gemm_strided_matches_compact::<BlockQ5_1>("q5_1", 576);
    gemm_strided_matches_compact::<BlockQ8_0>("q8_0", 576);
    gemm_strided_matches_compact::<BlockQ2_K>("q2_k", 512);
    gemm_strided_matches_compact::<BlockQ3_K>("q3_k", 512);
    gemm_strided_matches_compact::<BlockQ4_K>("q4_k", 512);
    gemm_strided_matches_compact::<BlockQ5_K>("q5_k", 512);
    gemm_strided_matches_compact::<BlockQ6_K>("q6_k", 512);
    gemm_strided_matches_compact::<half::f16>("f16", 96);
    gemm_strided_matches_compact::<half::bf16>("bf16", 96);
}

#[test]
fn gemm_is_vec_dot_per_output() {
    gemm_matches_vec_dot::<BlockQ4_1>("q4_1");
    gemm_matches_vec_dot::<BlockQ4_0>("q4_0");
    gemm_matches_vec_dot::<BlockQ8_0>("q8_0");
    gemm_matches_vec_dot::<BlockQ5_1>("q5_1");
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;
    use hearth_kernels::simd::neon;

    /// Blocks with every byte drawn at random (quants of -128 included) and ordinary
    /// scales, so the integer sums see the extremes the quantizer never writes.
    fn raw<T: bytemuck::Pod>(n: usize, seed: u64, fix: impl Fn(&mut T)) -> Vec<T> {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut v = vec![T::zeroed(); n];
        for b in &mut v {
            r.fill(bytemuck::bytes_of_mut(b));
            fix(b);
        }
        v
    }

    #[test]
    fn neon_kernels_match_scalar_twins() {
        for (n, seed) in [(32, 1), (576, 2), (1536, 3), (4096, 4)] {
            let (w, a) = (data(n, seed), data(n, seed + 100));
            let (w41, a81) = (quantize::<BlockQ4_1>(&w), quantize::<BlockQ8_1>(&a));
            let (w40, w80, a80) = (
                quantize::<BlockQ4_0>(&w),
                quantize::<BlockQ8_0>(&w),
                quantize::<BlockQ8_0>(&a),
            );
            // SAFETY: NEON is part of the aarch64 base ISA.
            let (s41, s40, s80) = unsafe {
                (
                    neon::vec_dot_q4_1_q8_1(&w41, &a81),
                    neon::vec_dot_q4_0_q8_0(&w40, &a80),
                    neon::vec_dot_q8_0_q8_0(&w80, &a80),
                )
            };
            assert!(
                close(s41, vec_dot_q4_1_q8_1_ref(&w41, &a81), n),
                "q4_1 n={n}"
            );
            assert!(
                close(s40, vec_dot_q4_0_q8_0_ref(&w40, &a80), n),
                "q4_0 n={n}"
            );
            assert!(
                close(s80, vec_dot_q8_0_q8_0_ref(&w80, &a80), n),
                "q8_0 n={n}"
            );
            // Arbitrary quant bytes, scales kept finite and small.
            let d = |x: u16| half::f16::from_f32((x % 200) as f32 / 1000.0);
            let w80r = raw::<BlockQ8_0>(n / 32, seed + 7, |b| b.d = d(b.d.to_bits()));
            let a80r = raw::<BlockQ8_0>(n / 32, seed + 8, |b| b.d = d(b.d.to_bits()));
            let w40r = raw::<BlockQ4_0>(n / 32, seed + 9, |b| b.d = d(b.d.to_bits()));
            // SAFETY: as above.
            let (s80, s40) = unsafe {
                (
                    neon::vec_dot_q8_0_q8_0(&w80r, &a80r),
                    neon::vec_dot_q4_0_q8_0(&w40r, &a80r),
                )
            };
            assert!(
                close(s80, vec_dot_q8_0_q8_0_ref(&w80r, &a80r), n),
                "q8_0 raw n={n}"
            );
            assert!(
                close(s40, vec_dot_q4_0_q8_0_ref(&w40r, &a80r), n),
                "q4_0 raw n={n}"
            );
            // The five-bit types, on quantized rows and on arbitrary quant and qh bytes.
            let (w50, w51) = (quantize::<BlockQ5_0>(&w), quantize::<BlockQ5_1>(&w));
            let w50r = raw::<BlockQ5_0>(n / 32, seed + 10, |b| b.d = d(b.d.to_bits()));
            let w51r = raw::<BlockQ5_1>(n / 32, seed + 11, |b| {
                (b.d, b.m) = (d(b.d.to_bits()), d(b.m.to_bits()))
            });
            for (w50, w51, what) in [(&w50, &w51, "quantized"), (&w50r, &w51r, "raw")] {
                // SAFETY: as above.
                let (s50, s51) = unsafe {
                    (
                        neon::vec_dot_q5_0_q8_0(w50, &a80),
                        neon::vec_dot_q5_1_q8_1(w51, &a81),
                    )
                };
                assert!(
                    close(s50, vec_dot_q5_0_q8_0_ref(w50, &a80), n),
                    "q5_0 {what} n={n}"
                );
                assert!(
                    close(s51, vec_dot_q5_1_q8_1_ref(w51, &a81), n),
                    "q5_1 {what} n={n}"
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use hearth_kernels::attention::KvSpan;
    use hearth_kernels::simd::{x86, x86_attention};

    fn have_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
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
            let (w40, w80, a80) = (
                quantize::<BlockQ4_0>(&w),
                quantize::<BlockQ8_0>(&w),
                quantize::<BlockQ8_0>(&a),
            );
            // SAFETY: AVX2 and FMA were detected above.
            let (s41, s40, s80) = unsafe {
                (
                    x86::vec_dot_q4_1_q8_1(&w41, &a81),
                    x86::vec_dot_q4_0_q8_0(&w40, &a80),
                    x86::vec_dot_q8_0_q8_0(&w80, &a80),
                )
            };
            assert!(
                close(s41, vec_dot_q4_1_q8_1_ref(&w41, &a81), n),
                "q4_1 n={n}"
            );
            assert!(
                close(s40, vec_dot_q4_0_q8_0_ref(&w40, &a80), n),
                "q4_0 n={n}"
            );
            assert!(
                close(s80, vec_dot_q8_0_q8_0_ref(&w80, &a80), n),
                "q8_0 n={n}"
            );
        }
    }

    /// The tiled AVX2 kernels against the scalar twin (one `vec_dot_*_ref` per output).
    #[test]
    fn avx2_gemm_kernels_match_scalar_twins() {
        if !have_avx2() {
            return;
        }
        for ne0 in [32, 576, 1536] {
            let nb = ne0 / 32;
            for n_rows in [1, 2, 3, 5, 8, 9] {
                let w = data(ne0 * n_rows, ne0 as u64 + n_rows as u64);
                let (w41, w40, w80) = (
                    quantize::<BlockQ4_1>(&w),
                    quantize::<BlockQ4_0>(&w),
                    quantize::<BlockQ8_0>(&w),
                );
                for n_tokens in [1, 3, 4, 5, 6, 7, 9, 12, 14, 16] {
                    let x = data(ne0 * n_tokens, 500 + n_tokens as u64);
                    let (a81, a80) = (quantize::<BlockQ8_1>(&x), quantize::<BlockQ8_0>(&x));
                    let n = n_rows * n_tokens;
                    let (mut s41, mut s40, mut s80) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                    // SAFETY: AVX2, FMA and F16C were detected above.
                    unsafe {
                        x86::gemm_q4_1_q8_1(nb, &w41, &a81, &mut s41);
                        x86::gemm_q4_0_q8_0(nb, &w40, &a80, &mut s40);
                        x86::gemm_q8_0_q8_0(nb, &w80, &a80, &mut s80);
                    }
                    let (mut r41, mut r40, mut r80) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                    gemm_with(nb, &w41, &a81, &mut r41, vec_dot_q4_1_q8_1_ref);
                    gemm_with(nb, &w40, &a80, &mut r40, vec_dot_q4_0_q8_0_ref);
                    gemm_with(nb, &w80, &a80, &mut r80, vec_dot_q8_0_q8_0_ref);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let what = format!("ne0 {ne0} rows {n_rows} tokens {n_tokens}");
                    assert_eq!(bits(&s41), bits(&r41), "q4_1 {what}");
                    assert_eq!(bits(&s40), bits(&r40), "q4_0 {what}");
                    assert_eq!(bits(&s80), bits(&r80), "q8_0 {what}");
                }
            }
        }
    }

    /// Head widths the attention tests run at: multiples of 64 (the score's 64-lane
    /// chains over several chunks) and of 32 only (a score ending in f64), the smallest
    /// and the widest. `avx2_attention_takes_every_supported_width` covers the rest.
    pub(crate) const HEAD_DIMS: [usize; 5] = [32, 64, 96, 128, 256];

    pub(crate) fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn avx2_attention_is_bit_identical_to_its_twin() {
        if !have_avx2() {
            return;
        }
        for hd in HEAD_DIMS {
            let (n_pos, stride) = (37, 3 * hd);
            let k = data(n_pos * stride, 7);
            let v = data(n_pos * stride, 8);
            for (offset, seed) in [(0, 9), (hd, 10), (2 * hd, 11)] {
                let q = data(hd, seed);
                for len in [1, 2, 17, n_pos] {
                    let (mut a, mut b) = (vec![0.0f32; hd], vec![0.0f32; hd]);
                    let whole = [KvSpan {
                        k: &k[..],
                        v: &v[..],
                        n_pos: len,
                    }];
                    // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v.
                    unsafe {
                        x86_attention::attend_heads(&q, hd, &whole, stride, offset, 0.125, &mut a)
                    };
                    attention::attend_head_ref(&q, &whole, stride, offset, 0.125, &mut b);
                    assert_eq!(
                        bits(&a),
                        bits(&b),
                        "heads of {hd}, offset {offset} len {len}"
                    );
                    // The same positions split into blocks, as a paged cache holds them.
                    for bs in [1, 5, 16] {
                        let spans: Vec<_> = (0..len)
                            .step_by(bs)
                            .map(|p0| KvSpan {
                                k: &k[p0 * stride..],
                                v: &v[p0 * stride..],
                                n_pos: bs.min(len - p0),
                            })
                            .collect();
                        let (mut c, mut d) = (vec![0.0f32; hd], vec![0.0f32; hd]);
                        // SAFETY: as above.
                        unsafe {
                            x86_attention::attend_heads(
                                &q, hd, &spans, stride, offset, 0.125, &mut c,
                            )
                        };
                        attention::attend_head_ref(&q, &spans, stride, offset, 0.125, &mut d);
                        assert_eq!(
                            bits(&a),
                            bits(&c),
                            "heads of {hd}, blocks of {bs}, offset {offset} len {len}"
                        );
                        assert_eq!(
                            bits(&a),
                            bits(&d),
                            "heads of {hd}, blocks of {bs} (twin), offset {offset} len {len}"
                        );
                    }
                    // Read in place from an f16 cache: the same as from its f32 widening.
                    let (k16, v16): (Vec<half::f16>, Vec<half::f16>) = (
                        k.iter().map(|&x| half::f16::from_f32(x)).collect(),
                        v.iter().map(|&x| half::f16::from_f32(x)).collect(),
                    );
                    let (kw, vw): (Vec<f32>, Vec<f32>) = (
                        k16.iter().map(|x| x.to_f32()).collect(),
                        v16.iter().map(|x| x.to_f32()).collect(),
                    );
                    let (mut c, mut d, mut e) =
                        (vec![0.0f32; hd], vec![0.0f32; hd], vec![0.0f32; hd]);
                    let s16 = [KvSpan {
                        k: &k16[..],
                        v: &v16[..],
                        n_pos: len,
                    }];
                    let sw = [KvSpan {
                        k: &kw[..],
                        v: &vw[..],
                        n_pos: len,
                    }];
                    // SAFETY: as above.
                    unsafe {
                        x86_attention::attend_heads(&q, hd, &s16, stride, offset, 0.125, &mut c)
                    };
                    attention::attend_head_ref(&q, &s16, stride, offset, 0.125, &mut d);
                    attention::attend_head_ref(&q, &sw, stride, offset, 0.125, &mut e);
                    assert_eq!(
                        bits(&c),
                        bits(&d),
                        "heads of {hd}, f16 offset {offset} len {len}"
                    );
                    assert_eq!(
                        bits(&d),
                        bits(&e),
                        "heads of {hd}, f16 vs widened, offset {offset} len {len}"
                    );
                }
            }
        }
    }

    /// The score sums of the one-key kernel over an f32 cache whose elements span many
    /// binades, so that the f32 chains and the f64 tail round at most steps: still the
    /// twin's bits, for every supported width. The keys are one wide-ranging row times
    /// `1 + 2^-10 u` (`u` in -1..1), so every score is a large common part plus a
    /// difference of a few units, and the softmax weights (scaled to differences of about
    /// one) see the last bits of each score.
    #[test]
    fn avx2_attention_sums_in_the_twins_order_over_many_binades() {
        if !have_avx2() {
            return;
        }
        let mut r = rand::rngs::StdRng::seed_from_u64(77);
        for hd in (32..=x86_attention::MAX_HEAD_DIM).step_by(32) {
            let n_pos = 29;
            let base: Vec<f32> = (0..hd)
                .map(|_| r.gen_range(-2.0f32..2.0) * (r.gen_range(-12i32..=12) as f32).exp2())
                .collect();
            let mut row = |scale: f32| -> Vec<f32> {
                (0..n_pos * hd)
                    .map(|i| base[i % hd] * (1.0 + scale * r.gen_range(-1.0f32..1.0)))
                    .collect()
            };
            let (k, v) = (row(1.0 / 1024.0), row(0.5));
            let q: Vec<f32> = (0..2 * hd).map(|_| r.gen_range(-2.0f32..2.0)).collect();
            let spans = [KvSpan {
                k: &k[..],
                v: &v[..],
                n_pos,
            }];
            // Scores differ by about 2^-10 of their common part: scale those differences to ~1.
            let common: f32 = (0..hd).map(|d| (q[d] * base[d]).abs()).sum();
            let scale = 1024.0 / common.max(1.0);
            let mut got = vec![0.0f32; 2 * hd];
            // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v.
            unsafe { x86_attention::attend_heads(&q, hd, &spans, hd, 0, scale, &mut got) };
            for h in 0..2 {
                let mut want = vec![0.0f32; hd];
                attention::attend_head_ref(&q[h * hd..][..hd], &spans, hd, 0, scale, &mut want);
                assert_eq!(
                    bits(&got[h * hd..][..hd]),
                    bits(&want),
                    "heads of {hd}, head {h}"
                );
            }
        }
    }

    #[test]
    fn avx2_grouped_attention_is_each_head_alone() {
        if !have_avx2() {
            return;
        }
        for hd in HEAD_DIMS {
            let (n_pos, stride) = (45, 3 * hd);
            let k: Vec<half::f16> = data(n_pos * stride, 17)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            let v: Vec<half::f16> = data(n_pos * stride, 18)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            for g in 1..=6 {
                // Larger queries make the running maximum move often (rescaling mid-run).
                let q: Vec<f32> = data(hd * g, 19 + g as u64)
                    .iter()
                    .map(|x| x * 6.0)
                    .collect();
                for len in [1, 7, 8, 9, 16, 33, n_pos] {
                    let spans: Vec<_> = (0..len)
                        .step_by(16)
                        .map(|p0| KvSpan {
                            k: &k[p0 * stride..],
                            v: &v[p0 * stride..],
                            n_pos: 16.min(len - p0),
                        })
                        .collect();
                    let mut grouped = vec![0.0f32; hd * g];
                    // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v.
                    unsafe {
                        x86_attention::attend_heads(&q, hd, &spans, stride, hd, 0.125, &mut grouped)
                    };
                    for h in 0..g {
                        let mut alone = vec![0.0f32; hd];
                        attention::attend_head_ref(
                            &q[hd * h..][..hd],
                            &spans,
                            stride,
                            hd,
                            0.125,
                            &mut alone,
                        );
                        assert_eq!(
                            bits(&grouped[hd * h..][..hd]),
                            bits(&alone),
                            "heads of {hd}, group of {g}, head {h}, {len} positions"
                        );
                    }
                }
            }
        }
    }

    /// `n` Q8_0 blocks of test data.
    pub(crate) fn q8_0_rows(n: usize, seed: u64) -> Vec<BlockQ8_0> {
        let mut y = vec![<BlockQ8_0 as bytemuck::Zeroable>::zeroed(); n];
        BlockQ8_0::quantize_row(&data(n * 32, seed), &mut y);
        y
    }

    #[test]
    fn avx2_q8_0_cache_attention_is_the_scalar_kernel() {
        if !have_avx2() {
            return;
        }
        for hd in HEAD_DIMS {
            let nb = hd / 32;
            let (n_pos, stride) = (45, 3 * nb); // blocks per cached row: three KV heads
            let quant = |seed: u64| q8_0_rows(n_pos * stride, seed);
            let (k, v) = (quant(27), quant(28));
            for g in 1..=6 {
                let q: Vec<f32> = data(hd * g, 29 + g as u64)
                    .iter()
                    .map(|x| x * 6.0)
                    .collect();
                for len in [1, 7, 8, 9, 16, 33, n_pos] {
                    let spans: Vec<_> = (0..len)
                        .step_by(16)
                        .map(|p0| KvSpan {
                            k: &k[p0 * stride..],
                            v: &v[p0 * stride..],
                            n_pos: 16.min(len - p0),
                        })
                        .collect();
                    let mut grouped = vec![0.0f32; hd * g];
                    // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v.
                    unsafe {
                        x86_attention::attend_tiled_q8_0(
                            &q,
                            hd,
                            &[len],
                            &spans,
                            stride,
                            nb,
                            0.125,
                            &mut grouped,
                        )
                    };
                    for h in 0..g {
                        let mut alone = vec![0.0f32; hd];
                        attention::attend_head_quant(
                            &q[hd * h..][..hd],
                            &spans,
                            stride,
                            nb,
                            0.125,
                            &mut alone,
                        );
                        assert_eq!(
                            bits(&grouped[hd * h..][..hd]),
                            bits(&alone),
                            "heads of {hd}, group of {g}, head {h}, {len} positions"
                        );
                    }
                }
            }
        }
    }

    /// Runs `simd` on consecutive queries (1 to 8 of them, `g` heads of `hd` each) ending
    /// at several positions, over spans of 16 and of 5 positions, and checks each (query,
    /// head) against `alone` over its visible positions, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_tiled<T: Copy>(
        hd: usize,
        k: &[T],
        v: &[T],
        stride: usize,
        offset: usize,
        simd: impl Fn(&[f32], &[usize], &[KvSpan<'_, T>], &mut [f32]),
        alone: impl Fn(&[f32], &[KvSpan<'_, T>], &mut [f32]),
    ) {
        let n_pos = k.len() / stride;
        for g in [1, 3, 6] {
            for n_q in [1, 2, 5, 8] {
                // Larger queries make the running maximum move often (rescaling mid-run).
                let q: Vec<f32> = data(hd * g * n_q, 39 + (g * n_q) as u64)
                    .iter()
                    .map(|x| x * 6.0)
                    .collect();
                for last in [n_q, 9, 16, 17, 33, n_pos] {
                    // Consecutive positions ending at `last`, as a prompt chunk has them.
                    let lens: Vec<usize> = (last + 1 - n_q..=last).collect();
                    for bs in [16, 5] {
                        let spans: Vec<_> = (0..last)
                            .step_by(bs)
                            .map(|p0| KvSpan {
                                k: &k[p0 * stride..],
                                v: &v[p0 * stride..],
                                n_pos: bs.min(last - p0),
                            })
                            .collect();
                        let mut tiled = vec![0.0f32; hd * g * n_q];
                        simd(&q, &lens, &spans, &mut tiled);
                        for (i, &len) in lens.iter().enumerate() {
                            let visible = attention::first_positions(&spans, len);
                            for h in 0..g {
                                let at = (i * g + h) * hd;
                                let mut one = vec![0.0f32; hd];
                                alone(&q[at..at + hd], &visible, &mut one);
                                assert_eq!(
                                    bits(&tiled[at..at + hd]),
                                    bits(&one),
                                    "heads of {hd}: {g} heads, {n_q} queries to {last}, blocks of {bs}: query {i} head {h} (offset {offset})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn avx2_tiled_attention_is_the_scalar_kernel_for_every_query() {
        if !have_avx2() {
            return;
        }
        for hd in HEAD_DIMS {
            let (n_pos, stride) = (45, 3 * hd);
            let k: Vec<half::f16> = data(n_pos * stride, 37)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            let v: Vec<half::f16> = data(n_pos * stride, 38)
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            check_tiled(
                hd,
                &k,
                &v,
                stride,
                hd,
                // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v; at most 8 queries.
                |q, lens, spans, out| unsafe {
                    x86_attention::attend_tiled(q, hd, lens, spans, stride, hd, 0.125, out)
                },
                |q, spans, out| attention::attend_head_tiled(q, spans, stride, hd, 0.125, out),
            );
        }
    }

    #[test]
    fn avx2_q8_0_cache_tiled_attention_is_the_scalar_kernel_for_every_query() {
        if !have_avx2() {
            return;
        }
        for hd in HEAD_DIMS {
            let nb = hd / 32;
            let (n_pos, stride) = (45, 3 * nb); // blocks per cached row: three KV heads
            let quant = |seed: u64| q8_0_rows(n_pos * stride, seed);
            let (k, v) = (quant(47), quant(48));
            check_tiled(
                hd,
                &k,
                &v,
                stride,
                2 * nb,
                // SAFETY: AVX2/FMA/F16C detected; rows lie inside k and v; at most 8 queries.
                |q, lens, spans, out| unsafe {
                    x86_attention::attend_tiled_q8_0(q, hd, lens, spans, stride, 2 * nb, 0.125, out)
                },
                |q, spans, out| attention::attend_head_quant(q, spans, stride, 2 * nb, 0.125, out),
            );
        }
    }

    /// Every width the kernels take (multiples of 32 up to `MAX_HEAD_DIM`), each kernel
    /// on f16 and f32 caches (Q8_0 for the quantized one), in fewer shapes than above:
    /// groups of one to six heads (the one-key kernel takes wide heads two at a time),
    /// two and eight queries.
    #[test]
    fn avx2_attention_takes_every_supported_width() {
        if !have_avx2() {
            return;
        }
        let n_pos = 21;
        for hd in (32..=x86_attention::MAX_HEAD_DIM).step_by(32) {
            assert!(x86_attention::attention_head_dim_supported(hd));
            let (stride, nb) = (2 * hd, hd / 32);
            let (k, v) = (data(n_pos * stride, 61), data(n_pos * stride, 62));
            let (k16, v16): (Vec<half::f16>, Vec<half::f16>) = (
                k.iter().map(|&x| half::f16::from_f32(x)).collect(),
                v.iter().map(|&x| half::f16::from_f32(x)).collect(),
            );
            let (k8, v8) = (q8_0_rows(n_pos * 2 * nb, 63), q8_0_rows(n_pos * 2 * nb, 64));
            let spans: Vec<_> = (0..n_pos)
                .step_by(6)
                .map(|p0| KvSpan {
                    k: &k[p0 * stride..],
                    v: &v[p0 * stride..],
                    n_pos: 6.min(n_pos - p0),
                })
                .collect();
            let spans16: Vec<_> = (0..n_pos)
                .step_by(6)
                .map(|p0| KvSpan {
                    k: &k16[p0 * stride..],
                    v: &v16[p0 * stride..],
                    n_pos: 6.min(n_pos - p0),
                })
                .collect();
            let spans8: Vec<_> = (0..n_pos)
                .step_by(6)
                .map(|p0| KvSpan {
                    k: &k8[p0 * 2 * nb..],
                    v: &v8[p0 * 2 * nb..],
                    n_pos: 6.min(n_pos - p0),
                })
                .collect();
            for g in [1, 2, 3, 5, 6] {
                let q: Vec<f32> = data(hd * g * 8, 65 + g as u64)
                    .iter()
                    .map(|x| x * 4.0)
                    .collect();
                // The one-key kernel, one query.
                let (mut a, mut a16) = (vec![0.0f32; hd * g], vec![0.0f32; hd * g]);
                // SAFETY: AVX2/FMA/F16C detected; rows lie inside the caches.
                unsafe {
                    x86_attention::attend_heads(
                        &q[..hd * g],
                        hd,
                        &spans,
                        stride,
                        hd,
                        0.125,
                        &mut a,
                    );
                    x86_attention::attend_heads(
                        &q[..hd * g],
                        hd,
                        &spans16,
                        stride,
                        hd,
                        0.125,
                        &mut a16,
                    );
                }
                for h in 0..g {
                    let (mut w, mut w16) = (vec![0.0f32; hd], vec![0.0f32; hd]);
                    attention::attend_head_ref(
                        &q[hd * h..][..hd],
                        &spans,
                        stride,
                        hd,
                        0.125,
                        &mut w,
                    );
                    attention::attend_head_ref(
                        &q[hd * h..][..hd],
                        &spans16,
                        stride,
                        hd,
                        0.125,
                        &mut w16,
                    );
                    assert_eq!(
                        bits(&a[hd * h..][..hd]),
                        bits(&w),
                        "attend_heads f32, heads of {hd}, {g} heads, head {h}"
                    );
                    assert_eq!(
                        bits(&a16[hd * h..][..hd]),
                        bits(&w16),
                        "attend_heads f16, heads of {hd}, {g} heads, head {h}"
                    );
                }
                // The tiled kernels.
                for n_q in [2, 8] {
                    let lens: Vec<usize> = (n_pos + 1 - n_q..=n_pos).collect();
                    let q = &q[..hd * g * n_q];
                    let (mut t, mut t16, mut t8) = (
                        vec![0.0f32; q.len()],
                        vec![0.0f32; q.len()],
                        vec![0.0f32; q.len()],
                    );
                    // SAFETY: as above; at most 8 queries.
                    unsafe {
                        x86_attention::attend_tiled(q, hd, &lens, &spans, stride, 0, 0.125, &mut t);
                        x86_attention::attend_tiled(
                            q, hd, &lens, &spans16, stride, 0, 0.125, &mut t16,
                        );
                        x86_attention::attend_tiled_q8_0(
                            q,
                            hd,
                            &lens,
                            &spans8,
                            2 * nb,
                            nb,
                            0.125,
                            &mut t8,
                        );
                    }
                    let avx512 = have_avx512_attention();
                    let mut t512 = vec![0.0f32; q.len()];
                    if avx512 {
                        // SAFETY: AVX-512 F/BW/VL, AVX2, FMA and F16C detected; as above.
                        unsafe {
                            hearth_kernels::simd::x86_avx512_attention::attend_tiled_q8_0(
                                q,
                                hd,
                                &lens,
                                &spans8,
                                2 * nb,
                                nb,
                                0.125,
                                &mut t512,
                            )
                        };
                    }
                    for (i, &len) in lens.iter().enumerate() {
                        let (vis, vis16, vis8) = (
                            attention::first_positions(&spans, len),
                            attention::first_positions(&spans16, len),
                            attention::first_positions(&spans8, len),
                        );
                        for h in 0..g {
                            let at = (i * g + h) * hd;
                            let (mut w, mut w16, mut w8) =
                                (vec![0.0f32; hd], vec![0.0f32; hd], vec![0.0f32; hd]);
                            attention::attend_head_tiled(
                                &q[at..at + hd],
                                &vis,
                                stride,
                                0,
                                0.125,
                                &mut w,
                            );
                            attention::attend_head_tiled(
                                &q[at..at + hd],
                                &vis16,
                                stride,
                                0,
                                0.125,
                                &mut w16,
                            );
                            attention::attend_head_quant(
                                &q[at..at + hd],
                                &vis8,
                                2 * nb,
                                nb,
                                0.125,
                                &mut w8,
                            );
                            let what = format!(
                                "heads of {hd}, {g} heads, {n_q} queries: query {i} head {h}"
                            );
                            assert_eq!(bits(&t[at..at + hd]), bits(&w), "attend_tiled f32, {what}");
                            assert_eq!(
                                bits(&t16[at..at + hd]),
                                bits(&w16),
                                "attend_tiled f16, {what}"
                            );
                            assert_eq!(
                                bits(&t8[at..at + hd]),
                                bits(&w8),
                                "attend_tiled_q8_0, {what}"
                            );
                            if avx512 {
                                assert_eq!(
                                    bits(&t512[at..at + hd]),
                                    bits(&w8),
                                    "AVX-512 attend_tiled_q8_0, {what}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn have_avx512_attention() -> bool {
        have_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
    }

    fn block_q8_0(d: f32, qs: [i8; 32]) -> BlockQ8_0 {
        BlockQ8_0 {
            d: half::f16::from_f32(d),
            qs,
        }
    }

    #[test]
    fn avx2_q8_0_is_exact_at_the_extremes() {
        if !have_avx2() {
            return;
        }
        let w = block_q8_0(1.0, [-128; 32]);
        // SAFETY: AVX2 and FMA were detected above.
        assert_eq!(
            unsafe { x86::vec_dot_q8_0_q8_0(&[w], &[w]) },
            32.0 * 16384.0
        );
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
        fn avx2_gemm_q8_0_matches_scalar_on_arbitrary_blocks(qs in proptest::collection::vec(any::<i8>(), 5 * 64..=5 * 64), qa in proptest::collection::vec(any::<i8>(), 3 * 64..=3 * 64)) {
            prop_assume!(have_avx2());
            let mk = |q: &[i8], d: f32| -> Vec<BlockQ8_0> {
                q.chunks_exact(32).map(|c| block_q8_0(d, c.try_into().unwrap())).collect()
            };
            // 5 rows and 3 tokens of 2 blocks.
            let (w, a) = (mk(&qs, 0.5), mk(&qa, 0.25));
            let (mut s, mut r) = (vec![0.0f32; 15], vec![0.0f32; 15]);
            // SAFETY: AVX2 and FMA were detected (prop_assume above).
            unsafe { x86::gemm_q8_0_q8_0(2, &w, &a, &mut s) };
            gemm_with(2, &w, &a, &mut r, vec_dot_q8_0_q8_0_ref);
            prop_assert_eq!(s.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), r.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
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

/// The AVX-512 tiles against the scalar twins, bit for bit, where the CPU has AVX-512
/// (F/BW/VL/VNNI); elsewhere these print a note and pass.
#[cfg(target_arch = "x86_64")]
mod x86_avx512 {
    use super::*;
    use hearth_kernels::simd::x86_avx512 as k;

    fn have_avx512() -> bool {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        if !ok {
            eprintln!("no AVX-512 VNNI on this CPU: its kernels not exercised");
        }
        ok
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `k::gemm_*` against one twin `vec_dot` per output, bit for bit, into a compact
    /// output and into a strided one (a task's rows inside a wider output), where it
    /// writes its elements and nothing between them.
    fn check<W: WeightBlock>(
        name: &str,
        gemm: impl Fn(usize, &[W], &[W::Act], GemmOut<'_>),
        twin: fn(&[W], &[W::Act]) -> f32,
    ) {
        for ne0 in [32, 576, 1536] {
            let nb = ne0 / 32;
            for n_rows in [1, 2, 3, 5, 8, 9] {
                let w = quantize::<W>(&data(ne0 * n_rows, ne0 as u64 + n_rows as u64));
                for n_tokens in [1, 2, 3, 7, 8, 9, 15, 16, 17, 33] {
                    let x = data(ne0 * n_tokens, 700 + n_tokens as u64);
                    let mut a = quantize::<W::Act>(&x);
                    W::Act::quantize_row_act(&x, &mut a);
                    let n = n_rows * n_tokens;
                    let (mut got, mut want) = (vec![f32::NAN; n], vec![0.0; n]);
                    gemm(nb, &w, &a, (&mut got[..]).into_gemm_out(n_rows, n_tokens));
                    gemm_with(nb, &w, &a, &mut want, twin);
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{name} ne0 {ne0} rows {n_rows} tokens {n_tokens}"
                    );

                    let ld = n_rows + 3;
                    let mut wide = vec![f32::NAN; 2 + n_tokens * ld];
                    // SAFETY: elements 2 + t * ld + r (t < n_tokens, r < n_rows) lie in
                    // `wide`, which nothing else touches during the call.
                    gemm(nb, &w, &a, unsafe {
                        GemmOut::from_raw_parts(wide.as_mut_ptr().add(2), ld, n_rows, n_tokens)
                    });
                    for (i, v) in wide.iter().enumerate() {
                        let (t, r) = ((i.wrapping_sub(2)) / ld, (i.wrapping_sub(2)) % ld);
                        if i >= 2 && r < n_rows {
                            assert_eq!(
                                v.to_bits(),
                                want[t * n_rows + r].to_bits(),
                                "{name} strided ({t}, {r})"
                            );
                        } else {
                            assert!(v.is_nan(), "{name} wrote element {i}, outside its rows");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn avx512_gemm_kernels_match_scalar_twins() {
        if !have_avx512() {
            return;
        }
        // SAFETY (each kernel call): AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C were detected.
        check::<BlockQ4_0>(
            "q4_0",
            |nb, w, a, o| unsafe { k::gemm_q4_0_q8_0(nb, w, a, o) },
            vec_dot_q4_0_q8_0_ref,
        );
        check::<BlockQ4_1>(
            "q4_1",
            |nb, w, a, o| unsafe { k::gemm_q4_1_q8_1(nb, w, a, o) },
            vec_dot_q4_1_q8_1_ref,
        );
        check::<BlockQ5_0>(
            "q5_0",
            |nb, w, a, o| unsafe { k::gemm_q5_0_q8_0(nb, w, a, o) },
            vec_dot_q5_0_q8_0_ref,
        );
        check::<BlockQ5_1>(
            "q5_1",
            |nb, w, a, o| unsafe { k::gemm_q5_1_q8_1(nb, w, a, o) },
            vec_dot_q5_1_q8_1_ref,
        );
        check::<BlockQ8_0>(
            "q8_0",
            |nb, w, a, o| unsafe { k::gemm_q8_0_q8_0(nb, w, a, o) },
            vec_dot_q8_0_q8_0_ref,
        );
        // The dispatching entry point, with whatever ISA this process runs.
        check::<BlockQ4_1>(
            "q4_1 dispatched",
            |nb, w, a, o| BlockQ4_1::gemm(nb, w, a, o),
            vec_dot_q4_1_q8_1_ref,
        );
    }

    #[test]
    fn avx512_q8_0_cache_tiled_attention_is_the_scalar_kernel_for_every_query() {
        if !have_avx512() {
            return;
        }
        use hearth_kernels::simd::x86_avx512_attention as att;
        for hd in super::x86::HEAD_DIMS {
            let nb = hd / 32;
            let (n_pos, stride) = (45, 3 * nb); // blocks per cached row: three KV heads
            let (k, v) = (
                super::x86::q8_0_rows(n_pos * stride, 57),
                super::x86::q8_0_rows(n_pos * stride, 58),
            );
            for offset in [0, nb, 2 * nb] {
                super::x86::check_tiled(
                    hd,
                    &k,
                    &v,
                    stride,
                    offset,
                    // SAFETY: AVX-512 F/BW/VL, AVX2, FMA and F16C detected; rows lie inside k
                    // and v; at most 8 queries.
                    |q, lens, spans, out| unsafe {
                        att::attend_tiled_q8_0(q, hd, lens, spans, stride, offset, 0.125, out)
                    },
                    |q, spans, out| {
                        attention::attend_head_quant(q, spans, stride, offset, 0.125, out)
                    },
                );
            }
        }
    }

    #[test]
    fn avx512_k_quant_tiles_match_scalar_twins() {
        if !have_avx512() {
            return;
        }
        for ne0 in [256, 768] {
            let nb = ne0 / 256;
            for n_rows in [1, 2, 3, 6] {
                let w = data(ne0 * n_rows, ne0 as u64 + n_rows as u64);
                let (w4, w5, w6) = (
                    quantize::<BlockQ4_K>(&w),
                    quantize::<BlockQ5_K>(&w),
                    quantize::<BlockQ6_K>(&w),
                );
                for n_tokens in [1, 2, 5, 8, 9, 17] {
                    let x = data(ne0 * n_tokens, 900 + n_tokens as u64);
                    let mut a = quantize::<BlockQ8_K>(&x);
                    BlockQ8_K::quantize_row_act(&x, &mut a);
                    let n = n_rows * n_tokens;
                    let mut out = vec![vec![f32::NAN; n]; 6];
                    // SAFETY: AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C were detected.
                    unsafe {
                        k::gemm_q4_k_q8_k(nb, &w4, &a, &mut out[0]);
                        k::gemm_q5_k_q8_k(nb, &w5, &a, &mut out[1]);
                        k::gemm_q6_k_q8_k(nb, &w6, &a, &mut out[2]);
                    }
                    gemm_with(nb, &w4, &a, &mut out[3], vec_dot_q4_k_q8_k_ref);
                    gemm_with(nb, &w5, &a, &mut out[4], vec_dot_q5_k_q8_k_ref);
                    gemm_with(nb, &w6, &a, &mut out[5], vec_dot_q6_k_q8_k_ref);
                    let what = format!("ne0 {ne0} rows {n_rows} tokens {n_tokens}");
                    assert_eq!(bits(&out[0]), bits(&out[3]), "q4_k {what}");
                    assert_eq!(bits(&out[1]), bits(&out[4]), "q5_k {what}");
                    assert_eq!(bits(&out[2]), bits(&out[5]), "q6_k {what}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// K-quant super-blocks of random bytes (finite scales), 3 rows × 1..12 tokens;
        /// activations with every quant but -128 (the quantizer's range).
        #[test]
        fn avx512_k_quant_tiles_match_twins_on_arbitrary_blocks(
            wq in proptest::collection::vec(any::<u8>(), 3 * 210),
            aq in proptest::collection::vec(-127i8..=127, 12 * 256),
            n_tokens in 1usize..=12,
        ) {
            prop_assume!(have_avx512());
            let fix = |b: &mut [u8]| for o in [0, 2] {
                if !half::f16::from_le_bytes([b[o], b[o + 1]]).is_finite() { b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes()) }
            };
            let rows = |size: usize| -> Vec<u8> { wq.chunks_exact(210).flat_map(|c| { let mut b = c[..size].to_vec(); fix(&mut b); b }).collect() };
            let w4: Vec<BlockQ4_K> = rows(144).chunks_exact(144).map(bytemuck::pod_read_unaligned).collect();
            let w5: Vec<BlockQ5_K> = rows(176).chunks_exact(176).map(bytemuck::pod_read_unaligned).collect();
            // Q6_K keeps its scale last.
            let w6: Vec<BlockQ6_K> = wq.chunks_exact(210).map(|c| {
                let mut b = c.to_vec();
                if !half::f16::from_le_bytes([b[208], b[209]]).is_finite() { b[208..].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes()) }
                bytemuck::pod_read_unaligned(&b)
            }).collect();
            let a: Vec<BlockQ8_K> = aq.chunks_exact(256).take(n_tokens).map(|q| {
                let mut b = BlockQ8_K { d: 0.01, qs: q.try_into().unwrap(), bsums: [0; 16] };
                for (i, s) in b.bsums.iter_mut().enumerate() {
                    *s = q[16 * i..16 * i + 16].iter().map(|&v| i16::from(v)).sum();
                }
                b
            }).collect();
            let n = 3 * n_tokens;
            let mut out = vec![vec![0.0f32; n]; 6];
            // SAFETY: AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C were detected (prop_assume).
            unsafe {
                k::gemm_q4_k_q8_k(1, &w4, &a, &mut out[0]);
                k::gemm_q5_k_q8_k(1, &w5, &a, &mut out[1]);
                k::gemm_q6_k_q8_k(1, &w6, &a, &mut out[2]);
            }
            gemm_with(1, &w4, &a, &mut out[3], vec_dot_q4_k_q8_k_ref);
            gemm_with(1, &w5, &a, &mut out[4], vec_dot_q5_k_q8_k_ref);
            gemm_with(1, &w6, &a, &mut out[5], vec_dot_q6_k_q8_k_ref);
            prop_assert_eq!(bits(&out[0]), bits(&out[3]));
            prop_assert_eq!(bits(&out[1]), bits(&out[4]));
            prop_assert_eq!(bits(&out[2]), bits(&out[5]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Every byte drawn (quants of -128 included, scales of any sign and size but
        /// finite), 3 rows × 1..20 tokens of 2 blocks.
        #[test]
        fn avx512_gemm_matches_scalar_on_arbitrary_blocks(
            wq in proptest::collection::vec(any::<u8>(), 3 * 2 * 34),
            aq in proptest::collection::vec(any::<u8>(), 20 * 2 * 36),
            n_tokens in 1usize..=20,
        ) {
            prop_assume!(have_avx512());
            let finite = |h: &mut half::f16| if !h.is_finite() { *h = half::f16::from_f32(0.5) };
            let w80: Vec<BlockQ8_0> = wq.chunks_exact(34).map(|c| {
                let mut b: BlockQ8_0 = bytemuck::pod_read_unaligned(c);
                finite(&mut b.d);
                b
            }).collect();
            let a80: Vec<BlockQ8_0> = aq.chunks_exact(36).take(2 * n_tokens).map(|c| {
                let mut b: BlockQ8_0 = bytemuck::pod_read_unaligned(&c[..34]);
                finite(&mut b.d);
                b
            }).collect();
            let w41: Vec<BlockQ4_1> = wq.chunks_exact(34).map(|c| {
                let mut b: BlockQ4_1 = bytemuck::pod_read_unaligned(&c[..20]);
                finite(&mut b.d);
                finite(&mut b.m);
                b
            }).collect();
            let a81: Vec<BlockQ8_1> = aq.chunks_exact(36).take(2 * n_tokens).map(|c| {
                let mut b: BlockQ8_1 = bytemuck::pod_read_unaligned(c);
                finite(&mut b.d);
                finite(&mut b.s);
                b
            }).collect();
            let blocks = |size: usize, fix: &dyn Fn(&mut [u8])| -> Vec<u8> {
                wq.chunks_exact(34).flat_map(|c| {
                    let mut b = c[..size].to_vec();
                    fix(&mut b);
                    b
                }).collect()
            };
            // The scale (and Q5_1's minimum) made finite, the rest as drawn.
            let fix_d = |b: &mut [u8]| if !half::f16::from_le_bytes([b[0], b[1]]).is_finite() { b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes()) };
            let fix_dm = |b: &mut [u8]| {
                fix_d(b);
                if !half::f16::from_le_bytes([b[2], b[3]]).is_finite() { b[2..4].copy_from_slice(&half::f16::from_f32(-0.5).to_le_bytes()) }
            };
            let w40: Vec<BlockQ4_0> = blocks(18, &fix_d).chunks_exact(18).map(bytemuck::pod_read_unaligned).collect();
            let w50: Vec<BlockQ5_0> = blocks(22, &fix_d).chunks_exact(22).map(bytemuck::pod_read_unaligned).collect();
            let w51: Vec<BlockQ5_1> = blocks(24, &fix_dm).chunks_exact(24).map(bytemuck::pod_read_unaligned).collect();
            let n = 3 * n_tokens;
            let mut out = vec![vec![0.0f32; n]; 10];
            // SAFETY: AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C were detected (prop_assume).
            unsafe {
                k::gemm_q4_0_q8_0(2, &w40, &a80, &mut out[0]);
                k::gemm_q4_1_q8_1(2, &w41, &a81, &mut out[1]);
                k::gemm_q5_0_q8_0(2, &w50, &a80, &mut out[2]);
                k::gemm_q5_1_q8_1(2, &w51, &a81, &mut out[3]);
                k::gemm_q8_0_q8_0(2, &w80, &a80, &mut out[4]);
            }
            gemm_with(2, &w40, &a80, &mut out[5], vec_dot_q4_0_q8_0_ref);
            gemm_with(2, &w41, &a81, &mut out[6], vec_dot_q4_1_q8_1_ref);
            gemm_with(2, &w50, &a80, &mut out[7], vec_dot_q5_0_q8_0_ref);
            gemm_with(2, &w51, &a81, &mut out[8], vec_dot_q5_1_q8_1_ref);
            gemm_with(2, &w80, &a80, &mut out[9], vec_dot_q8_0_q8_0_ref);
            for (i, name) in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"].iter().enumerate() {
                prop_assert_eq!(bits(&out[i]), bits(&out[i + 5]), "{}", name);
            }
        }
    }
}

/// The dispatchers of `attention` on head widths with and without SIMD kernels: always
/// the scalar twin's bits; a width without a kernel (or a Q4_0 cache, which has none)
/// is noted in `fallback` where this process's ISA has the kernels, and only there (not
/// under `HEARTH_ISA=scalar`).
#[test]
fn attention_dispatch_falls_back_to_the_twins_and_says_so() {
    use attention::KvSpan;
    let simd = cfg!(target_arch = "x86_64") && isa() >= Isa::Avx2;
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    const N_POS: usize = 19;
    let g = 2;
    // Each width through the float dispatchers, against the twins; the calls made.
    let float = |hd: usize| {
        let k: Vec<half::f16> = data(N_POS * hd, 81)
            .iter()
            .map(|&x| half::f16::from_f32(x))
            .collect();
        let v: Vec<half::f16> = data(N_POS * hd, 82)
            .iter()
            .map(|&x| half::f16::from_f32(x))
            .collect();
        let spans: Vec<_> = (0..N_POS)
            .step_by(8)
            .map(|p0| KvSpan {
                k: &k[p0 * hd..],
                v: &v[p0 * hd..],
                n_pos: 8.min(N_POS - p0),
            })
            .collect();
        let q = data(3 * g * hd, 83);
        let mut out = vec![0.0f32; g * hd];
        attention::attend_heads(&q[..g * hd], hd, &spans, hd, 0, 0.125, &mut out);
        for h in 0..g {
            let mut want = vec![0.0f32; hd];
            attention::attend_head_ref(&q[h * hd..][..hd], &spans, hd, 0, 0.125, &mut want);
            assert_eq!(
                bits(&out[h * hd..][..hd]),
                bits(&want),
                "attend_heads, heads of {hd}"
            );
        }
        let lens = [N_POS - 2, N_POS - 1, N_POS];
        let mut out = vec![0.0f32; 3 * g * hd];
        attention::attend_heads_tiled(&q, hd, &lens, &spans, hd, 0, 0.125, &mut out);
        for (i, &len) in lens.iter().enumerate() {
            let visible = attention::first_positions(&spans, len);
            for h in 0..g {
                let at = (i * g + h) * hd;
                let mut want = vec![0.0f32; hd];
                attention::attend_head_tiled(&q[at..at + hd], &visible, hd, 0, 0.125, &mut want);
                assert_eq!(
                    bits(&out[at..at + hd]),
                    bits(&want),
                    "attend_heads_tiled, heads of {hd}"
                );
            }
        }
    };
    // A quantized cache through its dispatcher, against the twin.
    fn quant<B: attention::QuantKv>(hd: usize) {
        let nb = hd / B::QK;
        let (k, v): (Vec<B>, Vec<B>) = (
            quantize(&data(N_POS * hd, 84)),
            quantize(&data(N_POS * hd, 85)),
        );
        let spans: Vec<_> = (0..N_POS)
            .step_by(8)
            .map(|p0| KvSpan {
                k: &k[p0 * nb..],
                v: &v[p0 * nb..],
                n_pos: 8.min(N_POS - p0),
            })
            .collect();
        let q = data(2 * hd, 86);
        let mut out = vec![0.0f32; 2 * hd];
        attention::attend_heads_quant(&q, hd, &spans, nb, 0, 0.125, &mut out);
        for h in 0..2 {
            let mut want = vec![0.0f32; hd];
            attention::attend_head_quant(&q[h * hd..][..hd], &spans, nb, 0, 0.125, &mut want);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&out[h * hd..][..hd]),
                bits(&want),
                "attend_heads_quant, heads of {hd}"
            );
        }
    }

    // Widths with kernels: nothing falls back.
    let _ = fallback::take();
    let before = fallback::count();
    for hd in [32, 64, 96, 128, 256] {
        float(hd);
        quant::<BlockQ8_0>(hd);
    }
    assert_eq!(
        fallback::count(),
        before,
        "a width with kernels fell back: {:?}",
        fallback::take()
    );
    assert!(fallback::take().is_empty());

    // Widths without: 80 (not a multiple of 32), 288 (wider than the kernels go); and a
    // Q4_0 cache. Still the twins' bits.
    float(80);
    float(288);
    quant::<BlockQ8_0>(288);
    quant::<BlockQ4_0>(64);
    let names = fallback::take();
    if simd {
        // Two float calls per width, one per quantized cache.
        assert_eq!(fallback::count(), before + 6, "{names:?}");
        for name in [
            "attention::attend_heads",
            "attention::attend_heads_tiled",
            "attention::attend_heads_quant_tiled (Q8_0)",
            "attention::attend_heads_quant_tiled (cache type without a SIMD kernel)",
        ] {
            assert!(names.contains(&name), "{name} not among {names:?}");
        }
        assert_eq!(names.len(), 4, "{names:?}");
    } else {
        assert_eq!(
            fallback::count(),
            before,
            "the scalar ISA is not a fallback: {names:?}"
        );
        assert!(names.is_empty(), "{names:?}");
    }
}

/// The AVX2 activation quantizers against their scalar twins, byte for byte, on ordinary
/// rows and on rows with zeros, ties, extremes, infinities and NaNs.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_activation_quantizers_match_scalar_twins() {
    if !(is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    {
        return;
    }
    let mut rows: Vec<Vec<f32>> = (0..20).map(|s| data(1536, 900 + s)).collect();
    rows.push(vec![0.0; 64]);
    // x * 127 / amax lands on halves: ties must go to even.
    rows.push(
        (0..64)
            .map(|i| (i as f32 - 32.0) * 0.5 + if i % 32 == 0 { 127.0 / 2.0 } else { 0.0 })
            .collect(),
    );
    rows.push(
        (0..64)
            .map(|i| if i % 5 == 0 { f32::MAX } else { -(i as f32) })
            .collect(),
    );
    rows.push(
        (0..64)
            .map(|i| [f32::NAN, f32::INFINITY, -1.0, 1e-30][i % 4])
            .collect(),
    );
    rows.push(
        (0..64)
            .map(|i| {
                if i == 7 {
                    f32::NEG_INFINITY
                } else {
                    i as f32 * 1e-3
                }
            })
            .collect(),
    );
    for x in &rows {
        let n = x.len() / 32;
        let (mut a0, mut r0) = (
            vec![<BlockQ8_0 as bytemuck::Zeroable>::zeroed(); n],
            vec![<BlockQ8_0 as bytemuck::Zeroable>::zeroed(); n],
        );
        let (mut a1, mut r1) = (
            vec![<BlockQ8_1 as bytemuck::Zeroable>::zeroed(); n],
            vec![<BlockQ8_1 as bytemuck::Zeroable>::zeroed(); n],
        );
        // SAFETY: AVX2, FMA and F16C were detected above.
        unsafe {
            hearth_kernels::simd::x86::quantize_row_q8_0_act(x, &mut a0);
            hearth_kernels::simd::x86::quantize_row_q8_1_act(x, &mut a1);
        }
        quantize_row_q8_0_act_ref(x, &mut r0);
        quantize_row_q8_1_act_ref(x, &mut r1);
        assert_eq!(
            bytemuck::cast_slice::<_, u8>(&a0),
            bytemuck::cast_slice::<_, u8>(&r0),
            "q8_0 row {:?}",
            &x[..4]
        );
        assert_eq!(
            bytemuck::cast_slice::<_, u8>(&a1),
            bytemuck::cast_slice::<_, u8>(&r1),
            "q8_1 row {:?}",
            &x[..4]
        );
    }
}
