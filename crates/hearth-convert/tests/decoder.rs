//! `hearth convert` on the decoder families, round trip: a random-weight model of each
//! family from `hearth_synth` (F32) is exported here, at test time, as a Hugging Face
//! folder (`config.json`, `model.safetensors`, `tokenizer.model` or `tokenizer.json`,
//! `tokenizer_config.json`) with the inverse of the converter's changes (llama's Q/K rows
//! back in `rotate_half` order, gemma's norms less 1), then converted back and compared
//! with the original file: every tensor, the metadata, and the logits of a greedy
//! continuation.
//!
//! The byte-level BPE tokenizers are committed test data (`tests/data/convert/bpe/`, with
//! the ids Hugging Face's `tokenizers` gives for some texts; see its README).
//!
//! With `HEARTH_CONVERT_EXPORT=DIR` set, the exported folders and Hearth's converted files
//! are left in `DIR` for a comparison with llama.cpp's converter
//! (`tests/data/convert/README.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::f16;
use hearth_convert::{convert, ConvertError, OutType};
use hearth_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use hearth_model::quantize::FileType;
use hearth_model::{Batch, KvType, Model};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/convert")
        .join(name)
}

/// The synthetic model of `arch`, in F32; llama's without its `rope_freqs` (a Hugging
/// Face llama without rope scaling has none).
fn synth(arch: &str) -> GgufFile {
    let mut spec = hearth_synth::preset(arch).unwrap();
    spec.ftype = FileType::F32;
    let file = GgufFile::from_bytes(hearth_synth::generate(&spec).unwrap()).unwrap();
    if file.tensor("rope_freqs.weight").is_none() {
        return file;
    }
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    for t in file.tensors() {
        if t.name != "rope_freqs.weight" {
            let data = file.tensor_data(t).to_vec();
            w.add_tensor(t.name.clone(), &t.shape, t.ggml_type, data)
                .unwrap();
        }
    }
    GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The Hugging Face name of a GGUF tensor of `arch`.
fn hf_name(arch: &str, gguf: &str) -> String {
    let (stem, suffix) = gguf.rsplit_once('.').unwrap();
    let top = match stem {
        "token_embd" => Some("model.embed_tokens"),
        "output_norm" => Some("model.norm"),
        "output" => Some("lm_head"),
        _ => None,
    };
    if let Some(t) = top {
        return format!("{t}.{suffix}");
    }
    let rest = stem.strip_prefix("blk.").unwrap();
    let (il, t) = rest.split_once('.').unwrap();
    let part = match (t, arch) {
        ("attn_norm", _) => "input_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_qkv", _) => "self_attn.qkv_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("ffn_norm", "gemma3") => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_attention_norm", _) => "post_attention_layernorm",
        ("post_ffw_norm", _) => "post_feedforward_layernorm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", "phi3") => "mlp.gate_up_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        other => panic!("no Hugging Face name for {other:?}"),
    };
    format!("model.layers.{il}.{part}.{suffix}")
}

/// Undoes llama.cpp's Q/K permutation: row `2i + j` of a head goes back to `j·(d/2) + i`.
fn unpermute(x: &[f32], n_rows: usize, n_head: usize) -> Vec<f32> {
    let ne0 = x.len() / n_rows;
    let hd = n_rows / n_head;
    let mut out = vec![0.0; x.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let (src, dst) = (h * hd + 2 * i + j, h * hd + j * (hd / 2) + i);
                out[dst * ne0..][..ne0].copy_from_slice(&x[src * ne0..][..ne0]);
            }
        }
    }
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(number: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint(number << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn field_varint(number: u64, v: u64, out: &mut Vec<u8>) {
    varint(number << 3, out);
    varint(v, out);
}

/// A `sentencepiece.ModelProto` (a BPE model with byte fallback) of these pieces.
fn sentencepiece_model(tokens: &[String], scores: &[f32], types: &[i32]) -> Vec<u8> {
    let mut model = Vec::new();
    for ((t, s), ty) in tokens.iter().zip(scores).zip(types) {
        let mut p = Vec::new();
        field_bytes(1, t.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&s.to_le_bytes());
        field_varint(3, *ty as u64, &mut p);
        field_bytes(1, &p, &mut model);
    }
    let mut trainer = Vec::new();
    field_varint(3, 2, &mut trainer); // model_type: BPE
    field_varint(4, tokens.len() as u64, &mut trainer); // vocab_size
    field_varint(35, 1, &mut trainer); // byte_fallback
    field_bytes(2, &trainer, &mut model);
    let mut normalizer = Vec::new();
    field_bytes(1, b"identity", &mut normalizer);
    field_varint(3, 1, &mut normalizer); // add_dummy_prefix
    field_varint(4, 0, &mut normalizer); // remove_extra_whitespaces
    field_varint(5, 1, &mut normalizer); // escape_whitespaces
    field_bytes(3, &normalizer, &mut model);
    model
}

/// How the exported folder stores its weights and its tokenizer.
#[derive(Clone, Copy)]
struct Export {
    dtype: Dtype,
    /// `Some(name)`: `tests/data/convert/bpe/<name>.json` as `tokenizer.json` instead of
    /// the synthetic SentencePiece vocabulary.
    bpe: Option<&'static str>,
}

const F32_SPM: Export = Export {
    dtype: Dtype::F32,
    bpe: None,
};

/// Writes `file` (a synthetic model of `arch`) as a Hugging Face folder in `dir`.
fn export(arch: &str, file: &GgufFile, dir: &Path, how: Export) {
    std::fs::create_dir_all(dir).unwrap();
    let u = |k: &str| file.get_u32(&format!("{arch}.{k}")).unwrap() as usize;
    let (n_head, n_head_kv) = (u("attention.head_count"), u("attention.head_count_kv"));
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .to_vec();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in file.tensors() {
        let mut x = f32s(file.tensor_data(t));
        let shape: Vec<usize> = t.shape.iter().rev().map(|&d| d as usize).collect();
        if arch == "llama" && t.name.contains(".attn_q.") {
            x = unpermute(&x, shape[0], n_head);
        } else if arch == "llama" && t.name.contains(".attn_k.") {
            x = unpermute(&x, shape[0], n_head_kv);
        }
        if arch == "gemma3" && t.name.ends_with("norm.weight") {
            for v in &mut x {
                *v -= 1.0; // exact: the weights are near 1
            }
        }
        let bytes: Vec<u8> = match how.dtype {
            Dtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => x
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
                .collect(),
            Dtype::BF16 => x
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
                .collect(),
            other => panic!("{other:?}"),
        };
        tensors.push((hf_name(arch, &t.name), shape, bytes));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(how.dtype, s.clone(), b).unwrap()))
        .collect();
    let st = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), st).unwrap();

    let hf_arch = match arch {
        "llama" => "LlamaForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        "gemma3" => "Gemma3ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        other => panic!("{other}"),
    };
    let mut config = json!({
        "architectures": [hf_arch],
        "model_type": arch,
        "hidden_size": u("embedding_length"),
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": u("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "head_dim": u("attention.key_length"),
        "max_position_embeddings": u("context_length"),
        "rms_norm_eps": 1e-6,
        "rope_theta": file.get_f32(&format!("{arch}.rope.freq_base")).unwrap() as f64,
        "vocab_size": tokens.len(),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": file.tensor("output.weight").is_none(),
        "torch_dtype": "float32",
    });
    let c = config.as_object_mut().unwrap();
    match arch {
        "gemma3" => {
            // (Hugging Face's model_type of the text-only Gemma 3.)
            c.insert("model_type".into(), json!("gemma3_text"));
            c.insert(
                "sliding_window".into(),
                json!(u("attention.sliding_window")),
            );
            c.insert("sliding_window_pattern".into(), json!(6));
            c.insert("rope_local_base_freq".into(), json!(10000.0));
            c.insert(
                "query_pre_attn_scalar".into(),
                json!(u("attention.key_length")),
            );
            c.insert("final_logit_softcapping".into(), Json::Null);
            c.insert("rope_scaling".into(), Json::Null);
        }
        "phi3" => {
            c.insert("original_max_position_embeddings".into(), json!(4096));
            c.remove("head_dim");
        }
        _ => {}
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();

    let mut tc = json!({
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "chat_template": "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}",
    });
    match how.bpe {
        None => {
            let scores = file.get_f32_array("tokenizer.ggml.scores").unwrap();
            let types = file.get_i32_array("tokenizer.ggml.token_type").unwrap();
            std::fs::write(
                dir.join("tokenizer.model"),
                sentencepiece_model(&tokens, scores, types),
            )
            .unwrap();
        }
        Some(name) => {
            std::fs::copy(
                data_path(&format!("bpe/{name}.json")),
                dir.join("tokenizer.json"),
            )
            .unwrap();
            tc = json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "add_bos_token": false,
                "bos_token": null,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}",
            });
        }
    }
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tc).unwrap(),
    )
    .unwrap();
}

/// Exports `arch` to a temporary folder (or `$HEARTH_CONVERT_EXPORT/<label>`) and
/// converts it to `out`, written where the folder is.
fn round_trip(arch: &str, label: &str, how: Export, out: OutType) -> (GgufFile, GgufFile) {
    let original = synth(arch);
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("HEARTH_CONVERT_EXPORT").map(PathBuf::from);
    let root = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let dir = root.join(label);
    export(arch, &original, &dir, how);
    let converted = convert(&dir, out).unwrap_or_else(|e| panic!("{label}: {e}"));
    let bytes = converted.writer.to_bytes().unwrap();
    if keep.is_some() {
        std::fs::write(root.join(format!("{label}-hearth-{out}.gguf")), &bytes).unwrap();
    }
    (original, GgufFile::from_bytes(bytes).unwrap())
}

fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// The metadata of `original` that the converted file must repeat, and then the keys
/// llama.cpp writes that the synthetic file has not.
fn check_metadata(arch: &str, original: &GgufFile, got: &GgufFile, tokenizer_too: bool) {
    for (k, v) in original.metadata() {
        let skip = matches!(
            k.as_str(),
            "general.name" | "general.description" | "tokenizer.ggml.unknown_token_id"
        ) || (arch == "phi3" && k.contains("attention.key_length"))
            || (arch == "phi3" && k.contains("attention.value_length"))
            || (!tokenizer_too && k.starts_with("tokenizer."));
        if skip {
            continue;
        }
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{arch}: {k} is missing"));
        assert!(value_eq(g, v), "{arch}: {k} is {g:?}, the original's {v:?}");
    }
    let s = |k: &str| got.get_str(k).map(str::to_owned);
    let key = |k: &str| format!("{arch}.{k}");
    assert_eq!(s("general.architecture").as_deref(), Some(arch));
    assert_eq!(s("general.type").as_deref(), Some("model"));
    assert!(got.get("general.size_label").is_some());
    assert_eq!(got.get_u32("general.quantization_version"), Some(2));
    match arch {
        "llama" => {
            assert_eq!(
                got.get_u32(&key("vocab_size")),
                Some(
                    original
                        .get_str_array("tokenizer.ggml.tokens")
                        .unwrap()
                        .len() as u32
                )
            );
            assert_eq!(
                got.get_u32(&key("rope.dimension_count")),
                original.get_u32(&key("attention.key_length"))
            );
        }
        "phi3" => {
            assert_eq!(
                got.get_u32(&key("rope.scaling.original_context_length")),
                Some(4096)
            );
            assert_eq!(got.get_u32(&key("rope.dimension_count")), Some(32));
            assert_eq!(got.get_u32(&key("attention.sliding_window")), Some(0));
        }
        _ => {}
    }
    assert!(got.get_str("tokenizer.chat_template").is_some());
}

/// Every tensor of `original` (F32) is in `got`, converted to `out`'s type for its kind.
fn check_tensors(original: &GgufFile, got: &GgufFile, out: OutType) {
    let names = |f: &GgufFile| {
        let mut v: Vec<String> = f.tensors().iter().map(|t| t.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(original), names(got));
    for t in original.tensors() {
        let g = got.tensor(&t.name).unwrap();
        assert_eq!(g.shape, t.shape, "{}", t.name);
        let x = f32s(original.tensor_data(t));
        let data = got.tensor_data(g);
        let matrix = t.shape.len() == 2 && !t.name.ends_with("_norm.weight");
        let want = match (matrix, out) {
            (false, _) | (true, OutType::F32) => GgmlType::F32,
            (true, OutType::F16) => GgmlType::F16,
            (true, OutType::Q8_0) => GgmlType::Q8_0,
        };
        assert_eq!(g.ggml_type, want, "{}", t.name);
        match want {
            GgmlType::F32 => assert!(
                f32s(data)
                    .iter()
                    .zip(&x)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} differs",
                t.name
            ),
            GgmlType::F16 => {
                for (c, v) in data.chunks_exact(2).zip(&x) {
                    let h = f16::from_bits(u16::from_le_bytes([c[0], c[1]]));
                    assert_eq!(h, f16::from_f32(*v), "{}", t.name);
                }
            }
            _ => {
                // Q8_0: each block's scale times its quants is within half a step (and
                // the rounding of the scale to f16, at most 127 · 2^-11 steps).
                for (blk, xs) in data.chunks_exact(34).zip(x.chunks_exact(32)) {
                    let d = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
                    for (q, v) in blk[2..].iter().zip(xs) {
                        let y = d * (*q as i8) as f32;
                        assert!((y - v).abs() <= d * 0.57 + 1e-6, "{}", t.name);
                    }
                }
            }
        }
    }
}

/// The logits of a prompt and of an 8-token greedy continuation.
fn greedy_logits(model: &Model, prompt: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut kv = model.new_kv_cache(prompt.len() + 9, KvType::F16);
    let l = model
        .forward(&Batch::contiguous(prompt, 0, true), &mut kv)
        .unwrap();
    let mut all: Vec<Vec<f32>> = (0..prompt.len()).map(|i| l.row(i).to_vec()).collect();
    let mut ids = Vec::new();
    for s in 0..8 {
        let last = all.last().unwrap();
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap() as u32;
        ids.push(next);
        let l = model
            .forward(
                &Batch::contiguous(&[next], prompt.len() + s, false),
                &mut kv,
            )
            .unwrap();
        all.push(l.last().to_vec());
    }
    (ids, all)
}

fn load(f: &GgufFile) -> Model {
    Model::from_gguf(Arc::new(GgufFile::from_bytes(f.bytes().to_vec()).unwrap())).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

const PROMPT: [u32; 6] = [1, 300, 420, 77, 800, 5];

/// F32 round trip of `arch`: tensors bit for bit, metadata, vocabulary, and identical
/// logits.
fn f32_round_trip(arch: &str) {
    let (original, got) = round_trip(arch, arch, F32_SPM, OutType::F32);
    check_tensors(&original, &got, OutType::F32);
    check_metadata(arch, &original, &got, true);
    let (want_model, got_model) = (load(&original), load(&got));
    if arch == "gemma3" {
        // llama.cpp writes gemma3's SentencePiece vocabulary without the dummy prefix
        // (the synthetic file keeps the default), so texts tokenize differently.
        assert_eq!(got.get_bool("tokenizer.ggml.add_space_prefix"), Some(false));
        assert!(!got_model.tokenizer.add_space_prefix());
    }
    for text in ["the free software", "Hello, world! 123", "ünïcödé"] {
        let text = &match arch {
            "gemma3" => format!(" {text}"),
            _ => text.to_owned(),
        };
        if arch == "gemma3" {
            // Without the dummy prefix, a text that starts with a space tokenizes as the
            // original tokenizes the text without it.
            assert_eq!(
                got_model.tokenizer.encode(text, true, false),
                want_model.tokenizer.encode(&text[1..], true, false),
                "{arch}: tokenization of {text:?}"
            );
            continue;
        }
        assert_eq!(
            got_model.tokenizer.encode(text, true, false),
            want_model.tokenizer.encode(text, true, false),
            "{arch}: tokenization of {text:?}"
        );
    }
    let (want_ids, want) = greedy_logits(&want_model, &PROMPT);
    let (got_ids, got_l) = greedy_logits(&got_model, &PROMPT);
    assert_eq!(got_ids, want_ids, "{arch}: greedy continuation");
    for (a, b) in got_l.iter().zip(&want) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{arch}: logits differ"
        );
    }
}

#[test]
fn llama_f32_round_trip() {
    f32_round_trip("llama");
}

#[test]
fn qwen2_f32_round_trip() {
    f32_round_trip("qwen2");
}

#[test]
fn qwen3_f32_round_trip() {
    f32_round_trip("qwen3");
}

#[test]
fn gemma3_f32_round_trip() {
    f32_round_trip("gemma3");
}

#[test]
fn phi3_f32_round_trip() {
    f32_round_trip("phi3");
}

/// F16 and Q8_0 outputs, from F32, F16 and BF16 checkpoints: the types llama.cpp picks,
/// values within their rounding, and logits close to the original's.
#[test]
fn f16_and_q8_0_outputs() {
    for (arch, out) in [
        ("llama", OutType::F16),
        ("gemma3", OutType::F16),
        ("qwen3", OutType::Q8_0),
        ("phi3", OutType::Q8_0),
    ] {
        let (original, got) = round_trip(arch, &format!("{arch}-{out}"), F32_SPM, out);
        check_tensors(&original, &got, out);
        let (want_ids, want) = greedy_logits(&load(&original), &PROMPT);
        let (got_ids, got_l) = greedy_logits(&load(&got), &PROMPT);
        assert_eq!(got_ids[0], want_ids[0], "{arch} {out}: first greedy token");
        for (a, b) in got_l.iter().zip(&want).take(PROMPT.len()) {
            let c = cosine(a, b);
            assert!(c > 0.999, "{arch} {out}: prompt logits cosine {c}");
        }
    }
    // Half-precision checkpoints: F16 stays exact; gemma's +1 is added in the
    // checkpoint's precision.
    for (arch, dtype) in [
        ("llama", Dtype::F16),
        ("gemma3", Dtype::F16),
        ("qwen2", Dtype::BF16),
    ] {
        let how = Export { dtype, bpe: None };
        let (original, got) = round_trip(arch, &format!("{arch}-{dtype:?}"), how, OutType::F16);
        for t in original.tensors() {
            let g = got.tensor(&t.name).unwrap();
            let x = f32s(original.tensor_data(t));
            let data = got.tensor_data(g);
            let stored = |v: f32| match dtype {
                Dtype::F16 => f16::from_f32(v).to_f32(),
                _ => half::bf16::from_f32(v).to_f32(),
            };
            let norm = arch == "gemma3" && t.name.ends_with("norm.weight");
            for (i, v) in x.iter().enumerate() {
                let want = if norm {
                    // (w - 1) stored in half precision, then + 1 rounded to it again.
                    f16::from_f32(stored(v - 1.0) + 1.0).to_f32()
                } else {
                    stored(*v)
                };
                let got_v = match g.ggml_type {
                    GgmlType::F32 => f32::from_le_bytes(data[4 * i..][..4].try_into().unwrap()),
                    GgmlType::F16 => {
                        f16::from_bits(u16::from_le_bytes([data[2 * i], data[2 * i + 1]])).to_f32()
                    }
                    other => panic!("{other}"),
                };
                let want = match g.ggml_type {
                    GgmlType::F16 => f16::from_f32(want).to_f32(),
                    _ => want,
                };
                assert_eq!(
                    got_v.to_bits(),
                    want.to_bits(),
                    "{arch} {dtype:?} {}[{i}]",
                    t.name
                );
            }
        }
    }
}

/// A llama with `rope_scaling` of type `llama3` gets llama.cpp's `rope_freqs`.
#[test]
fn llama3_rope_scaling_writes_rope_freqs() {
    let original = synth("llama");
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("HEARTH_CONVERT_EXPORT").map(PathBuf::from);
    let dir = keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf())
        .join("llama3-rope");
    export("llama", &original, &dir, F32_SPM);
    let path = dir.join("config.json");
    let mut config: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256});
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let bytes = convert(&dir, OutType::F16)
        .unwrap()
        .writer
        .to_bytes()
        .unwrap();
    if let Some(root) = keep {
        std::fs::write(root.join("llama3-rope-hearth-f16.gguf"), &bytes).unwrap();
    }
    // llama.cpp's converter wrote this very file (tests/data/convert/README.md).
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha,
        "7c675cd5fbff76e5abc639c7152c63cc0105148b31ade1e473f3e3f9faf95161"
    );
    let got = GgufFile::from_bytes(bytes).unwrap();
    let t = got.tensor("rope_freqs.weight").unwrap();
    assert_eq!(t.ggml_type, GgmlType::F32);
    assert_eq!(
        got.tensors()[0].name,
        "rope_freqs.weight",
        "generated tensors come first"
    );
    let f = f32s(got.tensor_data(t));
    assert_eq!(f.len(), 16);
    for (i, &v) in f.iter().enumerate() {
        // f64 reference of llama.cpp's rule.
        let freq = 1.0 / 500000f64.powf(2.0 * i as f64 / 32.0);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let want = if wavelen < 64.0 {
            1.0
        } else if wavelen > 256.0 {
            8.0
        } else {
            let smooth = (256.0 / wavelen - 1.0) / 3.0;
            1.0 / ((1.0 - smooth) / 8.0 + smooth)
        };
        assert!(
            (v as f64 - want).abs() < 1e-4 * want,
            "rope_freqs[{i}] = {v}, want {want}"
        );
    }
    assert!(got.get("llama.rope.scaling.type").is_none());
    load(&got);
}

/// llama.cpp's `convert_hf_to_gguf.py` on the same exported folders wrote these files
/// (`tests/data/convert/README.md`); Hearth's are byte for byte the same.
#[test]
fn files_are_byte_for_byte_llama_cpp_s() {
    let spm = |dtype| Export { dtype, bpe: None };
    let bpe = |name| Export {
        dtype: Dtype::F32,
        bpe: Some(name),
    };
    let cases = [
        (
            "llama",
            "llama",
            spm(Dtype::F32),
            OutType::F32,
            "92994869cbbfe20cda7a56192b1e259279684e50d683def0e681ee111add22ed",
        ),
        (
            "qwen2",
            "qwen2",
            spm(Dtype::F32),
            OutType::F32,
            "9cb9be3ff18334582ec09bbbf81bcdeebb824c428d1f172f0635224e2309c454",
        ),
        (
            "qwen3",
            "qwen3",
            spm(Dtype::F32),
            OutType::F32,
            "623a61f460dc5a4f5f76d57e9a60a24cae3e7bac567cf9d68f9ea4cb487cab7b",
        ),
        (
            "gemma3",
            "gemma3",
            spm(Dtype::F32),
            OutType::F32,
            "9d6f365a9150dcbbfcc0398789d8066bc51b96c0d2e68e4daed0b5339471960a",
        ),
        (
            "phi3",
            "phi3",
            spm(Dtype::F32),
            OutType::F32,
            "1cc67479d88532cbc976225059fa024d9e485d33033bf3bce7634129c147b379",
        ),
        (
            "llama",
            "llama-f16",
            spm(Dtype::F32),
            OutType::F16,
            "bc33ed7f2bf84268b04cf9164a078e8608ad35039f2ae691d5b731c929ac4f0e",
        ),
        (
            "gemma3",
            "gemma3-f16",
            spm(Dtype::F32),
            OutType::F16,
            "fe9e9115bd422a4743c9b6e4daf8c629aa5765527b96a44b6663f1e57ae8b655",
        ),
        (
            "llama",
            "llama-F16",
            spm(Dtype::F16),
            OutType::F16,
            "23e8556eb668064a66a03adfbd59488864648535ce8b87412c4c2f9d8680f5f6",
        ),
        (
            "gemma3",
            "gemma3-F16",
            spm(Dtype::F16),
            OutType::F16,
            "8bde699c39b4a607332e9a699118b2bc3f14f97989ab5046b5339265e04a78f3",
        ),
        (
            "qwen2",
            "qwen2-BF16",
            spm(Dtype::BF16),
            OutType::F16,
            "84b6957f82a4987b4571846be1994219084913d05a3b6f20ae5c817e14d48841",
        ),
        (
            "qwen3",
            "qwen3-q8_0",
            spm(Dtype::F32),
            OutType::Q8_0,
            "adc162e61366e08da3b9ca6d8a5b4ed15cf925a136c668cb970030b12202fcc3",
        ),
        (
            "phi3",
            "phi3-q8_0",
            spm(Dtype::F32),
            OutType::Q8_0,
            "d2066f841233e46e9225d238e98a4c10d6218700be9cb4a3055a993057213f94",
        ),
        // llama.cpp given the pre-tokenizer name (its hash table does not know these
        // small tokenizers).
        (
            "qwen2",
            "qwen2-bpe",
            bpe("qwen2"),
            OutType::F32,
            "d1b297b15a412a36c2ae1bfadd4d9c96987c16adf0dc7589d23443e3d2051d8e",
        ),
        (
            "qwen3",
            "qwen3-bpe",
            bpe("qwen2"),
            OutType::F32,
            "51176582191daab0c30b573724dd87131f750b1c961abbfb1176d01927816e1c",
        ),
        (
            "llama",
            "llama-bpe",
            bpe("llama3"),
            OutType::F32,
            "9c6c3d4d7e2d843600a8230e3479149c57db12da2931ba300303563d66d5962f",
        ),
    ];
    for (arch, label, how, out, want) in cases {
        let (_, got) = round_trip(arch, label, how, out);
        let sha: String = Sha256::digest(got.bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, want, "{label} ({out}) is not llama.cpp's file");
    }
}

/// The committed byte-level BPE tokenizers and the ids `tokenizers` gave.
fn bpe_cases() -> Json {
    serde_json::from_slice(&std::fs::read(data_path("bpe/expected.json")).unwrap()).unwrap()
}

/// Qwen-style (`qwen2` pre-tokenizer) and Llama-3-style (`llama-bpe`) byte-level BPE:
/// the file's vocabulary tokenizes the committed texts exactly as Hugging Face's
/// `tokenizers` did, and the weights still give the original's logits.
#[test]
fn byte_level_bpe_vocabularies() {
    let cases = bpe_cases();
    for (arch, name, pre) in [
        ("qwen2", "qwen2", "qwen2"),
        ("qwen3", "qwen2", "qwen2"),
        ("llama", "llama3", "llama-bpe"),
    ] {
        let how = Export {
            dtype: Dtype::F32,
            bpe: Some(name),
        };
        let label = format!("{arch}-bpe");
        let (original, got) = round_trip(arch, &label, how, OutType::F32);
        check_tensors(&original, &got, OutType::F32);
        check_metadata(arch, &original, &got, false);
        assert_eq!(got.get_str("tokenizer.ggml.model"), Some("gpt2"));
        assert_eq!(got.get_str("tokenizer.ggml.pre"), Some(pre));
        let tj: Json =
            serde_json::from_slice(&std::fs::read(data_path(&format!("bpe/{name}.json"))).unwrap())
                .unwrap();
        let merges = got.get_str_array("tokenizer.ggml.merges").unwrap();
        assert_eq!(
            merges.len(),
            tj["model"]["merges"].as_array().unwrap().len()
        );
        let tokens = got.get_str_array("tokenizer.ggml.tokens").unwrap();
        let types = got.get_i32_array("tokenizer.ggml.token_type").unwrap();
        let n_vocab = original
            .get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .len();
        assert_eq!(tokens.len(), n_vocab);
        for (t, id) in tj["model"]["vocab"].as_object().unwrap() {
            assert_eq!(tokens[id.as_u64().unwrap() as usize], *t);
            assert_eq!(types[id.as_u64().unwrap() as usize], 1);
        }
        let by_text: HashMap<&str, usize> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let id = |t: &str| by_text[t] as u32;
        assert_eq!(types[id("<|endoftext|>") as usize], 3);
        assert_eq!(types[id("<tool_call>") as usize], 4);
        assert_eq!(tokens.last().unwrap(), &format!("[PAD{}]", n_vocab - 1));
        assert_eq!(types[n_vocab - 1], 5);
        assert_eq!(
            got.get_u32("tokenizer.ggml.eos_token_id"),
            Some(id("<|im_end|>"))
        );
        assert_eq!(
            got.get_u32("tokenizer.ggml.padding_token_id"),
            Some(id("<|endoftext|>"))
        );
        // bos_token is null in tokenizer_config.json: config.json's id stands.
        assert_eq!(got.get_u32("tokenizer.ggml.bos_token_id"), Some(1));
        let model = load(&got);
        for case in cases[name].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                model.tokenizer.encode(text, false, true),
                want,
                "{arch} ({name}): {text:?}"
            );
        }
        let (want_ids, want) = greedy_logits(&load(&original), &PROMPT);
        let (got_ids, got_l) = greedy_logits(&model, &PROMPT);
        assert_eq!(got_ids, want_ids);
        assert_eq!(got_l, want);
    }
}

/// A pre-tokenizer Hearth cannot name is refused, not guessed.
#[test]
fn unknown_bpe_pre_tokenizer_is_refused() {
    let original = synth("qwen2");
    let tmp = tempfile::tempdir().unwrap();
    let how = Export {
        dtype: Dtype::F32,
        bpe: Some("qwen2"),
    };
    export("qwen2", &original, tmp.path(), how);
    let path = tmp.path().join("tokenizer.json");
    let mut tj: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tj["pre_tokenizer"] = json!({"type": "Metaspace", "replacement": "▁"});
    std::fs::write(&path, tj.to_string()).unwrap();
    let e = convert(tmp.path(), OutType::F32).unwrap_err();
    assert!(matches!(e, ConvertError::Tokenizer(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot tell") && msg.contains("Metaspace"),
        "{msg}"
    );
}

#[test]
fn unknown_architectures_and_missing_pieces_are_clear_errors() {
    let original = synth("qwen3");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    export("qwen3", &original, dir, F32_SPM);
    let config_path = dir.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap();

    let with_config = |c: &str| {
        std::fs::write(&config_path, c).unwrap();
        convert(dir, OutType::F32).unwrap_err()
    };
    let e = with_config(&config.replace("Qwen3ForCausalLM", "MambaForCausalLM"));
    assert!(matches!(e, ConvertError::UnknownArchitecture(ref a) if a == "MambaForCausalLM"));
    assert!(e.to_string().contains("Qwen3ForCausalLM"), "{e}");

    // A tensor of another family (qwen3 has no fused QKV).
    let e = with_config(&config.replace("Qwen3ForCausalLM", "Phi3ForCausalLM"));
    assert!(
        e.to_string().contains("self_attn.k_norm") || e.to_string().contains("_proj"),
        "{e}"
    );

    // A config that does not fit the tensors.
    let e = with_config(&config.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"));
    assert!(e.to_string().contains("config.json implies"), "{e}");

    // A layer the config does not have.
    let e = with_config(&config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"));
    assert!(e.to_string().contains("model.layers.1."), "{e}");

    // A missing tensor.
    let e = with_config(&config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
    assert!(
        e.to_string().contains("blk.2.") && e.to_string().contains("missing"),
        "{e}"
    );
    std::fs::write(&config_path, &config).unwrap();

    // No tokenizer at all.
    std::fs::rename(dir.join("tokenizer.model"), dir.join("tokenizer.model.bak")).unwrap();
    let e = convert(dir, OutType::F32).unwrap_err();
    assert!(
        e.to_string().contains("neither tokenizer.model")
            && e.to_string().contains("tokenizer.json"),
        "{e}"
    );
    // A broken tokenizer.model.
    std::fs::write(dir.join("tokenizer.model"), b"\x0a\xff").unwrap();
    let e = convert(dir, OutType::F32).unwrap_err();
    assert!(e.to_string().contains("not a SentencePiece model"), "{e}");
    std::fs::rename(dir.join("tokenizer.model.bak"), dir.join("tokenizer.model")).unwrap();

    // No weights.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = convert(dir, OutType::F32).unwrap_err();
    assert!(matches!(e, ConvertError::NoSafetensors(_)), "{e:?}");
}
