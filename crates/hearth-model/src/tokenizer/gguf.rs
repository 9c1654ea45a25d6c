//! Reading a tokenizer from GGUF metadata (`tokenizer.ggml.*`).

use hearth_gguf::GgufFile;

use super::{Tokenizer, TokenizerError, TokenizerSpec};

impl TokenizerSpec {
    /// The tokenizer description stored in a GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<TokenizerSpec, TokenizerError> {
        let model = f
            .get_str("tokenizer.ggml.model")
            .ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        let tokens = f
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or(TokenizerError::MissingKey(
                "tokenizer.ggml.tokens (the vocabulary)",
            ))?;
        let id = |key: &str| f.get_u32(key);
        Ok(TokenizerSpec {
            model: model.to_string(),
            pre: f.get_str("tokenizer.ggml.pre").map(str::to_string),
            tokens: tokens.to_vec(),
            scores: f
                .get_f32_array("tokenizer.ggml.scores")
                .map(<[f32]>::to_vec)
                .or_else(|| {
                    f.get_i32_array("tokenizer.ggml.scores")
                        .map(|s| s.iter().map(|&v| v as f32).collect())
                }),
            token_types: f
                .get_i32_array("tokenizer.ggml.token_type")
                .map(<[i32]>::to_vec),
            merges: f
                .get_str_array("tokenizer.ggml.merges")
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            eot_id: id("tokenizer.ggml.eot_token_id"),
            eom_id: id("tokenizer.ggml.eom_token_id"),
            unk_id: id("tokenizer.ggml.unknown_token_id"),
            // Spelled so in llama.cpp's key table.
            sep_id: id("tokenizer.ggml.seperator_token_id"),
            pad_id: id("tokenizer.ggml.padding_token_id"),
            mask_id: id("tokenizer.ggml.mask_token_id"),
            fim_pre_id: fim_id(f, FIM_KEYS[0]),
            fim_suf_id: fim_id(f, FIM_KEYS[1]),
            fim_mid_id: fim_id(f, FIM_KEYS[2]),
            fim_pad_id: id("tokenizer.ggml.fim_pad_token_id"),
            fim_rep_id: id("tokenizer.ggml.fim_rep_token_id"),
            fim_sep_id: id("tokenizer.ggml.fim_sep_token_id"),
            add_bos: f.get_bool("tokenizer.ggml.add_bos_token"),
            add_eos: f.get_bool("tokenizer.ggml.add_eos_token"),
            add_space_prefix: f.get_bool("tokenizer.ggml.add_space_prefix"),
            lowercase: f.get_bool("tokenizer.ggml.normalizer.lowercase"),
            model_name: f.get_str("general.name").map(str::to_string),
        })
    }
}

/// The keys of the fill-in-the-middle prefix, suffix and middle token ids: llama.cpp's
/// current name, then its older one.
const FIM_KEYS: [(&str, &str); 3] = [
    (
        "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.prefix_token_id",
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.suffix_token_id",
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        "tokenizer.ggml.middle_token_id",
    ),
];

fn fim_id(f: &GgufFile, (key, old): (&str, &str)) -> Option<u32> {
    f.get_u32(key).or_else(|| f.get_u32(old))
}

/// Whether a GGUF file's vocabulary has the three fill-in-the-middle tokens (prefix,
/// suffix, middle) that infill needs, each named by its metadata key or recognized by its
/// text as [`Tokenizer::from_gguf`] would; read from the metadata alone, without building
/// the tokenizer.
pub fn gguf_has_fim(f: &GgufFile) -> bool {
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap_or(&[]);
    super::special::has_fim(FIM_KEYS.map(|k| fim_id(f, k)), tokens)
}

impl Tokenizer {
    /// The tokenizer of a GGUF model file.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_spec(TokenizerSpec::from_gguf(f)?)
    }
}
