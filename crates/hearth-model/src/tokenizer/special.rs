//! Token attributes, role tokens and the end-of-generation set, building a [`Tokenizer`]
//! from a [`TokenizerSpec`], and cutting special tokens out of the input text.

use std::collections::HashMap;
use std::ops::{BitOr, BitOrAssign};

use super::bpe::BpeModel;
use super::pretokenize::PreConfig;
use super::spm::SpmModel;
use super::wpm::WpmModel;
use super::{
    Engine, PreTokenizer, SpecialTokens, Tokenizer, TokenizerError, TokenizerModel, TokenizerSpec,
};

/// What kind of token an id is, as a set of flags (llama.cpp's `llama_token_attr`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenAttr(u32);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// Control tokens (`<s>`, `<|im_end|>`): parsed from text only on request, rendered
    /// only on request.
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// Added tokens that are always parsed from text and rendered verbatim.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// `<0xXX>` byte tokens.
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Swallows the whitespace on its left when cut out of the text.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Swallows the whitespace on its right when cut out of the text.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value.
    pub fn from_token_type(t: i32) -> TokenAttr {
        match t {
            1 => TokenAttr::NORMAL,
            2 => TokenAttr::UNKNOWN,
            3 => TokenAttr::CONTROL,
            4 => TokenAttr::USER_DEFINED,
            5 => TokenAttr::UNUSED,
            6 => TokenAttr::BYTE,
            _ => TokenAttr::UNDEFINED,
        }
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: TokenAttr) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    fn set(&mut self, other: TokenAttr, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl BitOr for TokenAttr {
    type Output = TokenAttr;
    fn bitor(self, rhs: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | rhs.0)
    }
}

impl BitOrAssign for TokenAttr {
    fn bitor_assign(&mut self, rhs: TokenAttr) {
        self.0 |= rhs.0;
    }
}

impl std::fmt::Debug for TokenAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 10] = [
            "UNKNOWN",
            "UNUSED",
            "NORMAL",
            "CONTROL",
            "USER_DEFINED",
            "BYTE",
            "NORMALIZED",
            "LSTRIP",
            "RSTRIP",
            "SINGLE_WORD",
        ];
        let set: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            write!(f, "UNDEFINED")
        } else {
            write!(f, "{}", set.join("|"))
        }
    }
}

/// A piece of the input after special tokens were cut out: raw text (a byte range of the
/// input) or a special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fragment {
    /// `start..end` of the input.
    Text(usize, usize),
    Token(u32),
}

/// Cuts special tokens out of `text`, longest token first, each at every non-overlapping
/// occurrence from the left (llama.cpp's `tokenizer_st_partition`). Control and unknown
/// tokens take part only with `parse_special`; user-defined tokens always do.
pub(super) fn partition(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<Fragment> {
    let mut fragments = Vec::new();
    if text.is_empty() {
        return fragments;
    }
    fragments.push(Fragment::Text(0, text.len()));
    let bytes = text.as_bytes();
    let mut next = Vec::new();
    for &id in &tok.partition_order {
        let attr = tok.attrs[id as usize];
        if !parse_special && attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
            continue;
        }
        let needle = tok.tokens[id as usize].as_str();
        if !fragments
            .iter()
            .any(|f| matches!(*f, Fragment::Text(s, e) if text[s..e].contains(needle)))
        {
            continue;
        }
        next.clear();
        for fragment in &fragments {
            let Fragment::Text(mut pos, end) = *fragment else {
                next.push(*fragment);
                continue;
            };
            while pos < end {
                let Some(found) = text[pos..end].find(needle) else {
                    break;
                };
                let at = pos + found;
                let mut left_end = at;
                if attr.contains(TokenAttr::LSTRIP) {
                    while left_end > pos && bytes[left_end - 1].is_ascii_whitespace_c() {
                        left_end -= 1;
                    }
                }
                if left_end > pos {
                    next.push(Fragment::Text(pos, left_end));
                }
                next.push(Fragment::Token(id));
                pos = at + needle.len();
                if attr.contains(TokenAttr::RSTRIP) {
                    while pos < end && bytes[pos].is_ascii_whitespace_c() {
                        pos += 1;
                    }
                }
            }
            if pos < end {
                next.push(Fragment::Text(pos, end));
            }
        }
        std::mem::swap(&mut fragments, &mut next);
    }
    fragments
}

/// C's `isspace` in the "C" locale (includes vertical tab, unlike `u8::is_ascii_whitespace`).
trait CSpace {
    fn is_ascii_whitespace_c(&self) -> bool;
}

impl CSpace for u8 {
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(*self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}

/// Token texts that mark the end of a turn, in order of preference for the EOT role.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
/// Whether the fill-in-the-middle prefix, suffix and middle tokens are all there: each
/// given by id, or found in `tokens` by one of the texts the tokenizer recognizes it by.
pub(super) fn has_fim(ids: [Option<u32>; 3], tokens: &[String]) -> bool {
    [FIM_PRE_TEXTS, FIM_SUF_TEXTS, FIM_MID_TEXTS]
        .iter()
        .zip(ids)
        .all(|(texts, id)| id.is_some() || tokens.iter().any(|t| texts.contains(&t.as_str())))
}
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token texts that end generation wherever they occur in a vocabulary.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Builds the tokenizer: vocabulary, attributes, role tokens, EOG set, caches, and the
/// model-specific part. Follows llama.cpp's `llama_vocab::impl::load`.
pub(super) fn build(spec: TokenizerSpec) -> Result<Tokenizer, TokenizerError> {
    let mut warnings = Vec::new();
    let model = TokenizerModel::from_gguf_name(&spec.model)
        .ok_or_else(|| TokenizerError::UnknownModel(spec.model.clone()))?;
    let n = spec.tokens.len();
    if n == 0 {
        return Err(TokenizerError::EmptyVocabulary);
    }

    // Pre-tokenizer and per-model defaults.
    let mut special = SpecialTokens::default();
    let (pre, pre_name, mut add_bos, mut add_space_prefix, clean_spaces, ignore_merges);
    match model {
        TokenizerModel::Bpe => {
            special.bos = Some(11);
            special.eos = Some(11);
            let (config, name) = match spec.pre.as_deref() {
                None | Some("") => {
                    warnings.push(
                        "no pre-tokenizer type (tokenizer.ggml.pre) given: using 'default'; \
                         generation quality may suffer"
                            .to_string(),
                    );
                    (PreConfig::DEFAULT, "default")
                }
                Some(name) => match PreConfig::lookup(name) {
                    Some(config) => (config, name),
                    None => {
                        warnings.push(format!(
                            "unknown pre-tokenizer type {name:?}: using 'default' instead"
                        ));
                        (PreConfig::DEFAULT, "default")
                    }
                },
            };
            pre = config.kind;
            pre_name = name.to_string();
            add_bos = config.add_bos;
            add_space_prefix = false;
            clean_spaces = config.clean_spaces;
            ignore_merges = config.ignore_merges;
            if config.no_bos {
                special.bos = None;
            }
        }
        TokenizerModel::Spm => {
            special.bos = Some(1);
            special.eos = Some(2);
            special.unk = Some(0);
            pre = PreTokenizer::Default;
            pre_name = "default".to_string();
            add_bos = true;
            add_space_prefix = true;
            clean_spaces = false;
            ignore_merges = false;
        }
        TokenizerModel::Wpm => {
            // BERT's role tokens by their text; the file's ids, when given, win below.
            let find = |text: &str| spec.tokens.iter().position(|t| t == text).map(|i| i as u32);
            special.bos = find("[CLS]");
            special.eos = find("[SEP]");
            special.sep = special.eos;
            special.unk = find("[UNK]");
            special.pad = find("[PAD]");
            special.mask = find("[MASK]");
            // The name is kept for display only: every WordPiece vocabulary gets BERT's
            // split (see `wpm.rs` for what "jina-v2-en" means here).
            pre = PreTokenizer::Default;
            pre_name = match spec.pre.as_deref() {
                None | Some("") => "bert".to_string(),
                Some(name) => name.to_string(),
            };
            add_bos = special.bos.is_some();
            add_space_prefix = false;
            clean_spaces = true;
            ignore_merges = false;
        }
    }
    if let Some(v) = spec.add_space_prefix {
        add_space_prefix = v;
    }

    // Vocabulary.
    let mut tokens = spec.tokens;
    let mut token_to_id: HashMap<String, u32> = HashMap::with_capacity(n);
    for (i, text) in tokens.iter_mut().enumerate() {
        if text.is_empty() {
            warnings.push(format!("empty token at index {i}"));
            *text = format!("[EMPTY_{i}]");
        }
        if let Some(&first) = token_to_id.get(text.as_str()) {
            return Err(TokenizerError::DuplicateToken {
                text: text.clone(),
                first,
                second: i as u32,
            });
        }
        token_to_id.insert(text.clone(), i as u32);
    }
    let scores = match spec.scores {
        Some(s) if s.len() < n => {
            return Err(TokenizerError::LengthMismatch {
                what: "tokenizer.ggml.scores",
                got: s.len(),
                expected: n,
            })
        }
        Some(mut s) => {
            s.truncate(n);
            s
        }
        None => vec![0.0; n],
    };
    let mut attrs = match &spec.token_types {
        Some(t) if t.len() < n => {
            return Err(TokenizerError::LengthMismatch {
                what: "tokenizer.ggml.token_type",
                got: t.len(),
                expected: n,
            })
        }
        Some(t) => t[..n]
            .iter()
            .map(|&t| TokenAttr::from_token_type(t))
            .collect(),
        None => vec![TokenAttr::NORMAL; n],
    };

    // Role tokens given by the file; defaults outside the vocabulary are dropped.
    let given = [
        (&mut special.bos, spec.bos_id, "BOS"),
        (&mut special.eos, spec.eos_id, "EOS"),
        (&mut special.eot, spec.eot_id, "EOT"),
        (&mut special.eom, spec.eom_id, "EOM"),
        (&mut special.unk, spec.unk_id, "UNK"),
        (&mut special.sep, spec.sep_id, "SEP"),
        (&mut special.pad, spec.pad_id, "PAD"),
        (&mut special.mask, spec.mask_id, "MASK"),
        (&mut special.fim_pre, spec.fim_pre_id, "FIM_PRE"),
        (&mut special.fim_suf, spec.fim_suf_id, "FIM_SUF"),
        (&mut special.fim_mid, spec.fim_mid_id, "FIM_MID"),
        (&mut special.fim_pad, spec.fim_pad_id, "FIM_PAD"),
        (&mut special.fim_rep, spec.fim_rep_id, "FIM_REP"),
        (&mut special.fim_sep, spec.fim_sep_id, "FIM_SEP"),
    ];
    for (slot, value, name) in given {
        if let Some(id) = *slot {
            if id as usize >= n {
                warnings.push(format!(
                    "default {name} token {id} is outside the vocabulary ({n}): disabled"
                ));
                *slot = None;
            }
        }
        if let Some(id) = value {
            if id as usize >= n {
                warnings.push(format!(
                    "{name} token id {id} is outside the vocabulary ({n}): ignored"
                ));
            } else {
                *slot = Some(id);
            }
        }
    }

    if let Some(v) = spec.add_bos {
        add_bos = v;
    }
    // A WordPiece text ends with [SEP] unless the file says otherwise.
    let add_eos = spec
        .add_eos
        .unwrap_or(model == TokenizerModel::Wpm && special.eos.is_some());
    if add_bos && special.bos.is_none() {
        return Err(TokenizerError::MissingSpecialToken {
            flag: "tokenizer.ggml.add_bos_token",
            token: "BOS",
        });
    }
    if add_eos && special.eos.is_none() {
        return Err(TokenizerError::MissingSpecialToken {
            flag: "tokenizer.ggml.add_eos_token",
            token: "EOS",
        });
    }

    // Role tokens the file left unset, found by their text. They become control tokens.
    let make_control = |id: u32, attrs: &mut Vec<TokenAttr>, warnings: &mut Vec<String>| {
        let attr = &mut attrs[id as usize];
        if !attr.contains(TokenAttr::CONTROL) {
            warnings.push(format!(
                "token {id} {:?} looks like a control token but is not typed so: made control",
                tokens[id as usize]
            ));
            *attr |= TokenAttr::CONTROL;
        }
    };
    let detect = [
        (&mut special.eot, EOT_TEXTS),
        (&mut special.eom, EOM_TEXTS),
        (&mut special.fim_pre, FIM_PRE_TEXTS),
        (&mut special.fim_suf, FIM_SUF_TEXTS),
        (&mut special.fim_mid, FIM_MID_TEXTS),
        (&mut special.fim_pad, FIM_PAD_TEXTS),
        (&mut special.fim_rep, FIM_REP_TEXTS),
        (&mut special.fim_sep, FIM_SEP_TEXTS),
    ];
    for (slot, texts) in detect {
        if slot.is_some() {
            continue;
        }
        if let Some(id) = texts.iter().find_map(|t| token_to_id.get(*t).copied()) {
            *slot = Some(id);
            make_control(id, &mut attrs, &mut warnings);
        }
    }

    // Control tokens whose text says "unused".
    for (text, attr) in tokens.iter().zip(attrs.iter_mut()) {
        if attr.contains(TokenAttr::CONTROL) && text.contains("unused") {
            *attr |= TokenAttr::UNUSED;
        }
    }

    // End-of-generation set.
    let mut eog: Vec<u32> = [special.fim_pad, special.fim_rep, special.fim_sep]
        .into_iter()
        .flatten()
        .collect();
    for text in EOG_TEXTS {
        if let Some(&id) = token_to_id.get(*text) {
            eog.push(id);
            make_control(id, &mut attrs, &mut warnings);
        }
    }
    // gpt-oss: these structural tokens are always rendered.
    for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(&id) = token_to_id.get(text) {
            attrs[id as usize] = TokenAttr::USER_DEFINED;
        }
    }
    for (id, name) in [
        (special.eos, "EOS"),
        (special.eot, "EOT"),
        (special.eom, "EOM"),
    ] {
        if let Some(id) = id {
            if !eog.contains(&id) {
                warnings.push(format!(
                    "{name} token {id} was not among the end-of-generation tokens: added"
                ));
                eog.push(id);
            }
        }
    }
    eog.sort_unstable();
    eog.dedup();
    // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
    {
        let has = |t: &str| {
            token_to_id
                .get(t)
                .is_some_and(|id| eog.binary_search(id).is_ok())
        };
        let end = token_to_id
            .get("<|end|>")
            .copied()
            .filter(|id| eog.binary_search(id).is_ok());
        if let Some(end) = end {
            if (has("<|return|>") && (has("<|call|>") || has("<|calls|>")))
                || ((has("<|call|>") || has("<|calls|>")) && has("<|flush|>"))
            {
                eog.retain(|&id| id != end);
                attrs[end as usize] = TokenAttr::USER_DEFINED;
            }
        }
    }
    // gemma4 / paddleocr: "</s>" is not an end of generation next to "<|tool_response>".
    {
        let in_eog = |t: &str| {
            token_to_id
                .get(t)
                .copied()
                .filter(|id| eog.binary_search(id).is_ok())
        };
        if let (Some(_), Some(s)) = (in_eog("<|tool_response>"), in_eog("</s>")) {
            eog.retain(|&id| id != s);
            attrs[s as usize] = TokenAttr::NORMAL;
        }
    }

    // The order in which special tokens are cut out of text: longest first.
    let mut partition_order: Vec<u32> = (0..n as u32)
        .filter(|&id| {
            attrs[id as usize]
                .intersects(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
        })
        .collect();
    partition_order.sort_by(|&a, &b| {
        tokens[b as usize]
            .len()
            .cmp(&tokens[a as usize].len())
            .then(a.cmp(&b))
    });

    // Per-model strip attributes (llama.cpp sets them by general.name).
    let name = spec.model_name.as_deref().unwrap_or("").to_lowercase();
    if name.contains("phi-3") || name.contains("phi3") {
        for &id in &partition_order {
            attrs[id as usize].set(TokenAttr::RSTRIP, true);
        }
        if let Some(&id) = token_to_id.get("</s>") {
            attrs[id as usize].set(TokenAttr::RSTRIP, true);
        }
        for text in ["<unk>", "<s>", "<|endoftext|>"] {
            if let Some(&id) = token_to_id.get(text) {
                attrs[id as usize].set(TokenAttr::RSTRIP, false);
            }
        }
    }

    let engine = match model {
        TokenizerModel::Bpe => Engine::Bpe(Box::new(BpeModel::new(
            pre,
            &pre_name,
            ignore_merges,
            &tokens,
            &token_to_id,
            &spec.merges,
            &mut warnings,
        )?)),
        TokenizerModel::Spm => Engine::Spm(Box::new(SpmModel::new(&token_to_id, special.unk))),
        TokenizerModel::Wpm => Engine::Wpm(Box::new(WpmModel::new(
            &tokens,
            &attrs,
            special.unk,
            spec.lowercase,
        )?)),
    };

    let mut tok = Tokenizer {
        model,
        pre,
        pre_name,
        tokens,
        scores,
        attrs,
        token_to_id,
        special,
        eog,
        add_bos,
        add_eos,
        add_space_prefix,
        clean_spaces,
        partition_order,
        pieces: Vec::new(),
        engine,
        warnings,
    };
    tok.pieces = (0..n as u32)
        .map(|id| render_piece(&tok, id).into_boxed_slice())
        .collect();
    Ok(tok)
}

/// The bytes of token `id` with special tokens shown (llama.cpp's `token_to_piece` with
/// `special = true`).
fn render_piece(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let attr = tok.attrs[id as usize];
    let text = tok.tokens[id as usize].as_str();
    if attr.intersects(TokenAttr::UNKNOWN | TokenAttr::CONTROL | TokenAttr::USER_DEFINED) {
        return text.as_bytes().to_vec();
    }
    if attr.contains(TokenAttr::NORMAL) {
        return match tok.model {
            TokenizerModel::Bpe => super::bpe::byte_level_decode(text),
            TokenizerModel::Spm => text.replace(super::spm::SPACE, " ").into_bytes(),
            TokenizerModel::Wpm => super::wpm::render(text),
        };
    }
    if attr.contains(TokenAttr::BYTE) {
        return match parse_byte_token(text) {
            Some(b) => vec![b],
            None => text.as_bytes().to_vec(),
        };
    }
    Vec::new()
}

/// The byte of a `<0xXX>` token.
pub(super) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::has_fim;

    #[test]
    fn fim_tokens_are_found_by_id_or_by_text() {
        let tokens: Vec<String> = ["a", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "b"]
            .map(String::from)
            .to_vec();
        assert!(has_fim([None; 3], &tokens));
        assert!(has_fim([Some(7), Some(8), Some(9)], &[]));
        assert!(has_fim([Some(7), None, None], &tokens[1..4]));
        assert!(!has_fim([None; 3], &tokens[..3]), "no middle token");
        assert!(!has_fim([Some(1), Some(2), None], &["<PRE>".to_string()]));
    }
}
