//! Every architecture against llama.cpp, on models generated here at test time: each
//! preset of `hearth_synth` is generated, checked to be byte for byte the file llama.cpp
//! ran (its sha256 in `tests/data/synth/ARCH.json`), loaded, and its greedy
//! continuations and top-5 probabilities compared with llama.cpp's, under the default
//! model's rule (identical greedy tokens up to a listed near-tie, every top-5
//! probability within 0.01). `hearth perplexity` on the same models is checked in the
//! CLI's tests.

#[path = "../../hearth-model/tests/common/oracle.rs"]
mod oracle;

use hearth_model::Model;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn check(arch: &str) {
    let spec = hearth_synth::preset(arch).unwrap();
    let bytes = hearth_synth::generate(&spec).unwrap();
    let golden = oracle::golden(&format!("synth/{arch}.json"));
    let sha = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(
        Value::from(sha),
        golden["sha256"],
        "{arch}: the generator's output changed; record llama.cpp's outputs again (tests/data/synth/README.md)"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let model = Model::load(file.path()).unwrap();
    oracle::check_greedy(&model, &oracle::archs_cases(&golden))
        .assert_meets_rule(&format!("generated {arch}"));
}

#[test]
fn llama() {
    check("llama");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn qwen3() {
    check("qwen3");
}

#[test]
fn gemma3() {
    check("gemma3");
}

#[test]
fn phi3() {
    check("phi3");
}

#[test]
fn qwen3moe() {
    check("qwen3moe");
}

#[test]
fn mixtral() {
    check("mixtral");
}

#[test]
fn qwen2moe() {
    check("qwen2moe");
}

#[test]
fn olmoe() {
    check("olmoe");
}
