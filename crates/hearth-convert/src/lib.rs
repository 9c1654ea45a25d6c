//! hearth-convert: a Hugging Face model folder (`config.json`, `*.safetensors`, the
//! tokenizer files) to a GGUF file, as `hearth convert` writes it.
//!
//! The file has the tensor names, metadata keys and tokenizer fields that llama.cpp's
//! converter (`convert_hf_to_gguf.py`) writes for the same folder, so llama.cpp loads
//! Hearth's file and Hearth loads llama.cpp's. The supported architecture is BERT
//! (`BertModel`, e.g. sentence-transformers' all-MiniLM-L6-v2, and single-label
//! `BertForSequenceClassification` cross-encoders, rerankers such as
//! ms-marco-MiniLM-L-6-v2: see `bert.rs` for the two places where their file departs
//! from llama.cpp's); and the decoders of `decoder.rs` (`LlamaForCausalLM`,
//! `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `Gemma3ForCausalLM`,
//! `Phi3ForCausalLM`), whose vocabularies come from `tokenizer.model` (`spm.rs`) or
//! `tokenizer.json` (`bpe.rs`) with `special.rs`'s special tokens and chat template.
//! Anything else is an error that names it.
//!
//! What is read:
//! - `config.json`: the architecture and the hyperparameters (`n_embd`, `n_head`, ...).
//! - `model*.safetensors`: the weights, memory-mapped, in file-name order and, within a
//!   file, in the order of their data. F32, F16 and BF16 are accepted.
//! - `tokenizer.json` (a WordPiece model), or `vocab.txt` when there is none, with
//!   `tokenizer_config.json` for the special tokens.
//! - sentence-transformers' `modules.json` and its pooling module's `config.json`
//!   (`bert.pooling_type`), and the model card (`README.md`'s front matter) for the
//!   `general.*` description keys.
//!
//! Tensor types ([`OutType`]): 1-D tensors, norms, biases and the position and token-type
//! embeddings are always F32, as llama.cpp keeps them; the other matrices take the output
//! type, except that a Q8_0 matrix whose rows are not a whole number of 32-element blocks
//! falls back to F16. F16 rounds to nearest even and Q8_0 is ggml's reference quantizer,
//! both from `hearth-kernels`. For all-MiniLM-L6-v2 the F32 and F16 files are byte for
//! byte llama.cpp's (the tests pin their sha256); Q8_0 has no llama.cpp file to compare
//! with (its converter's numpy quantizer does the same arithmetic, except that its
//! rounding, `floor(|x| + 0.5)` in f32, can differ from `roundf` just below one half).

mod bert;
mod bpe;
mod card;
mod decoder;
mod folder;
mod special;
mod spm;
mod vocab;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hearth_gguf::{GgmlType, GgufError, GgufWriter};

pub use folder::HfFolder;

/// `general.quantization_version`: the version of the block layouts written (ggml's
/// `GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// The type of the converted weight matrices (`--type`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    Q8_0,
}

impl OutType {
    pub const ALL: [OutType; 3] = [OutType::F32, OutType::F16, OutType::Q8_0];

    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "f32",
            OutType::F16 => "f16",
            OutType::Q8_0 => "q8_0",
        }
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` (ALL_F32, MOSTLY_F16, MOSTLY_Q8_0).
    pub fn llama_ftype(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q8_0 => 7,
        }
    }

    /// The type of a weight matrix of rows of `ne0` elements.
    fn matrix_type(self, ne0: u64) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::Q8_0 if ne0.is_multiple_of(GgmlType::Q8_0.block_size() as u64) => {
                GgmlType::Q8_0
            }
            OutType::Q8_0 => GgmlType::F16,
        }
    }
}

impl fmt::Display for OutType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutType {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<OutType, ConvertError> {
        OutType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ConvertError::UnknownOutType(s.to_owned()))
    }
}

/// Everything that can go wrong converting a model folder. Each is one line that names
/// the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("unknown output type '{0}' (known: f32, f16, q8_0)")]
    UnknownOutType(String),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is missing: a Hugging Face model folder needs it", .0.display())]
    Missing(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error(
        "unknown architecture '{0}': hearth convert supports BERT (BertModel, and \
         BertForSequenceClassification rerankers) and the decoders LlamaForCausalLM, \
         MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM and \
         Phi3ForCausalLM"
    )]
    UnknownArchitecture(String),
    #[error("no model*.safetensors file in {}", .0.display())]
    NoSafetensors(PathBuf),
    #[error("{} is not a valid safetensors file: {detail}", path.display())]
    Safetensors { path: PathBuf, detail: String },
    #[error("tensor '{name}': {detail}")]
    Tensor { name: String, detail: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{}: {detail}", path.display())]
    Pooling { path: PathBuf, detail: String },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl ConvertError {
    fn tensor(name: &str, detail: impl Into<String>) -> ConvertError {
        ConvertError::Tensor {
            name: name.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A converted model, ready to write.
#[derive(Debug)]
pub struct Converted {
    /// The GGUF file, held in memory.
    pub writer: GgufWriter,
    /// `general.architecture`.
    pub arch: &'static str,
    /// Each tensor's GGUF name and type, in file order.
    pub tensors: Vec<(String, GgmlType)>,
    /// Number of weights (elements of every tensor).
    pub n_params: u64,
}

/// Converts the model folder `dir` to a GGUF file in memory, its matrices of type `out`.
pub fn convert(dir: &Path, out: OutType) -> Result<Converted, ConvertError> {
    let config = HfFolder::read_config(dir)?;
    let arch = HfFolder::architecture(&config)?;
    match arch.as_str() {
        "BertModel" | "BertForMaskedLM" => bert::convert(&HfFolder::open(dir, config)?, out, false),
        "BertForSequenceClassification" => bert::convert(&HfFolder::open(dir, config)?, out, true),
        other => match decoder::Family::from_hf(other) {
            Some(family) => decoder::convert(&HfFolder::open(dir, config)?, family, out),
            None => Err(ConvertError::UnknownArchitecture(arch)),
        },
    }
}

/// Converts `dir` and writes the file to `out_path` atomically (a temporary file in the
/// same directory, renamed into place when complete).
pub fn convert_file(dir: &Path, out_path: &Path, out: OutType) -> Result<Converted, ConvertError> {
    let converted = convert(dir, out)?;
    converted.writer.write_file(out_path)?;
    Ok(converted)
}

// ----------------------------------------------------------------------------
// Tensor encoding.

/// The bytes of `x` (`[n_rows][ne0]`) as `ty`: F32 and F16 element by element (F16
/// rounded to nearest even), Q8_0 by ggml's reference quantizer, row by row.
fn encode(x: &[f32], ne0: usize, ty: GgmlType) -> Vec<u8> {
    use bytemuck::Zeroable;
    use hearth_kernels::{BlockQ8_0, Quantize};
    match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => {
            let mut y = vec![half::f16::ZERO; x.len()];
            half::f16::quantize_row(x, &mut y);
            y.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect()
        }
        GgmlType::Q8_0 => {
            // Blocks never straddle rows: ne0 is a multiple of the block size.
            debug_assert_eq!(ne0 % BlockQ8_0::QK, 0);
            let mut blocks = vec![BlockQ8_0::zeroed(); x.len() / BlockQ8_0::QK];
            BlockQ8_0::quantize_row(x, &mut blocks);
            bytemuck::cast_slice(&blocks).to_vec()
        }
        other => unreachable!("the converter never picks {other}"),
    }
}

/// llama.cpp's size label (`general.size_label`): the number of weights with a K, M, B or
/// T suffix and at least two significant digits (`23M`, `1.5B`, `7.2B`, `135M`).
fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let int_digits = format!("{}", scaled.round() as u64)
        .trim_start_matches('0')
        .len();
    let decimals = 2usize.saturating_sub(int_digits);
    format!("{scaled:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_keep_two_significant_digits() {
        assert_eq!(size_label(22_565_376), "23M");
        assert_eq!(size_label(134_515_008), "135M");
        assert_eq!(size_label(1_543_714_304), "1.5B");
        assert_eq!(size_label(268_098_176), "268M");
        assert_eq!(size_label(7_241_732_096), "7.2B");
        assert_eq!(size_label(500_000), "500K");
        assert_eq!(size_label(70_553_706_496), "71B");
    }

    #[test]
    fn out_types_parse_and_fall_back() {
        assert_eq!("Q8_0".parse::<OutType>().unwrap(), OutType::Q8_0);
        assert_eq!("f16".parse::<OutType>().unwrap(), OutType::F16);
        assert!("q4_0".parse::<OutType>().is_err());
        assert_eq!(OutType::Q8_0.matrix_type(384), GgmlType::Q8_0);
        assert_eq!(OutType::Q8_0.matrix_type(100), GgmlType::F16);
    }

    #[test]
    fn encodings_round_trip() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 7.0).collect();
        let f32s = encode(&x, 64, GgmlType::F32);
        assert_eq!(f32s.len(), 256);
        assert_eq!(f32::from_le_bytes(f32s[4..8].try_into().unwrap()), x[1]);
        let f16s = encode(&x, 64, GgmlType::F16);
        assert_eq!(f16s.len(), 128);
        assert_eq!(
            half::f16::from_bits(u16::from_le_bytes([f16s[2], f16s[3]])),
            half::f16::from_f32(x[1])
        );
        assert_eq!(encode(&x, 64, GgmlType::Q8_0).len(), 2 * 34);
    }
}
