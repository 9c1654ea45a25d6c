//! Shared by the model's integration tests: where the real default model and the
//! reference data are.

#![allow(dead_code)]

use std::path::PathBuf;

/// The default model: `$HEARTH_TEST_MODEL`, else `SmolLM2-135M-Instruct.Q4_1.gguf` in the
/// models directory ([`models_dir`]). Panics with what
/// to do when it is missing: these tests must run on the real model.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let p = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "default model missing at {}: run `hearth pull` first (the README's test command does)",
        p.display()
    );
    p
}

/// The models directory as `hearth` finds it: `$HEARTH_MODELS`, else
/// `$XDG_CACHE_HOME/hearth/models`, else `~/.cache/hearth/models`.
pub fn models_dir() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HEARTH_MODELS").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .unwrap_or_else(|| var("HOME").expect("HOME").join(".cache"))
            .join("hearth/models")
    })
}

/// A file under the repository's `tests/data`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// The real Gemma 3 270M (`hearth pull gemma3-270m`), in the models directory.
pub fn gemma3_path() -> PathBuf {
    let p = models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "Gemma 3 270M missing at {}: run `hearth pull gemma3-270m` first (the README's test command does)", p.display());
    p
}

/// all-MiniLM-L6-v2 as `hearth pull all-minilm` converts it, in the models directory.
pub fn minilm_path() -> PathBuf {
    let p = models_dir().join("all-minilm-l6-v2-f32.gguf");
    assert!(p.is_file(), "all-MiniLM-L6-v2 missing at {}: run `hearth pull all-minilm` first (the README's test command does)", p.display());
    p
}
