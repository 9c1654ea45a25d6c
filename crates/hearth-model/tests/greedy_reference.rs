//! Greedy continuations and top-5 probabilities against the reference engine's golden
//! output for the default model (tests/data/greedy_q4_1.json).

mod common;

use hearth_kernels::ops::log_sum_exp;
use hearth_model::{Batch, KvType, Model};
use serde_json::Value;

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
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(common::data_path("greedy_q4_1.json")).unwrap()).unwrap();
    let mut worst = 0.0f64;
    let mut compared_steps = 0;
    for (ci, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let prompt: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let expected: Vec<u32> = case["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let near_ties: Vec<usize> = case["near_ties_gap_lt_0.02"].as_array().unwrap().iter().map(|v| v[0].as_u64().unwrap() as usize).collect();
        let steps = case["steps"].as_array().unwrap();

        // The prompt must tokenize to the reference ids as well.
        let text = case["prompt_text"].as_str().unwrap();
        assert_eq!(model.tokenizer.encode(text, true, true), prompt, "case {ci}: prompt tokenization");

        let mut kv = model.new_kv_cache(prompt.len() + expected.len() + 1, KvType::F16);
        let mut logits = model.forward(&Batch::contiguous(&prompt, 0, false), &mut kv).unwrap().last().to_vec();
        let mut pos = prompt.len();
        for (s, &want) in expected.iter().enumerate() {
            let lse = log_sum_exp(&logits);
            for t in steps[s]["top5"].as_array().unwrap() {
                let id = t["id"].as_u64().unwrap() as usize;
                let p_ref = t["prob"].as_f64().unwrap();
                let p = ((logits[id] - lse) as f64).exp();
                worst = worst.max((p - p_ref).abs());
                assert!((p - p_ref).abs() < PROB_TOL, "case {ci} step {s} token {id}: p={p:.5} reference {p_ref:.5}");
            }
            compared_steps += 1;
            let got = argmax(&logits);
            if got != want {
                assert!(near_ties.contains(&s), "case {ci}: diverged at step {s} (got {got}, reference {want}) and that step is not a near tie");
                eprintln!("case {ci}: diverged at near-tie step {s} (got {got}, reference {want}); accepted");
                break;
            }
            if s + 1 < expected.len() {
                logits = model.forward(&Batch::contiguous(&[got], pos, false), &mut kv).unwrap().last().to_vec();
                pos += 1;
            }
        }
    }
    eprintln!("compared {compared_steps} steps; largest top-5 probability difference {worst:.5}");
}
