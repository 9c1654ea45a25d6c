//! Tests of the float and legacy block types (F32, F16, BF16, Q8_0, Q8_1, Q4_0, Q4_1,
//! Q5_0, Q5_1): ggml's test-quantize-fns method, fixed points, hand-computed bytes and
//! property tests of `vec_dot` against "dequantize, then dot".
// Known-byte expectations spell out both nibbles, zeros included.
#![allow(clippy::identity_op)]

mod common;

use common::*;
use half::{bf16, f16};
use hearth_kernels::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Sizes

#[test]
fn block_sizes_match_ggml() {
    use core::mem::{align_of, size_of};
    assert_eq!(size_of::<BlockQ8_0>(), 34);
    assert_eq!(size_of::<BlockQ8_1>(), 36);
    assert_eq!(size_of::<BlockQ4_0>(), 18);
    assert_eq!(size_of::<BlockQ4_1>(), 20);
    assert_eq!(size_of::<BlockQ5_0>(), 22);
    assert_eq!(size_of::<BlockQ5_1>(), 24);
    assert_eq!(size_of::<f16>(), 2);
    assert_eq!(size_of::<bf16>(), 2);
    // f16 fields: blocks are 2-aligned, like ggml's (packed arrays of blocks have no gaps).
    assert_eq!(align_of::<BlockQ8_0>(), 2);
    assert_eq!(align_of::<BlockQ8_1>(), 2);
    assert_eq!(align_of::<BlockQ4_0>(), 2);
    assert_eq!(align_of::<BlockQ4_1>(), 2);
    assert_eq!(align_of::<BlockQ5_0>(), 2);
    assert_eq!(align_of::<BlockQ5_1>(), 2);
    assert_eq!(<BlockQ8_0 as Quantize>::QK, 32);
    assert_eq!(<BlockQ8_1 as Quantize>::QK, 32);
    assert_eq!(<BlockQ4_0 as Quantize>::QK, 32);
    assert_eq!(<BlockQ4_1 as Quantize>::QK, 32);
    assert_eq!(<BlockQ5_0 as Quantize>::QK, 32);
    assert_eq!(<BlockQ5_1 as Quantize>::QK, 32);
    assert_eq!(<f32 as Quantize>::QK, 1);
    assert_eq!(<f16 as Quantize>::QK, 1);
    assert_eq!(<bf16 as Quantize>::QK, 1);
}

// ---------------------------------------------------------------------------------------
// ggml's test-quantize-fns checks (plus seeded random data), via common::check_type

#[test]
fn f32_quantize_fns() {
    check_type::<f32>("f32", 1e-9, 1e-6);
    let x = synth(TEST_SIZE, 0.0);
    assert_eq!(round_trip::<f32>(&x), x);
}

#[test]
fn f16_quantize_fns() {
    check_type::<f16>("f16", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
    // f16 keeps 11 significant bits: relative error at most 2^-11.
    let x = synth(TEST_SIZE, 0.0);
    for (a, b) in x.iter().zip(round_trip::<f16>(&x)) {
        assert!((a - b).abs() <= a.abs() * 2f32.powi(-11), "{a} -> {b}");
    }
}

#[test]
fn bf16_quantize_fns() {
    check_type::<bf16>("bf16", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
    let x = synth(TEST_SIZE, 0.0);
    for (a, b) in x.iter().zip(round_trip::<bf16>(&x)) {
        assert!((a - b).abs() <= a.abs() * 2f32.powi(-8), "{a} -> {b}");
    }
}

#[test]
fn q8_0_quantize_fns() {
    check_type::<BlockQ8_0>("q8_0", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q8_1_quantization_error() {
    // Q8_1 is an activation format only (no vec_dot of its own).
    for x in [synth(TEST_SIZE, 0.0), random(TEST_SIZE, 11)] {
        let err = quantization_error::<BlockQ8_1>(&x);
        assert!(err < MAX_QUANTIZATION_TOTAL_ERROR, "q8_1 error {err}");
        // Same quants and scale as Q8_0.
        let a = quantize::<BlockQ8_0>(&x);
        let b = quantize::<BlockQ8_1>(&x);
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.d.to_bits(), b.d.to_bits());
            assert_eq!(a.qs, b.qs);
        }
    }
}

#[test]
fn q4_0_quantize_fns() {
    check_type::<BlockQ4_0>("q4_0", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q4_1_quantize_fns() {
    check_type::<BlockQ4_1>("q4_1", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q5_0_quantize_fns() {
    check_type::<BlockQ5_0>("q5_0", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q5_1_quantize_fns() {
    check_type::<BlockQ5_1>("q5_1", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

/// Tighter than ggml's loose metric: the true RMS error relative to the data's RMS,
/// bounded by the step size of each format (uniform rounding error is step/sqrt(12)).
#[test]
fn relative_rms_errors_are_plausible() {
    let x = synth(TEST_SIZE, 0.0);
    let rms = rms_diff(&x, &vec![0.0; x.len()]);
    let rel = |e: f32| e / rms;
    // synth data spans about [-1.9, 2.1] per block: steps ~4/15, ~2.1/127, ...
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ4_0>(&x))) < 0.08);
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ4_1>(&x))) < 0.06);
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ5_0>(&x))) < 0.04);
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ5_1>(&x))) < 0.03);
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ8_0>(&x))) < 0.006);
    assert!(rel(rms_diff(&x, &round_trip::<BlockQ8_1>(&x))) < 0.006);
    assert!(rel(rms_diff(&x, &round_trip::<f16>(&x))) < 3e-4);
    assert!(rel(rms_diff(&x, &round_trip::<bf16>(&x))) < 3e-3);
}

// ---------------------------------------------------------------------------------------
// Fixed points: re-quantizing dequantized values reproduces them exactly.

#[test]
fn dequantized_values_are_fixed_points() {
    for (kind, x) in [
        ("synth", synth(TEST_SIZE, 0.0)),
        ("random", random(TEST_SIZE, 21)),
        ("weights", random_weights(TEST_SIZE, 22)),
        ("wide", random_range(TEST_SIZE, 23, -300.0, 50.0)),
    ] {
        assert_fixed_point::<f32>(&format!("f32 {kind}"), &x);
        assert_fixed_point::<f16>(&format!("f16 {kind}"), &x);
        assert_fixed_point::<bf16>(&format!("bf16 {kind}"), &x);
        assert_fixed_point::<BlockQ8_0>(&format!("q8_0 {kind}"), &x);
        assert_fixed_point::<BlockQ8_1>(&format!("q8_1 {kind}"), &x);
        assert_fixed_point::<BlockQ4_0>(&format!("q4_0 {kind}"), &x);
        assert_fixed_point::<BlockQ4_1>(&format!("q4_1 {kind}"), &x);
        assert_fixed_point::<BlockQ5_0>(&format!("q5_0 {kind}"), &x);
        assert_fixed_point::<BlockQ5_1>(&format!("q5_1 {kind}"), &x);
    }
}

// ---------------------------------------------------------------------------------------
// Known bytes: hand-computed blocks pin the GGUF layout.

fn block_from_bytes<T: bytemuck::Pod>(bytes: &[u8]) -> T {
    bytemuck::pod_read_unaligned(bytes)
}

/// Little-endian bytes of an f16 given by value.
fn f16_le(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

#[test]
fn f16_bf16_known_bits() {
    let x = [1.0f32, -2.0, 65504.0, 2f32.powi(-24), 0.0, -0.0, 3.140625];
    let h = quantize::<f16>(&x);
    let bits: Vec<u16> = h.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        bits,
        [0x3c00, 0xc000, 0x7bff, 0x0001, 0x0000, 0x8000, 0x4248]
    );
    assert_eq!(dequantize(&h), x);

    let b = quantize::<bf16>(&x[..2]);
    assert_eq!(
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [0x3f80, 0xc000]
    );
    let b = quantize::<bf16>(&[3.140625, 65504.0, f32::from_bits(0x3f80_8000)]);
    assert_eq!(
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [0x4049, 0x4780, 0x3f80]
    );
    assert_eq!(dequantize(&b), [3.140625, 65536.0, 1.0]);
}

#[test]
fn q8_0_known_bytes() {
    // d = 0.5 (f16 0x3800), qs = 0, 1, -1, 2, -2, ..., then 127 and -128 at the end.
    let mut bytes = vec![0x00, 0x38];
    let mut want = Vec::new();
    for j in 0..32i32 {
        let q = match j {
            30 => 127,
            31 => -128,
            _ => {
                if j % 2 == 1 {
                    (j + 1) / 2
                } else {
                    -(j / 2)
                }
            }
        };
        bytes.push(q as i8 as u8);
        want.push(q as f32 * 0.5);
    }
    let b: BlockQ8_0 = block_from_bytes(&bytes);
    assert_eq!(b.d.to_bits(), 0x3800);
    assert_eq!(dequantize(&[b]), want);
    assert_eq!(bytemuck::bytes_of(&b), &bytes[..]);
}

#[test]
fn q8_0_quantize_known_bytes() {
    // amax = 127 gives d = 1 exactly; roundf rounds halves away from zero.
    let mut x = [0.0f32; 32];
    x[0] = 127.0;
    x[1] = -127.0;
    x[2] = 2.5;
    x[3] = -2.5;
    x[4] = 0.5;
    x[5] = -0.5;
    x[6] = 1.4999;
    x[7] = -100.0;
    let b = quantize::<BlockQ8_0>(&x);
    let mut want = vec![0x00u8, 0x3c];
    want.extend([127i8, -127, 3, -3, 1, -1, 1, -100].map(|q| q as u8));
    want.extend([0u8; 24]);
    assert_eq!(bytemuck::cast_slice::<BlockQ8_0, u8>(&b), &want[..]);

    // All zeros: d = 0, all quants 0.
    let z = quantize::<BlockQ8_0>(&[0.0; 32]);
    assert_eq!(bytemuck::cast_slice::<BlockQ8_0, u8>(&z), &[0u8; 34][..]);
}

#[test]
fn q8_1_quantize_known_bytes() {
    let mut x = [0.0f32; 32];
    x[0] = 127.0;
    x[1] = -2.5;
    x[16] = 10.0;
    x[31] = 0.5;
    let b = quantize::<BlockQ8_1>(&x);
    // sum(qs) = 127 - 3 + 10 + 1 = 135; s = 135 * d = 135.
    let mut want = vec![0x00u8, 0x3c];
    want.extend(f16_le(135.0));
    let mut qs = [0i8; 32];
    qs[0] = 127;
    qs[1] = -3;
    qs[16] = 10;
    qs[31] = 1;
    want.extend(qs.map(|q| q as u8));
    assert_eq!(bytemuck::cast_slice::<BlockQ8_1, u8>(&b), &want[..]);

    // s uses the f32 scale before its f16 rounding (ggml: `s = sum * d` with float d),
    // which sometimes gives a different f16 than using the stored d.
    let mut differs = 0;
    for seed in 0..64 {
        let x = random(32, seed);
        let b = quantize::<BlockQ8_1>(&x)[0];
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
        assert_eq!(b.d, f16::from_f32(d));
        assert_eq!(b.s, f16::from_f32(sum as f32 * d));
        differs += usize::from(b.s != f16::from_f32(sum as f32 * b.d.to_f32()));
    }
    assert!(differs > 0);
}

#[test]
fn q4_1_known_bytes() {
    // d = 0.5, m = -2, qs[j] = nibbles (j & 15) low, (15 - j) high.
    let mut bytes = Vec::new();
    bytes.extend(f16_le(0.5));
    bytes.extend(f16_le(-2.0));
    for j in 0..16u8 {
        bytes.push(j | ((15 - j) << 4));
    }
    let b: BlockQ4_1 = block_from_bytes(&bytes);
    let y = dequantize(&[b]);
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.5 - 2.0, "low nibble {j}");
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 2.0, "high nibble {j}");
    }
    assert_eq!(bytemuck::bytes_of(&b), &bytes[..]);
}

#[test]
fn q4_1_quantize_known_bytes() {
    // min = -1, max = 14: d = 1, m = -1, element j -> q = j % 16.
    let x: Vec<f32> = (0..32).map(|j| (j % 16) as f32 - 1.0).collect();
    let b = quantize::<BlockQ4_1>(&x);
    let mut want = vec![0x00u8, 0x3c, 0x00, 0xbc];
    want.extend((0..16u8).map(|j| j * 0x11));
    assert_eq!(bytemuck::cast_slice::<BlockQ4_1, u8>(&b), &want[..]);
    assert_eq!(dequantize(&b), x);

    // Rounding is trunc(v + 0.5): halves go up; element 16 goes to the high nibble.
    let mut x = [0.0f32; 32];
    x[0] = -1.0; // min
    x[1] = 14.0; // max
    x[2] = 0.5; // (0.5 + 1) + 0.5 = 2 -> 2
    x[3] = 0.49; // 1.49 + 0.5 -> 1
    x[16] = 13.9; // 14.9 + 0.5 -> 15
    let b = quantize::<BlockQ4_1>(&x)[0];
    assert_eq!(b.qs[0], 0x0 | (15 << 4));
    assert_eq!(b.qs[1] & 0x0f, 15);
    assert_eq!(b.qs[2] & 0x0f, 2);
    assert_eq!(b.qs[3] & 0x0f, 1);
    // Elements 4..16 are 0.0: (0 + 1) + 0.5 -> 1; elements 17.. likewise in high nibbles.
    assert_eq!(b.qs[4], 0x11);

    // A constant block: d = 0, all quants 0, m = the value.
    let b = quantize::<BlockQ4_1>(&[3.0; 32])[0];
    assert_eq!(b.d.to_bits(), 0);
    assert_eq!(b.m, f16::from_f32(3.0));
    assert_eq!(b.qs, [0; 16]);
    assert_eq!(dequantize(&[b]), [3.0; 32]);
}

#[test]
fn q4_1_q8_1_vec_dot_known_value() {
    // w: d = 0.5, m = -2, q = j % 16 ; a: d = 1, q = 1 for all, s = 32.
    let mut bytes = Vec::new();
    bytes.extend(f16_le(0.5));
    bytes.extend(f16_le(-2.0));
    bytes.extend((0..16u8).map(|j| j * 0x11));
    let w: BlockQ4_1 = block_from_bytes(&bytes);
    let a = BlockQ8_1 {
        d: f16::from_f32(1.0),
        s: f16::from_f32(32.0),
        qs: [1; 32],
    };
    // sum_j (0.5 * (j % 16) - 2) = 0.5 * 240 - 64 = 56
    assert_eq!(BlockQ4_1::vec_dot(&[w], &[a]), 56.0);
}

#[test]
fn q8_0_vec_dot_known_value() {
    let mut w = BlockQ8_0 {
        d: f16::from_f32(0.25),
        qs: [0; 32],
    };
    let mut a = BlockQ8_0 {
        d: f16::from_f32(2.0),
        qs: [0; 32],
    };
    for j in 0..32 {
        w.qs[j] = j as i8 - 16;
        a.qs[j] = if j % 2 == 0 { 3 } else { -1 };
    }
    let sumi: i32 = (0..32)
        .map(|j| (j - 16) * if j % 2 == 0 { 3 } else { -1 })
        .sum();
    assert_eq!(
        BlockQ8_0::vec_dot(&[w, w], &[a, a]),
        2.0 * sumi as f32 * 0.5
    );
    // Extremes do not overflow: 32 * 128 * 128 fits in i32.
    let w = BlockQ8_0 {
        d: f16::from_f32(1.0),
        qs: [-128; 32],
    };
    assert_eq!(BlockQ8_0::vec_dot(&[w], &[w]), 32.0 * 16384.0);
}

// ---------------------------------------------------------------------------------------
// Exactly representable inputs survive quantize→dequantize unchanged.

proptest! {
    #[test]
    fn q8_0_exact_values_round_trip(
        k in 1u32..200,
        qs in proptest::collection::vec(-127i32..=127, 32),
        sign in prop::bool::ANY,
    ) {
        // d = k/64 is exact in f16; one element is +-127 so amax = 127 d.
        let d = k as f32 / 64.0;
        let mut q = qs.clone();
        q[7] = if sign { 127 } else { -127 };
        let x: Vec<f32> = q.iter().map(|&v| v as f32 * d).collect();
        let b = quantize::<BlockQ8_0>(&x);
        prop_assert_eq!(b[0].d.to_f32(), d);
        prop_assert_eq!(b[0].qs.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(), q);
        prop_assert_eq!(dequantize(&b), x.clone());
        prop_assert_eq!(round_trip::<BlockQ8_1>(&x), x);
    }

    #[test]
    fn q4_1_exact_values_round_trip(
        k in 1u32..64,
        mi in -256i32..256,
        qs in proptest::collection::vec(0u32..16, 32),
    ) {
        // d = k/8 and m = mi/8 are exact in f16 and every value is a multiple of 1/8.
        let d = k as f32 / 8.0;
        let m = mi as f32 / 8.0;
        let mut q = qs.clone();
        q[3] = 0;
        q[20] = 15;
        let x: Vec<f32> = q.iter().map(|&v| v as f32 * d + m).collect();
        let b = quantize::<BlockQ4_1>(&x);
        prop_assert_eq!(b[0].d.to_f32(), d);
        prop_assert_eq!(b[0].m.to_f32(), m);
        prop_assert_eq!(dequantize(&b), x);
    }
}

// ---------------------------------------------------------------------------------------
// vec_dot agrees with "dequantize, then dot" up to float rounding.

/// Values in a range typical of weights/activations, with a few larger ones.
fn row(blocks: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    blocks.prop_flat_map(|nb| {
        let v = prop_oneof![8 => -2.0f32..2.0, 1 => -40.0f32..40.0, 1 => Just(0.0f32)];
        (
            proptest::collection::vec(v.clone(), nb * 32),
            proptest::collection::vec(v, nb * 32),
        )
    })
}

/// Reference for Q4_1/Q5_1 × Q8_1: the dequantized dot, with the `m * sum(a)` part
/// taken from Q8_1's stored `s` (which carries its own f16 rounding), as the kernel does.
fn dot_with_s<W: WeightBlock<Act = BlockQ8_1>>(
    w: &[W],
    a: &[BlockQ8_1],
    m: impl Fn(&W) -> f32,
) -> (f64, f64) {
    let wd = dequantize(w);
    let ad = dequantize(a);
    let mut want = dot_f64(&wd, &ad);
    for (bw, ba) in w.iter().zip(a) {
        let sum_a: f64 =
            ba.qs.iter().map(|&q| f64::from(q)).sum::<f64>() * f64::from(ba.d.to_f32());
        want += f64::from(m(bw)) * (f64::from(ba.s.to_f32()) - sum_a);
    }
    let scale = dot_abs_f64(&wd, &ad)
        + w.iter()
            .zip(a)
            .map(|(bw, ba)| f64::from((m(bw) * ba.s.to_f32()).abs()))
            .sum::<f64>();
    (want, scale)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn f32_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<f32>(&w, &a, 1e-6);
    }

    #[test]
    fn f16_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<f16>(&w, &a, 1e-6);
    }

    #[test]
    fn bf16_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<bf16>(&w, &a, 1e-6);
    }

    #[test]
    fn q8_0_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<BlockQ8_0>(&w, &a, 1e-5);
    }

    #[test]
    fn q4_0_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<BlockQ4_0>(&w, &a, 1e-5);
    }

    #[test]
    fn q5_0_vec_dot_matches_reference((w, a) in row(1..9)) {
        assert_dot_consistent_f32::<BlockQ5_0>(&w, &a, 1e-5);
    }

    #[test]
    fn q5_1_vec_dot_matches_reference((w, a) in row(1..9)) {
        let wq = quantize::<BlockQ5_1>(&w);
        let aq = quantize::<BlockQ8_1>(&a);
        let got = BlockQ5_1::vec_dot(&wq, &aq);
        let (want, scale) = dot_with_s(&wq, &aq, |b| b.m.to_f32());
        prop_assert!((f64::from(got) - want).abs() <= 1e-5 * scale + 1e-6, "{} vs {}", got, want);
    }

    /// Arbitrary block bytes (not only what the quantizer produces): every nibble and
    /// fifth-bit pattern, finite f16 scales.
    #[test]
    fn legacy_vec_dot_arbitrary_blocks(
        nb in 1usize..5,
        seed in any::<u64>(),
    ) {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let mut bytes = |n: usize| (0..n).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>();
        let a0: Vec<BlockQ8_0> = (0..nb)
            .map(|_| {
                let mut b: BlockQ8_0 = bytemuck::pod_read_unaligned(&bytes(34));
                b.d = f16::from_f32(0.01);
                b
            })
            .collect();
        let a1: Vec<BlockQ8_1> = a0
            .iter()
            .map(|b| {
                let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
                BlockQ8_1 { d: b.d, s: f16::from_f32(sum as f32 * b.d.to_f32()), qs: b.qs }
            })
            .collect();
        let q40: Vec<BlockQ4_0> = (0..nb)
            .map(|_| {
                let mut b: BlockQ4_0 = bytemuck::pod_read_unaligned(&bytes(18));
                b.d = f16::from_f32(0.5);
                b
            })
            .collect();
        let q50: Vec<BlockQ5_0> = (0..nb)
            .map(|_| {
                let mut b: BlockQ5_0 = bytemuck::pod_read_unaligned(&bytes(22));
                b.d = f16::from_f32(-0.25);
                b
            })
            .collect();
        let q41: Vec<BlockQ4_1> = (0..nb)
            .map(|_| {
                let mut b: BlockQ4_1 = bytemuck::pod_read_unaligned(&bytes(20));
                b.d = f16::from_f32(0.125);
                b.m = f16::from_f32(-1.0);
                b
            })
            .collect();
        let q51: Vec<BlockQ5_1> = (0..nb)
            .map(|_| {
                let mut b: BlockQ5_1 = bytemuck::pod_read_unaligned(&bytes(24));
                b.d = f16::from_f32(0.0625);
                b.m = f16::from_f32(-1.0);
                b
            })
            .collect();
        let q80: Vec<BlockQ8_0> = a0.iter().rev().copied().collect();
        assert_dot_consistent::<BlockQ4_0>(&q40, &a0, 1e-6);
        assert_dot_consistent::<BlockQ5_0>(&q50, &a0, 1e-6);
        assert_dot_consistent::<BlockQ8_0>(&q80, &a0, 1e-6);
        let (want, scale) = dot_with_s(&q41, &a1, |b| b.m.to_f32());
        let got = BlockQ4_1::vec_dot(&q41, &a1);
        prop_assert!((f64::from(got) - want).abs() <= 1e-6 * scale + 1e-6, "q4_1 {} vs {}", got, want);
        let (want, scale) = dot_with_s(&q51, &a1, |b| b.m.to_f32());
        let got = BlockQ5_1::vec_dot(&q51, &a1);
        prop_assert!((f64::from(got) - want).abs() <= 1e-6 * scale + 1e-6, "q5_1 {} vs {}", got, want);
    }

    #[test]
    fn q4_1_vec_dot_matches_reference((w, a) in row(1..9)) {
        let wq = quantize::<BlockQ4_1>(&w);
        let aq = quantize::<BlockQ8_1>(&a);
        let got = BlockQ4_1::vec_dot(&wq, &aq);
        let (want, scale) = dot_with_s(&wq, &aq, |b| b.m.to_f32());
        prop_assert!((f64::from(got) - want).abs() <= 1e-5 * scale + 1e-6, "{} vs {}", got, want);
    }

    /// Odd lengths exercise the float kernels' remainder handling.
    #[test]
    fn float_vec_dot_any_length(
        w in proptest::collection::vec(-4.0f32..4.0, 0..100),
        seed in any::<u64>(),
    ) {
        let a = random(w.len(), seed);
        assert_dot_consistent_f32::<f32>(&w, &a, 1e-6);
        assert_dot_consistent_f32::<f16>(&w, &a, 1e-6);
        assert_dot_consistent_f32::<bf16>(&w, &a, 1e-6);
    }
}

#[test]
fn empty_rows() {
    assert_eq!(f32::vec_dot(&[], &[]), 0.0);
    assert_eq!(BlockQ8_0::vec_dot(&[], &[]), 0.0);
    assert_eq!(BlockQ4_0::vec_dot(&[], &[]), 0.0);
    assert_eq!(BlockQ4_1::vec_dot(&[], &[]), 0.0);
    assert_eq!(BlockQ5_0::vec_dot(&[], &[]), 0.0);
    assert_eq!(BlockQ5_1::vec_dot(&[], &[]), 0.0);
    assert!(quantize::<BlockQ4_1>(&[]).is_empty());
}

#[test]
#[should_panic]
fn mismatched_row_lengths_panic() {
    let w = quantize::<BlockQ8_0>(&[1.0; 64]);
    let a = quantize::<BlockQ8_0>(&[1.0; 32]);
    BlockQ8_0::vec_dot(&w, &a);
}

// ---------------------------------------------------------------------------------------
// Known bytes of Q4_0, Q5_0 and Q5_1.

#[test]
fn q4_0_known_bytes() {
    // d = 0.5, qs[j] = nibbles j (element j) and 15 - j (element j + 16).
    let mut bytes = Vec::from(f16_le(0.5));
    bytes.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let b: BlockQ4_0 = block_from_bytes(&bytes);
    let y = dequantize(&[b]);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 0.5, "element {j}");
        assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5, "element {}", j + 16);
    }
    assert_eq!(bytemuck::bytes_of(&b), &bytes[..]);
}

#[test]
fn q4_0_quantize_known_bytes() {
    // Signed max -8: d = 1, q = min(15, trunc(x + 8.5)).
    let mut x = [0.0f32; 32];
    x[0] = -8.0; // q 0
    x[1] = 7.0; // 15
    x[2] = 7.6; // 16 -> clamped to 15
    x[3] = 0.5; // 9 (halves go up)
    x[4] = -0.5; // 8
    x[16] = -3.2; // 5, high nibble of qs[0]
    let b = quantize::<BlockQ4_0>(&x)[0];
    assert_eq!(b.d.to_bits(), 0x3c00);
    assert_eq!(b.qs[0], 0x0 | (5 << 4));
    assert_eq!(b.qs[1], 15 | (8 << 4)); // element 17 is 0.0 -> 8
    assert_eq!(b.qs[2], 15 | (8 << 4));
    assert_eq!(b.qs[3], 9 | (8 << 4));
    assert_eq!(b.qs[4], 8 | (8 << 4));

    // Ties in magnitude keep the first value; a positive max gives a negative d, and the
    // opposite extreme clamps (-8 -> q 16 -> 15 -> dequantized -7).
    let mut x = [0.0f32; 32];
    x[0] = 8.0;
    x[1] = -8.0;
    let b = quantize::<BlockQ4_0>(&x)[0];
    assert_eq!(b.d.to_f32(), -1.0);
    assert_eq!(b.qs[0] & 0x0f, 0);
    assert_eq!(b.qs[1] & 0x0f, 15);
    let y = dequantize(&[b]);
    assert_eq!((y[0], y[1], y[2]), (8.0, -7.0, 0.0));

    // All zeros: d = 0 / -8 = -0.0 (f16 0x8000, as ggml stores it), every quant 8
    // (0x88 bytes), dequantizing to (signed) zeros.
    let b = quantize::<BlockQ4_0>(&[0.0; 32])[0];
    assert_eq!(b.d.to_bits(), 0x8000);
    assert_eq!(b.qs, [0x88; 16]);
    assert_eq!(dequantize(&[b]), [0.0; 32]);
}

/// qh = 0x0100ffaa (bytes aa ff 00 01): fifth bits set for elements 1,3,5,7, 8..=15, 24.
const QH_BYTES: [u8; 4] = [0xaa, 0xff, 0x00, 0x01];
const QH_SET: [usize; 13] = [1, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 24];

/// The 5-bit quants encoded by `QH_BYTES` and nibbles `j` / `15 - j`.
fn q5_expected_quants() -> [i32; 32] {
    let mut q = [0i32; 32];
    for j in 0..16 {
        q[j] = j as i32;
        q[j + 16] = 15 - j as i32;
    }
    for &k in &QH_SET {
        q[k] += 16;
    }
    q
}

#[test]
fn q5_0_known_bytes() {
    let mut bytes = Vec::from(f16_le(0.25));
    bytes.extend(QH_BYTES);
    bytes.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let b: BlockQ5_0 = block_from_bytes(&bytes);
    let y = dequantize(&[b]);
    let want: Vec<f32> = q5_expected_quants()
        .iter()
        .map(|&q| (q - 16) as f32 * 0.25)
        .collect();
    assert_eq!(y, want);
    // Spot checks by hand: element 0 = (0 - 16)/4, 1 = (17 - 16)/4, 16 = (15 - 16)/4,
    // 24 = (7 + 16 - 16)/4, 31 = (0 - 16)/4.
    assert_eq!(
        (y[0], y[1], y[16], y[24], y[31]),
        (-4.0, 0.25, -0.25, 1.75, -4.0)
    );
    assert_eq!(bytemuck::bytes_of(&b), &bytes[..]);
}

#[test]
fn q5_1_known_bytes() {
    let mut bytes = Vec::from(f16_le(0.5));
    bytes.extend(f16_le(1.0));
    bytes.extend(QH_BYTES);
    bytes.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let b: BlockQ5_1 = block_from_bytes(&bytes);
    let y = dequantize(&[b]);
    let want: Vec<f32> = q5_expected_quants()
        .iter()
        .map(|&q| q as f32 * 0.5 + 1.0)
        .collect();
    assert_eq!(y, want);
    assert_eq!(
        (y[0], y[1], y[16], y[24], y[31]),
        (1.0, 9.5, 8.5, 12.5, 1.0)
    );
    assert_eq!(bytemuck::bytes_of(&b), &bytes[..]);
}

#[test]
fn q5_quantize_known_bytes() {
    // Q5_0: signed max -16, d = 1, q = min(31, trunc(x + 16.5)).
    let mut x = [0.0f32; 32];
    x[0] = -16.0; // q 0
    x[1] = 15.0; // 31
    x[2] = 15.6; // 32 -> 31
    x[17] = -0.5; // 16: high nibble 0, fifth bit 17
    let b = quantize::<BlockQ5_0>(&x)[0];
    assert_eq!(b.d.to_bits(), 0x3c00);
    // Fifth bits: every element except 0 has q >= 16.
    assert_eq!(u32::from_le_bytes(b.qh), !1u32);
    assert_eq!(b.qs[0], 0x0 | (0x0 << 4)); // elements 0 (q 0) and 16 (q 16)
    assert_eq!(b.qs[1], 0xf | (0x0 << 4)); // elements 1 (q 31) and 17 (q 16)
    assert_eq!(b.qs[2], 0xf);

    // Q5_1: min -1, max 30: d = 1, q = trunc(x + 1 + 0.5).
    let mut x = [0.0f32; 32];
    x[0] = -1.0;
    x[31] = 30.0;
    x[5] = 14.5; // 16
    x[6] = 14.49; // 15
    let b = quantize::<BlockQ5_1>(&x)[0];
    assert_eq!((b.d.to_f32(), b.m.to_f32()), (1.0, -1.0));
    let qh = u32::from_le_bytes(b.qh);
    assert_eq!(qh, 1 << 5 | 1 << 31);
    assert_eq!(b.qs[5] & 0x0f, 0);
    assert_eq!(b.qs[6] & 0x0f, 15);
    assert_eq!(b.qs[15] >> 4, 15); // element 31: 31 = 0x1f
    assert_eq!(b.qs[1], 1 | (1 << 4)); // zeros -> q 1
}

proptest! {
    #[test]
    fn q4_0_q5_0_exact_values_round_trip(
        k in 1u32..200,
        neg in prop::bool::ANY,
        qs in proptest::collection::vec(0i32..32, 32),
    ) {
        // Q4_0: x = d * (q - 8) with one q = 0 (the signed max, magnitude 8|d|).
        let d = if neg { -(k as f32) } else { k as f32 } / 64.0;
        let mut q4: Vec<i32> = qs.iter().map(|&q| q % 16).collect();
        q4[9] = 0;
        let x: Vec<f32> = q4.iter().map(|&q| (q - 8) as f32 * d).collect();
        let b = quantize::<BlockQ4_0>(&x);
        prop_assert_eq!(b[0].d.to_f32(), d);
        prop_assert_eq!(dequantize(&b), x);
        // Q5_0: x = d * (q - 16) with one q = 0.
        let mut q5 = qs.clone();
        q5[30] = 0;
        let x: Vec<f32> = q5.iter().map(|&q| (q - 16) as f32 * d).collect();
        let b = quantize::<BlockQ5_0>(&x);
        prop_assert_eq!(b[0].d.to_f32(), d);
        prop_assert_eq!(dequantize(&b), x);
    }

    #[test]
    fn q5_1_exact_values_round_trip(
        k in 1u32..64,
        mi in -256i32..256,
        qs in proptest::collection::vec(0u32..32, 32),
    ) {
        let d = k as f32 / 8.0;
        let m = mi as f32 / 8.0;
        let mut q = qs.clone();
        q[0] = 31;
        q[31] = 0;
        let x: Vec<f32> = q.iter().map(|&v| v as f32 * d + m).collect();
        let b = quantize::<BlockQ5_1>(&x);
        prop_assert_eq!(b[0].d.to_f32(), d);
        prop_assert_eq!(b[0].m.to_f32(), m);
        prop_assert_eq!(dequantize(&b), x);
    }
}

// ---------------------------------------------------------------------------------------
// Golden hashes from ggml itself.
//
// The expected values were produced by compiling ggml's own reference functions
// (`quantize_row_*_ref`, `dequantize_row_*`, `ggml_vec_dot_*_generic` and the fp16/bf16
// conversions from ggml-impl.h, ggml-org/ggml at d99724f) with gcc -O2
// -ffp-contract=off, on inputs from the generator below (integer-only, so the inputs are
// bit-identical on any platform). Each hash is FNV-1a 64 of the little-endian bytes:
// the quantized blocks, the dequantized f32s, and the vec_dot results of 32 rows of 256
// against the activations quantized to the type's `Act`.

/// 64-bit LCG; 24 random bits per value, mapped to [0, 1) exactly.
struct Lcg(u64);

impl Lcg {
    fn unif(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as u32 as f32 / 16_777_216.0
    }
}

/// Blocks of varied character: power-of-two scales from 2^-5 to 2^5; uniform, shifted
/// positive, constant, quarter-integer (rounding ties) and all-zero blocks.
fn golden_data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    let mut x = vec![0.0f32; n];
    for (b, xb) in x.chunks_exact_mut(32).enumerate() {
        let scale = 2f32.powi((b % 11) as i32 - 5);
        for v in xb.iter_mut() {
            let u = rng.unif();
            *v = if b % 13 == 12 {
                0.0
            } else {
                match b % 8 {
                    5 => (u * 2.0 - 1.0) * scale + 3.0 * scale,
                    6 => 0.75 * scale,
                    7 => ((u * 16.0).floor() - 8.0) * scale * 0.25,
                    _ => (u * 2.0 - 1.0) * scale,
                }
            };
        }
    }
    x
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

const GOLDEN_N: usize = 8192;
const GOLDEN_ROW: usize = 256;

/// `(quant, dequant, dot)` hashes of type `W` on the golden data.
/// ggml's portable C dot products (block by block, one f32 sum), the order the golden hashes
/// were taken in. The library's twins sum in the SIMD kernels' lane order instead; the
/// integer parts agree exactly and the tests below bound the float difference.
fn nibbles(qs: &[u8; 16], off: i32) -> [i32; 32] {
    std::array::from_fn(|i| {
        if i < 16 {
            (qs[i] & 0x0f) as i32 + off
        } else {
            (qs[i - 16] >> 4) as i32 + off
        }
    })
}

fn ggml_generic_dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let q = nibbles(&bw.qs, 0);
        let sumi: i32 = (0..32).map(|i| q[i] * ba.qs[i] as i32).sum();
        sumf += (bw.d.to_f32() * ba.d.to_f32()) * sumi as f32 + bw.m.to_f32() * ba.s.to_f32();
    }
    sumf
}

fn ggml_generic_dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let q = nibbles(&bw.qs, -8);
        let sumi: i32 = (0..32).map(|i| q[i] * ba.qs[i] as i32).sum();
        sumf += sumi as f32 * bw.d.to_f32() * ba.d.to_f32();
    }
    sumf
}

fn ggml_generic_dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let sumi: i32 = (0..32).map(|i| bw.qs[i] as i32 * ba.qs[i] as i32).sum();
        sumf += sumi as f32 * (bw.d.to_f32() * ba.d.to_f32());
    }
    sumf
}

/// The 32 five-bit quants of a Q5 block (`qh` bit `j` is bit 4 of element `j`), plus `off`.
fn quants5(qs: &[u8; 16], qh: &[u8; 4], off: i32) -> [i32; 32] {
    let h = u32::from_le_bytes(*qh);
    let n = nibbles(qs, 0);
    std::array::from_fn(|i| n[i] + 16 * ((h >> i) & 1) as i32 + off)
}

fn ggml_generic_dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let q = quants5(&bw.qs, &bw.qh, -16);
        let sumi: i32 = (0..32).map(|i| q[i] * ba.qs[i] as i32).sum();
        sumf += (bw.d.to_f32() * ba.d.to_f32()) * sumi as f32;
    }
    sumf
}

fn ggml_generic_dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (bw, ba) in w.iter().zip(a) {
        let q = quants5(&bw.qs, &bw.qh, 0);
        let sumi: i32 = (0..32).map(|i| q[i] * ba.qs[i] as i32).sum();
        sumf += (bw.d.to_f32() * ba.d.to_f32()) * sumi as f32 + bw.m.to_f32() * ba.s.to_f32();
    }
    sumf
}

#[test]
fn lane_order_twins_agree_with_ggml_generic_order() {
    let (w, a) = (golden_data(GOLDEN_N, 1), golden_data(GOLDEN_N, 2));
    let bw = GOLDEN_ROW / 32;
    let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * (y.abs() + GOLDEN_ROW as f32);
    let (w41, a81) = (quantize::<BlockQ4_1>(&w), quantize::<BlockQ8_1>(&a));
    let (w40, w80, a80) = (
        quantize::<BlockQ4_0>(&w),
        quantize::<BlockQ8_0>(&w),
        quantize::<BlockQ8_0>(&a),
    );
    let (w50, w51) = (quantize::<BlockQ5_0>(&w), quantize::<BlockQ5_1>(&w));
    for r in 0..GOLDEN_N / GOLDEN_ROW {
        let rows = r * bw..(r + 1) * bw;
        assert!(close(
            vec_dot_q4_1_q8_1_ref(&w41[rows.clone()], &a81[rows.clone()]),
            ggml_generic_dot_q4_1(&w41[rows.clone()], &a81[rows.clone()])
        ));
        assert!(close(
            vec_dot_q4_0_q8_0_ref(&w40[rows.clone()], &a80[rows.clone()]),
            ggml_generic_dot_q4_0(&w40[rows.clone()], &a80[rows.clone()])
        ));
        assert!(close(
            vec_dot_q8_0_q8_0_ref(&w80[rows.clone()], &a80[rows.clone()]),
            ggml_generic_dot_q8_0(&w80[rows.clone()], &a80[rows.clone()])
        ));
        assert!(close(
            vec_dot_q5_0_q8_0_ref(&w50[rows.clone()], &a80[rows.clone()]),
            ggml_generic_dot_q5_0(&w50[rows.clone()], &a80[rows.clone()])
        ));
        assert!(close(
            vec_dot_q5_1_q8_1_ref(&w51[rows.clone()], &a81[rows.clone()]),
            ggml_generic_dot_q5_1(&w51[rows.clone()], &a81[rows])
        ));
    }
}

/// Hashes of the quantized bytes, the dequantized values and per-row dot products computed
/// by `dot` (ggml's generic order), pinned against ggml's own reference code.
fn golden_hashes<W: WeightBlock>(dot: fn(&[W], &[W::Act]) -> f32) -> (u64, u64, u64) {
    let w = golden_data(GOLDEN_N, 1);
    let a = golden_data(GOLDEN_N, 2);
    let wq = quantize::<W>(&w);
    let aq = quantize::<W::Act>(&a);
    let hq = fnv1a(bytemuck::cast_slice(&wq));
    let hd = fnv1a(&f32_bytes(&dequantize(&wq)));
    let bw = GOLDEN_ROW / W::QK;
    let ba = GOLDEN_ROW / <W::Act as Quantize>::QK;
    let dots: Vec<f32> = wq
        .chunks_exact(bw)
        .zip(aq.chunks_exact(ba))
        .map(|(rw, ra)| dot(rw, ra))
        .collect();
    (hq, hd, fnv1a(&f32_bytes(&dots)))
}

#[test]
fn golden_inputs_match_generator() {
    assert_eq!(
        fnv1a(&f32_bytes(&golden_data(GOLDEN_N, 1))),
        0xd01f49b25434a2bc
    );
    assert_eq!(
        fnv1a(&f32_bytes(&golden_data(GOLDEN_N, 2))),
        0x1110f94510771d47
    );
}

#[test]
fn golden_q8_0() {
    assert_eq!(
        golden_hashes::<BlockQ8_0>(ggml_generic_dot_q8_0),
        (0x51b24a3fda8366b4, 0x03d784285cbaa81b, 0x5f353bbe73e6c502)
    );
}

#[test]
fn golden_q8_1() {
    let q = quantize::<BlockQ8_1>(&golden_data(GOLDEN_N, 1));
    assert_eq!(fnv1a(bytemuck::cast_slice(&q)), 0xd76f3a6bf9b2f3ec);
}

#[test]
fn golden_f16_bf16() {
    let w = golden_data(GOLDEN_N, 1);
    assert_eq!(
        fnv1a(bytemuck::cast_slice(&quantize::<f16>(&w))),
        0xaab25554965cbccd
    );
    assert_eq!(
        fnv1a(bytemuck::cast_slice(&quantize::<bf16>(&w))),
        0x22dd20cd72195a67
    );
}

#[test]
fn golden_q4_0() {
    assert_eq!(
        golden_hashes::<BlockQ4_0>(ggml_generic_dot_q4_0),
        (0x3ad2cc858a090605, 0xdf60f7debbc018e7, 0x44ae990e022b7b5c)
    );
}

#[test]
fn golden_q4_1() {
    assert_eq!(
        golden_hashes::<BlockQ4_1>(ggml_generic_dot_q4_1),
        (0xaec47bcd7f99e6c2, 0x6625532d5741eb20, 0xd33980ea24c9f881)
    );
}

#[test]
fn golden_q5_0() {
    assert_eq!(
        golden_hashes::<BlockQ5_0>(ggml_generic_dot_q5_0),
        (0x320c7faf67bb0150, 0xe2b1ef68749c390e, 0x10db123c10ee660a)
    );
}

#[test]
fn golden_q5_1() {
    assert_eq!(
        golden_hashes::<BlockQ5_1>(ggml_generic_dot_q5_1),
        (0xa34e35ae4c1372e1, 0xbd36ecbd5a5c376a, 0xd5feaebd7cf0bd36)
    );
}
