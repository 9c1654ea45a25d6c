//! `hearth_model::quantize`: the per-tensor recipe on small synthetic llama-shaped files
//! (every shape rule without a big model), the conversion itself, and the real default
//! model requantized to Q8_0 and run.

mod common;

use std::sync::Arc;

use bytemuck::Zeroable;
use hearth_gguf::{GgmlType, GgufFile, GgufWriter};
use hearth_kernels::{BlockQ8_0, Quantize};
use hearth_model::quantize::{
    plan, quantize, quantize_file, FileType, QuantizeError, QuantizeOptions, TensorPlan,
};
use hearth_model::{Batch, KvType, Model};

/// A deterministic pseudo-random f32 in [-1, 1).
fn noise(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn f32_tensor(w: &mut GgufWriter, name: &str, shape: &[u64], seed: &mut u64) {
    let n: u64 = shape.iter().product();
    let data: Vec<u8> = (0..n).flat_map(|_| noise(seed).to_le_bytes()).collect();
    w.add_tensor(name, shape, GgmlType::F32, data).unwrap();
}

/// A llama-shaped f32 model: `n_layer` blocks of width `n_embd` (3 query heads per KV
/// head), FFN width `n_ff`, and an untied `output.weight` unless `tied`. Tensors are
/// added in the order a converter writes them, not llama.cpp's sorted order.
fn synthetic(n_layer: usize, n_embd: u64, n_ff: u64, tied: bool) -> GgufFile {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama");
    w.add_kv("general.name", "synthetic");
    w.add_kv("general.file_type", 0u32);
    w.add_kv("llama.block_count", n_layer as u32);
    w.add_kv("llama.embedding_length", n_embd as u32);
    w.add_kv("llama.feed_forward_length", n_ff as u32);
    w.add_kv("llama.attention.head_count", 6u32);
    w.add_kv("llama.attention.head_count_kv", 2u32);
    w.add_kv("general.quantization_version", 2u32);
    w.add_kv("llama.context_length", 128u32);
    let n_vocab = 64;
    let n_embd_kv = n_embd / 3;
    let mut seed = 1;
    f32_tensor(&mut w, "token_embd.weight", &[n_embd, n_vocab], &mut seed);
    for l in 0..n_layer {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        f32_tensor(&mut w, &b("attn_norm"), &[n_embd], &mut seed);
        f32_tensor(&mut w, &b("ffn_down"), &[n_ff, n_embd], &mut seed);
        f32_tensor(&mut w, &b("ffn_gate"), &[n_embd, n_ff], &mut seed);
        f32_tensor(&mut w, &b("ffn_up"), &[n_embd, n_ff], &mut seed);
        f32_tensor(&mut w, &b("ffn_norm"), &[n_embd], &mut seed);
        f32_tensor(&mut w, &b("attn_k"), &[n_embd, n_embd_kv], &mut seed);
        f32_tensor(&mut w, &b("attn_output"), &[n_embd, n_embd], &mut seed);
        f32_tensor(&mut w, &b("attn_q"), &[n_embd, n_embd], &mut seed);
        f32_tensor(&mut w, &b("attn_v"), &[n_embd, n_embd_kv], &mut seed);
    }
    f32_tensor(&mut w, "output_norm.weight", &[n_embd], &mut seed);
    if !tied {
        f32_tensor(&mut w, "output.weight", &[n_embd, n_vocab], &mut seed);
    }
    GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
}

fn type_of<'a>(plans: &'a [TensorPlan], name: &str) -> &'a TensorPlan {
    plans
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

#[test]
fn output_order_is_by_layer_then_name() {
    let f = synthetic(12, 256, 512, false);
    let plans = plan(&f, FileType::Q8_0).unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "output.weight",
            "output_norm.weight",
            "token_embd.weight",
            "blk.0.attn_k.weight"
        ]
    );
    // blk.2 comes before blk.10 (numerically, not as strings).
    let i2 = names
        .iter()
        .position(|&n| n == "blk.2.attn_k.weight")
        .unwrap();
    let i10 = names
        .iter()
        .position(|&n| n == "blk.10.attn_k.weight")
        .unwrap();
    assert!(i2 < i10);
    assert_eq!(names.last(), Some(&"blk.11.ffn_up.weight"));
}

#[test]
fn q4_k_m_bumps_attn_v_and_ffn_down_in_the_usual_layers() {
    let f = synthetic(8, 256, 512, false);
    let plans = plan(&f, FileType::Q4_K_M).unwrap();
    // 8 layers: n/8 = 1 and 7n/8 = 7, so layers 0 and 7, and 3 and 6 ((i - 1) % 3 == 2).
    for l in 0..8 {
        let more = [0, 3, 6, 7].contains(&l);
        let want = if more { GgmlType::Q6_K } else { GgmlType::Q4_K };
        assert_eq!(
            type_of(&plans, &format!("blk.{l}.attn_v.weight")).to,
            want,
            "attn_v layer {l}"
        );
        assert_eq!(
            type_of(&plans, &format!("blk.{l}.ffn_down.weight")).to,
            want,
            "ffn_down layer {l}"
        );
        for t in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(
                type_of(&plans, &format!("blk.{l}.{t}.weight")).to,
                GgmlType::Q4_K,
                "{t} layer {l}"
            );
        }
        assert_eq!(
            type_of(&plans, &format!("blk.{l}.attn_norm.weight")).to,
            GgmlType::F32
        );
    }
    assert_eq!(type_of(&plans, "output.weight").to, GgmlType::Q6_K);
    // Untied: the embedding keeps the default type.
    assert_eq!(type_of(&plans, "token_embd.weight").to, GgmlType::Q4_K);
    assert_eq!(type_of(&plans, "output_norm.weight").to, GgmlType::F32);
    assert!(plans.iter().all(|p| !p.fallback));
}

#[test]
fn other_mixes_follow_their_recipes() {
    let f = synthetic(8, 256, 512, true);
    let p = plan(&f, FileType::Q3_K_M).unwrap();
    assert_eq!(type_of(&p, "blk.0.attn_v.weight").to, GgmlType::Q5_K); // the first two
    assert_eq!(type_of(&p, "blk.1.attn_v.weight").to, GgmlType::Q5_K);
    assert_eq!(type_of(&p, "blk.2.attn_v.weight").to, GgmlType::Q4_K);
    assert_eq!(type_of(&p, "blk.0.ffn_down.weight").to, GgmlType::Q4_K); // n/16 = 0: none get Q5_K
    assert_eq!(type_of(&p, "blk.0.attn_output.weight").to, GgmlType::Q4_K);
    assert_eq!(type_of(&p, "blk.0.attn_q.weight").to, GgmlType::Q3_K);
    // Tied embeddings are quantized as the output matrix.
    assert_eq!(type_of(&p, "token_embd.weight").to, GgmlType::Q6_K);

    let p = plan(&f, FileType::Q2_K).unwrap();
    assert_eq!(type_of(&p, "blk.4.attn_v.weight").to, GgmlType::Q3_K); // n_gqa = 3 < 4
    assert_eq!(type_of(&p, "blk.4.ffn_down.weight").to, GgmlType::Q3_K);
    assert_eq!(type_of(&p, "blk.4.attn_output.weight").to, GgmlType::Q3_K);
    assert_eq!(type_of(&p, "blk.4.ffn_up.weight").to, GgmlType::Q2_K);

    let p = plan(&f, FileType::Q8_0).unwrap();
    assert_eq!(type_of(&p, "token_embd.weight").to, GgmlType::Q8_0);
    let p = plan(&f, FileType::Q4_0).unwrap();
    assert_eq!(type_of(&p, "token_embd.weight").to, GgmlType::Q6_K);
    assert_eq!(type_of(&p, "blk.0.attn_v.weight").to, GgmlType::Q4_0);

    let p = plan(&f, FileType::F16).unwrap();
    assert!(p.iter().all(|t| t.to
        == if t.shape.len() == 1 {
            GgmlType::F32
        } else {
            GgmlType::F16
        }));
}

#[test]
fn rows_that_do_not_fit_256_fall_back_to_32_element_types() {
    // Rows of 96 (SmolLM2's 576 has the same problem): K-quants do not fit.
    let f = synthetic(8, 96, 512, true);
    let p = plan(&f, FileType::Q4_K_M).unwrap();
    let q = type_of(&p, "blk.1.attn_q.weight");
    assert_eq!((q.to, q.fallback), (GgmlType::Q5_0, true));
    assert_eq!(type_of(&p, "blk.0.attn_v.weight").to, GgmlType::Q8_0); // Q6_K's fallback
    assert_eq!(type_of(&p, "blk.1.attn_v.weight").to, GgmlType::Q5_0);
    // ffn_down rows are 512 long: no fallback.
    assert_eq!(type_of(&p, "blk.0.ffn_down.weight").to, GgmlType::Q6_K);
    assert_eq!(type_of(&p, "blk.1.ffn_down.weight").to, GgmlType::Q4_K);
    // The tied embedding goes straight to Q8_0.
    let e = type_of(&p, "token_embd.weight");
    assert_eq!((e.to, e.fallback), (GgmlType::Q8_0, false));
    let p = plan(&f, FileType::Q5_K_M).unwrap();
    assert_eq!(type_of(&p, "blk.1.attn_q.weight").to, GgmlType::Q5_1);
    let p = plan(&f, FileType::Q3_K_S).unwrap();
    assert_eq!(type_of(&p, "blk.1.attn_q.weight").to, GgmlType::Q4_0);

    // Rows of 48 fit no 32-element type either: F16.
    let f = synthetic(2, 48, 64, true);
    let p = plan(&f, FileType::Q4_K_M).unwrap();
    assert_eq!(type_of(&p, "blk.0.attn_q.weight").to, GgmlType::F16);
    assert_eq!(type_of(&p, "blk.0.ffn_down.weight").to, GgmlType::Q5_0); // 64 = 2 blocks of 32
}

#[test]
fn conversion_keeps_metadata_copies_norms_and_quantizes_rows() {
    let f = synthetic(2, 256, 512, true);
    let opts = QuantizeOptions {
        ftype: FileType::Q8_0,
        allow_requantize: false,
    };
    let mut seen = 0;
    let (w, report) = quantize(&f, &opts, |i, n, _| {
        assert_eq!(i, seen);
        assert_eq!(n, f.tensors().len());
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, f.tensors().len());
    let out = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();

    // Every key is kept; file type and quantization version are rewritten, last.
    let keys: Vec<&str> = out.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), f.metadata().len());
    assert_eq!(
        keys[keys.len() - 2..],
        ["general.quantization_version", "general.file_type"]
    );
    assert_eq!(out.get_u32("general.file_type"), Some(7));
    assert_eq!(out.get_str("general.name"), Some("synthetic"));
    assert_eq!(out.get_u32("llama.block_count"), Some(2));

    // Norms are copied byte for byte.
    assert_eq!(
        out.tensor_bytes("blk.1.ffn_norm.weight"),
        f.tensor_bytes("blk.1.ffn_norm.weight")
    );
    // A matrix holds exactly the kernels' Q8_0 blocks of the input.
    let src: Vec<f32> = f
        .tensor_bytes("blk.1.ffn_up.weight")
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut want = vec![BlockQ8_0::zeroed(); src.len() / 32];
    BlockQ8_0::quantize_row(&src, &mut want);
    let t = out.tensor("blk.1.ffn_up.weight").unwrap();
    assert_eq!(t.ggml_type, GgmlType::Q8_0);
    assert_eq!(t.shape, vec![256, 512]);
    assert_eq!(
        out.tensor_data(t),
        bytemuck::cast_slice::<BlockQ8_0, u8>(&want)
    );
    assert_eq!(
        report.bytes_out,
        out.tensors().iter().map(|t| t.n_bytes).sum::<u64>()
    );
}

#[test]
fn non_finite_weights_are_an_error() {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama");
    w.add_kv("llama.block_count", 1u32);
    let mut data: Vec<u8> = (0..64 * 2).flat_map(|i| (i as f32).to_le_bytes()).collect();
    data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    w.add_tensor("blk.0.attn_q.weight", [64u64, 2], GgmlType::F32, data)
        .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let opts = QuantizeOptions {
        ftype: FileType::Q4_0,
        allow_requantize: false,
    };
    match quantize(&f, &opts, |_, _, _| {}) {
        Err(QuantizeError::NonFinite { name }) => assert_eq!(name, "blk.0.attn_q.weight"),
        other => panic!("expected NonFinite, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn real_model_refuses_to_requantize_without_permission() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let opts = QuantizeOptions {
        ftype: FileType::Q8_0,
        allow_requantize: false,
    };
    let err = quantize_file(&common::model_path(), &out, &opts, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, QuantizeError::Requantize { .. }), "{err}");
    assert!(err.to_string().contains("--allow-requantize"));
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn truncated_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::model_path()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let opts = QuantizeOptions {
        ftype: FileType::Q8_0,
        allow_requantize: true,
    };
    let err = quantize_file(&cut, &dir.path().join("out.gguf"), &opts, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, QuantizeError::Gguf(_)), "{err}");
    assert!(!dir.path().join("out.gguf").exists());
}

/// Greedy next token and the logits of a short prompt.
fn next_token(model: &Model, prompt: &str) -> (u32, Vec<f32>) {
    let ids = model.tokenizer.encode(prompt, true, false);
    let mut kv = model.new_kv_cache(64, KvType::F16);
    let logits = model
        .forward(&Batch::contiguous(&ids, 0, false), &mut kv)
        .unwrap();
    let last = logits.last().to_vec();
    let best = (0..last.len())
        .max_by(|&a, &b| last[a].total_cmp(&last[b]))
        .unwrap() as u32;
    (best, last)
}

fn softmax(l: &[f32]) -> Vec<f32> {
    let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn real_model_requantized_to_q8_0_loads_and_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q8_0.gguf");
    let opts = QuantizeOptions {
        ftype: FileType::Q8_0,
        allow_requantize: true,
    };
    let report = quantize_file(&common::model_path(), &out, &opts, |_, _, _| {}).unwrap();
    assert_eq!(report.tensors.len(), 272);

    let f = Arc::new(GgufFile::open(&out).unwrap());
    assert_eq!(f.get_u32("general.file_type"), Some(7));
    for t in f.tensors() {
        let want = if t.shape.len() == 1 {
            GgmlType::F32
        } else {
            GgmlType::Q8_0
        };
        assert_eq!(t.ggml_type, want, "{}", t.name);
    }
    let q8 = Model::from_gguf(f).unwrap();
    let src = Model::load(common::model_path()).unwrap();
    for prompt in ["The capital of France is", "def fibonacci(n):"] {
        let (a, la) = next_token(&src, prompt);
        let (b, lb) = next_token(&q8, prompt);
        assert!(lb.iter().all(|x| x.is_finite()));
        assert_eq!(a, b, "greedy token for {prompt:?}");
        // Q8_0 of the dequantized Q4_1 weights is close to them, and next-token
        // probabilities move by a few hundredths at most (this small model amplifies
        // rounding: even the exact-f32 oracle differs from the reference by up to 0.06).
        let (pa, pb) = (softmax(&la), softmax(&lb));
        let max_diff = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(max_diff < 0.1, "a probability moved by {max_diff}");
    }
}
