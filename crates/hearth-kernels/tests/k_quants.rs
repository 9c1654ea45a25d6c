//! K-quant block types: layout, ggml's test-quantize-fns error thresholds, pinned
//! known-bytes blocks, bit-exactness against ggml's reference output, and property
//! tests of `vec_dot` against "dequantize, then dot".

mod common;

use common::*;
use half::f16;
use hearth_kernels::{
    BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, Quantize, WeightBlock,
    K_SCALE_SIZE, QK_K,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------

#[test]
fn block_sizes_and_alignment_match_ggml() {
    use std::mem::{align_of, size_of};
    assert_eq!(QK_K, 256);
    assert_eq!(K_SCALE_SIZE, 12);
    assert_eq!(size_of::<BlockQ2_K>(), 84);
    assert_eq!(size_of::<BlockQ3_K>(), 110);
    assert_eq!(size_of::<BlockQ4_K>(), 144);
    assert_eq!(size_of::<BlockQ5_K>(), 176);
    assert_eq!(size_of::<BlockQ6_K>(), 210);
    assert_eq!(size_of::<BlockQ8_K>(), 292);
    // GGUF tensor data is only guaranteed 2-byte aligned per block for the f16 types.
    assert_eq!(align_of::<BlockQ2_K>(), 2);
    assert_eq!(align_of::<BlockQ3_K>(), 2);
    assert_eq!(align_of::<BlockQ4_K>(), 2);
    assert_eq!(align_of::<BlockQ5_K>(), 2);
    assert_eq!(align_of::<BlockQ6_K>(), 2);
    assert_eq!(align_of::<BlockQ8_K>(), 4);
    for qk in [
        BlockQ2_K::QK,
        BlockQ3_K::QK,
        BlockQ4_K::QK,
        BlockQ5_K::QK,
        BlockQ6_K::QK,
        BlockQ8_K::QK,
    ] {
        assert_eq!(qk, 256);
    }
}

#[test]
fn field_offsets_match_ggml() {
    // Offsets of the f16 super-block scales, checked through the raw bytes.
    fn offset_of_bits<T: bytemuck::Pod>(b: &T, bits: u16) -> usize {
        let bytes = bytemuck::bytes_of(b);
        let want = bits.to_le_bytes();
        let pos: Vec<usize> = (0..bytes.len() - 1)
            .filter(|&i| bytes[i..i + 2] == want)
            .collect();
        assert_eq!(pos.len(), 1, "marker found {} times", pos.len());
        pos[0]
    }
    let m1 = f16::from_bits(0x1234);
    let m2 = f16::from_bits(0x5678);

    let mut b2: BlockQ2_K = bytemuck::Zeroable::zeroed();
    b2.d = m1;
    b2.dmin = m2;
    assert_eq!(offset_of_bits(&b2, 0x1234), 80);
    assert_eq!(offset_of_bits(&b2, 0x5678), 82);

    let mut b3: BlockQ3_K = bytemuck::Zeroable::zeroed();
    b3.d = m1;
    assert_eq!(offset_of_bits(&b3, 0x1234), 108);

    let mut b4: BlockQ4_K = bytemuck::Zeroable::zeroed();
    b4.d = m1;
    b4.dmin = m2;
    b4.qs[0] = 0xAB;
    assert_eq!(offset_of_bits(&b4, 0x1234), 0);
    assert_eq!(offset_of_bits(&b4, 0x5678), 2);
    assert_eq!(bytemuck::bytes_of(&b4)[16], 0xAB);

    let mut b5: BlockQ5_K = bytemuck::Zeroable::zeroed();
    b5.d = m1;
    b5.dmin = m2;
    b5.qh[0] = 0xCD;
    b5.qs[0] = 0xAB;
    assert_eq!(offset_of_bits(&b5, 0x1234), 0);
    assert_eq!(offset_of_bits(&b5, 0x5678), 2);
    assert_eq!(bytemuck::bytes_of(&b5)[16], 0xCD);
    assert_eq!(bytemuck::bytes_of(&b5)[48], 0xAB);

    let mut b6: BlockQ6_K = bytemuck::Zeroable::zeroed();
    b6.d = m1;
    b6.qh[0] = 0xCD;
    b6.scales[0] = -2;
    assert_eq!(offset_of_bits(&b6, 0x1234), 208);
    assert_eq!(bytemuck::bytes_of(&b6)[128], 0xCD);
    assert_eq!(bytemuck::bytes_of(&b6)[192], 0xFE);

    let mut b8: BlockQ8_K = bytemuck::Zeroable::zeroed();
    b8.d = 1.0;
    b8.qs[0] = -1;
    b8.bsums[0] = 0x0102;
    let bytes = bytemuck::bytes_of(&b8);
    assert_eq!(&bytes[0..4], &1.0f32.to_le_bytes());
    assert_eq!(bytes[4], 0xFF);
    assert_eq!(&bytes[260..262], &[0x02, 0x01]);
}

// ---------------------------------------------------------------------------------------
// ggml's test-quantize-fns thresholds
// ---------------------------------------------------------------------------------------

#[test]
fn q2_k_meets_ggml_thresholds() {
    check_type::<BlockQ2_K>(
        "q2_K",
        MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
        MAX_DOT_PRODUCT_ERROR_LOWBIT,
    );
}

#[test]
fn q3_k_meets_ggml_thresholds() {
    check_type::<BlockQ3_K>(
        "q3_K",
        MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
        MAX_DOT_PRODUCT_ERROR_LOWBIT,
    );
}

#[test]
fn q4_k_meets_ggml_thresholds() {
    check_type::<BlockQ4_K>("q4_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q5_k_meets_ggml_thresholds() {
    check_type::<BlockQ5_K>("q5_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q6_k_meets_ggml_thresholds() {
    check_type::<BlockQ6_K>("q6_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
}

#[test]
fn q8_k_quantization_error_is_small() {
    for (kind, x) in [
        ("synth", synth(TEST_SIZE, 0.0)),
        ("random", random(TEST_SIZE, 0x5eed_0003)),
    ] {
        let err = quantization_error::<BlockQ8_K>(&x);
        assert!(err < MAX_QUANTIZATION_TOTAL_ERROR, "q8_K ({kind}): {err}");
    }
}

/// Prints the measured errors of every type next to ggml's thresholds (visible with
/// `--nocapture`), and checks that more bits never means (much) more error.
#[test]
fn error_table() {
    fn row<W: WeightBlock>(name: &str, max_q: f32, max_d: f32) -> (f32, f32) {
        let w = synth(TEST_SIZE, 0.0);
        let a = synth(TEST_SIZE, 1.0);
        let q = quantization_error::<W>(&w);
        let d = dot_error::<W>(&w, &a);
        let wr = random_weights(TEST_SIZE, 0x5eed_0010);
        let rel = rms_diff(&wr, &round_trip::<W>(&wr)) / rms_diff(&wr, &vec![0.0; wr.len()]);
        println!(
            "{name}: quant error {q:.6} (max {max_q}), dot error {d:.6} (max {max_d}), \
             relative RMS on weight-like data {rel:.5}"
        );
        assert!(q < max_q && d < max_d);
        (q, rel)
    }
    let e2 = row::<BlockQ2_K>(
        "q2_K",
        MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
        MAX_DOT_PRODUCT_ERROR_LOWBIT,
    );
    let e3 = row::<BlockQ3_K>(
        "q3_K",
        MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
        MAX_DOT_PRODUCT_ERROR_LOWBIT,
    );
    let e4 = row::<BlockQ4_K>("q4_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
    let e5 = row::<BlockQ5_K>("q5_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
    let e6 = row::<BlockQ6_K>("q6_K", MAX_QUANTIZATION_TOTAL_ERROR, MAX_DOT_PRODUCT_ERROR);
    let q8 = quantization_error::<BlockQ8_K>(&synth(TEST_SIZE, 0.0));
    println!("q8_K: quant error {q8:.6}");
    let errs = [e2, e3, e4, e5, e6];
    for pair in errs.windows(2) {
        assert!(
            pair[1].0 < pair[0].0,
            "synth error not decreasing with bits: {errs:?}"
        );
        assert!(
            pair[1].1 < pair[0].1,
            "weight-like error not decreasing with bits: {errs:?}"
        );
    }
    assert!(q8 < e6.0);
}

/// Relative RMS error on seeded weight-like data (bell-shaped with outliers) stays
/// within bounds that leave ~20% headroom over the measured values (largest over the
/// seeds: Q2_K 0.348, Q3_K 0.209, Q4_K 0.097, Q5_K 0.048, Q6_K 0.029, Q8_K 0.020).
#[test]
fn weight_like_random_data() {
    fn rel<Q: Quantize>(seed: u64) -> f32 {
        let x = random_weights(8 * QK_K, seed);
        let zero = vec![0.0; x.len()];
        rms_diff(&x, &round_trip::<Q>(&x)) / rms_diff(&x, &zero)
    }
    for seed in [1u64, 2, 3] {
        let errs = [
            ("q2_K", rel::<BlockQ2_K>(seed), 0.42),
            ("q3_K", rel::<BlockQ3_K>(seed), 0.25),
            ("q4_K", rel::<BlockQ4_K>(seed), 0.12),
            ("q5_K", rel::<BlockQ5_K>(seed), 0.06),
            ("q6_K", rel::<BlockQ6_K>(seed), 0.035),
            ("q8_K", rel::<BlockQ8_K>(seed), 0.024),
        ];
        for (name, err, max) in errs {
            assert!(
                err < max,
                "{name} (seed {seed}): relative RMS {err} >= {max}"
            );
        }
    }
}

/// Many rows against one activation vector, as a matmul uses it: each row's `vec_dot`
/// is close to the f32 dot of the originals.
#[test]
fn multi_row_dots() {
    fn check<W: WeightBlock<Act = BlockQ8_K>>(name: &str, rel_tol: f64) {
        let cols = 4 * QK_K;
        let a = random(cols, 77);
        let aq = quantize::<BlockQ8_K>(&a);
        for r in 0..8u64 {
            let w = random_weights(cols, 100 + r);
            let got = W::vec_dot(&quantize::<W>(&w), &aq);
            let want = dot_f64(&w, &a);
            let scale = dot_abs_f64(&w, &a);
            assert!(
                (f64::from(got) - want).abs() <= rel_tol * scale,
                "{name} row {r}: {got} vs {want} (scale {scale})"
            );
        }
    }
    check::<BlockQ2_K>("q2_K", 0.25);
    check::<BlockQ3_K>("q3_K", 0.15);
    check::<BlockQ4_K>("q4_K", 0.08);
    check::<BlockQ5_K>("q5_K", 0.04);
    check::<BlockQ6_K>("q6_K", 0.02);
}

// ---------------------------------------------------------------------------------------
// Q8_K specifics
// ---------------------------------------------------------------------------------------

#[test]
fn q8_k_scale_sign_clamp_and_bsums() {
    let mut x = random(2 * QK_K, 9);
    x[17] = -3.0; // largest magnitude of block 0 is negative
    x[QK_K + 5] = 2.5; // and of block 1 positive
    let q = quantize::<BlockQ8_K>(&x);
    // iscale = -127 / max: the extreme value maps to -127, so d has the opposite sign.
    assert_eq!(q[0].qs[17], -127);
    assert_eq!(q[0].d, 1.0 / (-127.0f32 / -3.0));
    assert!(q[0].d > 0.0);
    assert_eq!(q[1].qs[5], -127);
    assert!(q[1].d < 0.0);
    for b in &q {
        for (j, &s) in b.bsums.iter().enumerate() {
            let sum: i32 = b.qs[16 * j..16 * j + 16]
                .iter()
                .map(|&v| i32::from(v))
                .sum();
            assert_eq!(i32::from(s), sum);
        }
        assert!(b.qs.iter().all(|&v| v >= -127));
    }
    // An all-zero block is all zeros, sums included.
    let z = quantize::<BlockQ8_K>(&[0.0; QK_K]);
    assert_eq!(bytemuck::bytes_of(&z[0]), &[0u8; 292][..]);
}

#[test]
fn zero_input_gives_zero_output_for_every_type() {
    fn check<Q: Quantize>(name: &str) {
        let x = vec![0.0f32; 2 * QK_K];
        let y = round_trip::<Q>(&x);
        assert!(y.iter().all(|&v| v == 0.0), "{name}");
    }
    check::<BlockQ2_K>("q2_K");
    check::<BlockQ3_K>("q3_K");
    check::<BlockQ4_K>("q4_K");
    check::<BlockQ5_K>("q5_K");
    check::<BlockQ6_K>("q6_K");
    check::<BlockQ8_K>("q8_K");
}

#[test]
#[should_panic]
fn quantize_row_rejects_bad_lengths() {
    let x = vec![0.0f32; QK_K + 32];
    let mut y = vec![<BlockQ4_K as bytemuck::Zeroable>::zeroed(); 1];
    BlockQ4_K::quantize_row(&x, &mut y);
}

#[test]
#[should_panic]
fn vec_dot_rejects_mismatched_rows() {
    let w = vec![<BlockQ6_K as bytemuck::Zeroable>::zeroed(); 2];
    let a = vec![<BlockQ8_K as bytemuck::Zeroable>::zeroed(); 1];
    BlockQ6_K::vec_dot(&w, &a);
}

// ---------------------------------------------------------------------------------------
// Pinned known-bytes blocks (values worked out by hand from the documented layouts)
// ---------------------------------------------------------------------------------------

const F16_ONE: u16 = 0x3C00; // 1.0
const F16_HALF: u16 = 0x3800; // 0.5
const F16_QUARTER: u16 = 0x3400; // 0.25

/// A Q8_K block with `d = 1` and the given quants (bsums filled in).
fn q8_block(qs: impl Fn(usize) -> i8) -> BlockQ8_K {
    let mut b: BlockQ8_K = bytemuck::Zeroable::zeroed();
    b.d = 1.0;
    for (i, q) in b.qs.iter_mut().enumerate() {
        *q = qs(i);
    }
    for j in 0..16 {
        b.bsums[j] = b.qs[16 * j..16 * j + 16]
            .iter()
            .map(|&v| i16::from(v))
            .sum();
    }
    b
}

/// Checks hand-computed `(index, value)` pairs, then that `vec_dot` with an all-ones
/// activation and with a small pattern equals the exact dot of the dequantized values
/// (all values are small dyadic rationals, so every sum is exact in f32).
fn check_pinned<W: WeightBlock<Act = BlockQ8_K>>(name: &str, block: &W, expect: &[(usize, f32)]) {
    let y = dequantize(std::slice::from_ref(block));
    for &(i, v) in expect {
        assert_eq!(y[i], v, "{name}: value {i}");
    }
    for act in [
        q8_block(|_| 1),
        q8_block(|i| (i % 7) as i8 - 3),
        q8_block(|i| if i % 2 == 0 { 127 } else { -128 }),
    ] {
        let a = dequantize(std::slice::from_ref(&act));
        let want = dot_f64(&y, &a);
        let got = W::vec_dot(std::slice::from_ref(block), std::slice::from_ref(&act));
        assert_eq!(f64::from(got), want, "{name}: vec_dot");
    }
}

#[test]
fn q8_k_known_bytes() {
    let mut bytes = [0u8; 292];
    bytes[0..4].copy_from_slice(&0.5f32.to_le_bytes());
    for i in 0..256 {
        bytes[4 + i] = i as u8; // qs[i] = i as i8: 0..127 then -128..-1
    }
    let b: BlockQ8_K = bytemuck::pod_read_unaligned(&bytes);
    let y = dequantize(&[b]);
    assert_eq!(y[0], 0.0);
    assert_eq!(y[1], 0.5);
    assert_eq!(y[127], 63.5);
    assert_eq!(y[128], -64.0);
    assert_eq!(y[255], -0.5);
}

#[test]
fn q2_k_known_bytes() {
    // d = 0.5, dmin = 0.25; sub-block j: scale j, min 15 - j.
    // qs[i] = i for i < 32, 255 - (i - 32) for the second half.
    let mut bytes = [0u8; 84];
    for (j, b) in bytes[..16].iter_mut().enumerate() {
        *b = j as u8 | ((15 - j as u8) << 4);
    }
    for i in 0..64 {
        bytes[16 + i] = if i < 32 {
            i as u8
        } else {
            255 - (i as u8 - 32)
        };
    }
    bytes[80..82].copy_from_slice(&F16_HALF.to_le_bytes());
    bytes[82..84].copy_from_slice(&F16_QUARTER.to_le_bytes());
    let b: BlockQ2_K = bytemuck::pod_read_unaligned(&bytes);
    // value = 0.5 * j * q - 0.25 * (15 - j), j = i / 16,
    // q = bits 2k.. of qs[32h + l] for i = 128h + 32k + l.
    check_pinned(
        "q2_K",
        &b,
        &[
            (0, -3.75),   // j 0, qs[0] = 0 -> q 0
            (21, -3.0),   // j 1, qs[21] = 0b10101 -> q 1: 0.5 - 3.5
            (47, -0.25),  // j 2, k 1, qs[15] = 0b1111 -> q 3: 3 - 3.25
            (127, -2.0),  // j 7, k 3, qs[31] -> q 0: -0.25 * 8
            (129, 6.25),  // j 8, h 1, k 0, qs[33] = 254 -> q 2: 8 - 1.75
            (200, 17.25), // j 12, k 2, qs[40] = 247 -> q 3: 18 - 0.75
            (250, 22.5),  // j 15, k 3, qs[58] = 229 -> q 3
            (255, 22.5),  // j 15, k 3, qs[63] = 224 -> q 3
        ],
    );
}

#[test]
fn q3_k_known_bytes() {
    // d = 0.5; sub-block scales s - 32 = [-32, -1, 0, 1, 2, .., 12, 31]
    // (s = [0, 31, 32, .., 44, 63]); qs[i] = i; hmask = 0x0F at even, 0xF0 at odd bytes.
    let mut bytes = [0u8; 110];
    for (i, b) in bytes[..32].iter_mut().enumerate() {
        *b = if i % 2 == 0 { 0x0F } else { 0xF0 };
    }
    for i in 0..64 {
        bytes[32 + i] = i as u8;
    }
    let scales = [
        0x60, 0x7F, 0x80, 0x91, 0xA2, 0xB3, 0xC4, 0xF5, 0xA8, 0xA9, 0xAA, 0xEA,
    ];
    bytes[96..108].copy_from_slice(&scales);
    bytes[108..110].copy_from_slice(&F16_HALF.to_le_bytes());
    let b: BlockQ3_K = bytemuck::pod_read_unaligned(&bytes);
    // value = 0.5 * (s[i/16] - 32) * (low2 - (hbit ? 0 : 4)),
    // low2 = bits 2k.. of qs[32h + l], hbit = bit i/32 of hmask[i % 32].
    check_pinned(
        "q3_K",
        &b,
        &[
            (1, 48.0),    // scale -32; qs[1] -> 1, hmask[1] bit 0 clear -> q -3
            (19, 0.5),    // scale -1; qs[19] = 0b10011 -> 3, bit 0 clear -> q -1
            (45, 0.0),    // scale 0
            (55, -1.5),   // scale 1; k 1, qs[23] = 0b10111 -> 1, bit 1 clear -> q -3
            (130, -6.0),  // scale 6; h 1, k 0, qs[34] = 0b100010 -> 2, bit 4 clear -> q -2
            (165, 4.0),   // scale 8; k 1, qs[37] -> 1, hmask[5] bit 5 set -> q 1
            (200, -10.0), // scale 10; k 2, qs[40] -> 2, hmask[8] bit 6 clear -> q -2
            (254, -62.0), // scale 31; k 3, qs[62] -> 0, hmask[30] bit 7 clear -> q -4
            (255, 0.0),   // scale 31; qs[63] -> 0, hmask[31] bit 7 set -> q 0
        ],
    );
}

/// The Q4_K/Q5_K scale bytes used below: scales [1, 2, 3, 4, 5, 6, 17, 63],
/// mins [0, 1, 2, 3, 4, 5, 33, 40].
const K4_SCALES: [u8; 12] = [1, 2, 67, 196, 0, 1, 130, 131, 0x45, 0x56, 0x11, 0x8F];

#[test]
fn q4_k_known_bytes() {
    // d = 1, dmin = 0.5, qs[i] = i.
    let mut bytes = [0u8; 144];
    bytes[0..2].copy_from_slice(&F16_ONE.to_le_bytes());
    bytes[2..4].copy_from_slice(&F16_HALF.to_le_bytes());
    bytes[4..16].copy_from_slice(&K4_SCALES);
    for i in 0..128 {
        bytes[16 + i] = i as u8;
    }
    let b: BlockQ4_K = bytemuck::pod_read_unaligned(&bytes);
    // value = sc[i/32] * q - 0.5 * m[i/32]; in group g = i/64 at r = i%64:
    // q = low nibble of qs[32g + r] for r < 32, high nibble of qs[32g + r - 32] otherwise.
    check_pinned(
        "q4_K",
        &b,
        &[
            (0, 0.0),
            (5, 5.0),     // sub 0: q 5
            (40, -0.5),   // sub 1 (2, 1): qs[8] >> 4 = 0
            (63, 1.5),    // sub 1: qs[31] >> 4 = 1 -> 2 - 0.5
            (100, 6.5),   // sub 3 (4, 3): qs[36] >> 4 = 2 -> 8 - 1.5
            (200, 119.5), // sub 6 (17, 33): qs[104] & 15 = 8 -> 136 - 16.5
            (230, 358.0), // sub 7 (63, 40): qs[102] >> 4 = 6 -> 378 - 20
            (255, 421.0), // sub 7: qs[127] >> 4 = 7 -> 441 - 20
        ],
    );
}

#[test]
fn q5_k_known_bytes() {
    // As the Q4_K block, plus qh[l] = 1 << (l % 8): value i gets +16 iff i/32 == (i%32)%8.
    let mut bytes = [0u8; 176];
    bytes[0..2].copy_from_slice(&F16_ONE.to_le_bytes());
    bytes[2..4].copy_from_slice(&F16_HALF.to_le_bytes());
    bytes[4..16].copy_from_slice(&K4_SCALES);
    for l in 0..32 {
        bytes[16 + l] = 1 << (l % 8);
    }
    for i in 0..128 {
        bytes[48 + i] = i as u8;
    }
    let b: BlockQ5_K = bytemuck::pod_read_unaligned(&bytes);
    check_pinned(
        "q5_K",
        &b,
        &[
            (0, 16.0),     // sub 0, high bit set: q 16
            (5, 5.0),      // no high bit
            (40, -0.5),    // sub 1: q 0, no high bit (l 8)
            (41, 31.5),    // sub 1: l 9 -> high bit -> q 16: 32 - 0.5
            (200, 119.5),  // sub 6: l 8, no high bit
            (230, 358.0),  // sub 7: l 6, no high bit
            (231, 1366.0), // sub 7: l 7 -> q 6 + 16: 63 * 22 - 20
            (255, 1429.0), // sub 7: l 31 -> q 7 + 16: 63 * 23 - 20
        ],
    );
}

#[test]
fn q6_k_known_bytes() {
    // d = 0.25, ql[i] = i, qh[i] = i, scales [1, -1, 2, -2, .., 8, -128].
    let mut bytes = [0u8; 210];
    for (i, b) in bytes[..128].iter_mut().enumerate() {
        *b = i as u8;
    }
    for (i, b) in bytes[128..192].iter_mut().enumerate() {
        *b = i as u8;
    }
    let scales: [i8; 16] = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -128];
    for (j, &s) in scales.iter().enumerate() {
        bytes[192 + j] = s as u8;
    }
    bytes[208..210].copy_from_slice(&F16_QUARTER.to_le_bytes());
    let b: BlockQ6_K = bytemuck::pod_read_unaligned(&bytes);
    // value = 0.25 * scales[i/16] * (q - 32); see BlockQ6_K's docs for q.
    check_pinned(
        "q6_K",
        &b,
        &[
            (0, -8.0),     // q 0
            (1, -3.75),    // ql[1] low 1 | (qh[1] & 3) << 4 = 17
            (35, -14.5),   // k 1: ql[35] low 3, (qh[3] >> 2) & 3 = 0 -> q 3, scale 2
            (70, -24.0),   // k 2: ql[6] high 0, (qh[6] >> 4) & 3 = 0 -> q 0, scale 3
            (127, 29.0),   // k 3: ql[63] high 3 -> q 3, scale -4
            (140, -25.0),  // h 1, k 0: ql[76] low 12, qh[44] & 3 = 0 -> q 12, scale 5
            (180, 18.0),   // h 1, k 1: ql[116] low 4, (qh[52] >> 2) & 3 = 1 -> q 20, scale -6
            (220, -36.75), // h 1, k 2: ql[92] high 5, (qh[60] >> 4) & 3 = 3 -> q 53, scale -7
            (255, 800.0),  // h 1, k 3: ql[127] high 7, qh[63] >> 6 = 0 -> q 7, scale -128
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Bit-exactness against ggml
// ---------------------------------------------------------------------------------------

/// The xorshift64 generator used to produce the inputs of the ggml reference run below:
/// `x ^= x << 13; x ^= x >> 7; x ^= x << 17`, value `(x >> 40) / 2^24 * 2 - 1`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f64 * (1.0 / 16_777_216.0)) as f32 * 2.0 - 1.0
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Expected results, recorded from ggml's own C code (`quantize_row_qX_K_ref`,
/// `dequantize_row_qX_K`, `ggml_vec_dot_qX_K_q8_K_generic`, built without FMA
/// contraction): FNV-1a of the quantized bytes, FNV-1a of the dequantized f32 bytes,
/// and the bits of `vec_dot(quantize(w), quantize_q8_K(a))`.
struct Golden {
    q8_k: u64,
    types: [(u64, u64, u32); 5], // Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
}

fn check_golden(w: &[f32], a: &[f32], g: &Golden) {
    let aq = quantize::<BlockQ8_K>(a);
    assert_eq!(fnv1a(bytemuck::cast_slice(&aq)), g.q8_k, "q8_K bytes");
    fn one<W: WeightBlock<Act = BlockQ8_K>>(
        name: &str,
        w: &[f32],
        aq: &[BlockQ8_K],
        g: (u64, u64, u32),
        generic: fn(&[W], &[BlockQ8_K]) -> f32,
    ) {
        let q = quantize::<W>(w);
        assert_eq!(
            fnv1a(bytemuck::cast_slice(&q)),
            g.0,
            "{name}: quantized bytes differ from ggml"
        );
        let y = dequantize(&q);
        assert_eq!(
            fnv1a(bytemuck::cast_slice(&y)),
            g.1,
            "{name}: dequantized values differ from ggml"
        );
        // ggml's generic summation order, bit for bit (the oracle).
        let d = generic(&q, aq);
        assert_eq!(
            d.to_bits(),
            g.2,
            "{name}: vec_dot {d} differs from ggml's {}",
            f32::from_bits(g.2)
        );
        // The library's `vec_dot` (the SIMD kernels' lane order) differs from
        // it only by f32 rounding of the same exact integer sums.
        let v = W::vec_dot(&q, aq);
        assert!(
            (v - d).abs() <= 1e-5 * d.abs().max(1.0),
            "{name}: vec_dot {v} vs ggml order {d}"
        );
    }
    one::<BlockQ2_K>("q2_K", w, &aq, g.types[0], BlockQ2_K::vec_dot_generic);
    one::<BlockQ3_K>("q3_K", w, &aq, g.types[1], BlockQ3_K::vec_dot_generic);
    one::<BlockQ4_K>("q4_K", w, &aq, g.types[2], BlockQ4_K::vec_dot_generic);
    one::<BlockQ5_K>("q5_K", w, &aq, g.types[3], BlockQ5_K::vec_dot_generic);
    one::<BlockQ6_K>("q6_K", w, &aq, g.types[4], BlockQ6_K::vec_dot_generic);
}

const GOLDEN_N: usize = 4096;
const GOLDEN_SEED: u64 = 88_172_645_463_325_252;

#[test]
fn bit_exact_with_ggml_uniform() {
    // w[i], a[i] drawn alternately, uniform in [-1, 1).
    let mut rng = XorShift(GOLDEN_SEED);
    let (mut w, mut a) = (Vec::new(), Vec::new());
    for _ in 0..GOLDEN_N {
        w.push(rng.next());
        a.push(rng.next());
    }
    check_golden(
        &w,
        &a,
        &Golden {
            q8_k: 0x70a1f4ba19171764,
            types: [
                (0x4a7ca9000c9e67bb, 0xc1985442087f0c37, 0xc10dde8a),
                (0x4f5608b0f9c4a992, 0x9bcb399f803620e7, 0xc1047d95),
                (0x4464229abffbc196, 0xda241b3d542b8d9d, 0xc10b8189),
                (0x84734d73b4e0da5a, 0x4d64599a146af4ed, 0xc102c902),
                (0x0776a27c1e56d31a, 0x91a2a451504af9f4, 0xc1126842),
            ],
        },
    );
}

#[test]
fn bit_exact_with_ggml_edge_cases() {
    // Zero sub-blocks, an all-zero block, a constant block, a block of one large value
    // among tiny ones, and an all-zero activation block.
    let mut rng = XorShift(GOLDEN_SEED);
    for _ in 0..GOLDEN_N * (2 + 4) {
        rng.next(); // the reference run drew two other data sets first
    }
    let (mut w, mut a) = (Vec::new(), Vec::new());
    for i in 0..GOLDEN_N {
        let mut v = if i % 256 < 16 { 0.0 } else { rng.next() };
        let mut u = rng.next();
        match i / 256 {
            3 => v = 0.0,
            4 => v = 1.5,
            5 => v = if i % 7 == 0 { 10.0 } else { 0.001 * rng.next() },
            6 => u = 0.0,
            _ => {}
        }
        w.push(v);
        a.push(u);
    }
    check_golden(
        &w,
        &a,
        &Golden {
            q8_k: 0x34e88264bed724e2,
            types: [
                (0xae5314ca8673dce1, 0xdf5bbe1439762a12, 0xc2047ec7),
                (0x2cb859c437d26285, 0x30990670ac962825, 0xc1ec4596),
                (0xbe862b898440b88a, 0x7f5e9ec45371b4c0, 0xc1ed79d6),
                (0xdeb6efd3770aae8b, 0x730a058d8e27e0fc, 0xc1fd08cc),
                (0x70a88d015a11b9b6, 0xdec93fd5bc4d9aa7, 0xc1fdc5c8),
            ],
        },
    );
}

// ---------------------------------------------------------------------------------------
// Properties over random blocks
// ---------------------------------------------------------------------------------------

/// Random bytes as blocks of `W`, with the f16 super-block scales replaced by `scales`
/// (so they are finite): `set(block, d, dmin)`.
fn blocks_from_bytes<W: bytemuck::Pod>(
    bytes: &[u8],
    scales: &[(f32, f32)],
    set: fn(&mut W, f16, f16),
) -> Vec<W> {
    let size = std::mem::size_of::<W>();
    bytes
        .chunks_exact(size)
        .zip(scales)
        .map(|(c, &(d, m))| {
            let mut b: W = bytemuck::pod_read_unaligned(c);
            set(&mut b, f16::from_f32(d), f16::from_f32(m));
            b
        })
        .collect()
}

fn q8_from_parts(qs: &[i8], ds: &[f32]) -> Vec<BlockQ8_K> {
    qs.chunks_exact(QK_K)
        .zip(ds)
        .map(|(q, &d)| {
            let mut b: BlockQ8_K = bytemuck::Zeroable::zeroed();
            b.d = d;
            b.qs.copy_from_slice(q);
            for j in 0..16 {
                b.bsums[j] = q[16 * j..16 * j + 16].iter().map(|&v| i16::from(v)).sum();
            }
            b
        })
        .collect()
}

/// `vec_dot` equals the exact (f64) dot of the dequantized rows up to f32 rounding.
/// `no_min` is the same row with `dmin = 0` (for the affine types), which separates
/// the scale and min parts so the tolerance covers their cancellation.
fn assert_dot_matches_dequantized<W: WeightBlock<Act = BlockQ8_K>>(
    w: &[W],
    no_min: Option<&[W]>,
    a: &[BlockQ8_K],
) -> Result<(), TestCaseError> {
    let wd = dequantize(w);
    let ad = dequantize(a);
    let w0 = no_min.map(dequantize).unwrap_or_else(|| wd.clone());
    let want = dot_f64(&wd, &ad);
    let mag: f64 = wd
        .iter()
        .zip(&w0)
        .zip(&ad)
        .map(|((&w, &w0), &a)| {
            (f64::from(w0).abs() + (f64::from(w0) - f64::from(w)).abs()) * f64::from(a).abs()
        })
        .sum();
    let got = f64::from(W::vec_dot(w, a));
    let tol = (w.len() as f64 + 16.0) * 4.0 * f64::from(f32::EPSILON) * mag + 1e-30;
    prop_assert!(
        (got - want).abs() <= tol,
        "vec_dot {} vs {} (tol {}, mag {})",
        got,
        want,
        tol,
        mag
    );
    Ok(())
}

fn set_d_dmin_q2(b: &mut BlockQ2_K, d: f16, m: f16) {
    b.d = d;
    b.dmin = m;
}
fn set_d_q3(b: &mut BlockQ3_K, d: f16, _: f16) {
    b.d = d;
}
fn set_d_dmin_q4(b: &mut BlockQ4_K, d: f16, m: f16) {
    b.d = d;
    b.dmin = m;
}
fn set_d_dmin_q5(b: &mut BlockQ5_K, d: f16, m: f16) {
    b.d = d;
    b.dmin = m;
}
fn set_d_q6(b: &mut BlockQ6_K, d: f16, _: f16) {
    b.d = d;
}

/// Strategy: `nb` blocks' worth of random bytes, per-block `(d, dmin)`, Q8_K quants and
/// per-block Q8_K scales.
type RandomRows = (Vec<u8>, Vec<(f32, f32)>, Vec<i8>, Vec<f32>);

fn random_rows(size: usize) -> impl Strategy<Value = RandomRows> {
    (1usize..=4).prop_flat_map(move |nb| {
        (
            prop::collection::vec(any::<u8>(), size * nb),
            prop::collection::vec((-4.0f32..4.0, -4.0f32..4.0), nb),
            prop::collection::vec(any::<i8>(), QK_K * nb),
            prop::collection::vec(-2.0f32..2.0, nb),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn q2_k_vec_dot_matches_dequantized((bytes, sc, qs, ds) in random_rows(84)) {
        let w = blocks_from_bytes(&bytes, &sc, set_d_dmin_q2);
        let nm: Vec<(f32, f32)> = sc.iter().map(|&(d, _)| (d, 0.0)).collect();
        let w0 = blocks_from_bytes(&bytes, &nm, set_d_dmin_q2);
        assert_dot_matches_dequantized(&w, Some(&w0), &q8_from_parts(&qs, &ds))?;
    }

    #[test]
    fn q3_k_vec_dot_matches_dequantized((bytes, sc, qs, ds) in random_rows(110)) {
        let w = blocks_from_bytes(&bytes, &sc, set_d_q3);
        assert_dot_matches_dequantized(&w, None, &q8_from_parts(&qs, &ds))?;
    }

    #[test]
    fn q4_k_vec_dot_matches_dequantized((bytes, sc, qs, ds) in random_rows(144)) {
        let w = blocks_from_bytes(&bytes, &sc, set_d_dmin_q4);
        let nm: Vec<(f32, f32)> = sc.iter().map(|&(d, _)| (d, 0.0)).collect();
        let w0 = blocks_from_bytes(&bytes, &nm, set_d_dmin_q4);
        assert_dot_matches_dequantized(&w, Some(&w0), &q8_from_parts(&qs, &ds))?;
    }

    #[test]
    fn q5_k_vec_dot_matches_dequantized((bytes, sc, qs, ds) in random_rows(176)) {
        let w = blocks_from_bytes(&bytes, &sc, set_d_dmin_q5);
        let nm: Vec<(f32, f32)> = sc.iter().map(|&(d, _)| (d, 0.0)).collect();
        let w0 = blocks_from_bytes(&bytes, &nm, set_d_dmin_q5);
        assert_dot_matches_dequantized(&w, Some(&w0), &q8_from_parts(&qs, &ds))?;
    }

    #[test]
    fn q6_k_vec_dot_matches_dequantized((bytes, sc, qs, ds) in random_rows(210)) {
        let w = blocks_from_bytes(&bytes, &sc, set_d_q6);
        assert_dot_matches_dequantized(&w, None, &q8_from_parts(&qs, &ds))?;
    }

    /// Quantizing arbitrary finite data never panics, and every type reconstructs each
    /// block to within a fraction of its largest magnitude.
    #[test]
    fn quantize_any_finite_block(
        x in prop::collection::vec(-1.0f32..1.0, QK_K),
        // Magnitudes for which every f16 super-block scale stays a normal number.
        scale_exp in -2i32..12,
        zero_mask in any::<u16>(),
    ) {
        let s = 2.0f32.powi(scale_exp);
        let x: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| if zero_mask & (1 << (i / 16)) != 0 { 0.0 } else { v * s })
            .collect();
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        fn max_err<Q: Quantize>(x: &[f32]) -> f32 {
            let y = round_trip::<Q>(x);
            max_abs_diff(x, &y)
        }
        // Worst-case bounds per value, relative to the block's largest magnitude.
        prop_assert!(max_err::<BlockQ8_K>(&x) <= amax * 0.0040 + 1e-30);
        prop_assert!(max_err::<BlockQ6_K>(&x) <= amax * 0.05 + 1e-30);
        prop_assert!(max_err::<BlockQ5_K>(&x) <= amax * 0.10 + 1e-30);
        prop_assert!(max_err::<BlockQ4_K>(&x) <= amax * 0.20 + 1e-30);
        prop_assert!(max_err::<BlockQ3_K>(&x) <= amax * 0.40 + 1e-30);
        prop_assert!(max_err::<BlockQ2_K>(&x) <= amax * 1.00 + 1e-30);
    }

    /// Q8_K: every value within half a step, and bsums consistent.
    #[test]
    fn q8_k_round_trip_within_half_step(x in prop::collection::vec(-100.0f32..100.0, QK_K)) {
        let q = quantize::<BlockQ8_K>(&x);
        let y = dequantize(&q);
        let step = q[0].d.abs();
        for (a, b) in x.iter().zip(&y) {
            prop_assert!((a - b).abs() <= step * 0.5001 + 1e-6, "{} vs {} (step {})", a, b, step);
        }
        for j in 0..16 {
            let sum: i32 = q[0].qs[16 * j..16 * j + 16].iter().map(|&v| i32::from(v)).sum();
            prop_assert_eq!(i32::from(q[0].bsums[j]), sum);
        }
    }
}
