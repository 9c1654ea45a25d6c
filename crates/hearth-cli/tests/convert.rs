//! `hearth convert` and `hearth pull all-minilm` from the command line. The conversion
//! itself is tested against llama.cpp in hearth-convert's tests.

mod common;

use std::path::PathBuf;

use common::{assert_clean_error, hearth, stdout};

/// The Hugging Face folder `hearth pull all-minilm` keeps beside the GGUF file, in the
/// models directory.
fn minilm_folder() -> PathBuf {
    let dir = common::models_dir().join("all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} missing: run `hearth pull all-minilm` first (the README's test command does)",
        dir.display()
    );
    dir
}

#[test]
fn converts_a_folder_and_the_result_loads() {
    let folder = minilm_folder();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm-q8_0.gguf");
    let o = hearth(&[
        "convert",
        folder.to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "q8_0",
    ]);
    let text = stdout(&o);
    assert!(
        text.contains("(bert, q8_0): 101 tensors: 64 F32, 37 Q8_0"),
        "{text}"
    );
    let o = hearth(&["inspect", out.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.contains("general.file_type                             7"),
        "{text}"
    );
    assert!(
        text.contains("token_embd.weight                Q8_0"),
        "{text}"
    );
    // Nothing else was left in the output's directory.
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn bad_input_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let missing = tmp.path().join("no-such-folder");
    let o = hearth(&["convert", missing.to_str().unwrap(), out.to_str().unwrap()]);
    assert_clean_error(&o, "no-such-folder is missing");
    let o = hearth(&[
        "convert",
        tmp.path().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "config.json is missing");
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("model.safetensors"),
        b"\x02\0\0\0\0\0\0\0{}",
    )
    .unwrap();
    let o = hearth(&[
        "convert",
        tmp.path().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "unknown architecture 'GPT2LMHeadModel'");
    let o = hearth(&[
        "convert",
        tmp.path().to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "q4_0",
    ]);
    assert_clean_error(&o, "unknown output type 'q4_0' (known: f32, f16, q8_0)");
    assert!(!out.exists());
}

#[test]
fn list_shows_all_minilm() {
    let empty = tempfile::tempdir().unwrap();
    let o = hearth(&["list", "--models-dir", empty.path().to_str().unwrap()]);
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("all-minilm-l6-v2")
                && l.contains("`hearth pull all-minilm-l6-v2`")),
        "{text}"
    );
}
