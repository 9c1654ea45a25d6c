//! `hearth convert` against llama.cpp's converter on all-MiniLM-L6-v2, and its errors.
//!
//! The real model comes from `hearth pull all-minilm`, which keeps the Hugging Face folder
//! it converted (`all-minilm-l6-v2/` in the models directory: `$HEARTH_MODELS`, else
//! `$XDG_CACHE_HOME/hearth/models`, else `~/.cache/hearth/models`) beside the GGUF file.
//! These tests convert that folder again and compare with the safetensors values, with
//! the pulled GGUF, with llama.cpp's files (their sha256, from
//! `../shared/reference/embeddings/README.md`) and with the listing of llama.cpp's file in
//! `tests/data/embeddings/llamacpp_converted_metadata.txt`. The error cases use small
//! synthetic folders.

#[path = "../../hearth-model/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use hearth_convert::{convert, ConvertError, OutType};
use hearth_gguf::{Array, GgmlType, GgufFile, Value};
use sha2::{Digest, Sha256};

/// llama.cpp `0c1e57098`'s `convert_hf_to_gguf.py --outtype f32` and `f16` on the folder.
const LLAMACPP_F32_SHA256: &str =
    "2f93b280893fdc0cd345fdfbe8779ca9c26bacea14dbccc494ba3a53526fc94b";
const LLAMACPP_F16_SHA256: &str =
    "7e01259cec4346ed6884939d130b8b103472ab310dc296a60cf1349d90e5541a";

/// The pulled GGUF and the folder it was converted from.
fn minilm() -> (PathBuf, PathBuf) {
    let dir = common::models_dir();
    let gguf = dir.join("all-minilm-l6-v2-f32.gguf");
    let folder = dir.join("all-minilm-l6-v2");
    assert!(
        gguf.is_file() && folder.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 missing at {} (and its folder {}): run `hearth pull all-minilm` first (the README's test command does)",
        gguf.display(),
        folder.display()
    );
    (gguf, folder)
}

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

// ----------------------------------------------------------------------------
// The real model.

/// The listing of llama.cpp's file: (key, value as printed) and (name, type, shape, bytes).
struct Listing {
    n_keys: usize,
    n_tensors: usize,
    metadata: Vec<(String, String)>,
    tensors: Vec<(String, String, Vec<u64>, u64)>,
}

fn listing() -> Listing {
    let text =
        std::fs::read_to_string(data_path("embeddings/llamacpp_converted_metadata.txt")).unwrap();
    let header = text
        .lines()
        .find(|l| l.starts_with("GGUF version"))
        .unwrap();
    // "GGUF version 3, alignment 32, 73 metadata keys, 101 tensors"
    let words: Vec<&str> = header.split_whitespace().collect();
    let n_keys = words[5].parse().unwrap();
    let n_tensors = words[8].parse().unwrap();
    let mut metadata = Vec::new();
    let mut tensors = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if line == "metadata:" {
            section = "metadata";
            continue;
        }
        if line.starts_with("tensor ") {
            section = "tensors";
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match section {
            "metadata" => {
                let line = line.trim_start();
                let (key, value) = line.split_once(char::is_whitespace).unwrap();
                metadata.push((key.to_owned(), value.trim().to_owned()));
            }
            "tensors" => {
                // name type [d0, d1] bytes
                let (name, rest) = line.split_once(char::is_whitespace).unwrap();
                let rest = rest.trim_start();
                let (ty, rest) = rest.split_once(char::is_whitespace).unwrap();
                let open = rest.find('[').unwrap();
                let close = rest.find(']').unwrap();
                let shape = rest[open + 1..close]
                    .split(", ")
                    .map(|d| d.parse().unwrap())
                    .collect();
                let bytes = rest[close + 1..].trim().parse().unwrap();
                tensors.push((name.to_owned(), ty.to_owned(), shape, bytes));
            }
            _ => {}
        }
    }
    Listing {
        n_keys,
        n_tensors,
        metadata,
        tensors,
    }
}

/// The elements an array shows: `["a", "b", …]` or `[3, 1, …]`.
fn shown_elements(s: &str) -> Vec<String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(", ")
        .filter(|e| *e != "…")
        .map(|e| e.trim_matches('"').to_owned())
        .collect()
}

/// Checks one listed value against the file's.
fn check_value(key: &str, listed: &str, v: &Value) {
    if let Some(s) = listed.strip_prefix('"') {
        assert_eq!(v.as_str(), Some(s.strip_suffix('"').unwrap()), "{key}");
    } else if listed == "true" || listed == "false" {
        assert_eq!(*v, Value::Bool(listed == "true"), "{key}");
    } else if let Some((kind, rest)) = listed.split_once('[') {
        let (len, elems) = rest.split_once(']').unwrap();
        let len: usize = len.parse().unwrap();
        let shown = shown_elements(elems);
        match (kind, v) {
            ("string", Value::Array(Array::String(a))) => {
                assert_eq!(a.len(), len, "{key}");
                assert_eq!(&a[..shown.len()], &shown[..], "{key}");
            }
            ("i32", Value::Array(Array::I32(a))) => {
                assert_eq!(a.len(), len, "{key}");
                let a: Vec<String> = a[..shown.len()].iter().map(|x| x.to_string()).collect();
                assert_eq!(a, shown, "{key}");
            }
            other => panic!(
                "{key}: listed as {kind}[{len}], file has {:?}",
                other.1.value_type()
            ),
        }
    } else if listed.contains('.') {
        let want: f64 = listed.parse().unwrap();
        let Value::F32(got) = v else {
            panic!("{key}: {v:?} is not an f32")
        };
        assert!(
            ((*got as f64) - want).abs() <= want.abs() * 1e-6,
            "{key}: {got} vs {want}"
        );
    } else {
        let want: u64 = listed.parse().unwrap();
        let Value::U32(got) = v else {
            panic!("{key}: {v:?} is not a u32")
        };
        assert_eq!(u64::from(*got), want, "{key}");
    }
}

/// The pulled file has every key, value, tensor name, type, shape and size of llama.cpp's
/// listing, and nothing else but the dataset entries the listing leaves out.
#[test]
fn pulled_file_matches_llama_cpp_listing() {
    let (gguf, _) = minilm();
    let f = GgufFile::open(&gguf).unwrap();
    let l = listing();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.metadata().len(), l.n_keys);
    assert_eq!(f.tensors().len(), l.n_tensors);
    assert_eq!(l.metadata.len(), 33);
    let listed: Vec<&str> = l.metadata.iter().map(|(k, _)| k.as_str()).collect();
    let ours: Vec<&str> = f
        .metadata()
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.starts_with("general.dataset."))
        .collect();
    assert_eq!(ours, listed, "keys and their order");
    for (key, value) in &l.metadata {
        check_value(key, value, f.get(key).unwrap());
    }
    assert_eq!(f.get_u32("general.dataset.count"), Some(21));

    assert_eq!(l.tensors.len(), 101);
    for (t, (name, ty, shape, bytes)) in f.tensors().iter().zip(&l.tensors) {
        assert_eq!(&t.name, name);
        assert_eq!(t.ggml_type.to_string(), *ty, "{name}");
        assert_eq!(&t.shape, shape, "{name}");
        assert_eq!(f.tensor_data(t).len() as u64, *bytes, "{name}");
    }
}

/// The vocabulary as llama.cpp writes WordPiece: CLS/SEP/PAD/UNK/MASK control tokens kept
/// as they are, word-initial pieces with `▁`, `##` continuations without it.
#[test]
fn vocabulary_is_phantom_spaced() {
    let (gguf, folder) = minilm();
    let f = GgufFile::open(&gguf).unwrap();
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    let types = f.get_i32_array("tokenizer.ggml.token_type").unwrap();
    let vocab_txt = std::fs::read_to_string(folder.join("vocab.txt")).unwrap();
    let hf: Vec<&str> = vocab_txt.lines().collect();
    assert_eq!(hf.len(), tokens.len());
    let control = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    for (i, (hf, ours)) in hf.iter().zip(tokens).enumerate() {
        let want = if control.contains(hf) {
            hf.to_string()
        } else if let Some(rest) = hf.strip_prefix("##") {
            rest.to_string()
        } else {
            format!("\u{2581}{hf}")
        };
        assert_eq!(*ours, want, "token {i}");
        assert_eq!(
            types[i],
            if control.contains(hf) { 3 } else { 1 },
            "type of {i}"
        );
    }
    assert_eq!(tokens[1996], "\u{2581}the");
    assert_eq!(f.get_u32("tokenizer.ggml.unknown_token_id"), Some(100));
}

/// Hugging Face name → GGUF name, written out independently of the converter's map.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = [
        ("embeddings.word_embeddings.weight", "token_embd.weight"),
        (
            "embeddings.position_embeddings.weight",
            "position_embd.weight",
        ),
        (
            "embeddings.token_type_embeddings.weight",
            "token_types.weight",
        ),
        ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("encoder.layer.")?;
    let (il, rest) = rest.split_once('.')?;
    let per_layer = [
        ("attention.self.query.", "attn_q."),
        ("attention.self.key.", "attn_k."),
        ("attention.self.value.", "attn_v."),
        ("attention.output.dense.", "attn_output."),
        ("attention.output.LayerNorm.", "attn_output_norm."),
        ("intermediate.dense.", "ffn_up."),
        ("output.dense.", "ffn_down."),
        ("output.LayerNorm.", "layer_output_norm."),
    ];
    per_layer.iter().find_map(|(h, g)| {
        rest.strip_prefix(h)
            .map(|suffix| format!("blk.{il}.{g}{suffix}"))
    })
}

/// The safetensors values of every converted tensor, by GGUF name, with their HF shapes.
fn source_values(folder: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(folder.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let Some(g) = gguf_name(&name) else {
            assert!(
                name.starts_with("pooler.") || name == "embeddings.position_ids",
                "unexpected {name}"
            );
            continue;
        };
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        out.insert(g, (view.shape().to_vec(), f32s(view.data())));
    }
    assert_eq!(out.len(), 101);
    out
}

/// F32: every tensor holds exactly the safetensors values; the file is byte for byte the
/// pulled one and llama.cpp's. F16: matrices are the values rounded to nearest f16, the
/// rest exact, and the file is llama.cpp's.
#[test]
fn f32_and_f16_conversions_equal_the_weights_and_llama_cpp() {
    let (gguf, folder) = minilm();
    let src = source_values(&folder);

    let f32_bytes = convert(&folder, OutType::F32)
        .unwrap()
        .writer
        .to_bytes()
        .unwrap();
    assert_eq!(sha256(&f32_bytes), LLAMACPP_F32_SHA256);
    assert!(
        f32_bytes == std::fs::read(&gguf).unwrap(),
        "the pulled file differs"
    );
    let f = GgufFile::from_bytes(f32_bytes).unwrap();
    for t in f.tensors() {
        let (shape, want) = &src[&t.name];
        let hf_shape: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        assert_eq!(t.shape, hf_shape, "{}", t.name);
        assert_eq!(t.ggml_type, GgmlType::F32);
        let got = f32s(f.tensor_data(t));
        assert!(
            got.iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{} differs from the safetensors",
            t.name
        );
    }

    let f16_bytes = convert(&folder, OutType::F16)
        .unwrap()
        .writer
        .to_bytes()
        .unwrap();
    assert_eq!(sha256(&f16_bytes), LLAMACPP_F16_SHA256);
    let f = GgufFile::from_bytes(f16_bytes).unwrap();
    assert_eq!(f.get_u32("general.file_type"), Some(1));
    let mut n_f16 = 0;
    for t in f.tensors() {
        let (_, want) = &src[&t.name];
        let data = f.tensor_data(t);
        let matrix = t.shape.len() == 2
            && !t.name.starts_with("position_embd")
            && !t.name.starts_with("token_types");
        if matrix {
            assert_eq!(t.ggml_type, GgmlType::F16, "{}", t.name);
            n_f16 += 1;
            for (c, &x) in data.chunks_exact(2).zip(want) {
                let h = f16::from_bits(u16::from_le_bytes([c[0], c[1]]));
                assert_eq!(h, f16::from_f32(x), "{}", t.name);
                // Within half an f16 step of the value.
                let step = (f16::from_bits(h.to_bits() + 1).to_f32() - h.to_f32()).abs();
                assert!(
                    (h.to_f32() - x).abs() <= step / 2.0 + f32::EPSILON,
                    "{}",
                    t.name
                );
            }
        } else {
            assert_eq!(t.ggml_type, GgmlType::F32, "{}", t.name);
            assert!(f32s(data) == *want, "{}", t.name);
        }
    }
    assert_eq!(n_f16, 37);
}

/// Q8_0: every 2-D weight matrix (rows of 384 or 1536, multiples of 32) is Q8_0 and each
/// value is within half a quantization step of the weight; the rest stays F32.
#[test]
fn q8_0_conversion_quantizes_the_matrices() {
    let (_, folder) = minilm();
    let src = source_values(&folder);
    let c = convert(&folder, OutType::Q8_0).unwrap();
    let f = GgufFile::from_bytes(c.writer.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_u32("general.file_type"), Some(7));
    let mut n_q8 = 0;
    for t in f.tensors() {
        let (_, want) = &src[&t.name];
        let data = f.tensor_data(t);
        if t.ggml_type == GgmlType::Q8_0 {
            n_q8 += 1;
            // A block: f16 scale, 32 signed bytes.
            for (block, x) in data.chunks_exact(34).zip(want.chunks_exact(32)) {
                let d = f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
                let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(
                    (d - amax / 127.0).abs() <= amax / 127.0 * 1e-3 + 1e-12,
                    "{}",
                    t.name
                );
                for (&q, &v) in block[2..].iter().zip(x) {
                    let deq = q as i8 as f32 * d;
                    assert!(
                        (deq - v).abs() <= d * 0.5 + amax * 1e-3,
                        "{}: {deq} vs {v}",
                        t.name
                    );
                }
            }
        } else {
            assert_eq!(t.ggml_type, GgmlType::F32, "{}", t.name);
            assert!(f32s(data) == *want, "{}", t.name);
        }
    }
    assert_eq!(n_q8, 37);
}

// ----------------------------------------------------------------------------
// Synthetic folders and the errors.

/// A safetensors file of F32 tensors (name, shape, values), in this order.
fn safetensors_bytes(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        let begin = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{begin},{}]}}",
            shape.join(","),
            data.len()
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

// A tiny BERT: n_vocab 10, n_embd 4, n_head 2, n_ff 8, n_layer 1, n_ctx 6, 2 token types.
const CONFIG: &str = r#"{"architectures": ["BertModel"], "vocab_size": 10, "hidden_size": 4,
  "num_attention_heads": 2, "intermediate_size": 8, "num_hidden_layers": 1,
  "max_position_embeddings": 6, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
  "position_embedding_type": "absolute", "_name_or_path": "someone/tiny-bert"}"#;
const VOCAB: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\ncat\n##ty\n.\n";

fn tiny_tensors() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let (v, e, ff, ctx) = (10, 4, 8, 6);
    let vals = |n: usize, seed: f32| (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
    let mut t: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("embeddings.LayerNorm.bias", vec![e], vals(e, 0.1)),
        ("embeddings.LayerNorm.weight", vec![e], vals(e, 0.2)),
        (
            "embeddings.position_embeddings.weight",
            vec![ctx, e],
            vals(ctx * e, 0.3),
        ),
        (
            "embeddings.token_type_embeddings.weight",
            vec![2, e],
            vals(2 * e, 0.4),
        ),
        (
            "embeddings.word_embeddings.weight",
            vec![v, e],
            vals(v * e, 0.5),
        ),
    ];
    let layer: [(&str, Vec<usize>); 16] = [
        ("encoder.layer.0.attention.output.LayerNorm.bias", vec![e]),
        ("encoder.layer.0.attention.output.LayerNorm.weight", vec![e]),
        ("encoder.layer.0.attention.output.dense.bias", vec![e]),
        ("encoder.layer.0.attention.output.dense.weight", vec![e, e]),
        ("encoder.layer.0.attention.self.key.bias", vec![e]),
        ("encoder.layer.0.attention.self.key.weight", vec![e, e]),
        ("encoder.layer.0.attention.self.query.bias", vec![e]),
        ("encoder.layer.0.attention.self.query.weight", vec![e, e]),
        ("encoder.layer.0.attention.self.value.bias", vec![e]),
        ("encoder.layer.0.attention.self.value.weight", vec![e, e]),
        ("encoder.layer.0.intermediate.dense.bias", vec![ff]),
        ("encoder.layer.0.intermediate.dense.weight", vec![ff, e]),
        ("encoder.layer.0.output.LayerNorm.bias", vec![e]),
        ("encoder.layer.0.output.LayerNorm.weight", vec![e]),
        ("encoder.layer.0.output.dense.bias", vec![e]),
        ("encoder.layer.0.output.dense.weight", vec![e, ff]),
    ];
    for (i, (name, shape)) in layer.into_iter().enumerate() {
        let n = shape.iter().product();
        t.push((name, shape, vals(n, i as f32)));
    }
    t.push(("pooler.dense.bias", vec![e], vals(e, 9.0)));
    t
}

/// A folder with config.json, vocab.txt (no tokenizer.json), one safetensors file and a
/// CLS pooling module.
fn tiny_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("config.json"), CONFIG).unwrap();
    std::fs::write(p.join("vocab.txt"), VOCAB).unwrap();
    std::fs::write(
        p.join("model.safetensors"),
        safetensors_bytes(&tiny_tensors()),
    )
    .unwrap();
    std::fs::write(
        p.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::create_dir(p.join("1_Pooling")).unwrap();
    std::fs::write(
        p.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    dir
}

#[test]
fn tiny_folder_with_vocab_txt_converts() {
    let dir = tiny_folder();
    let c = convert(dir.path(), OutType::Q8_0).unwrap();
    assert_eq!(c.tensors.len(), 21);
    let f = GgufFile::from_bytes(c.writer.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_str("general.name"), Some("Tiny Bert"));
    assert_eq!(f.get_str("general.organization"), Some("Someone"));
    assert_eq!(f.get_u32("bert.pooling_type"), Some(2));
    assert_eq!(f.get_u32("bert.block_count"), Some(1));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "▁the", "s", "▁cat", "ty", "▁."]
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        [3, 3, 3, 3, 3, 1, 1, 1, 1, 1]
    );
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id"), Some(2));
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id"), Some(3));
    assert_eq!(
        f.get_bool("tokenizer.ggml.normalizer.lowercase"),
        Some(true)
    );
    // Rows of 4 are not a whole Q8_0 block: the matrices fall back to F16.
    let t = f.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!((t.ggml_type, t.shape.clone()), (GgmlType::F16, vec![4, 8]));
    assert_eq!(
        f.tensor("position_embd.weight").unwrap().ggml_type,
        GgmlType::F32
    );
    assert!(f.tensor("pooler.dense.bias").is_none());
}

fn err(dir: &Path) -> String {
    let e: ConvertError = convert(dir, OutType::F32).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn unknown_architecture_is_an_error() {
    let dir = tiny_folder();
    let config = CONFIG.replace("BertModel", "MambaForCausalLM");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let e = err(dir.path());
    assert!(e.contains("unknown architecture 'MambaForCausalLM'"), "{e}");
}

#[test]
fn missing_files_are_errors() {
    let dir = tiny_folder();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = err(dir.path());
    assert!(e.contains("no model*.safetensors file in"), "{e}");

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = err(dir.path());
    assert!(e.contains("config.json is missing"), "{e}");

    let e = err(&dir.path().join("nowhere"));
    assert!(e.contains("nowhere is missing"), "{e}");
    let e = err(&dir.path().join("vocab.txt"));
    assert!(e.contains("is not a directory"), "{e}");

    let dir = tiny_folder();
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let e = err(dir.path());
    assert!(e.contains("neither tokenizer.json nor vocab.txt"), "{e}");

    let dir = tiny_folder();
    std::fs::remove_file(dir.path().join("1_Pooling/config.json")).unwrap();
    let e = err(dir.path());
    assert!(e.contains("1_Pooling/config.json is missing"), "{e}");
}

#[test]
fn truncated_or_malformed_safetensors_is_an_error() {
    let dir = tiny_folder();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 4, 100, 9, 3, 0] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = err(dir.path());
        assert!(
            e.contains("model.safetensors is not a valid safetensors file"),
            "{cut}: {e}"
        );
    }
    let mut bad = bytes.clone();
    bad[8] = b'[';
    std::fs::write(&path, &bad).unwrap();
    let e = err(dir.path());
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn malformed_config_and_tensors_are_errors() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "\"hidden_size\": 4,",
            "",
            "config.json: has no 'hidden_size'",
        ),
        (
            "\"hidden_size\": 4,",
            "\"hidden_size\": -4,",
            "'hidden_size' must be a positive whole number",
        ),
        (
            "\"num_attention_heads\": 2,",
            "\"num_attention_heads\": 3,",
            "not a multiple of num_attention_heads",
        ),
        (
            "\"architectures\": [\"BertModel\"],",
            "",
            "config.json: has no 'architectures'",
        ),
        (
            "\"vocab_size\": 10,",
            "\"vocab_size\": 12,",
            "'embeddings.word_embeddings.weight': has shape [10, 4]; config.json implies [12, 4]",
        ),
        (
            "\"num_hidden_layers\": 1,",
            "\"num_hidden_layers\": 2,",
            "'blk.1.attn_q.weight': is missing",
        ),
    ];
    for (from, to, needle) in cases {
        let dir = tiny_folder();
        std::fs::write(dir.path().join("config.json"), CONFIG.replace(from, to)).unwrap();
        let e = err(dir.path());
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let dir = tiny_folder();
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    assert!(err(dir.path()).contains("config.json is not valid JSON"));

    let dir = tiny_folder();
    let mut t = tiny_tensors();
    t.push((
        "encoder.layer.0.crossattention.self.query.weight",
        vec![4, 4],
        vec![0.0; 16],
    ));
    std::fs::write(dir.path().join("model.safetensors"), safetensors_bytes(&t)).unwrap();
    let e = err(dir.path());
    assert!(
        e.contains("'encoder.layer.0.crossattention.self.query.weight': is not a BERT tensor"),
        "{e}"
    );

    let dir = tiny_folder();
    let mut t = tiny_tensors();
    t.retain(|(n, _, _)| !n.ends_with("output.dense.bias"));
    std::fs::write(dir.path().join("model.safetensors"), safetensors_bytes(&t)).unwrap();
    let e = err(dir.path());
    assert!(e.contains("attn_output.bias': is missing"), "{e}");
}
