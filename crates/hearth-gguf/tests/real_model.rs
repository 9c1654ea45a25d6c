//! Checks against the real default model, when it is present.
//!
//! The path comes from `HEARTH_TEST_MODEL`, else
//! `~/.cache/hearth/models/SmolLM2-135M-Instruct.Q4_1.gguf`. If the file does
//! not exist the test prints a note and passes: this crate's tests must not
//! require the model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_gguf::{GgmlType, GgufFile};

fn model_path() -> Option<PathBuf> {
    let path = match std::env::var_os("HEARTH_TEST_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/hearth/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "note: model file {} not found; skipping the real-model test",
            path.display()
        );
        None
    }
}

#[test]
fn smollm2_135m_q4_1() {
    let Some(path) = model_path() else { return };
    let f =
        GgufFile::open(&path).unwrap_or_else(|e| panic!("failed to parse {}: {e}", path.display()));
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_u32("llama.embedding_length"), Some(576));
    assert_eq!(f.alignment(), 32);
    let tokens = f
        .get_str_array("tokenizer.ggml.tokens")
        .expect("tokenizer.ggml.tokens");
    assert_eq!(tokens.len(), 49152);

    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for t in f.tensors() {
        *by_type.entry(t.ggml_type.name()).or_default() += 1;
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
    }
    assert_eq!(f.tensors().len(), 272, "tensor counts by type: {by_type:?}");
    assert_eq!(by_type.get("Q4_1"), Some(&210), "{by_type:?}");
    assert_eq!(by_type.get("F32"), Some(&61), "{by_type:?}");
    assert_eq!(by_type.get("Q8_0"), Some(&1), "{by_type:?}");

    let emb = f.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.shape, vec![576, 49152]);
    assert_eq!(emb.n_bytes, 576 / 32 * 34 * 49152);
}
