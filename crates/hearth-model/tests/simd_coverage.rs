//! A forward pass never runs a scalar twin where the process's ISA has SIMD kernels:
//! prefill past the tiled-attention threshold and single-token decode, with the f16 and
//! the Q8_0 KV cache, for the default model (llama, heads of 64), Gemma 3 270M (heads of
//! 256, sliding window, GeGLU) and, when `../shared/reference/archs` exists, every
//! architecture there (heads of 32, 64, 128, 256). The kernels report each fallback to
//! `hearth_kernels::fallback`; this test fails if any was recorded. (The Mixtral-style
//! model there has heads of 16, narrower than the attention kernels take; it is left out.)

mod common;

use std::path::PathBuf;

use hearth_kernels::{fallback, isa, Isa};
use hearth_model::{Batch, KvType, Model};

fn run(model: &Model, what: &str) {
    let prompt: Vec<u32> = (0..150u32)
        .map(|i| (i * 7919 + 13) % model.config.n_vocab as u32)
        .collect();
    for kv_type in [KvType::F16, KvType::Q8_0] {
        fallback::take();
        let mut kv = model.new_kv_cache(prompt.len() + 4, kv_type);
        model
            .forward(&Batch::contiguous(&prompt, 0, false), &mut kv)
            .unwrap();
        for (i, &t) in prompt[..3].iter().enumerate() {
            model
                .forward(&Batch::contiguous(&[t], prompt.len() + i, false), &mut kv)
                .unwrap();
        }
        let seen = fallback::take();
        assert!(
            seen.is_empty(),
            "{what} with a {kv_type} cache fell back to scalar code in: {seen:?}"
        );
    }
    eprintln!("ran: {what}: no scalar fallback on {}", isa().name());
}

#[test]
fn forward_passes_take_simd_kernels_only() {
    if isa() < Isa::Avx2 {
        eprintln!(
            "skipped: the ISA is {} (scalar by request or by CPU); nothing to check",
            isa().name()
        );
        return;
    }
    run(
        &Model::load(common::model_path()).unwrap(),
        "smollm2 (llama)",
    );
    run(&Model::load(common::gemma3_path()).unwrap(), "gemma3-270m");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/archs");
    if !dir.join("README.md").is_file() {
        eprintln!("skipped the random-weight models: ../shared/reference/archs is not there");
        return;
    }
    for name in ["llama3", "qwen2", "qwen3", "phi3", "gemma3", "qwen3moe"] {
        run(
            &Model::load(dir.join(format!("{name}-q8_0.gguf"))).unwrap(),
            name,
        );
    }
}
