//! Every dense architecture against llama.cpp's outputs on the tiny random-weight models
//! of `../shared/reference/archs/` (when that folder exists beside the repository; each
//! test says that it skipped otherwise): prompt tokenization identical, then greedy
//! continuations and top-5 probabilities compared step by step.
//!
//! The target (the architectures issue) is: greedy identical for the whole stored length
//! (a split only at a listed near-tie) and every top-5 probability within 0.01. `qwen2`
//! meets it. The others do not yet, and the bounds below are what this build measures,
//! so a regression fails; docs/perf.md ("Architecture oracle") records the gap. (These
//! random models amplify any rounding difference: the exact-f32 oracle is 0.04–0.12 away
//! from llama.cpp on them.)

#[path = "common/oracle.rs"]
mod oracle;

use std::path::PathBuf;

use hearth_model::Model;
use serde_json::Value;

fn archs_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/archs");
    dir.join("README.md").is_file().then_some(dir)
}

/// Checks `name` against its golden file: at least `min_matched` greedy tokens matched,
/// no split outside a listed near-tie except at the `allowed_splits` prompts, and every
/// compared top-5 probability within `prob_tol`.
fn check(name: &str, min_matched: usize, allowed_splits: &[&str], prob_tol: f64) {
    let Some(dir) = archs_dir() else {
        eprintln!("skipped: ../shared/reference/archs is not there");
        return;
    };
    let model = Model::load(dir.join(format!("{name}-q8_0.gguf")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}-q8_0.json"))).unwrap(),
    )
    .unwrap();
    let r = oracle::check_greedy(&model, &oracle::archs_cases(&golden));
    eprintln!(
        "ran: {name} against ../shared/reference/archs: {}/{} greedy tokens matched, top-5 probability difference mean {:.5}, max {:.5}",
        r.matched, r.total, r.mean_prob_diff, r.max_prob_diff
    );
    assert!(
        r.matched >= min_matched,
        "{name}: {} greedy tokens matched, expected at least {min_matched}",
        r.matched
    );
    for (prompt, step) in &r.unlisted_splits {
        assert!(
            allowed_splits.contains(&prompt.as_str()),
            "{name}: {prompt} diverged at step {step}, not a listed near-tie"
        );
    }
    assert!(
        r.max_prob_diff < prob_tol,
        "{name}: a top-5 probability differs by {:.4} (bound {prob_tol})",
        r.max_prob_diff
    );
}

#[test]
fn qwen2_matches_reference() {
    check("qwen2", 72, &[], oracle::PROB_TOL);
}

#[test]
fn llama3_matches_reference() {
    check("llama3", 72, &[], 0.06);
}

#[test]
fn phi3_matches_reference() {
    check("phi3", 49, &["paragraph"], 0.015);
}

#[test]
fn qwen3_matches_reference() {
    check("qwen3", 37, &["capital"], 0.05);
}

#[test]
fn gemma3_matches_reference() {
    check("gemma3", 52, &["capital"], 0.06);
}
