//! Converting a model's weights to another type: `hearth quantize`.
//!
//! The output is the input file with every metadata key kept (`general.file_type` and
//! `general.quantization_version` are rewritten) and each weight matrix converted to the
//! type the recipe picks for it. The recipe is llama.cpp's (`llama-quant.cpp`), so a file
//! quantized here has the same tensor types, in the same order, as one its quantizer makes
//! from the same input; and since the block quantizers in `hearth-kernels` are bit-exact
//! with ggml's reference quantizers, the same bytes.
//!
//! The recipe, for a file type whose default tensor type is quantized:
//! - Only tensors of two or more dimensions whose name ends in `weight` are converted,
//!   except norms and a list of small or special tensors; the rest are copied unchanged.
//! - The output matrix (and the token embedding when the model ties it to the output) is
//!   Q6_K, or Q8_0 when that is the default, its rows are not a whole number of the
//!   default type's blocks, or the architecture is Falcon.
//! - The *_K_M, *_K_L and Q2_K/Q3_K mixes give `attn_v` and `ffn_down` more bits in the
//!   first and last eighth of the layers and every third layer between
//!   ([`use_more_bits`]); some also raise `attn_output` and `attn_qkv`.
//! - A row length that is not a multiple of the chosen type's block size falls back to a
//!   32-element type: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0
//!   (and to F16 if even that does not divide the row).
//!
//! For F32, F16 and BF16 every convertible tensor simply gets that type.
//!
//! Converting weights that are already quantized loses accuracy twice; it is refused
//! unless [`QuantizeOptions::allow_requantize`] is set, in which case they are
//! dequantized to f32 first.

use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use half::{bf16, f16};
use hearth_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, TensorInfo, Value};
use hearth_kernels::*;
use rayon::prelude::*;

use crate::tensor::{is_supported, with_block_type};

/// `general.quantization_version`: the version of the block layouts written (ggml's
/// `GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// Elements converted per parallel task (rounded up to whole rows).
const CHUNK_ELEMENTS: usize = 32 * 512;

/// Everything that can go wrong converting a model.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unknown quantization type '{0}' (known: {known})", known = FileType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "))]
    UnknownFileType(String),
    #[error("tensor '{name}' is already quantized ({ggml_type}); requantizing loses accuracy, allow it with --allow-requantize")]
    Requantize { name: String, ggml_type: GgmlType },
    #[error("tensor '{name}' has type {ggml_type}, which Hearth cannot convert from")]
    UnsupportedSource { name: String, ggml_type: GgmlType },
    #[error("tensor '{name}' contains NaN or infinite values")]
    NonFinite { name: String },
    #[error("cannot quantize this model: {0}")]
    BadModel(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A target file type: llama.cpp's `llama_ftype`, named as its quantizer names them.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

impl FileType {
    pub const ALL: [FileType; 17] = [
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q8_0,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    pub fn name(self) -> &'static str {
        use FileType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q2_K => "Q2_K",
            Q3_K_S => "Q3_K_S",
            Q3_K_M => "Q3_K_M",
            Q3_K_L => "Q3_K_L",
            Q4_K_S => "Q4_K_S",
            Q4_K_M => "Q4_K_M",
            Q5_K_S => "Q5_K_S",
            Q5_K_M => "Q5_K_M",
            Q6_K => "Q6_K",
        }
    }

    /// The value written to `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn llama_ftype(self) -> u32 {
        use FileType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q3_K_S => 11,
            Q3_K_M => 12,
            Q3_K_L => 13,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
            BF16 => 32,
        }
    }

    /// The file type a `general.file_type` value names, if Hearth makes it.
    pub fn from_llama_ftype(v: u32) -> Option<FileType> {
        FileType::ALL.iter().copied().find(|t| t.llama_ftype() == v)
    }

    /// The file type as llama.cpp describes a model's ("Q4_K - Medium", "all F32").
    pub fn description(self) -> &'static str {
        use FileType::*;
        match self {
            F32 => "all F32",
            Q2_K => "Q2_K - Medium",
            Q3_K_S => "Q3_K - Small",
            Q3_K_M => "Q3_K - Medium",
            Q3_K_L => "Q3_K - Large",
            Q4_K_S => "Q4_K - Small",
            Q4_K_M => "Q4_K - Medium",
            Q5_K_S => "Q5_K - Small",
            Q5_K_M => "Q5_K - Medium",
            other => other.name(),
        }
    }

    /// The tensor type most weights get, before the recipe adjusts it.
    pub fn default_type(self) -> GgmlType {
        use FileType::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2_K => GgmlType::Q2_K,
            Q3_K_S | Q3_K_M | Q3_K_L => GgmlType::Q3_K,
            Q4_K_S | Q4_K_M => GgmlType::Q4_K,
            Q5_K_S | Q5_K_M => GgmlType::Q5_K,
            Q6_K => GgmlType::Q6_K,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = QuantizeError;

    /// A name from [`FileType::ALL`] in any case; `Q3_K`, `Q4_K` and `Q5_K` mean the `_M`
    /// mixes, as in llama.cpp's quantizer.
    fn from_str(s: &str) -> Result<FileType, QuantizeError> {
        let up = s.to_ascii_uppercase();
        let up = match up.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FileType::ALL
            .iter()
            .copied()
            .find(|t| t.name() == up)
            .ok_or_else(|| QuantizeError::UnknownFileType(s.to_string()))
    }
}

/// What to make.
#[derive(Debug, Clone, Copy)]
pub struct QuantizeOptions {
    pub ftype: FileType,
    /// Convert weights that are already quantized (dequantizing them to f32 first).
    pub allow_requantize: bool,
}

/// The decision for one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order: `shape[0]` is the row length.
    pub shape: Vec<u64>,
    /// Type in the input file.
    pub from: GgmlType,
    /// Type in the output file (`from` when the tensor is copied).
    pub to: GgmlType,
    /// The recipe's type did not fit the row length and a 32-element type was used instead.
    pub fallback: bool,
}

impl TensorPlan {
    /// Whether the data is converted (otherwise copied byte for byte).
    pub fn converts(&self) -> bool {
        self.from != self.to
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct QuantizeReport {
    /// One entry per tensor, in output order.
    pub tensors: Vec<TensorPlan>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub n_elements: u64,
}

// ----------------------------------------------------------------------------
// The recipe: which type each tensor gets.

/// The broad role of a tensor, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    fn of(name: &str) -> Category {
        if name == "output.weight" {
            Category::Output
        } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            Category::TokenEmbd
        } else if name.contains("attn_qkv.weight") {
            Category::AttnQkv
        } else if name.contains("attn_kv_b.weight") {
            Category::AttnKvB
        } else if name.contains("attn_v.weight") {
            Category::AttnV
        } else if name.contains("attn_k.weight") {
            Category::AttnK
        } else if name.contains("attn_q.weight") {
            Category::AttnQ
        } else if name.contains("attn_output.weight") {
            Category::AttnOutput
        } else if name.contains("ffn_up") {
            Category::FfnUp
        } else if name.contains("ffn_gate") {
            Category::FfnGate
        } else if name.contains("ffn_down") {
            Category::FfnDown
        } else {
            Category::Other
        }
    }

    /// The value projection, or a fused projection that contains it: the tensors most
    /// sensitive to quantization.
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

/// Number of dimensions ignoring trailing 1s (ggml's `ggml_n_dims`).
fn n_dims(shape: &[u64]) -> usize {
    shape.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether the recipe converts this tensor at all: matrices (and stacks of expert
/// matrices) named `*weight`, except norms and small or index-like tensors.
fn allows_quantization(name: &str, shape: &[u64]) -> bool {
    const NEVER_CONTAINS: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    n_dims(shape) >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER_CONTAINS.iter().any(|s| name.contains(s))
}

/// The layers that get more bits in the mixed recipes: the first and last eighth, and
/// every third layer in between.
pub fn use_more_bits(i_layer: usize, n_layer: usize) -> bool {
    i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2
}

/// The facts about the model the recipe looks at.
#[derive(Debug, Clone)]
struct ModelFacts {
    arch: String,
    n_layer: usize,
    /// Query heads per key/value head.
    n_gqa: usize,
    n_expert: usize,
    /// A llama-architecture model of the 70B class (80 layers with grouped-query
    /// attention), whose small shared `attn_v` gets more bits.
    is_70b: bool,
    /// No `output.weight`: the token embedding doubles as the output matrix.
    tied_embeddings: bool,
}

impl ModelFacts {
    fn from_gguf(file: &GgufFile) -> Result<ModelFacts, QuantizeError> {
        let arch = file
            .get_str("general.architecture")
            .ok_or_else(|| {
                QuantizeError::BadModel("no 'general.architecture' metadata key".into())
            })?
            .to_string();
        // A count may be stored as any integer type, or as a per-layer array (first entry).
        let get = |key: &str| -> Option<u64> {
            match file.get(&format!("{arch}.{key}"))? {
                Value::Array(a) => a
                    .as_u32s()
                    .and_then(|v| v.first().map(|&x| u64::from(x)))
                    .or_else(|| {
                        a.as_i32s()
                            .and_then(|v| v.first().and_then(|&x| u64::try_from(x).ok()))
                    }),
                v => v.as_u64(),
            }
        };
        let n_layer = match get("block_count") {
            Some(n) => n as usize,
            None => file
                .tensors()
                .iter()
                .filter_map(|t| layer_of(&t.name))
                .max()
                .map_or(0, |l| l + 1),
        };
        let n_head = get("attention.head_count").unwrap_or(0) as usize;
        let n_head_kv = get("attention.head_count_kv").map_or(n_head, |n| n as usize);
        let n_gqa = n_head.checked_div(n_head_kv).unwrap_or(0);
        let n_expert = get("expert_count").unwrap_or(0) as usize;
        let is_70b = arch == "llama" && n_layer == 80 && n_head != n_head_kv;
        let tied_embeddings = !file.tensors().iter().any(|t| t.name == "output.weight");
        Ok(ModelFacts {
            arch,
            n_layer,
            n_gqa,
            n_expert,
            is_70b,
            tied_embeddings,
        })
    }

    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// The layer number in a `blk.N.` tensor name.
fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let end = rest.find('.')?;
    rest[..end].parse().ok()
}

/// Counters the recipe keeps while it walks the tensors in order.
#[derive(Debug, Default)]
struct RecipeState {
    n_attn_v: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
    i_ffn_gate: usize,
    i_ffn_up: usize,
}

/// The order llama.cpp's loader keeps tensors in, which is also the order its quantizer
/// writes them and counts layers in: by layer number (tensors outside `blk.N.` first),
/// then by name.
fn llama_order(a: &TensorInfo, b: &TensorInfo) -> std::cmp::Ordering {
    let layer = |n: &str| layer_of(n).map_or(-1, |l| l as i64);
    layer(&a.name)
        .cmp(&layer(&b.name))
        .then_with(|| a.name.cmp(&b.name))
}

/// The type of each tensor of `file` in `ftype`, in output order.
pub fn plan(file: &GgufFile, ftype: FileType) -> Result<Vec<TensorPlan>, QuantizeError> {
    let facts = ModelFacts::from_gguf(file)?;
    let mut tensors: Vec<&TensorInfo> = file.tensors().iter().collect();
    tensors.sort_by(|a, b| llama_order(a, b));
    let mut st = RecipeState {
        n_attn_v: tensors
            .iter()
            .filter(|t| Category::of(&t.name).is_attn_v())
            .count(),
        ..Default::default()
    };
    tensors
        .into_iter()
        .map(|t| {
            let (to, fallback) = choose_type(&facts, &mut st, ftype, t)?;
            Ok(TensorPlan {
                name: t.name.clone(),
                shape: t.shape.clone(),
                from: t.ggml_type,
                to,
                fallback,
            })
        })
        .collect()
}

fn choose_type(
    facts: &ModelFacts,
    st: &mut RecipeState,
    ftype: FileType,
    t: &TensorInfo,
) -> Result<(GgmlType, bool), QuantizeError> {
    if !allows_quantization(&t.name, &t.shape) {
        return Ok((t.ggml_type, false));
    }
    let default = ftype.default_type();
    if !default.is_quantized() {
        return Ok((default, false));
    }
    let chosen = mix_type(facts, st, ftype, t, default)?;
    Ok(fallback_type(t.ne0(), chosen))
}

/// The mixed recipe: the default type adjusted for the tensor's role and layer.
fn mix_type(
    facts: &ModelFacts,
    st: &mut RecipeState,
    ftype: FileType,
    t: &TensorInfo,
    default: GgmlType,
) -> Result<GgmlType, QuantizeError> {
    use FileType as F;
    use GgmlType as G;
    let cat = Category::of(&t.name);
    let falcon = facts.is_falcon();
    // The layer a per-layer tensor belongs to: its rank among its kind, or with experts
    // (whose tensors need not be consecutive) the number in its name.
    let layer_info = |counter: usize| -> Result<(usize, usize), QuantizeError> {
        if facts.n_expert > 1 {
            let l = layer_of(&t.name).ok_or_else(|| {
                QuantizeError::BadModel(format!("cannot tell the layer of tensor '{}'", t.name))
            })?;
            if l >= facts.n_layer {
                return Err(QuantizeError::BadModel(format!(
                    "tensor '{}' is in layer {l} but the model has {} layers",
                    t.name, facts.n_layer
                )));
            }
            Ok((l, facts.n_layer))
        } else {
            Ok((counter, facts.n_layer))
        }
    };
    let mut new = default;

    if cat == Category::Output || (facts.tied_embeddings && cat == Category::TokenEmbd) {
        if falcon || !t.ne0().is_multiple_of(default.block_size() as u64) {
            new = G::Q8_0;
        } else if new != G::Q8_0 {
            new = G::Q6_K;
        }
    } else if cat == Category::TokenEmbd {
        // Untied embeddings keep the default type in every mix Hearth makes.
    } else if cat.is_attn_v() {
        let i = st.i_attn_v;
        match ftype {
            F::Q2_K => new = if facts.n_gqa >= 4 { G::Q4_K } else { G::Q3_K },
            F::Q3_K_M => new = if i < 2 { G::Q5_K } else { G::Q4_K },
            F::Q3_K_L => new = G::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, st.n_attn_v) => new = G::Q6_K,
            F::Q4_K_S if i < 4 => new = G::Q5_K,
            _ => {}
        }
        if facts.is_70b && matches!(new, G::Q3_K | G::Q4_K) {
            new = G::Q5_K;
        }
        if facts.n_expert == 8 {
            new = G::Q8_0;
        }
        st.i_attn_v += 1;
    } else if cat == Category::AttnK {
        if facts.n_expert == 8 {
            new = G::Q8_0;
        }
    } else if cat == Category::FfnDown {
        let (i, n) = layer_info(st.i_ffn_down)?;
        match ftype {
            F::Q2_K => new = G::Q3_K,
            F::Q3_K_M => {
                new = if i < n / 16 {
                    G::Q5_K
                } else if !falcon || use_more_bits(i, n) {
                    G::Q4_K
                } else {
                    G::Q3_K
                }
            }
            F::Q3_K_L => new = if falcon { G::Q4_K } else { G::Q5_K },
            F::Q4_K_M => {
                if falcon {
                    new = if i < n / 16 {
                        G::Q6_K
                    } else if use_more_bits(i, n) {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    };
                } else if use_more_bits(i, n) {
                    new = G::Q6_K;
                }
            }
            F::Q5_K_M if use_more_bits(i, n) => new = G::Q6_K,
            F::Q4_K_S if !falcon && i < n / 8 => new = G::Q5_K,
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if cat == Category::AttnOutput {
        if !falcon {
            if facts.n_expert == 8 {
                if matches!(
                    ftype,
                    F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M
                ) {
                    new = G::Q5_K;
                }
            } else {
                match ftype {
                    F::Q2_K => new = G::Q3_K,
                    F::Q3_K_M => new = G::Q4_K,
                    F::Q3_K_L => new = G::Q5_K,
                    _ => {}
                }
            }
        } else if ftype == F::Q3_K_L {
            new = G::Q4_K;
        }
    } else if cat == Category::FfnGate {
        layer_info(st.i_ffn_gate)?;
        st.i_ffn_gate += 1;
    } else if cat == Category::FfnUp {
        layer_info(st.i_ffn_up)?;
        st.i_ffn_up += 1;
    }
    Ok(new)
}

/// A type whose blocks fit a row of `ne0` elements: `chosen` if it fits, else a 32-element
/// type of similar accuracy, else F16. The flag tells whether a fallback was needed.
fn fallback_type(ne0: u64, chosen: GgmlType) -> (GgmlType, bool) {
    use GgmlType as G;
    if ne0.is_multiple_of(chosen.block_size() as u64) {
        return (chosen, false);
    }
    let t = match chosen {
        G::Q2_K | G::Q3_K => G::Q4_0,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K => G::Q8_0,
        other => other,
    };
    if ne0.is_multiple_of(t.block_size() as u64) {
        (t, true)
    } else {
        (G::F16, true)
    }
}

// ----------------------------------------------------------------------------
// Conversion.

type DequantizeFn = fn(&[u8], &mut [f32]);
type QuantizeFn = fn(&[f32], &mut Vec<u8>);

fn dequantize_fn<S: Quantize>() -> DequantizeFn {
    |bytes, out| {
        // Copy into typed blocks: the source bytes carry no alignment guarantee.
        let mut blocks = vec![S::zeroed(); bytes.len() / std::mem::size_of::<S>()];
        bytemuck::cast_slice_mut::<S, u8>(&mut blocks).copy_from_slice(bytes);
        S::dequantize_row(&blocks, out);
    }
}

fn quantize_fn<D: Quantize>() -> QuantizeFn {
    |x, out| {
        let mut blocks = vec![D::zeroed(); x.len() / D::QK];
        D::quantize_row(x, &mut blocks);
        out.extend_from_slice(bytemuck::cast_slice(&blocks));
    }
}

/// Converts the rows of one tensor, in parallel chunks of whole rows.
fn convert(plan: &TensorPlan, src: &[u8]) -> Result<Vec<u8>, QuantizeError> {
    for t in [plan.from, plan.to] {
        if !is_supported(t) {
            return Err(QuantizeError::UnsupportedSource {
                name: plan.name.clone(),
                ggml_type: t,
            });
        }
    }
    let ne0 = plan.shape[0] as usize;
    let bad_shape = || {
        QuantizeError::BadModel(format!(
            "tensor '{}' rows of {ne0} do not fit its types",
            plan.name
        ))
    };
    let src_row = plan.from.row_size(ne0 as u64).ok_or_else(bad_shape)? as usize;
    let dst_row = plan.to.row_size(ne0 as u64).ok_or_else(bad_shape)? as usize;
    if src_row == 0 || !src.len().is_multiple_of(src_row) {
        return Err(bad_shape());
    }
    let dequantize: DequantizeFn = with_block_type!(plan.from, dequantize_fn());
    let quantize: QuantizeFn = with_block_type!(plan.to, quantize_fn());

    let rows_per_task = CHUNK_ELEMENTS.div_ceil(ne0).max(1);
    let pieces: Vec<Result<Vec<u8>, QuantizeError>> = src
        .par_chunks(src_row * rows_per_task)
        .map(|chunk| {
            let mut x = vec![0.0f32; chunk.len() / src_row * ne0];
            dequantize(chunk, &mut x);
            if !x.iter().all(|v| v.is_finite()) {
                return Err(QuantizeError::NonFinite {
                    name: plan.name.clone(),
                });
            }
            let mut out = Vec::with_capacity(chunk.len() / src_row * dst_row);
            quantize(&x, &mut out);
            Ok(out)
        })
        .collect();
    let mut out = Vec::with_capacity(src.len() / src_row * dst_row);
    for p in pieces {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

/// Builds the converted model in memory (the whole output file: a limit for models
/// larger than RAM). `on_tensor(i, n, plan)` is called before each tensor is converted or
/// copied. Conversion runs on the current rayon pool.
pub fn quantize(
    file: &GgufFile,
    opts: &QuantizeOptions,
    mut on_tensor: impl FnMut(usize, usize, &TensorPlan),
) -> Result<(GgufWriter, QuantizeReport), QuantizeError> {
    if let Some(n) = file.get("split.count").and_then(|v| v.as_u64()) {
        if n > 1 {
            return Err(QuantizeError::BadModel(format!(
                "the model is split in {n} files; merge them first"
            )));
        }
    }
    let plans = plan(file, opts.ftype)?;
    if !opts.allow_requantize {
        if let Some(p) = plans.iter().find(|p| p.converts() && p.from.is_quantized()) {
            return Err(QuantizeError::Requantize {
                name: p.name.clone(),
                ggml_type: p.from,
            });
        }
    }
    if let Some(p) = plans
        .iter()
        .find(|p| p.converts() && !(is_supported(p.from) && is_supported(p.to)))
    {
        let ggml_type = if is_supported(p.from) { p.to } else { p.from };
        return Err(QuantizeError::UnsupportedSource {
            name: p.name.clone(),
            ggml_type,
        });
    }

    let mut w = GgufWriter::new();
    const REWRITTEN: [&str; 5] = [
        "general.quantization_version",
        "general.file_type",
        "split.no",
        "split.count",
        "split.tensors.count",
    ];
    for (key, value) in file.metadata() {
        if !REWRITTEN.contains(&key.as_str()) {
            w.add_kv(key.clone(), value.clone());
        }
    }
    w.add_kv("general.quantization_version", QUANTIZATION_VERSION);
    w.add_kv("general.file_type", opts.ftype.llama_ftype());

    let (mut bytes_in, mut bytes_out, mut n_elements) = (0u64, 0u64, 0u64);
    for (i, p) in plans.iter().enumerate() {
        on_tensor(i, plans.len(), p);
        let info = file
            .tensor(&p.name)
            .expect("planned tensors come from the file");
        let src = file.tensor_data(info);
        let data = if p.converts() {
            convert(p, src)?
        } else {
            src.to_vec()
        };
        bytes_in += src.len() as u64;
        bytes_out += data.len() as u64;
        n_elements += info.n_elements();
        w.add_tensor(p.name.clone(), &p.shape, p.to, data)?;
    }
    Ok((
        w,
        QuantizeReport {
            tensors: plans,
            bytes_in,
            bytes_out,
            n_elements,
        },
    ))
}

/// Converts the model at `input` and writes it to `output` atomically: into a temporary
/// file in the same directory, renamed over `output` only once complete.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    on_tensor: impl FnMut(usize, usize, &TensorPlan),
) -> Result<QuantizeReport, QuantizeError> {
    let file = GgufFile::open(input)?;
    let (writer, report) = quantize(&file, opts, on_tensor)?;
    write_atomically(&writer, output)?;
    Ok(report)
}

fn write_atomically(writer: &GgufWriter, output: &Path) -> Result<(), QuantizeError> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| QuantizeError::Io {
            action,
            path,
            source,
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".hearth-quantize-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("cannot create a temporary file in", dir))?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
    writer.write_to(&mut out)?;
    out.flush().map_err(io("cannot write", tmp.path()))?;
    drop(out);
    tmp.as_file()
        .sync_all()
        .map_err(io("cannot write", tmp.path()))?;
    tmp.persist(output).map_err(|e| QuantizeError::Io {
        action: "cannot create",
        path: output.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_pattern_for_30_layers() {
        // n/8 = 3, 7n/8 = 26: layers 0-2, 26-29 and every third from 5.
        let got: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(got, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
    }

    #[test]
    fn fallbacks_for_rows_of_576() {
        use GgmlType as G;
        assert_eq!(fallback_type(576, G::Q4_K), (G::Q5_0, true));
        assert_eq!(fallback_type(576, G::Q5_K), (G::Q5_1, true));
        assert_eq!(fallback_type(576, G::Q6_K), (G::Q8_0, true));
        assert_eq!(fallback_type(576, G::Q3_K), (G::Q4_0, true));
        assert_eq!(fallback_type(576, G::Q2_K), (G::Q4_0, true));
        assert_eq!(fallback_type(1536, G::Q4_K), (G::Q4_K, false));
        assert_eq!(fallback_type(100, G::Q6_K), (G::F16, true));
        assert_eq!(fallback_type(48, G::Q8_0), (G::F16, true));
    }

    #[test]
    fn names_and_aliases() {
        assert_eq!("q4_k".parse::<FileType>().unwrap(), FileType::Q4_K_M);
        assert_eq!("Q8_0".parse::<FileType>().unwrap(), FileType::Q8_0);
        assert!("Q9_9".parse::<FileType>().is_err());
        for t in FileType::ALL {
            assert_eq!(t.name().parse::<FileType>().unwrap(), t);
        }
    }

    #[test]
    fn which_tensors_convert() {
        assert!(allows_quantization("blk.0.attn_q.weight", &[576, 576]));
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[576]));
        assert!(!allows_quantization("blk.0.attn_norm.weight", &[576, 1]));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", &[576, 8]));
        assert!(!allows_quantization("blk.0.attn_q.bias", &[576, 576]));
        assert!(allows_quantization(
            "blk.0.ffn_up_exps.weight",
            &[576, 1536, 8]
        ));
    }
}
