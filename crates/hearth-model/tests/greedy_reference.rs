//! Greedy continuations and top-5 probabilities against the reference engine's golden
//! output for the default model (tests/data/greedy_q4_1.json).
//!
//! The criterion: for every prompt the greedy continuation is the reference's token
//! sequence for its whole stored length (a split is accepted only at a step the reference
//! lists as a near tie, and is logged), and at every step up to there each top-5
//! probability is within 0.01 of the reference's.
//!
//! This model amplifies any rounding difference (the exact-f32 oracle differs from the
//! reference by up to 0.06 per position), so meeting this needs the reference engine's
//! arithmetic: its 8-bit activation quantizer, its flash-attention numerics (f16 query, f16
//! value accumulator) with its summation order, its SiLU polynomial, fused RoPE. Hearth
//! computes those in software, so the result does not depend on the CPU it runs on.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use hearth_model::Model;

#[test]
fn greedy_matches_reference_engine() {
    let model = Model::load(common::model_path()).expect("load model");
    oracle::check_greedy(
        &model,
        &oracle::real_cases(&oracle::golden("greedy_q4_1.json")),
    )
    .assert_meets_rule("q4_1");
}

/// The default model converted to Q8_0 the way the reference's Q8_0 file was made (Q4_1 →
/// F16 → Q8_0; the quantizer's output is byte-identical to llama-quantize's, which the
/// size check below guards) against llama.cpp's greedy run on that file: the Q8_0 product
/// must take the reference engine's lane order (four consecutive elements per lane).
#[test]
fn q8_0_greedy_matches_reference_engine() {
    use hearth_model::quantize::{quantize_file, FileType, QuantizeOptions};
    let dir = tempfile::tempdir().unwrap();
    let (f16, q8) = (dir.path().join("f16.gguf"), dir.path().join("q8_0.gguf"));
    let opts = |ftype| QuantizeOptions {
        ftype,
        allow_requantize: true,
    };
    quantize_file(
        &common::model_path(),
        &f16,
        &opts(FileType::F16),
        |_, _, _| {},
    )
    .unwrap();
    quantize_file(&f16, &q8, &opts(FileType::Q8_0), |_, _, _| {}).unwrap();
    assert_eq!(
        std::fs::metadata(&q8).unwrap().len(),
        144_811_072,
        "not the reference's Q8_0 file"
    );
    let model = Model::load(&q8).unwrap();
    oracle::check_greedy(
        &model,
        &oracle::real_cases(&oracle::golden("greedy_q8_0.json")),
    )
    .assert_meets_rule("q8_0");
}
