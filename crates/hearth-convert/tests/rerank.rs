//! `hearth convert` on a `BertForSequenceClassification` cross-encoder: the committed
//! tiny random-weight one (tests/data/rerank/README.md). Its pooler and classifier become
//! llama.cpp's `cls` and `cls.output` with their exact values, the file says pooling
//! `rank` and names its label, and what is not a one-label reranker is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hearth_convert::{convert, OutType};
use hearth_gguf::{GgmlType, GgufFile};

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rerank/tiny-cross-encoder")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The folder's tensors by Hugging Face name: (shape, values).
fn source() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(folder().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| (name, (v.shape().to_vec(), f32s(v.data()))))
        .collect()
}

#[test]
fn the_head_is_kept_under_llama_cpp_names() {
    let c = convert(&folder(), OutType::F32).unwrap();
    assert_eq!(c.arch, "bert");
    // 5 embedding tensors, 16 per layer, and the pooler and classifier.
    assert_eq!(c.tensors.len(), 5 + 2 * 16 + 4);
    let f = GgufFile::from_bytes(c.writer.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_u32("bert.pooling_type"), Some(4));
    assert_eq!(
        f.get_str_array("bert.classifier.output_labels").unwrap(),
        ["LABEL_0"]
    );
    assert_eq!(f.get_u32("tokenizer.ggml.token_type_count"), Some(2));
    assert_eq!(f.get_bool("bert.attention.causal"), Some(false));
    let src = source();
    for (gguf, hf) in [
        ("cls.weight", "bert.pooler.dense.weight"),
        ("cls.bias", "bert.pooler.dense.bias"),
        ("cls.output.weight", "classifier.weight"),
        ("cls.output.bias", "classifier.bias"),
        (
            "token_types.weight",
            "bert.embeddings.token_type_embeddings.weight",
        ),
        (
            "blk.1.attn_q.weight",
            "bert.encoder.layer.1.attention.self.query.weight",
        ),
    ] {
        let t = f.tensor(gguf).unwrap_or_else(|| panic!("{gguf} missing"));
        let (shape, want) = &src[hf];
        let ggml_shape: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        assert_eq!(t.shape, ggml_shape, "{gguf}");
        assert_eq!(t.ggml_type, GgmlType::F32, "{gguf}");
        assert!(f32s(f.tensor_data(t)) == *want, "{gguf} differs from {hf}");
    }
    // F16 and Q8_0 matrices, f32 biases, as for the encoder's own.
    for (out, ty) in [
        (OutType::F16, GgmlType::F16),
        (OutType::Q8_0, GgmlType::Q8_0),
    ] {
        let c = convert(&folder(), out).unwrap();
        let types: HashMap<_, _> = c.tensors.into_iter().collect();
        assert_eq!(types["cls.weight"], ty, "{out}");
        assert_eq!(types["cls.output.weight"], ty, "{out}");
        assert_eq!(types["cls.output.bias"], GgmlType::F32, "{out}");
    }
}

/// A copy of the folder with `config.json` edited by `edit`.
fn with_config(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(folder()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let p = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(&p, cfg.to_string()).unwrap();
    dir
}

#[test]
fn only_one_label_cross_encoders_convert() {
    // Two labels: a classifier, not a reranker.
    let dir = with_config(|c| {
        c.insert(
            "id2label".into(),
            serde_json::json!({"0": "negative", "1": "positive"}),
        );
    });
    let e = convert(dir.path(), OutType::F32).unwrap_err().to_string();
    assert!(e.contains("2 labels") && e.contains("reranker"), "{e}");
    // No id2label: Hugging Face's default of two labels, unless num_labels says one.
    let dir = with_config(|c| {
        c.remove("id2label");
    });
    let e = convert(dir.path(), OutType::F32).unwrap_err().to_string();
    assert!(e.contains("2 labels"), "{e}");
    let dir = with_config(|c| {
        c.remove("id2label");
        c.insert("num_labels".into(), 1.into());
    });
    let c = convert(dir.path(), OutType::F32).unwrap();
    let f = GgufFile::from_bytes(c.writer.to_bytes().unwrap()).unwrap();
    assert_eq!(
        f.get_str_array("bert.classifier.output_labels").unwrap(),
        ["LABEL_0"]
    );
    // The same weights called a BertModel: the classifier has no place in it.
    let dir = with_config(|c| {
        c.insert("architectures".into(), serde_json::json!(["BertModel"]));
    });
    let e = convert(dir.path(), OutType::F32).unwrap_err().to_string();
    assert!(
        e.contains("classifier.") && e.contains("not a BERT tensor"),
        "{e}"
    );
}
