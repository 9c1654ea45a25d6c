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

use hearth_kernels::ops::log_sum_exp;
use hearth_model::{Batch, KvType, Model};
use serde_json::Value;

/// Largest allowed |p - p_ref| for any top-5 entry at any compared step.
const PROB_TOL: f64 = 0.01;

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_matches_reference_engine() {
    let model = Model::load(common::model_path()).expect("load model");
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_path("greedy_q4_1.json")).unwrap(),
    )
    .unwrap();
    let (mut sum_diff, mut n_diff, mut worst) = (0.0f64, 0usize, 0.0f64);
    let mut matched_total = 0;
    for (ci, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let prompt: Vec<u32> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let expected: Vec<u32> = case["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let steps = case["steps"].as_array().unwrap();

        // The prompt must tokenize to the reference ids exactly.
        let text = case["prompt_text"].as_str().unwrap();
        assert_eq!(
            model.tokenizer.encode(text, true, true),
            prompt,
            "case {ci}: prompt tokenization"
        );

        let mut kv = model.new_kv_cache(prompt.len() + expected.len() + 1, KvType::F16);
        let mut logits = model
            .forward(&Batch::contiguous(&prompt, 0, false), &mut kv)
            .unwrap()
            .last()
            .to_vec();
        let mut matched = expected.len();
        for (s, &want) in expected.iter().enumerate() {
            let lse = log_sum_exp(&logits);
            for t in steps[s]["top5"].as_array().unwrap() {
                let id = t["id"].as_u64().unwrap() as usize;
                let p_ref = t["prob"].as_f64().unwrap();
                let d = (((logits[id] - lse) as f64).exp() - p_ref).abs();
                sum_diff += d;
                n_diff += 1;
                worst = worst.max(d);
                assert!(d < PROB_TOL, "case {ci} step {s} token {id}: probability differs by {d:.4} from the reference");
            }
            let got = argmax(&logits);
            if got != want {
                let gap = steps[s]["top1_top2_logprob_gap"].as_f64().unwrap();
                eprintln!("case {ci}: diverged at step {s} (got {got}, reference {want}, reference top-2 gap {gap:.4} nats)");
                let near_tie = case["near_ties_gap_lt_0.02"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t[0].as_u64() == Some(s as u64));
                assert!(
                    near_tie,
                    "case {ci}: diverged at step {s}, which is not a near tie in the reference"
                );
                matched = s;
                break;
            }
            if s + 1 < expected.len() {
                logits = model
                    .forward(&Batch::contiguous(&[got], prompt.len() + s, false), &mut kv)
                    .unwrap()
                    .last()
                    .to_vec();
            }
        }
        matched_total += matched;
    }
    let mean = sum_diff / n_diff as f64;
    eprintln!("greedy tokens matched: {matched_total}; top-5 probability difference mean {mean:.5}, max {worst:.5}");
}
