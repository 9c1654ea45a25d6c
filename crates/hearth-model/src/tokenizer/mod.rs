//! Text ⇄ token ids, reproducing llama.cpp's tokenizers for GGUF vocabularies.
//!
//! Three vocabulary kinds are supported:
//!
//! * **byte-level BPE** (`tokenizer.ggml.model = "gpt2"`): the text is cut into words by
//!   the regexes named by `tokenizer.ggml.pre` ([`PreTokenizer`]), every byte of a word is
//!   mapped to its GPT-2 "byte-level" character, and the merges are applied lowest rank
//!   first (see `bpe.rs`);
//! * **SentencePiece** (`tokenizer.ggml.model = "llama"`): spaces become `▁` (U+2581), an
//!   optional space is put in front, and adjacent pieces are merged highest score first,
//!   with `<0xXX>` byte tokens for characters the vocabulary lacks (see `spm.rs`);
//! * **WordPiece** (`tokenizer.ggml.model = "bert"`): BERT's normalization (control
//!   characters out, CJK ideographs spaced out, accents stripped and lowercased for an
//!   uncased vocabulary), words split at whitespace and punctuation, and each word cut
//!   longest piece first (see `wpm.rs`). This one follows the model's own Hugging Face
//!   tokenizer rather than llama.cpp's, which mangles Hangul and Indic vowel signs.
//!
//! Before any of them runs, special tokens are cut out of the text (`special.rs`): control
//! tokens (`<|im_start|>`, …) only when the caller asks for it (`parse_special`),
//! user-defined tokens always, as llama.cpp does.
//!
//! Decoding is byte exact: [`Tokenizer::token_to_piece`] gives the raw bytes of a token,
//! [`Tokenizer::decode`] joins them (invalid UTF-8 becomes U+FFFD) and
//! [`StreamDecoder`] turns a stream of ids into text without ever splitting a character.

mod bpe;
mod gguf;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod wpm;

use std::collections::HashMap;

pub use gguf::gguf_has_fim;
pub use pretokenize::PreTokenizer;
pub use special::TokenAttr;
pub use stream::StreamDecoder;

use bpe::BpeModel;
use special::Fragment;
use spm::SpmModel;
use wpm::WpmModel;

/// A token id: an index into the vocabulary.
pub type TokenId = u32;

/// Everything that can go wrong while building a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names an algorithm this crate does not implement.
    #[error("unknown tokenizer model {0:?} (supported: \"gpt2\" = byte-level BPE, \"llama\" = SentencePiece, \"bert\" = WordPiece)")]
    UnknownModel(String),
    /// A metadata key the tokenizer cannot do without is absent from the GGUF file.
    #[error("the GGUF file has no {0} (it carries no tokenizer, or not one this crate can read)")]
    MissingKey(&'static str),
    /// The vocabulary has no tokens at all.
    #[error("the vocabulary is empty")]
    EmptyVocabulary,
    /// Two ids share one token text.
    #[error("duplicate token {text:?} in the vocabulary: ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    /// A per-token array is shorter than the vocabulary.
    #[error("{what} has {got} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// A BPE vocabulary came without merges.
    #[error("byte-level BPE vocabulary without merges (tokenizer.ggml.merges)")]
    MissingMerges,
    /// A merge rule refers to a token that is not in the vocabulary.
    #[error("merge #{index} {merge:?} names {token:?}, which is not in the vocabulary")]
    UnknownMergeToken {
        index: usize,
        merge: String,
        token: String,
    },
    /// `add_bos` / `add_eos` is set but the token it would add is not.
    #[error("{flag} is true but the model has no {token} token")]
    MissingSpecialToken {
        flag: &'static str,
        token: &'static str,
    },
    /// A WordPiece vocabulary has no token for the words it cannot cut into pieces.
    #[error("WordPiece vocabulary without an unknown token (no tokenizer.ggml.unknown_token_id inside the vocabulary, and no \"[UNK]\" token)")]
    MissingUnknownToken,
    /// A pre-tokenizer regex failed to compile (a bug in this crate's tables).
    #[error("pre-tokenizer {pre:?}: regex {pattern:?} does not compile: {message}")]
    BadRegex {
        pre: String,
        pattern: String,
        message: String,
    },
}

/// The tokenization algorithm of a vocabulary (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenizerModel {
    /// `"gpt2"`: byte-level BPE with merge ranks.
    Bpe,
    /// `"llama"`: SentencePiece, score-driven merging with byte fallback.
    Spm,
    /// `"bert"`: WordPiece, BERT's normalization and greedy longest-match cutting.
    Wpm,
}

impl TokenizerModel {
    /// The model named by `tokenizer.ggml.model`, if supported.
    pub fn from_gguf_name(name: &str) -> Option<TokenizerModel> {
        match name {
            "gpt2" => Some(TokenizerModel::Bpe),
            "llama" => Some(TokenizerModel::Spm),
            "bert" => Some(TokenizerModel::Wpm),
            _ => None,
        }
    }

    /// The `tokenizer.ggml.model` value of this model.
    pub fn gguf_name(self) -> &'static str {
        match self {
            TokenizerModel::Bpe => "gpt2",
            TokenizerModel::Spm => "llama",
            TokenizerModel::Wpm => "bert",
        }
    }
}

/// A tokenizer described by plain data: what a GGUF file stores under `tokenizer.ggml.*`.
///
/// `None` means "not stated": the model's default applies, as in llama.cpp (for example
/// SentencePiece vocabularies default to BOS = 1, EOS = 2, UNK = 0, add BOS, add a space
/// prefix; BPE ones to no space prefix and, unless the pre-tokenizer says otherwise, no BOS;
/// WordPiece ones to `[CLS]` … `[SEP]` around the text and `[UNK]`, found by their text).
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: `"gpt2"`, `"llama"` or `"bert"`.
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary (ignored for SPM and
    /// WordPiece).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the text of every token, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SPM merge priorities); all zero when absent.
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte); all normal when absent.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, highest priority first (BPE only).
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// End of turn; detected from the token texts (`<|im_end|>`, `<|eot_id|>`, …) if unset.
    pub eot_id: Option<u32>,
    /// End of message (`<|eom_id|>`); detected from the token texts if unset.
    pub eom_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub sep_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub mask_id: Option<u32>,
    pub fim_pre_id: Option<u32>,
    pub fim_suf_id: Option<u32>,
    pub fim_mid_id: Option<u32>,
    pub fim_pad_id: Option<u32>,
    pub fim_rep_id: Option<u32>,
    pub fim_sep_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.normalizer.lowercase`: whether a WordPiece vocabulary is uncased
    /// (lowercase and strip accents). Converters write it only when true, so when absent
    /// the vocabulary decides: uncased if lowercasing changes none of its pieces. Ignored
    /// by the other models.
    pub lowercase: Option<bool>,
    /// `general.name`: llama.cpp tweaks special-token attributes for a few models by name.
    pub model_name: Option<String>,
}

/// Ids of the tokens with a role; `None` where the vocabulary has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

enum Engine {
    Bpe(Box<BpeModel>),
    Spm(Box<SpmModel>),
    Wpm(Box<WpmModel>),
}

/// A loaded tokenizer. Immutable once built; `Send + Sync`, so one can serve many threads.
pub struct Tokenizer {
    model: TokenizerModel,
    pre: PreTokenizer,
    pre_name: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attrs: Vec<TokenAttr>,
    token_to_id: HashMap<String, u32>,
    special: SpecialTokens,
    /// Sorted ids that end generation.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    /// Control, user-defined and unknown tokens, longest text first: the order in which
    /// they are cut out of the input.
    partition_order: Vec<u32>,
    /// The bytes of every token as rendered with `special = true`.
    pieces: Vec<Box<[u8]>>,
    engine: Engine,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model)
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.tokens.len())
            .field("special", &self.special)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from its plain-data description. See [`TokenizerSpec`] for the
    /// defaults that apply to unset fields. Problems that llama.cpp tolerates (an unknown
    /// pre-tokenizer, a special-token id outside the vocabulary, …) are not errors: they
    /// are listed by [`Tokenizer::warnings`].
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer, TokenizerError> {
        special::build(spec)
    }

    /// Encodes `text`.
    ///
    /// * `add_special`: add BOS / EOS where the model asks for them ([`Tokenizer::add_bos`],
    ///   [`Tokenizer::add_eos`]).
    /// * `parse_special`: recognise the text of control tokens (`<|im_start|>`, `<s>`, …) as
    ///   those tokens; otherwise it is encoded as ordinary text. User-defined tokens are
    ///   always recognised.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = special::partition(self, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        match &self.engine {
            Engine::Bpe(bpe) => {
                if add_special && self.add_bos {
                    out.extend(self.special.bos);
                }
                let mut scratch = bpe::Scratch::default();
                for fragment in &fragments {
                    match *fragment {
                        Fragment::Text(start, end) => {
                            bpe.encode(self, &text[start..end], &mut out, &mut scratch)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Engine::Spm(spm) => {
                if add_special && self.add_bos {
                    out.extend(self.special.bos);
                }
                // A space goes in front of the text at the start and after every special token.
                let mut after_special = true;
                let mut buf = String::new();
                for fragment in &fragments {
                    match *fragment {
                        Fragment::Text(start, end) => {
                            buf.clear();
                            if self.add_space_prefix && after_special {
                                buf.push(spm::SPACE);
                            }
                            for c in text[start..end].chars() {
                                buf.push(if c == ' ' { spm::SPACE } else { c });
                            }
                            spm.encode(self, &buf, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                    }
                }
            }
            Engine::Wpm(wpm) => {
                if add_special && self.add_bos {
                    out.extend(self.special.bos);
                }
                let mut scratch = wpm::Scratch::default();
                for fragment in &fragments {
                    match *fragment {
                        Fragment::Text(start, end) => {
                            wpm.encode(self, &text[start..end], &mut out, &mut scratch)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.special.eos);
        }
        out
    }

    /// The words the pre-tokenizer of a BPE vocabulary cuts `text` into (special tokens
    /// are not looked for); the whole text, if not empty, for SentencePiece. For WordPiece,
    /// the spans of `text` that BERT's split makes words (whitespace between words, each
    /// punctuation character and CJK ideograph alone), as written: the encoder normalizes
    /// (lowercases, strips accents, drops control characters) before it splits.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Vec<&'t str> {
        match &self.engine {
            Engine::Bpe(bpe) => bpe.split(text),
            Engine::Spm(_) => [text].into_iter().filter(|t| !t.is_empty()).collect(),
            Engine::Wpm(_) => {
                let mut words = Vec::new();
                wpm::split_words(text, |w| words.push(w));
                words
            }
        }
    }

    /// The bytes token `id` stands for. Control and unknown tokens render as their text
    /// only with `special = true` (llama.cpp's `special` flag) and as nothing otherwise;
    /// unused tokens and ids outside the vocabulary render as nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(piece) = self.pieces.get(id as usize) else {
            return &[];
        };
        if !special && self.attrs[id as usize].intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
            return &[];
        }
        piece
    }

    /// The bytes of `ids`, as llama.cpp's `llama_detokenize` (without removing BOS/EOS):
    /// the pieces joined, minus the leading space a SentencePiece model put in front, and
    /// for pre-tokenizers that ask for it (`gpt-2`, `llama-bpe`, `default`, …) the
    /// " ," / " ." / " 's" clean-up of spaces.
    ///
    /// WordPiece text is words separated by spaces, as the model's own decoder gives it:
    /// word-initial pieces bring their space, continuation pieces join, a special token
    /// shown (`special`) is a word of its own, the text does not start with a space, and
    /// the clean-up of spaces applies (`"hello , world !"` → `"hello, world!"`).
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut strip_space = self.add_space_prefix;
        let wordpiece = self.model == TokenizerModel::Wpm;
        for &id in ids {
            let mut piece = self.token_to_piece(id, special);
            if wordpiece {
                if out.is_empty() {
                    piece = piece.strip_prefix(b" ").unwrap_or(piece);
                } else if !piece.is_empty()
                    && !out.ends_with(b" ")
                    && self.attrs[id as usize].intersects(
                        TokenAttr::CONTROL | TokenAttr::UNKNOWN | TokenAttr::USER_DEFINED,
                    )
                {
                    out.push(b' ');
                }
                out.extend_from_slice(piece);
                continue;
            }
            if strip_space {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
                strip_space = false;
            }
            out.extend_from_slice(piece);
        }
        if self.clean_spaces {
            clean_up_spaces(&mut out);
        }
        out
    }

    /// The text of `ids` (see [`Tokenizer::decode_bytes`]); invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        match String::from_utf8(self.decode_bytes(ids, special)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// An incremental decoder for generated tokens; see [`StreamDecoder`].
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, special)
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    /// The algorithm of this vocabulary.
    pub fn model(&self) -> TokenizerModel {
        self.model
    }

    /// The pre-tokenizer in use (BPE), [`PreTokenizer::Default`] for SentencePiece.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// The pre-tokenizer name as the file gave it (`tokenizer.ggml.pre`), or the name of the
    /// one used instead.
    pub fn pre_tokenizer_name(&self) -> &str {
        &self.pre_name
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    pub fn eot_id(&self) -> Option<u32> {
        self.special.eot
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.special.unk
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }

    /// All the role tokens (BOS, EOS, EOT, FIM, …).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Whether `id` ends generation: EOS, EOT, EOM and tokens such as `<|im_end|>`,
    /// `<|endoftext|>`, `<end_of_turn>`, collected by text as llama.cpp does.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `encode(.., add_special = true, ..)` puts BOS in front.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether a space is put in front of the text (SentencePiece; never for WordPiece,
    /// whose pieces carry their own `▁`).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// The vocabulary text of `id` (byte-level or `▁`-escaped as stored); `""` outside the
    /// vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The attributes of `id` (normal, control, …); empty outside the vocabulary.
    pub fn token_attr(&self, id: u32) -> TokenAttr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }

    /// The score of `id` (SentencePiece merge priority); 0 outside the vocabulary.
    pub fn token_score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The id of the token whose vocabulary text is exactly `text`, of any kind.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// The id of the control, user-defined or unknown token whose text is `text`
    /// (`"<|im_end|>"` → 2), `None` for ordinary tokens.
    pub fn special_token(&self, text: &str) -> Option<u32> {
        let id = self.token_id(text)?;
        self.attrs[id as usize]
            .intersects(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
            .then_some(id)
    }

    /// What was tolerated while building: unknown pre-tokenizer, ids out of range, ….
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// llama.cpp's detokenizer clean-up (`clean_spaces`): drops the space before `?!.,`, the
/// spaces around a lone apostrophe, and the space before `'s 'm 're 've`.
fn clean_up_spaces(text: &mut Vec<u8>) {
    if text.is_empty() {
        return;
    }
    // " ?" " !" " ." " ,"  →  "?" "!" "." ","
    let src = std::mem::take(text);
    let mut out = Vec::with_capacity(src.len());
    out.push(src[0]);
    for i in 1..src.len() {
        let c = src[i];
        if src[i - 1] == b' ' && matches!(c, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(c);
    }
    // " ' "  →  "'"; the character after the removed space does not see a space before it.
    let mut src = out;
    let mut out = Vec::with_capacity(src.len());
    out.push(src[0]);
    let mut i = 1;
    while i < src.len() {
        let c = src[i];
        if c == b'\'' && i + 1 < src.len() && src[i - 1] == b' ' && src[i + 1] == b' ' {
            out.pop();
            src[i + 1] = 0;
            out.push(c);
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    // " 's" " 'm" " 're" " 've"  →  "'s" "'m" "'re" "'ve"
    let src = out;
    let mut out = Vec::with_capacity(src.len());
    out.push(src[0]);
    for i in 1..src.len() {
        let c = src[i];
        if src[i - 1] == b' ' && c == b'\'' && i + 1 < src.len() {
            let c1 = src[i + 1];
            let c2 = src.get(i + 2).copied();
            let contraction = matches!(c1, b's' | b'm')
                || matches!((c1, c2), (b'r', Some(b'e')) | (b'v', Some(b'e')));
            if contraction {
                out.pop();
            }
        }
        out.push(c);
    }
    *text = out;
}

#[cfg(test)]
mod tests {
    use super::clean_up_spaces;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(
            clean("it 's I 'm we 're you 've they 'll 't"),
            "it's I'm we're you've they 'll 't"
        );
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }
}
