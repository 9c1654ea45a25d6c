//! Shared by the CLI's integration tests: the real default model and reference data (from
//! hearth-model's test helpers), running the binary, and what a clean error looks like.

#![allow(dead_code, unused_imports)]

use std::process::{Command, Output};

#[path = "../../../hearth-model/tests/common/mod.rs"]
mod model;

pub use model::{data_path, gemma3_path, model_path, models_dir};

/// `hearth ARGS…`, run to completion.
pub fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("run hearth")
}

/// Standard output of a run that must have succeeded.
pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hearth failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure must be a clear one-line `error:` message, a non-zero exit, no panic, and
/// nothing on standard output.
pub fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "message {:?} lacks {needle:?}",
        lines[0]
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}
