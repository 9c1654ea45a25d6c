//! The decoder families whose Hugging Face tensors map directly onto llama.cpp's:
//! `LlamaForCausalLM` and `MistralForCausalLM` (`llama`), `Qwen2ForCausalLM` (`qwen2`),
//! `Qwen3ForCausalLM` (`qwen3`), `Gemma3ForCausalLM` (`gemma3`, text only) and
//! `Phi3ForCausalLM` (`phi3`).
//!
//! Tensor names, Hugging Face → GGUF (`N` the layer; `.weight`, and `.bias` where the
//! checkpoint has one, keep their suffix):
//!
//! | Hugging Face                                   | GGUF                         |
//! |------------------------------------------------|------------------------------|
//! | `model.embed_tokens`                           | `token_embd`                 |
//! | `model.norm`                                   | `output_norm`                |
//! | `lm_head` (absent when tied to the embedding)  | `output`                     |
//! | `model.layers.N.input_layernorm`               | `blk.N.attn_norm`            |
//! | `…self_attn.{q,k,v,o}_proj`                    | `blk.N.attn_{q,k,v,output}`  |
//! | `…self_attn.qkv_proj` (phi3, fused)            | `blk.N.attn_qkv`             |
//! | `…self_attn.{q,k}_norm` (qwen3, gemma3)        | `blk.N.attn_{q,k}_norm`      |
//! | `…post_attention_layernorm`                    | `blk.N.ffn_norm`; gemma3: `blk.N.post_attention_norm` |
//! | `…pre_feedforward_layernorm` (gemma3)          | `blk.N.ffn_norm`             |
//! | `…post_feedforward_layernorm` (gemma3)         | `blk.N.post_ffw_norm`        |
//! | `…mlp.{gate,up,down}_proj`                     | `blk.N.ffn_{gate,up,down}`   |
//! | `…mlp.gate_up_proj` (phi3, fused)              | `blk.N.ffn_up`               |
//!
//! Values change in three places, as llama.cpp's converter changes them:
//! - llama: the rows of `q_proj` and `k_proj` (and their biases) are permuted within
//!   each head. Hugging Face rotates the two halves of a head (`rotate_half`); ggml's
//!   `llama` rope rotates adjacent pairs, so row `j·(d/2) + i` of a head moves to
//!   `2i + j`.
//! - gemma3: every norm weight gets 1 added (Gemma's RMSNorm multiplies by `1 + w`), in
//!   the checkpoint's precision; the embedding keeps only the tokenizer's rows.
//! - llama with `rope_scaling.rope_type = "llama3"`: a `rope_freqs` tensor of frequency
//!   factors is computed; phi3 with `longrope` factors writes them as
//!   `rope_factors_long`/`rope_factors_short`.
//!
//! Tensors are written in llama.cpp's order (the generated ones first, then each
//! safetensors file's tensors by name). Types follow `lib.rs`: 1-D tensors, norms and
//! biases F32, the other matrices the output type. A tensor that does not belong to the
//! family, a missing one and a shape that does not follow from `config.json` are errors.
//!
//! The metadata keys are llama.cpp's, in its order, with the values it derives from
//! `config.json` (including its defaults for gemma3). The vocabulary comes from
//! `tokenizer.model` (SentencePiece, `spm.rs`) when there is one, else from
//! `tokenizer.json` (byte-level BPE, `bpe.rs`), as llama.cpp picks for each family.

use std::collections::HashSet;

use hearth_gguf::{GgmlType, GgufWriter, Value};
use safetensors::Dtype;
use serde_json::{Map, Value as Json};

use crate::card::Card;
use crate::folder::{read_json_opt, HfFolder};
use crate::special::SpecialVocab;
use crate::{bpe, spm};
use crate::{encode, size_label, ConvertError, Converted, OutType, QUANTIZATION_VERSION};

/// A supported decoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
}

impl Family {
    /// The family of a Hugging Face architecture name.
    pub fn from_hf(arch: &str) -> Option<Family> {
        Some(match arch {
            "LlamaForCausalLM" | "MistralForCausalLM" => Family::Llama,
            "Qwen2ForCausalLM" => Family::Qwen2,
            "Qwen3ForCausalLM" => Family::Qwen3,
            "Gemma3ForCausalLM" => Family::Gemma3,
            "Phi3ForCausalLM" => Family::Phi3,
            _ => return None,
        })
    }

    /// `general.architecture`.
    pub fn arch(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
        }
    }

    fn has_qk_norm(self) -> bool {
        matches!(self, Family::Qwen3 | Family::Gemma3)
    }
}

/// The hyperparameters that shape the tensors.
struct Hparams {
    n_vocab: usize,
    n_embd: usize,
    n_ff: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    n_layer: usize,
}

fn config_err(msg: impl Into<String>) -> ConvertError {
    ConvertError::Config(msg.into())
}

impl Hparams {
    fn read(f: &HfFolder, family: Family) -> Result<Hparams, ConvertError> {
        let n_embd = f.config_usize("hidden_size")?;
        let gemma = family == Family::Gemma3;
        let n_head = f.config_usize_or("num_attention_heads", gemma.then_some(8))?;
        let n_head_kv =
            f.config_usize_or("num_key_value_heads", Some(if gemma { 4 } else { n_head }))?;
        let head_dim = match f.config_usize_or("head_dim", None) {
            Ok(d) => d,
            Err(_) if gemma => 256,
            Err(_) if n_embd.is_multiple_of(n_head) => n_embd / n_head,
            Err(_) => {
                return Err(config_err(format!(
                    "hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}"
                )))
            }
        };
        if !n_head.is_multiple_of(n_head_kv) {
            return Err(config_err(format!(
                "num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
            )));
        }
        if family == Family::Llama && head_dim % 2 == 1 {
            return Err(config_err(format!("head_dim {head_dim} is odd")));
        }
        if let Some(e) = f
            .config
            .get("num_local_experts")
            .or(f.config.get("num_experts"))
        {
            if !e.is_null() && e.as_u64() != Some(0) {
                return Err(config_err(
                    "a mixture of experts is not supported by hearth convert",
                ));
            }
        }
        Ok(Hparams {
            n_vocab: f.config_usize("vocab_size")?,
            n_embd,
            n_ff: f.config_usize("intermediate_size")?,
            n_head,
            n_head_kv,
            head_dim,
            n_layer: f.config_usize("num_hidden_layers")?,
        })
    }
}

/// What becomes of a Hugging Face tensor.
enum Mapped {
    /// Its GGUF name and the shape it must have (Hugging Face order).
    Gguf(String, Vec<usize>),
    Skip,
}

/// Maps a Hugging Face tensor name; `None` for a tensor the family does not have.
fn map_name(hf: &str, family: Family, hp: &Hparams) -> Option<Mapped> {
    if hf.ends_with(".rotary_emb.inv_freq")
        || hf.ends_with(".attention.masked_bias")
        || hf.ends_with(".attention.bias")
    {
        return Some(Mapped::Skip);
    }
    let (e, ff, hd) = (hp.n_embd, hp.n_ff, hp.head_dim);
    let (nq, nkv) = (hp.n_head * hd, hp.n_head_kv * hd);
    let (stem, suffix) = hf.rsplit_once('.')?;
    let bias = match suffix {
        "weight" => false,
        "bias" => true,
        _ => return None,
    };
    // Weight shape → bias shape: a bias has the rows of its weight.
    let g = |name: String, shape: Vec<usize>| {
        let shape = if bias { vec![shape[0]] } else { shape };
        Some(Mapped::Gguf(format!("{name}.{suffix}"), shape))
    };
    match stem {
        "model.embed_tokens" if !bias => return g("token_embd".into(), vec![hp.n_vocab, e]),
        "model.norm" if !bias => return g("output_norm".into(), vec![e]),
        "lm_head" if !bias => return g("output".into(), vec![hp.n_vocab, e]),
        _ => {}
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let il: usize = layer.parse().ok()?;
    if il >= hp.n_layer || layer != il.to_string() {
        return None;
    }
    let norm = |name: &str| (!bias).then(|| (name.to_owned(), vec![e]));
    let (t, shape) = match (part, family) {
        ("input_layernorm", _) => norm("attn_norm")?,
        ("post_attention_layernorm", Family::Gemma3) => norm("post_attention_norm")?,
        ("post_attention_layernorm", _) => norm("ffn_norm")?,
        ("pre_feedforward_layernorm", Family::Gemma3) => norm("ffn_norm")?,
        ("post_feedforward_layernorm", Family::Gemma3) => norm("post_ffw_norm")?,
        ("self_attn.q_proj", f) if f != Family::Phi3 => ("attn_q".into(), vec![nq, e]),
        ("self_attn.k_proj", f) if f != Family::Phi3 => ("attn_k".into(), vec![nkv, e]),
        ("self_attn.v_proj", f) if f != Family::Phi3 => ("attn_v".into(), vec![nkv, e]),
        ("self_attn.qkv_proj", Family::Phi3) => ("attn_qkv".into(), vec![nq + 2 * nkv, e]),
        ("self_attn.o_proj", _) => ("attn_output".into(), vec![e, nq]),
        ("self_attn.q_norm", f) if f.has_qk_norm() && !bias => ("attn_q_norm".into(), vec![hd]),
        ("self_attn.k_norm", f) if f.has_qk_norm() && !bias => ("attn_k_norm".into(), vec![hd]),
        ("mlp.gate_proj", f) if f != Family::Phi3 => ("ffn_gate".into(), vec![ff, e]),
        ("mlp.up_proj", f) if f != Family::Phi3 => ("ffn_up".into(), vec![ff, e]),
        ("mlp.gate_up_proj", Family::Phi3) => ("ffn_up".into(), vec![2 * ff, e]),
        ("mlp.down_proj", _) => ("ffn_down".into(), vec![e, ff]),
        _ => return None,
    };
    g(format!("blk.{il}.{t}"), shape)
}

/// The GGUF tensors every model of the family has.
fn required(family: Family, n_layer: usize) -> Vec<String> {
    let mut names = vec!["token_embd.weight".to_owned(), "output_norm.weight".into()];
    let mut per_layer = vec!["attn_norm", "attn_output", "ffn_norm", "ffn_up", "ffn_down"];
    match family {
        Family::Phi3 => per_layer.push("attn_qkv"),
        _ => per_layer.extend(["attn_q", "attn_k", "attn_v", "ffn_gate"]),
    }
    if family.has_qk_norm() {
        per_layer.extend(["attn_q_norm", "attn_k_norm"]);
    }
    if family == Family::Gemma3 {
        per_layer.extend(["post_attention_norm", "post_ffw_norm"]);
    }
    for il in 0..n_layer {
        names.extend(per_layer.iter().map(|t| format!("blk.{il}.{t}.weight")));
    }
    names
}

/// llama.cpp's `llama` row order for a Q or K projection (`[n_rows][ne0]`, `n_head`
/// heads): within each head, row `j·(d/2) + i` moves to `2i + j`.
pub fn permute_rows(x: &[f32], n_rows: usize, n_head: usize) -> Vec<f32> {
    let ne0 = x.len() / n_rows;
    let hd = n_rows / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; x.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * hd + j * half + i;
                let dst = h * hd + 2 * i + j;
                out[dst * ne0..][..ne0].copy_from_slice(&x[src * ne0..][..ne0]);
            }
        }
    }
    out
}

/// The type a tensor is written as (llama.cpp's rule for these families).
fn tensor_type(gguf_name: &str, n_dims: usize, ne0: u64, out: OutType) -> GgmlType {
    if n_dims <= 1 || gguf_name.ends_with("_norm.weight") || !gguf_name.ends_with(".weight") {
        GgmlType::F32
    } else {
        out.matrix_type(ne0)
    }
}

/// A number from a JSON object.
fn num(m: &Map<String, Json>, key: &str) -> Option<f64> {
    m.get(key).and_then(Json::as_f64)
}

/// The first of `keys` that `config.json` sets (not null).
fn find<'c>(c: &'c Map<String, Json>, keys: &[&str]) -> Option<&'c Json> {
    keys.iter().find_map(|k| c.get(*k).filter(|v| !v.is_null()))
}

/// The rope parameters as llama.cpp gathers them: `rope_parameters` (or `rope_scaling`),
/// with the top-level `rope_theta`, local theta, `partial_rotary_factor` and
/// `original_max_position_embeddings` mirrored in.
fn rope_parameters(c: &Map<String, Json>) -> Map<String, Json> {
    let mut rp = match find(c, &["rope_parameters"]).or_else(|| find(c, &["rope_scaling"])) {
        Some(Json::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if !rp.contains_key("full_attention") && !rp.contains_key("sliding_attention") {
        let theta = find(
            c,
            &[
                "global_rope_theta",
                "rope_global_theta",
                "rope_theta_global",
                "rope_theta",
                "rotary_emb_base",
            ],
        );
        let local = find(
            c,
            &[
                "local_rope_theta",
                "rope_local_theta",
                "rope_theta_local",
                "swa_rope_theta",
                "rope_local_base_freq",
            ],
        );
        if let Some(l) = local {
            rp.insert(
                "sliding_attention".into(),
                serde_json::json!({ "rope_theta": l }),
            );
        }
        if let (false, Some(t)) = (rp.contains_key("rope_theta"), theta) {
            rp.insert("rope_theta".into(), t.clone());
        }
        if !rp.contains_key("rope_type") {
            if let Some(t) = rp.get("type").cloned() {
                rp.insert("rope_type".into(), t);
            }
        }
        for k in ["partial_rotary_factor", "original_max_position_embeddings"] {
            let v = match k {
                "partial_rotary_factor" => {
                    find(c, &["partial_rotary_factor", "rope_pct", "rope_percent"])
                }
                _ => find(c, &[k]),
            };
            if let (false, Some(v)) = (rp.contains_key(k), v) {
                rp.insert(k.into(), v.clone());
            }
        }
    }
    rp
}

/// The parameters of full-attention layers (`full_attention`, else the whole object).
fn full(rp: &Map<String, Json>) -> &Map<String, Json> {
    rp.get("full_attention")
        .and_then(Json::as_object)
        .unwrap_or(rp)
}

/// Llama 3's rope frequency factors (`rope_freqs`), in f32 as llama.cpp computes them.
fn llama3_rope_freqs(rp: &Map<String, Json>, head_dim: usize) -> Vec<f32> {
    let base = num(rp, "rope_theta").unwrap_or(10000.0);
    let factor = num(rp, "factor").unwrap_or(8.0) as f32;
    let low = num(rp, "low_freq_factor").unwrap_or(1.0) as f32;
    let high = num(rp, "high_freq_factor").unwrap_or(4.0) as f32;
    let old_ctx = num(rp, "original_max_position_embeddings").unwrap_or(8192.0) as f32;
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    (0..head_dim)
        .step_by(2)
        .map(|i| {
            // The power in double precision, rounded once (torch's `float ** tensor`).
            let x = i as f32 / head_dim as f32;
            let freq = 1.0f32 / base.powf(x as f64) as f32;
            // A number divided by a tensor is torch's reciprocal times the number.
            let wavelen = (1.0 / freq) * (2.0 * std::f32::consts::PI);
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = ((1.0 / wavelen) * old_ctx - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// A tensor ready to write.
struct Out {
    name: String,
    /// ggml order.
    shape: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

fn out_tensor(name: String, hf_shape: &[usize], x: &[f32], out: OutType) -> Out {
    let shape: Vec<u64> = hf_shape.iter().rev().map(|&d| d as u64).collect();
    let ty = tensor_type(&name, shape.len(), shape[0], out);
    let data = encode(x, shape[0] as usize, ty);
    Out {
        name,
        shape,
        ty,
        data,
    }
}

/// Converts a decoder folder of `family`.
pub fn convert(f: &HfFolder, family: Family, out: OutType) -> Result<Converted, ConvertError> {
    let hp = Hparams::read(f, family)?;
    let c = &f.config;
    let arch = family.arch();
    let rp = rope_parameters(c);
    let vocab = DecoderVocab::load(f, family)?;

    // Check every tensor before converting any.
    let mut checked = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for t in f.tensors_by_name() {
        let (gguf_name, shape) = match map_name(t.name, family, &hp) {
            Some(Mapped::Gguf(n, s)) => (n, s),
            Some(Mapped::Skip) => continue,
            None => {
                return Err(ConvertError::tensor(
                    t.name,
                    format!(
                        "is not a tensor of a {}-layer {arch} model ({})",
                        hp.n_layer,
                        HfFolder::architecture(c)?
                    ),
                ))
            }
        };
        if t.shape != shape.as_slice() {
            return Err(ConvertError::tensor(
                t.name,
                format!("has shape {:?}; config.json implies {shape:?}", t.shape),
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
    if let Some(missing) = required(family, hp.n_layer)
        .into_iter()
        .find(|n| !seen.contains(n))
    {
        return Err(ConvertError::tensor(
            &missing,
            "is missing from the safetensors files",
        ));
    }

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", arch);

    let mut tensors: Vec<Out> = Vec::new();
    // Generated tensors first.
    let rope_type = full(&rp)
        .get("rope_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    if family == Family::Llama && rope_type == "llama3" {
        let fr = llama3_rope_freqs(full(&rp), hp.head_dim);
        tensors.push(out_tensor(
            "rope_freqs.weight".into(),
            &[fr.len()],
            &fr,
            out,
        ));
    }
    if family == Family::Phi3 {
        if let Some(t) = phi3_rope_factors(c, &rp, &hp, &mut w)? {
            tensors.extend(
                t.into_iter()
                    .map(|(n, x)| out_tensor(n, &[x.len()], &x, out)),
            );
        }
    }
    for (gguf_name, t) in checked {
        let mut x = t.to_f32()?;
        let mut shape = t.shape.to_vec();
        if family == Family::Llama {
            if t.name.ends_with("q_proj.weight") || t.name.ends_with("q_proj.bias") {
                x = permute_rows(&x, shape[0], hp.n_head);
            } else if t.name.ends_with("k_proj.weight") || t.name.ends_with("k_proj.bias") {
                x = permute_rows(&x, shape[0], hp.n_head_kv);
            }
        }
        if family == Family::Gemma3 {
            if t.name.ends_with("norm.weight") {
                if t.dtype == Dtype::F16 {
                    // llama.cpp adds in the checkpoint's half precision.
                    for v in &mut x {
                        *v = half::f16::from_f32(*v + 1.0).to_f32();
                    }
                } else {
                    for v in &mut x {
                        *v += 1.0;
                    }
                }
            }
            if t.name.ends_with("embed_tokens.weight") && vocab.n_real < shape[0] {
                shape[0] = vocab.n_real;
                x.truncate(vocab.n_real * shape[1]);
            }
        }
        tensors.push(out_tensor(gguf_name, &shape, &x, out));
    }
    let n_params: u64 = tensors
        .iter()
        .map(|t| t.shape.iter().product::<u64>())
        .sum();

    w.add_kv("general.type", "model");
    let name_or_path = c.get("_name_or_path").and_then(Json::as_str);
    Card::load(&f.dir, name_or_path).write(&mut w, &size_label(n_params));
    write_params(&mut w, f, family, &hp, &rp, out)?;
    w.add_kv("general.quantization_version", QUANTIZATION_VERSION);
    vocab.write(&mut w);

    let mut listed = Vec::with_capacity(tensors.len());
    for t in tensors {
        w.add_tensor(t.name.clone(), &t.shape, t.ty, t.data)?;
        listed.push((t.name, t.ty));
    }
    Ok(Converted {
        writer: w,
        arch,
        tensors: listed,
        n_params,
    })
}

/// Phi-3's long-context rope factors: the attention factor key (written right away, as
/// llama.cpp writes it while preparing tensors) and the two factor tensors.
#[allow(clippy::type_complexity)]
fn phi3_rope_factors(
    c: &Map<String, Json>,
    rp: &Map<String, Json>,
    hp: &Hparams,
    w: &mut GgufWriter,
) -> Result<Option<Vec<(String, Vec<f32>)>>, ConvertError> {
    let factors = |k: &str| -> Option<Vec<f32>> {
        let v = rp.get(k)?.as_array()?;
        let out: Vec<f32> = v
            .iter()
            .filter_map(|x| x.as_f64())
            .map(|x| x as f32)
            .collect();
        (!out.is_empty() && out.len() == v.len()).then_some(out)
    };
    let Some(long) = factors("long_factor") else {
        return Ok(None);
    };
    let short = factors("short_factor")
        .ok_or_else(|| config_err("rope_scaling has long_factor but no short_factor"))?;
    let max_pos = num(c, "max_position_embeddings")
        .ok_or_else(|| config_err("has no 'max_position_embeddings'"))?;
    let orig = num(rp, "original_max_position_embeddings")
        .ok_or_else(|| config_err("has no 'original_max_position_embeddings'"))?;
    let scale = max_pos / orig;
    let kind = rp
        .get("rope_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let attn_factor = match kind.as_str() {
        "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / orig.ln()).sqrt(),
        "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
        "su" | "longrope" | "yarn" => 1.0,
        other => {
            return Err(config_err(format!(
                "rope scaling type '{other}' with long/short factors is not supported"
            )))
        }
    };
    let rot = num(rp, "partial_rotary_factor").unwrap_or(1.0);
    let rope_dims = (rot * hp.n_embd as f64) as usize / hp.n_head;
    if long.len() != short.len() || long.len() * 2 != rope_dims {
        return Err(config_err(format!(
            "rope long and short factors must have {} entries each",
            rope_dims / 2
        )));
    }
    w.add_kv("phi3.rope.scaling.attn_factor", attn_factor as f32);
    Ok(Some(vec![
        ("rope_factors_long.weight".into(), long),
        ("rope_factors_short.weight".into(), short),
    ]))
}

/// Writes `{arch}.*` and `general.file_type`, in llama.cpp's order for the family.
fn write_params(
    w: &mut GgufWriter,
    f: &HfFolder,
    family: Family,
    hp: &Hparams,
    rp: &Map<String, Json>,
    out: OutType,
) -> Result<(), ConvertError> {
    let c = &f.config;
    let arch = family.arch();
    let k = |s: &str| format!("{arch}.{s}");
    let u32_of = |n: usize| n as u32; // checked below 2^32 by `config_usize`
    let f32_of = |key: &str| -> Result<Option<f32>, ConvertError> {
        match find(c, &[key]) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| config_err(format!("'{key}' must be a number, got {v}"))),
        }
    };
    let n_ctx = f.config_usize_or("max_position_embeddings", Some(0))?;
    let rms_eps = f32_of("rms_norm_eps")?;
    let theta = full(rp).get("rope_theta").and_then(Json::as_f64);

    if family == Family::Phi3 {
        let orig = num(rp, "original_max_position_embeddings")
            .ok_or_else(|| config_err("has no 'original_max_position_embeddings'"))?;
        let rot = num(rp, "partial_rotary_factor").unwrap_or(1.0);
        w.add_kv(k("context_length"), u32_of(n_ctx));
        w.add_kv(k("rope.scaling.original_context_length"), orig as u32);
        w.add_kv(k("embedding_length"), u32_of(hp.n_embd));
        w.add_kv(k("feed_forward_length"), u32_of(hp.n_ff));
        w.add_kv(k("block_count"), u32_of(hp.n_layer));
        w.add_kv(k("attention.head_count"), u32_of(hp.n_head));
        w.add_kv(k("attention.head_count_kv"), u32_of(hp.n_head_kv));
        w.add_kv(
            k("attention.layer_norm_rms_epsilon"),
            rms_eps.ok_or_else(|| config_err("has no 'rms_norm_eps'"))?,
        );
        w.add_kv(
            k("rope.dimension_count"),
            ((rot * hp.n_embd as f64) as usize / hp.n_head) as u32,
        );
        w.add_kv(
            k("rope.freq_base"),
            theta.ok_or_else(|| config_err("has no 'rope_theta'"))? as f32,
        );
        w.add_kv("general.file_type", out.llama_ftype());
        let window = f.config_usize_or("sliding_window", Some(0)).unwrap_or(0);
        w.add_kv(k("attention.sliding_window"), u32_of(window));
        return Ok(());
    }

    // TextModel's keys.
    w.add_kv(k("block_count"), u32_of(hp.n_layer));
    if c.get("max_position_embeddings")
        .is_some_and(|v| !v.is_null())
    {
        w.add_kv(k("context_length"), u32_of(n_ctx));
    }
    w.add_kv(k("embedding_length"), u32_of(hp.n_embd));
    w.add_kv(k("feed_forward_length"), u32_of(hp.n_ff));
    if c.get("num_attention_heads").is_some_and(|v| !v.is_null()) {
        w.add_kv(k("attention.head_count"), u32_of(hp.n_head));
    }
    if c.get("num_key_value_heads").is_some_and(|v| !v.is_null()) {
        w.add_kv(k("attention.head_count_kv"), u32_of(hp.n_head_kv));
    }
    if c.get("is_causal") == Some(&Json::Bool(false)) {
        w.add_kv(k("attention.causal"), false);
    }
    let fp = full(rp);
    if let Some(rope_type) = fp.get("rope_type").and_then(Json::as_str) {
        let factor = num(fp, "factor").map(|x| x as f32);
        match (rope_type, factor) {
            ("linear", Some(factor)) => {
                w.add_kv(k("rope.scaling.type"), "linear");
                w.add_kv(k("rope.scaling.factor"), factor);
            }
            ("yarn", Some(factor)) => {
                w.add_kv(k("rope.scaling.type"), "yarn");
                w.add_kv(k("rope.scaling.factor"), factor);
                let orig = num(fp, "original_max_position_embeddings").ok_or_else(|| {
                    config_err("yarn rope scaling needs original_max_position_embeddings")
                })?;
                w.add_kv(k("rope.scaling.original_context_length"), orig as u32);
                let attn = num(fp, "attention_factor").or_else(|| num(fp, "attn_factor"));
                for (key, v) in [
                    ("yarn_ext_factor", num(fp, "extrapolation_factor")),
                    ("yarn_attn_factor", attn),
                    ("yarn_beta_fast", num(fp, "beta_fast")),
                    ("yarn_beta_slow", num(fp, "beta_slow")),
                ] {
                    if let Some(v) = v {
                        w.add_kv(k(&format!("rope.scaling.{key}")), v as f32);
                    }
                }
            }
            ("su" | "longrope", _) => w.add_kv(k("rope.scaling.type"), "longrope"),
            _ => {}
        }
    }
    if let Some(t) = theta {
        w.add_kv(k("rope.freq_base"), t as f32);
    }
    let swa_theta = rp
        .get("sliding_attention")
        .and_then(|s| s.get("rope_theta"))
        .and_then(Json::as_f64);
    if let Some(t) = swa_theta {
        w.add_kv(k("rope.freq_base_swa"), t as f32);
    }
    if let Some(e) = rms_eps {
        w.add_kv(k("attention.layer_norm_rms_epsilon"), e);
    }
    if let Some(v) = find(c, &["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"]) {
        let e = v
            .as_f64()
            .ok_or_else(|| config_err(format!("layer_norm_eps must be a number, got {v}")))?;
        w.add_kv(k("attention.layer_norm_epsilon"), e as f32);
    }
    if c.get("head_dim").is_some_and(|v| !v.is_null()) {
        w.add_kv(k("attention.key_length"), u32_of(hp.head_dim));
        w.add_kv(k("attention.value_length"), u32_of(hp.head_dim));
    }
    w.add_kv("general.file_type", out.llama_ftype());

    match family {
        Family::Llama => {
            w.add_kv(k("vocab_size"), u32_of(hp.n_vocab));
            w.add_kv(k("rope.dimension_count"), u32_of(hp.head_dim));
        }
        Family::Qwen2 | Family::Qwen3 => {
            if let Some(p) = pooling_type(f)? {
                w.add_kv(k("pooling_type"), p);
            }
        }
        Family::Gemma3 => {
            w.add_kv(
                k("context_length"),
                u32_of(if n_ctx == 0 { 131072 } else { n_ctx }),
            );
            w.add_kv(k("attention.head_count"), u32_of(hp.n_head));
            w.add_kv(
                k("attention.layer_norm_rms_epsilon"),
                rms_eps.unwrap_or(1e-6),
            );
            w.add_kv(k("attention.key_length"), u32_of(hp.head_dim));
            w.add_kv(k("attention.value_length"), u32_of(hp.head_dim));
            w.add_kv(k("rope.freq_base"), theta.unwrap_or(1_000_000.0) as f32);
            if c.get("attn_logit_softcapping")
                .is_some_and(|v| !v.is_null())
            {
                return Err(config_err(
                    "gemma3 with attn_logit_softcapping is not supported",
                ));
            }
            if let Some(cap) = num(c, "final_logit_softcapping").filter(|&x| x != 0.0) {
                w.add_kv(k("final_logit_softcapping"), cap as f32);
            }
            if c.get("sliding_window_pattern").and_then(Json::as_i64) != Some(1) {
                let window = f.config_usize("sliding_window")?;
                w.add_kv(k("attention.sliding_window"), u32_of(window));
            }
            w.add_kv(k("attention.head_count_kv"), u32_of(hp.n_head_kv));
        }
        Family::Phi3 => unreachable!("written above"),
    }
    Ok(())
}

/// sentence-transformers' pooling (`{arch}.pooling_type`: 1 mean, 2 CLS, 3 last).
fn pooling_type(f: &HfFolder) -> Result<Option<u32>, ConvertError> {
    let Some(modules) = read_json_opt(&f.dir.join("modules.json"))? else {
        return Ok(None);
    };
    let path = modules.as_array().and_then(|m| {
        m.iter().find_map(|m| {
            let t = m.get("type")?.as_str()?;
            t.ends_with("Pooling")
                .then(|| m.get("path")?.as_str())
                .flatten()
        })
    });
    let Some(sub) = path else { return Ok(None) };
    if sub.split(['/', '\\']).any(|c| c == "..") || sub.starts_with('/') {
        return Err(config_err(
            "modules.json: the Pooling module's path leaves the folder",
        ));
    }
    let path = f.dir.join(sub).join("config.json");
    let cfg = crate::folder::read_json(&path)?;
    let on = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    let mode = cfg.get("pooling_mode").and_then(Json::as_str);
    let t = if on("pooling_mode_mean_tokens") || mode == Some("mean") {
        1
    } else if on("pooling_mode_cls_token") || mode == Some("cls") {
        2
    } else if on("pooling_mode_lasttoken") || mode == Some("lasttoken") {
        3
    } else {
        return Err(ConvertError::Pooling {
            path,
            detail: "only mean, CLS and last-token pooling are supported".into(),
        });
    };
    Ok(Some(t))
}

/// A decoder's vocabulary: SentencePiece or byte-level BPE, with what follows it.
struct DecoderVocab {
    /// `tokenizer.ggml.add_space_prefix` before the vocabulary (llama's
    /// `add_prefix_space`).
    space_prefix_first: Option<bool>,
    kind: VocabKind,
    special: SpecialVocab,
    /// `tokenizer.ggml.add_space_prefix` after it (gemma3's SentencePiece: false).
    space_prefix_last: Option<bool>,
    /// The number of tokens the tokenizer has (gemma3 keeps this many embedding rows).
    n_real: usize,
}

enum VocabKind {
    Spm(spm::SpmVocab),
    Bpe(bpe::BpeVocab),
}

impl DecoderVocab {
    fn load(f: &HfFolder, family: Family) -> Result<DecoderVocab, ConvertError> {
        let dir = &f.dir;
        let vocab_size = f.config_usize_or("vocab_size", None).ok();
        let tc = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let mut space_prefix_first = None;
        if family == Family::Llama {
            space_prefix_first = tc
                .as_ref()
                .and_then(|t| t.get("add_prefix_space"))
                .and_then(Json::as_bool);
        }
        let has_model = dir.join("tokenizer.model").is_file();
        let phi3_gpt2 = family == Family::Phi3
            && tc
                .as_ref()
                .and_then(|t| t.get("tokenizer_class"))
                .and_then(Json::as_str)
                == Some("GPT2Tokenizer");
        let use_spm = has_model && !phi3_gpt2;
        if family == Family::Phi3 && !use_spm && !phi3_gpt2 {
            return Err(ConvertError::Missing(dir.join("tokenizer.model")));
        }
        let (kind, special, n_real) = if use_spm {
            let v = spm::load(dir, vocab_size, family == Family::Phi3)?;
            let n = v.tokens.len();
            let special = SpecialVocab::load(dir, &f.config, Some(n), false)?;
            (VocabKind::Spm(v), special, n)
        } else {
            let tj_path = dir.join("tokenizer.json");
            let Some(tj) = read_json_opt(&tj_path)? else {
                return Err(ConvertError::Tokenizer(format!(
                    "{} has neither tokenizer.model (SentencePiece) nor tokenizer.json \
                     (byte-level BPE)",
                    dir.display()
                )));
            };
            let model = tj.get("model");
            if family == Family::Llama
                && model.and_then(|m| m.get("type")).and_then(Json::as_str) == Some("BPE")
                && model
                    .and_then(|m| m.get("byte_fallback"))
                    .and_then(Json::as_bool)
                    == Some(true)
            {
                return Err(ConvertError::Tokenizer(
                    "tokenizer.json is a SentencePiece-style BPE (byte_fallback) and there is \
                     no tokenizer.model; hearth convert needs tokenizer.model for it"
                        .into(),
                ));
            }
            let v = bpe::load(&tj, vocab_size)?;
            let n_real = model
                .and_then(|m| m.get("vocab"))
                .and_then(Json::as_object)
                .map_or(0, |m| m.len())
                + tj.get("added_tokens")
                    .and_then(Json::as_array)
                    .map_or(0, |a| a.len());
            let special = SpecialVocab::load(dir, &f.config, None, true)?;
            (VocabKind::Bpe(v), special, n_real)
        };
        let space_prefix_last = (family == Family::Gemma3 && use_spm).then_some(false);
        Ok(DecoderVocab {
            space_prefix_first,
            kind,
            special,
            space_prefix_last,
            n_real,
        })
    }

    fn write(&self, w: &mut GgufWriter) {
        if let Some(b) = self.space_prefix_first {
            w.add_kv("tokenizer.ggml.add_space_prefix", b);
        }
        match &self.kind {
            VocabKind::Spm(v) => {
                w.add_kv("tokenizer.ggml.model", "llama");
                w.add_kv("tokenizer.ggml.pre", "default");
                w.add_kv("tokenizer.ggml.tokens", Value::from(v.tokens.clone()));
                w.add_kv("tokenizer.ggml.scores", Value::from(v.scores.clone()));
                w.add_kv("tokenizer.ggml.token_type", Value::from(v.types.clone()));
            }
            VocabKind::Bpe(v) => {
                w.add_kv("tokenizer.ggml.model", "gpt2");
                w.add_kv("tokenizer.ggml.pre", v.pre);
                w.add_kv("tokenizer.ggml.tokens", Value::from(v.tokens.clone()));
                w.add_kv("tokenizer.ggml.token_type", Value::from(v.types.clone()));
            }
        }
        self.special.write(w);
        if let Some(b) = self.space_prefix_last {
            w.add_kv("tokenizer.ggml.add_space_prefix", b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_rows_interleave_within_each_head() {
        // 2 heads of 4 rows, one column: rows [a0 a1 b0 b1] become [a0 b0 a1 b1].
        let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(
            permute_rows(&x, 8, 2),
            vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
        // Two columns move with their row.
        let x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        assert_eq!(
            permute_rows(&x, 4, 1),
            vec![0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]
        );
    }

    #[test]
    fn llama3_factors_ramp_from_one_to_factor() {
        let rp: Map<String, Json> = serde_json::from_str(
            r#"{"rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
        )
        .unwrap();
        let f = llama3_rope_freqs(&rp, 64);
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[31], 32.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
    }
}
