//! Hostile or inconsistent hyperparameters of the architectures' keys give one-line
//! errors naming the problem, never a panic or a huge allocation.

use std::sync::Arc;

use hearth_gguf::{GgmlType, GgufFile, GgufWriter};
use hearth_model::Model;

/// A metadata-only `arch` file with sane defaults, `edit` applied last; `tensors` adds
/// tiny zero f32 tensors by name and shape.
fn file(
    arch: &str,
    edit: impl FnOnce(&mut GgufWriter),
    tensors: &[(&str, &[u64])],
) -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", arch);
    let k = |s: &str| format!("{arch}.{s}");
    w.add_kv(k("block_count"), 1u32);
    w.add_kv(k("embedding_length"), 64u32);
    w.add_kv(k("feed_forward_length"), 128u32);
    w.add_kv(k("attention.head_count"), 2u32);
    w.add_kv(k("context_length"), 4096u32);
    w.add_kv(k("vocab_size"), 16u32);
    edit(&mut w);
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product();
        w.add_tensor(*name, shape, GgmlType::F32, vec![0u8; 4 * n as usize])
            .unwrap();
    }
    Arc::new(GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap())
}

fn error_of(f: Arc<GgufFile>) -> String {
    let e = Model::from_gguf(f)
        .err()
        .expect("the file must be refused")
        .to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn absurd_context_length_is_refused() {
    let e = error_of(file(
        "qwen3",
        |w| w.add_kv("qwen3.context_length", u64::MAX),
        &[],
    ));
    assert!(e.contains("context_length"), "{e}");
}

#[test]
fn zero_heads_are_refused() {
    let e = error_of(file(
        "gemma3",
        |w| w.add_kv("gemma3.attention.head_count", 0u32),
        &[],
    ));
    assert!(e.contains("head_count"), "{e}");
    let e = error_of(file(
        "qwen2",
        |w| w.add_kv("qwen2.attention.head_count_kv", 0u32),
        &[],
    ));
    assert!(e.contains("head_count_kv"), "{e}");
}

#[test]
fn window_larger_than_the_context_is_refused() {
    let e = error_of(file(
        "gemma3",
        |w| w.add_kv("gemma3.attention.sliding_window", 100_000u32),
        &[],
    ));
    assert!(e.contains("sliding window 100000"), "{e}");
}

#[test]
fn huge_sizes_overflow_into_an_error() {
    let e = error_of(file(
        "phi3",
        |w| {
            w.add_kv("phi3.embedding_length", 1u64 << 50);
            w.add_kv("phi3.attention.key_length", 1u64 << 50);
        },
        &[],
    ));
    assert!(
        e.contains("overflow") || e.contains("rope dimension"),
        "{e}"
    );
}

#[test]
fn llama3_rope_scaling_without_rope_freqs_is_refused() {
    let e = error_of(file(
        "llama",
        |w| w.add_kv("llama.rope.scaling.type", "llama3"),
        &[],
    ));
    assert!(e.contains("rope_freqs"), "{e}");
}

#[test]
fn rope_freqs_of_the_wrong_size_is_refused() {
    let e = error_of(file("llama", |_| {}, &[("rope_freqs.weight", &[7])]));
    assert!(e.contains("rope_freqs"), "{e}");
}

#[test]
fn unknown_rope_scaling_is_named() {
    let e = error_of(file(
        "qwen2",
        |w| w.add_kv("qwen2.rope.scaling.type", "longrope"),
        &[],
    ));
    assert!(e.contains("longrope"), "{e}");
}

#[test]
fn unknown_architecture_lists_the_registry() {
    let e = error_of(file("mamba", |_| {}, &[]));
    assert!(
        e.contains("mamba") && e.contains("llama, qwen2, qwen3, gemma3, phi3"),
        "{e}"
    );
}

#[test]
fn impossible_expert_counts_are_refused() {
    for (n_expert, n_used) in [(100_000u32, 2u32), (8, 0), (8, 9)] {
        let e = error_of(file(
            "qwen3moe",
            |w| {
                w.add_kv("qwen3moe.expert_count", n_expert);
                w.add_kv("qwen3moe.expert_used_count", n_used);
            },
            &[],
        ));
        assert!(
            e.contains(&format!("expert_count {n_expert}"))
                && e.contains(&format!("expert_used_count {n_used}")),
            "{e}"
        );
    }
}

#[test]
fn unknown_expert_gating_is_named() {
    let e = error_of(file(
        "qwen3moe",
        |w| {
            w.add_kv("qwen3moe.expert_count", 8u32);
            w.add_kv("qwen3moe.expert_used_count", 2u32);
            w.add_kv("qwen3moe.expert_gating_func", 7u32);
        },
        &[],
    ));
    assert!(e.contains("expert_gating_func 7"), "{e}");
}
