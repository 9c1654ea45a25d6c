//! BERT (`BertModel`, and `BertForSequenceClassification` cross-encoders): llama.cpp's
//! `bert` architecture.
//!
//! Tensor names, Hugging Face → GGUF (`N` the layer; a `bert.` prefix and the old
//! `gamma`/`beta` spellings of norm weights and biases are accepted):
//!
//! | Hugging Face                                   | GGUF                       |
//! |------------------------------------------------|----------------------------|
//! | `embeddings.word_embeddings`                   | `token_embd`               |
//! | `embeddings.position_embeddings`               | `position_embd`            |
//! | `embeddings.token_type_embeddings`             | `token_types`              |
//! | `embeddings.LayerNorm`                         | `token_embd_norm`          |
//! | `encoder.layer.N.attention.self.{query,key,value}` | `blk.N.attn_{q,k,v}`   |
//! | `encoder.layer.N.attention.output.dense`       | `blk.N.attn_output`        |
//! | `encoder.layer.N.attention.output.LayerNorm`   | `blk.N.attn_output_norm`   |
//! | `encoder.layer.N.intermediate.dense`           | `blk.N.ffn_up`             |
//! | `encoder.layer.N.output.dense`                 | `blk.N.ffn_down`           |
//! | `encoder.layer.N.output.LayerNorm`             | `blk.N.layer_output_norm`  |
//!
//! `embeddings.position_ids`, the pooler and the masked-LM / next-sentence heads are not
//! used for embeddings and are left out. Any other tensor is an error, as is a missing
//! one or one whose shape does not follow from `config.json`.
//!
//! A `BertForSequenceClassification` with one label (a reranker such as
//! cross-encoder/ms-marco-MiniLM-L-6-v2) also keeps its head, under llama.cpp's
//! classifier names, and is written with `bert.pooling_type` 4 (rank) and
//! `bert.classifier.output_labels` (its `id2label`, by id):
//!
//! | Hugging Face            | GGUF          | run as (llama.cpp's rank pooling)      |
//! |-------------------------|---------------|----------------------------------------|
//! | `bert.pooler.dense`     | `cls`         | `tanh(cls · h[CLS] + b)`               |
//! | `classifier`            | `cls.output`  | `cls.output · that + b`: the score     |
//!
//! Two departures from llama.cpp's converter, both so that the file computes what the
//! model computes: llama.cpp drops `bert.pooler.dense` (its BERT converter assumes an
//! embedding model), so its file scores `classifier(h[CLS])` instead of
//! `classifier(tanh(pooler(h[CLS])))` (the ranking mostly survives, the scale does not);
//! and it writes no pooling type for a folder without `modules.json`, so llama-server
//! needs `--reranking`. llama.cpp's runtime applies `cls` with tanh and then `cls.output`,
//! so it runs Hearth's file as the model does.

use std::collections::HashSet;

use hearth_gguf::{GgmlType, GgufWriter};
use serde_json::Value as Json;

use crate::card::Card;
use crate::folder::{read_json_opt, HfFolder};
use crate::vocab::Vocab;
use crate::{encode, size_label, ConvertError, Converted, OutType, QUANTIZATION_VERSION};

/// The hyperparameters, from `config.json`.
struct Hparams {
    n_vocab: usize,
    /// `max_position_embeddings`.
    n_ctx: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_layer: usize,
    /// `type_vocab_size`: the token-type (segment) embeddings.
    n_token_types: usize,
    f_norm_eps: f32,
    /// A sequence classifier's labels (`id2label`, by id): the head is kept.
    labels: Option<Vec<String>>,
}

impl Hparams {
    fn read(f: &HfFolder, classifier: bool) -> Result<Hparams, ConvertError> {
        let hp = Hparams {
            labels: if classifier { Some(labels(f)?) } else { None },
            n_vocab: f.config_usize("vocab_size")?,
            n_ctx: f.config_usize("max_position_embeddings")?,
            n_embd: f.config_usize("hidden_size")?,
            n_ff: f.config_usize("intermediate_size")?,
            n_head: f.config_usize("num_attention_heads")?,
            n_layer: f.config_usize("num_hidden_layers")?,
            n_token_types: f.config_usize_or("type_vocab_size", Some(1))?,
            f_norm_eps: match f.config.get("layer_norm_eps") {
                None => 1e-12,
                Some(v) => v
                    .as_f64()
                    .filter(|e| e.is_finite() && *e > 0.0 && *e < 1.0)
                    .ok_or_else(|| {
                        ConvertError::Config(format!(
                            "'layer_norm_eps' must be a small positive number, got {v}"
                        ))
                    })? as f32,
            },
        };
        if !hp.n_embd.is_multiple_of(hp.n_head) {
            return Err(ConvertError::Config(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                hp.n_embd, hp.n_head
            )));
        }
        if let Some(p) = f.config.get("position_embedding_type") {
            if p.as_str() != Some("absolute") {
                return Err(ConvertError::Config(format!(
                    "position_embedding_type {p} is not supported (only \"absolute\")"
                )));
            }
        }
        Ok(hp)
    }

    /// The shape (Hugging Face order: `[n_rows, ne0]`) a GGUF tensor must have.
    fn expected_shape(&self, gguf_name: &str) -> Option<Vec<usize>> {
        let e = self.n_embd;
        let shape = match gguf_name {
            "token_embd.weight" => vec![self.n_vocab, e],
            "position_embd.weight" => vec![self.n_ctx, e],
            "token_types.weight" => vec![self.n_token_types, e],
            "token_embd_norm.weight" | "token_embd_norm.bias" => vec![e],
            "cls.weight" if self.labels.is_some() => vec![e, e],
            "cls.bias" if self.labels.is_some() => vec![e],
            "cls.output.weight" => vec![self.labels.as_ref()?.len(), e],
            "cls.output.bias" => vec![self.labels.as_ref()?.len()],
            _ => {
                let rest = gguf_name.strip_prefix("blk.")?;
                let (layer, what) = rest.split_once('.')?;
                if layer.parse::<usize>().ok()? >= self.n_layer {
                    return None;
                }
                match what {
                    "attn_q.weight" | "attn_k.weight" | "attn_v.weight" | "attn_output.weight" => {
                        vec![e, e]
                    }
                    "ffn_up.weight" => vec![self.n_ff, e],
                    "ffn_up.bias" => vec![self.n_ff],
                    "ffn_down.weight" => vec![e, self.n_ff],
                    "attn_q.bias"
                    | "attn_k.bias"
                    | "attn_v.bias"
                    | "attn_output.bias"
                    | "ffn_down.bias"
                    | "attn_output_norm.weight"
                    | "attn_output_norm.bias"
                    | "layer_output_norm.weight"
                    | "layer_output_norm.bias" => vec![e],
                    _ => return None,
                }
            }
        };
        Some(shape)
    }

    /// Every tensor the file must have, in order (lazily: `n_layer` is not trusted
    /// until the tensors are there).
    fn required(&self) -> impl Iterator<Item = String> + '_ {
        const PER_LAYER: [&str; 8] = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "attn_output_norm",
            "ffn_up",
            "ffn_down",
            "layer_output_norm",
        ];
        let globals = [
            "token_embd.weight",
            "position_embd.weight",
            "token_types.weight",
            "token_embd_norm.weight",
            "token_embd_norm.bias",
        ]
        .into_iter()
        .map(String::from);
        let head = [
            "cls.weight",
            "cls.bias",
            "cls.output.weight",
            "cls.output.bias",
        ]
        .into_iter()
        .filter(|_| self.labels.is_some())
        .map(String::from);
        let globals = globals.chain(head);
        let layers = (0..self.n_layer).flat_map(|il| {
            PER_LAYER.into_iter().flat_map(move |t| {
                ["weight", "bias"].map(|suffix| format!("blk.{il}.{t}.{suffix}"))
            })
        });
        globals.chain(layers)
    }
}

/// What becomes of a Hugging Face tensor.
enum Mapped {
    Gguf(String),
    /// Not used by the embedding model.
    Skip,
}

/// The GGUF name of a Hugging Face BERT tensor, or `None` for a tensor BERT does not have.
/// A sequence classifier (`classifier`) keeps its pooler and classification head.
fn map_name(hf: &str, classifier: bool) -> Option<Mapped> {
    let name = hf.strip_prefix("bert.").unwrap_or(hf);
    let name = if let Some(n) = name.strip_suffix(".gamma") {
        format!("{n}.weight")
    } else if let Some(n) = name.strip_suffix(".beta") {
        format!("{n}.bias")
    } else {
        name.to_owned()
    };
    if classifier {
        match name.as_str() {
            "pooler.dense.weight" => return Some(Mapped::Gguf("cls.weight".into())),
            "pooler.dense.bias" => return Some(Mapped::Gguf("cls.bias".into())),
            "classifier.weight" => return Some(Mapped::Gguf("cls.output.weight".into())),
            "classifier.bias" => return Some(Mapped::Gguf("cls.output.bias".into())),
            _ => {}
        }
    }
    if name == "embeddings.position_ids"
        || name.starts_with("pooler.")
        || name.starts_with("cls.predictions")
        || name.starts_with("cls.seq_relationship")
    {
        return Some(Mapped::Skip);
    }
    let (stem, suffix) = name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let base = match stem {
        "embeddings.word_embeddings" => "token_embd".to_owned(),
        "embeddings.position_embeddings" => "position_embd".to_owned(),
        "embeddings.token_type_embeddings" => "token_types".to_owned(),
        "embeddings.LayerNorm" => "token_embd_norm".to_owned(),
        _ => {
            let rest = stem.strip_prefix("encoder.layer.")?;
            let (layer, part) = rest.split_once('.')?;
            let il: usize = layer.parse().ok()?;
            let t = match part {
                "attention.self.query" => "attn_q",
                "attention.self.key" => "attn_k",
                "attention.self.value" => "attn_v",
                "attention.output.dense" => "attn_output",
                "attention.output.LayerNorm" => "attn_output_norm",
                "intermediate.dense" => "ffn_up",
                "output.dense" => "ffn_down",
                "output.LayerNorm" => "layer_output_norm",
                _ => return None,
            };
            format!("blk.{il}.{t}")
        }
    };
    Some(Mapped::Gguf(format!("{base}.{suffix}")))
}

/// The type a tensor is written as: 1-D tensors, norms, biases, the position and
/// token-type embeddings F32; the other matrices the output type.
fn tensor_type(gguf_name: &str, n_dims: usize, ne0: u64, out: OutType) -> GgmlType {
    let always_f32 = n_dims <= 1
        || gguf_name.ends_with("_norm.weight")
        || !gguf_name.ends_with(".weight")
        || gguf_name.starts_with("position_embd.")
        || gguf_name.starts_with("token_types.");
    if always_f32 {
        GgmlType::F32
    } else {
        out.matrix_type(ne0)
    }
}

/// llama.cpp's pooling type (`bert.pooling_type`: 1 mean, 2 cls, 3 last) from
/// sentence-transformers' `modules.json` and its pooling module's `config.json`; `None`
/// when the folder has no pooling module.
fn pooling_type(f: &HfFolder) -> Result<Option<u32>, ConvertError> {
    let modules_path = f.dir.join("modules.json");
    let Some(modules) = read_json_opt(&modules_path)? else {
        return Ok(None);
    };
    let bad = |detail: &str| ConvertError::Pooling {
        path: modules_path.clone(),
        detail: detail.to_owned(),
    };
    let modules = modules
        .as_array()
        .ok_or_else(|| bad("not a list of modules"))?;
    let pooling = modules.iter().find(|m| {
        m.get("type").and_then(Json::as_str) == Some("sentence_transformers.models.Pooling")
    });
    let Some(pooling) = pooling else {
        return Ok(None);
    };
    let sub = pooling
        .get("path")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("the Pooling module has no 'path'"))?;
    if sub.split(['/', '\\']).any(|c| c == "..") || sub.starts_with('/') {
        return Err(bad("the Pooling module's path leaves the model folder"));
    }
    let path = f.dir.join(sub).join("config.json");
    let cfg = crate::folder::read_json(&path)?;
    let mode = |key: &str| cfg.get(key).and_then(Json::as_bool).unwrap_or(false);
    let t = if mode("pooling_mode_mean_tokens") {
        1
    } else if mode("pooling_mode_cls_token") {
        2
    } else if mode("pooling_mode_lasttoken") {
        3
    } else {
        return Err(ConvertError::Pooling {
            path,
            detail: "only mean, CLS and last-token pooling are supported".into(),
        });
    };
    Ok(Some(t))
}

/// A sequence classifier's labels from `config.json`'s `id2label` (ordered by id; absent,
/// `num_labels` labels `LABEL_i`, Hugging Face's default being 2). Only one label (a
/// relevance score: a reranker) is supported.
fn labels(f: &HfFolder) -> Result<Vec<String>, ConvertError> {
    let labels: Vec<String> = match f.config.get("id2label") {
        Some(Json::Object(m)) => {
            let mut by_id = Vec::with_capacity(m.len());
            for (k, v) in m {
                let id: usize = k.parse().map_err(|_| {
                    ConvertError::Config(format!("id2label has a key '{k}' that is not an id"))
                })?;
                let label = v.as_str().ok_or_else(|| {
                    ConvertError::Config(format!("id2label[{k}] is {v}, not a string"))
                })?;
                by_id.push((id, label.to_owned()));
            }
            by_id.sort();
            by_id.into_iter().map(|(_, l)| l).collect()
        }
        Some(other) => {
            return Err(ConvertError::Config(format!(
                "id2label must be an object, got {other}"
            )))
        }
        // Hugging Face's default labels; only one is of use, so no more are made.
        None => {
            let n = f.config_usize_or("num_labels", Some(2))?;
            (0..n.min(2)).map(|i| format!("LABEL_{i}")).collect()
        }
    };
    if labels.len() != 1 {
        let n = match f.config.get("id2label") {
            Some(_) => labels.len(),
            None => f.config_usize_or("num_labels", Some(2))?,
        };
        return Err(ConvertError::Config(format!(
            "a BertForSequenceClassification with {n} labels is a classifier, not a \
             reranker; hearth convert supports single-label cross-encoders (one relevance \
             score)"
        )));
    }
    Ok(labels)
}

/// Converts a BERT folder; `classifier` for a `BertForSequenceClassification`
/// cross-encoder (its pooler and head kept, pooling `rank`).
pub fn convert(f: &HfFolder, out: OutType, classifier: bool) -> Result<Converted, ConvertError> {
    let hp = Hparams::read(f, classifier)?;
    let pooling = match classifier {
        true => Some(4),
        false => pooling_type(f)?,
    };

    // The tensors, in file order, named and checked against the hyperparameters before
    // anything is sized by those (the vocabulary by `n_vocab`).
    let mut checked = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for t in f.tensors() {
        let gguf_name = match map_name(t.name, classifier) {
            Some(Mapped::Gguf(n)) => n,
            Some(Mapped::Skip) => continue,
            None => {
                return Err(ConvertError::tensor(
                    t.name,
                    "is not a BERT tensor (unexpected in a BertModel)",
                ))
            }
        };
        let expected = hp.expected_shape(&gguf_name).ok_or_else(|| {
            ConvertError::tensor(
                t.name,
                format!("has no place in a {}-layer BERT", hp.n_layer),
            )
        })?;
        if t.shape != expected.as_slice() {
            return Err(ConvertError::tensor(
                t.name,
                format!("has shape {:?}; config.json implies {expected:?}", t.shape),
            ));
        }
        if !seen.insert(gguf_name.clone()) {
            return Err(ConvertError::tensor(
                t.name,
                format!("maps to {gguf_name}, which another tensor already gave"),
            ));
        }
        checked.push((gguf_name, t));
    }
    let n_head_tensors = if classifier { 4 } else { 0 };
    if seen.len() as u64 != 5 + n_head_tensors + 16 * hp.n_layer as u64 {
        if let Some(missing) = hp.required().find(|n| !seen.contains(n)) {
            return Err(ConvertError::tensor(
                &missing,
                "is missing from the safetensors files",
            ));
        }
    }
    let vocab = Vocab::load(f, hp.n_vocab)?;

    let mut encoded: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)> = Vec::new();
    let mut n_params = 0u64;
    for (gguf_name, t) in checked {
        let x = t.to_f32()?;
        // GGUF dimensions run the other way: ne0 is the contiguous (last) one.
        let shape: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        let ne0 = shape[0];
        let ty = tensor_type(&gguf_name, shape.len(), ne0, out);
        n_params += x.len() as u64;
        let data = encode(&x, ne0 as usize, ty);
        encoded.push((gguf_name, shape, ty, data));
    }

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "bert");
    w.add_kv("general.type", "model");
    let name_or_path = f.config.get("_name_or_path").and_then(Json::as_str);
    Card::load(&f.dir, name_or_path).write(&mut w, &size_label(n_params));
    let u32_of = |n: usize| n as u32; // checked below 2^32 by `config_usize`
    w.add_kv("bert.block_count", u32_of(hp.n_layer));
    w.add_kv("bert.context_length", u32_of(hp.n_ctx));
    w.add_kv("bert.embedding_length", u32_of(hp.n_embd));
    w.add_kv("bert.feed_forward_length", u32_of(hp.n_ff));
    w.add_kv("bert.attention.head_count", u32_of(hp.n_head));
    w.add_kv("bert.attention.layer_norm_epsilon", hp.f_norm_eps);
    w.add_kv("general.file_type", out.llama_ftype());
    w.add_kv("bert.attention.causal", false);
    if let Some(p) = pooling {
        w.add_kv("bert.pooling_type", p);
    }
    if let Some(labels) = &hp.labels {
        w.add_kv("bert.classifier.output_labels", labels.clone());
    }
    w.add_kv("general.quantization_version", QUANTIZATION_VERSION);
    vocab.write(&mut w, u32_of(hp.n_token_types));

    let mut tensors = Vec::with_capacity(encoded.len());
    for (name, shape, ty, data) in encoded {
        w.add_tensor(name.clone(), &shape, ty, data)?;
        tensors.push((name, ty));
    }
    Ok(Converted {
        writer: w,
        arch: "bert",
        tensors,
        n_params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(hf: &str) -> Option<String> {
        match map_name(hf, false)? {
            Mapped::Gguf(n) => Some(n),
            Mapped::Skip => Some("(skip)".into()),
        }
    }

    #[test]
    fn names_map_as_llama_cpp_writes_them() {
        assert_eq!(
            gguf("embeddings.word_embeddings.weight").unwrap(),
            "token_embd.weight"
        );
        assert_eq!(
            gguf("bert.embeddings.LayerNorm.gamma").unwrap(),
            "token_embd_norm.weight"
        );
        assert_eq!(
            gguf("encoder.layer.3.attention.output.LayerNorm.bias").unwrap(),
            "blk.3.attn_output_norm.bias"
        );
        assert_eq!(
            gguf("encoder.layer.0.output.dense.weight").unwrap(),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf("pooler.dense.weight").unwrap(), "(skip)");
        assert_eq!(gguf("embeddings.position_ids").unwrap(), "(skip)");
        assert!(gguf("encoder.layer.0.crossattention.self.query.weight").is_none());
        assert!(gguf("lm_head.weight").is_none());
    }

    #[test]
    fn a_cross_encoder_keeps_its_pooler_and_head() {
        let head = |hf| match map_name(hf, true) {
            Some(Mapped::Gguf(n)) => n,
            _ => panic!("{hf} is not kept"),
        };
        assert_eq!(head("bert.pooler.dense.weight"), "cls.weight");
        assert_eq!(head("bert.pooler.dense.bias"), "cls.bias");
        assert_eq!(head("classifier.weight"), "cls.output.weight");
        assert_eq!(head("classifier.bias"), "cls.output.bias");
        assert_eq!(
            head("bert.encoder.layer.1.output.dense.bias"),
            "blk.1.ffn_down.bias"
        );
        assert!(map_name("classifier.weight", false).is_none());
    }

    #[test]
    fn types_follow_llama_cpp() {
        use GgmlType as G;
        assert_eq!(
            tensor_type("token_embd.weight", 2, 384, OutType::F16),
            G::F16
        );
        assert_eq!(
            tensor_type("position_embd.weight", 2, 384, OutType::F16),
            G::F32
        );
        assert_eq!(
            tensor_type("token_types.weight", 2, 384, OutType::Q8_0),
            G::F32
        );
        assert_eq!(
            tensor_type("blk.0.attn_q.bias", 1, 384, OutType::Q8_0),
            G::F32
        );
        assert_eq!(
            tensor_type("blk.0.ffn_down.weight", 2, 1536, OutType::Q8_0),
            G::Q8_0
        );
        assert_eq!(
            tensor_type("blk.0.ffn_down.weight", 2, 100, OutType::Q8_0),
            G::F16
        );
    }
}
