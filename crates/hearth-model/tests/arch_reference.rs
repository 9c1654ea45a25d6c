//! Every architecture against llama.cpp's outputs on the tiny random-weight models
//! of `../shared/reference/archs/` (when that folder exists beside the repository; each
//! test says that it skipped otherwise): prompt tokenization identical, then greedy
//! continuations and top-5 probabilities compared step by step.
//!
//! The rule is the default model's: greedy identical for the whole stored length (a
//! split only at a listed near-tie) and every top-5 probability within 0.01. Every model
//! here meets it.

#[path = "common/oracle.rs"]
mod oracle;

use std::path::PathBuf;

use hearth_model::Model;
use serde_json::Value;

fn archs_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/archs");
    dir.join("README.md").is_file().then_some(dir)
}

/// Checks `name` against its golden file under the rule above.
fn check(name: &str) {
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
    oracle::check_greedy(&model, &oracle::archs_cases(&golden))
        .assert_meets_rule(&format!("{name} against ../shared/reference/archs"));
}

#[test]
fn qwen2_matches_reference() {
    check("qwen2");
}

#[test]
fn llama3_matches_reference() {
    check("llama3");
}

#[test]
fn phi3_matches_reference() {
    check("phi3");
}

#[test]
fn qwen3_matches_reference() {
    check("qwen3");
}

#[test]
fn gemma3_matches_reference() {
    check("gemma3");
}

#[test]
fn qwen3moe_matches_reference() {
    check("qwen3moe");
}

#[test]
fn mixtral_matches_reference() {
    check("mixtral");
}
