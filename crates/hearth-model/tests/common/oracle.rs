//! Greedy runs against llama.cpp's golden files, in either of their two formats: the
//! architecture oracle's (`../shared/reference/archs`) and the real models' (`tests/data`).

#![allow(dead_code)]

use hearth_kernels::ops::log_sum_exp;
use hearth_model::{Batch, KvType, Model};
use serde_json::Value;

/// Largest allowed |p - p_ref| for any top-5 entry at any compared step.
pub const PROB_TOL: f64 = 0.01;

/// One prompt of a golden file.
pub struct Case {
    pub name: String,
    pub text: String,
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    /// Per step, the reference's top five `(id, probability)`.
    pub top5: Vec<Vec<(usize, f64)>>,
    /// Steps where the reference's top two are within 0.02 nats.
    pub near_ties: Vec<usize>,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The cases of a golden file in the architecture oracle's format (`prompts[]` with
/// `content`, `prompt_ids`, `generated_ids`, `steps[].top5[{id, logprob}]`,
/// `near_ties[{step}]`).
pub fn archs_cases(golden: &Value) -> Vec<Case> {
    let top5 = |p: &Value| {
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["top5"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        (
                            t["id"].as_u64().unwrap() as usize,
                            t["logprob"].as_f64().unwrap().exp(),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    golden["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Case {
            name: p["name"].as_str().unwrap().to_string(),
            text: p["content"].as_str().unwrap().to_string(),
            prompt_ids: ids(&p["prompt_ids"]),
            generated_ids: ids(&p["generated_ids"]),
            top5: top5(p),
            near_ties: p["near_ties"].as_array().map_or(Vec::new(), |t| {
                t.iter()
                    .map(|t| t["step"].as_u64().unwrap() as usize)
                    .collect()
            }),
        })
        .collect()
}

/// The cases of a golden file in the real models' format (`cases[]` with `prompt_text`,
/// `prompt_ids`, `generated_ids`, `steps[].top5[{id, prob}]`, `near_ties_gap_lt_0.02`).
pub fn real_cases(golden: &Value) -> Vec<Case> {
    let top5 = |c: &Value| {
        c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["top5"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        (
                            t["id"].as_u64().unwrap() as usize,
                            t["prob"].as_f64().unwrap(),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, c)| Case {
            name: format!("case {i}"),
            text: c["prompt_text"].as_str().unwrap().to_string(),
            prompt_ids: ids(&c["prompt_ids"]),
            generated_ids: ids(&c["generated_ids"]),
            top5: top5(c),
            near_ties: c["near_ties_gap_lt_0.02"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[0].as_u64().unwrap() as usize)
                .collect(),
        })
        .collect()
}

/// How a model's greedy run compares with a golden file.
#[derive(Debug, Default)]
pub struct GreedyReport {
    /// Greedy tokens identical to the reference's, over all prompts (up to each prompt's
    /// first divergence).
    pub matched: usize,
    /// Stored greedy tokens, over all prompts.
    pub total: usize,
    /// Divergences at a step that is not a listed near-tie: `(prompt, step)`.
    pub unlisted_splits: Vec<(String, usize)>,
    /// Largest |p - p_ref| of a top-5 entry, at the steps compared.
    pub max_prob_diff: f64,
    pub mean_prob_diff: f64,
}

/// Asserts that each case's text tokenizes to its `prompt_ids`, then decodes greedily
/// (f16 KV cache, the prompt as one batch, then one token at a time) until the first
/// divergence, comparing every top-5 probability on the way.
pub fn check_greedy(model: &Model, cases: &[Case]) -> GreedyReport {
    let mut r = GreedyReport::default();
    let (mut sum_diff, mut n_diff) = (0.0f64, 0usize);
    for c in cases {
        r.total += c.generated_ids.len();
        assert_eq!(
            model.tokenizer.encode(&c.text, true, true),
            c.prompt_ids,
            "{}: prompt tokenization",
            c.name
        );
        let n_prompt = c.prompt_ids.len();
        let mut kv = model.new_kv_cache(n_prompt + c.generated_ids.len() + 1, KvType::F16);
        let mut logits = model
            .forward(&Batch::contiguous(&c.prompt_ids, 0, false), &mut kv)
            .unwrap()
            .last()
            .to_vec();
        for (s, &want) in c.generated_ids.iter().enumerate() {
            let lse = log_sum_exp(&logits);
            for &(id, p_ref) in &c.top5[s] {
                let d = (((logits[id] - lse) as f64).exp() - p_ref).abs();
                sum_diff += d;
                n_diff += 1;
                r.max_prob_diff = r.max_prob_diff.max(d);
            }
            let got = argmax(&logits);
            if got != want {
                let near_tie = c.near_ties.contains(&s);
                eprintln!("{}: diverged at step {s} (got {got}, reference {want}; listed near-tie: {near_tie})", c.name);
                if !near_tie {
                    r.unlisted_splits.push((c.name.clone(), s));
                }
                break;
            }
            r.matched += 1;
            if s + 1 < c.generated_ids.len() {
                logits = model
                    .forward(&Batch::contiguous(&[got], n_prompt + s, false), &mut kv)
                    .unwrap()
                    .last()
                    .to_vec();
            }
        }
    }
    r.mean_prob_diff = sum_diff / n_diff.max(1) as f64;
    r
}

impl GreedyReport {
    /// Prints the report under `what` and asserts the rule: no split outside a listed
    /// near-tie, every top-5 probability within [`PROB_TOL`].
    pub fn assert_meets_rule(&self, what: &str) {
        eprintln!(
            "ran: {what}: {}/{} greedy tokens matched, top-5 probability difference mean {:.5}, max {:.5}",
            self.matched, self.total, self.mean_prob_diff, self.max_prob_diff
        );
        assert!(
            self.unlisted_splits.is_empty(),
            "{what}: diverged outside a listed near-tie at {:?}",
            self.unlisted_splits
        );
        assert!(
            self.max_prob_diff < PROB_TOL,
            "{what}: a top-5 probability differs by {:.4}",
            self.max_prob_diff
        );
    }
}

/// The golden file `name` of the repository's test data.
pub fn golden(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}
