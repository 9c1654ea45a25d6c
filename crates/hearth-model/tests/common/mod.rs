//! Shared by the model's integration tests: where the real default model and the
//! reference data are.

#![allow(dead_code)]

use std::path::PathBuf;

/// The default model: `$HEARTH_TEST_MODEL`, else `SmolLM2-135M-Instruct.Q4_1.gguf` in the
/// models directory (`$HEARTH_MODELS`, else `~/.cache/hearth/models`). Panics with what
/// to do when it is missing: these tests must run on the real model.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth/models")
        });
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "default model missing at {}: run `hearth pull` first (the README's test command does)",
        p.display()
    );
    p
}

/// A file under the repository's `tests/data`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// The real Gemma 3 270M (`hearth pull gemma3-270m`), in the models directory.
pub fn gemma3_path() -> PathBuf {
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth/models")
        });
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "Gemma 3 270M missing at {}: run `hearth pull gemma3-270m` first (the README's test command does)", p.display());
    p
}

/// all-MiniLM-L6-v2 as `hearth pull all-minilm` converts it, in the models directory.
pub fn minilm_path() -> PathBuf {
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth/models")
        });
    let p = dir.join("all-minilm-l6-v2-f32.gguf");
    assert!(p.is_file(), "all-MiniLM-L6-v2 missing at {}: run `hearth pull all-minilm` first (the README's test command does)", p.display());
    p
}
