//! WordPiece (`tokenizer.ggml.model = "bert"`): BERT's tokenizer, as the model's own
//! Hugging Face tokenizer (`tokenizer.json`: `BertNormalizer`, `BertPreTokenizer`,
//! `WordPiece`) runs it. llama.cpp's WordPiece is not the reference: it keeps only the
//! leading consonant of a Hangul syllable and drops Indic spacing vowel signs.
//!
//! A stretch of text (what is left between special tokens) goes through three steps:
//!
//! 1. **Normalize.** NUL, U+FFFD and the control characters (categories Cc, Cf and Co,
//!    except tab, newline and carriage return) are dropped; every other whitespace
//!    character becomes a space; a space goes on each side of a CJK ideograph. Then, for an
//!    uncased vocabulary, accents are stripped, the text decomposed (NFD) and its
//!    nonspacing marks (Mn) dropped, and it is lowercased. Only Mn goes: a Hangul
//!    syllable decomposes into jamo, which are letters (Lo) and stay, so "한" is looked
//!    up as "ᄒ" "ᅡ" "ᆫ"; a Devanagari spacing vowel sign (Mc, "ा") stays while a virama
//!    or a nukta (Mn) goes. A vocabulary is uncased when
//!    `tokenizer.ggml.normalizer.lowercase` says so. Converters write that key only when
//!    it is true, so without it the vocabulary decides: uncased if lowercasing changes
//!    none of its pieces (BERT's uncased vocabularies have no letter with a lowercase
//!    form, cased ones have many; this also reads files from converters that predate the
//!    key).
//! 2. **Split into words** at whitespace; every punctuation character (the ASCII ranges
//!    `!`–`/`, `:`–`@`, `[`–`` ` ``, `{`–`~` and any Unicode P* character) is a word of
//!    its own.
//! 3. **WordPiece.** Each word is cut from the left, taking at each position the longest
//!    vocabulary piece that matches there: a word-initial piece at the start, a
//!    continuation piece (`##ing` in `vocab.txt`) after it. A word of more than 100
//!    characters, or one with a position where no piece matches, becomes a single unknown
//!    token (`[UNK]`), not a partial cut.
//!
//! In GGUF the vocabulary is spelled as llama.cpp's converter writes `vocab.txt`: a
//! word-initial piece with a `▁` (U+2581) in front, a continuation piece without its
//! `##`, control tokens (`[CLS]`, `[SEP]`, …) as they are. "playing" is therefore looked
//! up as `▁playing`, `▁playin`, …, `▁play`, then `ing`. Control and unknown tokens never
//! match a piece; they are cut out of the text beforehand (`special.rs`), and only when
//! the caller asks for special tokens.
//!
//! `tokenizer.ggml.pre` plays no part here. The converter names a pre-tokenizer by the
//! tokens it sees on a test text, and an uncased BERT vocabulary is labelled "jina-v2-en"
//! that way; every WordPiece vocabulary gets the BERT split above, whatever the name.
//!
//! Decoding: a word-initial piece renders with a space in front, a continuation piece
//! joins the previous one (see [`render`] and `Tokenizer::decode_bytes`).
//!
//! The character classes come from `unicode-general-category` (Unicode 16) and the
//! decomposition from `unicode-normalization`, so characters assigned after the Unicode
//! version of the reference tokenizer's tables can be classified differently by the two.

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

use super::special::TokenAttr;
use super::{Tokenizer, TokenizerError};

/// Marks a word-initial piece in the GGUF spelling of the vocabulary.
pub(super) const WORD_START: char = '\u{2581}';

/// A word of more characters than this is one unknown token (BERT's
/// `max_input_chars_per_word`).
pub(super) const MAX_WORD_CHARS: usize = 100;

/// The WordPiece part of a [`Tokenizer`]; the vocabulary itself is the tokenizer's.
#[derive(Debug, Clone)]
pub(super) struct WpmModel {
    /// The token of a word that cannot be cut into pieces.
    unk: u32,
    /// Strip accents and lowercase (an uncased vocabulary).
    uncased: bool,
    /// The most characters a piece has (without its `▁`): no longer match is tried.
    max_piece_chars: usize,
}

/// Buffers reused by the words of one `encode` call.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    cleaned: String,
    normalized: String,
    initial: String,
    ends: Vec<usize>,
}

/// Whether a token of these attributes can be a piece of a word.
fn is_piece(attr: TokenAttr) -> bool {
    !attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN | TokenAttr::UNUSED)
}

impl WpmModel {
    /// The model over `tokens` (GGUF spelling) with their attributes. `unk` is the unknown
    /// token; a WordPiece vocabulary cannot do without one. `lowercase` is the file's
    /// `tokenizer.ggml.normalizer.lowercase`; when absent, the vocabulary is uncased if
    /// lowercasing changes none of its pieces.
    pub(super) fn new(
        tokens: &[String],
        attrs: &[TokenAttr],
        unk: Option<u32>,
        lowercase: Option<bool>,
    ) -> Result<WpmModel, TokenizerError> {
        let unk = unk.ok_or(TokenizerError::MissingUnknownToken)?;
        let pieces = || {
            tokens
                .iter()
                .zip(attrs)
                .filter(|(_, &attr)| is_piece(attr))
                .map(|(text, _)| text.strip_prefix(WORD_START).unwrap_or(text))
        };
        let max_piece_chars = pieces().map(|p| p.chars().count()).max().unwrap_or(0);
        let uncased = lowercase.unwrap_or_else(|| !pieces().any(|p| p.chars().any(has_lowercase)));
        Ok(WpmModel {
            unk,
            uncased,
            max_piece_chars,
        })
    }

    /// Appends the ids of `text` (no special tokens in it) to `out`.
    pub(super) fn encode(
        &self,
        tok: &Tokenizer,
        text: &str,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
    ) {
        let mut normalized = std::mem::take(&mut scratch.normalized);
        normalize(text, self.uncased, &mut scratch.cleaned, &mut normalized);
        split_words(&normalized, |word| {
            self.encode_word(tok, word, scratch, out)
        });
        scratch.normalized = normalized;
    }

    /// Cuts one word into pieces, longest match first, or makes it one unknown token.
    fn encode_word(&self, tok: &Tokenizer, word: &str, scratch: &mut Scratch, out: &mut Vec<u32>) {
        if word.len() > MAX_WORD_CHARS && word.chars().count() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let Scratch { initial, ends, .. } = scratch;
        initial.clear();
        initial.push(WORD_START);
        initial.push_str(word);
        let marker = WORD_START.len_utf8();
        let first = out.len();
        let mut start = 0;
        while start < word.len() {
            let rest = &word[start..];
            ends.clear();
            ends.extend(
                rest.char_indices()
                    .take(self.max_piece_chars)
                    .map(|(i, c)| i + c.len_utf8()),
            );
            let hit = ends.iter().rev().find_map(|&end| {
                let key = if start == 0 {
                    &initial[..marker + end]
                } else {
                    &rest[..end]
                };
                piece_id(tok, key).map(|id| (id, end))
            });
            match hit {
                Some((id, end)) => {
                    out.push(id);
                    start += end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// Whether lowercasing changes `c`. An uppercase letter without a lowercase form (`ℝ`)
/// does not count: uncased vocabularies keep such letters.
fn has_lowercase(c: char) -> bool {
    let mut lower = c.to_lowercase();
    !(lower.next() == Some(c) && lower.next().is_none())
}

/// The id of the piece spelled `key` in the GGUF vocabulary, if it is one.
fn piece_id(tok: &Tokenizer, key: &str) -> Option<u32> {
    let id = *tok.token_to_id.get(key)?;
    is_piece(tok.attrs[id as usize]).then_some(id)
}

/// The bytes of a piece: a word-initial piece (`▁play`) with a space in front, a
/// continuation piece (`ing`) as it is.
pub(super) fn render(text: &str) -> Vec<u8> {
    match text.strip_prefix(WORD_START) {
        Some(rest) => {
            let mut out = Vec::with_capacity(rest.len() + 1);
            out.push(b' ');
            out.extend_from_slice(rest.as_bytes());
            out
        }
        None => text.as_bytes().to_vec(),
    }
}

/// BERT's normalization of `text` into `out` (step 1 of the module's description);
/// `cleaned` is a scratch buffer.
pub(super) fn normalize(text: &str, uncased: bool, cleaned: &mut String, out: &mut String) {
    cleaned.clear();
    out.clear();
    for c in text.chars() {
        if c == '\0' || c == '\u{FFFD}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_cjk_ideograph(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    if !uncased {
        out.push_str(cleaned);
    } else if cleaned.is_ascii() {
        // Nothing to decompose and no marks: only the case changes.
        out.push_str(cleaned);
        out.make_ascii_lowercase();
    } else {
        for c in cleaned.nfd() {
            if get_general_category(c) != GeneralCategory::NonspacingMark {
                out.extend(c.to_lowercase());
            }
        }
    }
}

/// Calls `word` with each word of `text` in order: runs between whitespace, with every
/// punctuation character and every CJK ideograph a word of its own (step 2; ideographs
/// are already spaced out in normalized text, this only matters for
/// [`Tokenizer::pre_tokenize`] on raw text).
pub(super) fn split_words<'t>(text: &'t str, mut word: impl FnMut(&'t str)) {
    let mut start = None;
    for (i, c) in text.char_indices() {
        let alone = is_punctuation(c) || is_cjk_ideograph(c);
        if alone || is_whitespace(c) {
            if let Some(s) = start.take() {
                word(&text[s..i]);
            }
            if alone {
                word(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        word(&text[s..]);
    }
}

/// Dropped by normalization: categories Cc, Cf and Co, except tab, newline and carriage
/// return (which count as whitespace).
fn is_control(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control | GeneralCategory::Format | GeneralCategory::PrivateUse
    )
}

/// Becomes a space, and separates words: Unicode White_Space.
fn is_whitespace(c: char) -> bool {
    c.is_whitespace()
}

/// A word of its own: ASCII punctuation (which includes symbols such as `$`, `+`, `^`)
/// or any Unicode punctuation category (Pc, Pd, Ps, Pe, Pi, Pf, Po).
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::ConnectorPunctuation
            | GeneralCategory::DashPunctuation
            | GeneralCategory::OpenPunctuation
            | GeneralCategory::ClosePunctuation
            | GeneralCategory::InitialPunctuation
            | GeneralCategory::FinalPunctuation
            | GeneralCategory::OtherPunctuation
    )
}

/// The ideographs BERT spaces out: the CJK Unified Ideographs block, extensions A to F as
/// the reference tokenizer bounds them, and the compatibility ideographs. Hiragana,
/// katakana and Hangul are not among them: those scripts' words are cut like any other.
fn is_cjk_ideograph(c: char) -> bool {
    const RANGES: [(u32, u32); 8] = [
        (0x3400, 0x4DBF),   // extension A
        (0x4E00, 0x9FFF),   // the main block
        (0xF900, 0xFAFF),   // compatibility ideographs
        (0x20000, 0x2A6DF), // extension B
        (0x2A700, 0x2B73F), // extension C
        (0x2B740, 0x2B81F), // extension D
        (0x2B920, 0x2CEAF), // extension E (as the reference bounds it) and F
        (0x2F800, 0x2FA1F), // compatibility ideographs supplement
    ];
    let c = c as u32;
    c >= 0x3400 && RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::super::{Tokenizer, TokenizerError, TokenizerSpec};
    use super::*;

    /// A small uncased vocabulary in GGUF spelling: `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`,
    /// `[MASK]` (control), then `pieces` (normal).
    fn spec(pieces: &[&str]) -> TokenizerSpec {
        let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let mut types = vec![3; tokens.len()];
        for p in pieces {
            tokens.push(p.to_string());
            types.push(1);
        }
        TokenizerSpec {
            model: "bert".into(),
            pre: Some("jina-v2-en".into()),
            tokens,
            token_types: Some(types),
            ..Default::default()
        }
    }

    fn wpm(pieces: &[&str]) -> Tokenizer {
        Tokenizer::from_spec(spec(pieces)).unwrap()
    }

    /// The vocabulary texts of `text`'s ids, without [CLS] / [SEP].
    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        tok.encode(text, false, false)
            .iter()
            .map(|&id| tok.token_text(id).to_string())
            .collect()
    }

    const VOCAB: &[&str] = &[
        "▁hello", "▁world", "▁play", "ing", "ed", "▁un", "▁,", "▁!", "▁.", "▁'", "▁[", "▁]", "▁cl",
        "s", "▁s", "▁a", "a", "▁cafe", "▁naive", "▁我", "▁爱", "▁中", "▁hi", "▁$", "▁i", "▁ab",
        "▁x", "▁-", "▁—", "▁«", "▁»",
    ];

    #[test]
    fn roles_and_defaults_from_the_vocabulary() {
        let tok = wpm(VOCAB);
        assert_eq!(tok.model(), super::super::TokenizerModel::Wpm);
        assert_eq!(tok.bos_id(), Some(2));
        assert_eq!(tok.eos_id(), Some(3));
        assert_eq!(tok.unk_id(), Some(1));
        assert_eq!(tok.pad_id(), Some(0));
        assert!(tok.add_bos() && tok.add_eos() && !tok.add_space_prefix());
        assert_eq!(tok.pre_tokenizer_name(), "jina-v2-en");
        let hello = tok.token_id("▁hello").unwrap();
        let world = tok.token_id("▁world").unwrap();
        assert_eq!(tok.encode("Hello world", true, false), [2, hello, world, 3]);
        assert_eq!(tok.encode("", true, false), [2, 3]);
        assert!(tok.encode("", false, false).is_empty());
        assert!(tok.encode(" \t\n ", false, false).is_empty());
    }

    #[test]
    fn punctuation_is_a_word_of_its_own() {
        let tok = wpm(VOCAB);
        assert_eq!(
            pieces(&tok, "Hello,world!!"),
            ["▁hello", "▁,", "▁world", "▁!", "▁!"]
        );
        // ASCII symbols count as punctuation; so do Unicode P* characters.
        assert_eq!(pieces(&tok, "$a-x"), ["▁$", "▁a", "▁-", "▁x"]);
        assert_eq!(pieces(&tok, "«a—x»"), ["▁«", "▁a", "▁—", "▁x", "▁»"]);
        assert_eq!(pieces(&tok, "i'a."), ["▁i", "▁'", "▁a", "▁."]);
    }

    #[test]
    fn accents_are_stripped_and_case_folded() {
        let tok = wpm(VOCAB);
        assert_eq!(pieces(&tok, "CAFÉ Naïve"), ["▁cafe", "▁naive"]);
        // Decomposed input is the same text.
        assert_eq!(pieces(&tok, "cafe\u{301}"), ["▁cafe"]);
        // U+0130 decomposes to I + a dot above (Mn), which goes before lowercasing.
        assert_eq!(pieces(&tok, "\u{130}"), ["▁i"]);
    }

    #[test]
    fn cased_vocabulary_keeps_case_and_accents() {
        let mut s = spec(&["▁Café", "▁cafe", "▁Hello"]);
        s.lowercase = Some(false);
        let tok = Tokenizer::from_spec(s).unwrap();
        assert_eq!(pieces(&tok, "Café Hello"), ["▁Café", "▁Hello"]);
        assert_eq!(pieces(&tok, "cafe hello"), ["▁cafe", "[UNK]"]);
    }

    #[test]
    fn without_the_lowercase_key_the_vocabulary_decides() {
        // Uppercase pieces: a cased vocabulary.
        let tok = wpm(&["▁Café", "▁cafe", "▁hello"]);
        assert_eq!(pieces(&tok, "Café hello"), ["▁Café", "▁hello"]);
        assert_eq!(pieces(&tok, "Hello"), ["[UNK]"]);
        // The key wins over the vocabulary.
        let mut s = spec(&["▁Café", "▁cafe", "▁hello"]);
        s.lowercase = Some(true);
        let tok = Tokenizer::from_spec(s).unwrap();
        assert_eq!(pieces(&tok, "Café Hello"), ["▁cafe", "▁hello"]);
    }

    #[test]
    fn cjk_ideographs_are_spaced_out() {
        let tok = wpm(VOCAB);
        assert_eq!(pieces(&tok, "我爱中"), ["▁我", "▁爱", "▁中"]);
        assert_eq!(pieces(&tok, "hi我a"), ["▁hi", "▁我", "▁a"]);
        // Kana are not ideographs: a run of them is one word (here not in the vocabulary).
        assert_eq!(pieces(&tok, "です"), ["[UNK]"]);
    }

    #[test]
    fn hangul_and_devanagari_keep_their_letters() {
        // 한 = ᄒ ᅡ ᆫ under NFD; the jamo are letters, not marks.
        let tok = wpm(&["▁ᄒ", "ᅡ", "ᆫ", "▁नमसत", "▁दनिया"]);
        assert_eq!(pieces(&tok, "한"), ["▁ᄒ", "ᅡ", "ᆫ"]);
        // नमस्ते: the virama and the vowel sign E are Mn and go.
        assert_eq!(pieces(&tok, "नमस्ते"), ["▁नमसत"]);
        // दुनिया: the vowel sign U is Mn and goes; I and AA are Mc and stay.
        assert_eq!(pieces(&tok, "दुनिया"), ["▁दनिया"]);
    }

    #[test]
    fn continuation_pieces_longest_first() {
        let tok = wpm(&["▁play", "▁p", "ing", "in", "g", "ed", "▁un", "play"]);
        assert_eq!(pieces(&tok, "playing"), ["▁play", "ing"]);
        assert_eq!(pieces(&tok, "played"), ["▁play", "ed"]);
        assert_eq!(pieces(&tok, "unplayed"), ["▁un", "play", "ed"]);
        // A continuation piece never starts a word.
        assert_eq!(pieces(&tok, "ing"), ["[UNK]"]);
    }

    #[test]
    fn a_word_without_a_full_cut_is_one_unknown() {
        let tok = wpm(VOCAB);
        // "play" + "ing" match but "z" does not: the whole word is [UNK].
        assert_eq!(pieces(&tok, "playingz hello"), ["[UNK]", "▁hello"]);
        assert_eq!(pieces(&tok, "zzz"), ["[UNK]"]);
    }

    #[test]
    fn an_overlong_word_is_one_unknown() {
        let tok = wpm(VOCAB);
        let ok = "a".repeat(MAX_WORD_CHARS);
        let ids = pieces(&tok, &ok);
        assert_eq!(ids.len(), MAX_WORD_CHARS);
        assert_eq!(ids[0], "▁a");
        assert!(ids[1..].iter().all(|p| p == "a"));
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert_eq!(pieces(&tok, &format!("{long} hello")), ["[UNK]", "▁hello"]);
        // Characters, not bytes, are counted: 100 two-byte characters still get cut.
        let tok = wpm(&["▁é", "é"]);
        let mut s = spec(&["▁é", "é"]);
        s.lowercase = Some(false);
        let cased = Tokenizer::from_spec(s).unwrap();
        assert_eq!(
            pieces(&cased, &"é".repeat(MAX_WORD_CHARS)).len(),
            MAX_WORD_CHARS
        );
        assert_eq!(pieces(&tok, "é"), ["[UNK]"]); // uncased: é → e, not in the vocabulary
    }

    #[test]
    fn control_characters_go_and_whitespace_separates() {
        let tok = wpm(VOCAB);
        assert_eq!(pieces(&tok, "a\u{200B}b\u{0}"), ["▁ab"]);
        assert_eq!(pieces(&tok, "a\u{FFFD}b\u{7}"), ["▁ab"]);
        assert_eq!(
            pieces(&tok, "hi\tworld\u{A0}a\u{3000}x\r\n"),
            ["▁hi", "▁world", "▁a", "▁x"]
        );
        // U+0085 is a control character first: it is dropped, not a space.
        assert_eq!(pieces(&tok, "a\u{85}b"), ["▁ab"]);
    }

    #[test]
    fn special_tokens_only_when_asked() {
        let tok = wpm(VOCAB);
        let hi = tok.token_id("▁hi").unwrap();
        assert_eq!(tok.encode("[CLS]hi[SEP]", false, true), [2, hi, 3]);
        assert_eq!(pieces(&tok, "[CLS] hi"), ["▁[", "▁cl", "s", "▁]", "▁hi"]);
        // The text around a special token is normalized on its own.
        assert_eq!(tok.encode("[MASK]HI", true, true), [2, 4, hi, 3]);
    }

    #[test]
    fn decode_spaces_words_and_joins_continuations() {
        let tok = wpm(&["▁hello", "▁play", "ing", "▁,", "▁!", "▁world"]);
        let ids = tok.encode("Hello, playing world!", true, false);
        assert_eq!(tok.decode(&ids, false), "hello, playing world!");
        assert_eq!(tok.decode(&ids, true), "[CLS] hello, playing world! [SEP]");
        let play = tok.token_id("▁play").unwrap();
        let ing = tok.token_id("ing").unwrap();
        assert_eq!(tok.token_to_piece(play, false), b" play");
        assert_eq!(tok.token_to_piece(ing, false), b"ing");
        assert_eq!(tok.token_to_piece(2, false), b"");
        assert_eq!(tok.token_to_piece(2, true), b"[CLS]");
        assert_eq!(tok.decode(&[1, play, ing, 1], true), "[UNK] playing [UNK]");
        assert_eq!(tok.decode(&[1, play, ing, 1], false), "playing");
        assert_eq!(tok.decode(&[ing, play], false), "ing play");
    }

    #[test]
    fn pre_tokenize_gives_the_raw_words() {
        let tok = wpm(VOCAB);
        assert_eq!(
            tok.pre_tokenize("Héllo, wörld!我爱 x"),
            ["Héllo", ",", "wörld", "!", "我", "爱", "x"]
        );
    }

    #[test]
    fn hostile_vocabularies_are_errors_not_panics() {
        assert!(matches!(
            Tokenizer::from_spec(TokenizerSpec {
                model: "bert".into(),
                ..Default::default()
            }),
            Err(TokenizerError::EmptyVocabulary)
        ));
        // No [UNK] anywhere.
        let s = TokenizerSpec {
            model: "bert".into(),
            tokens: vec!["▁a".into(), "b".into()],
            ..Default::default()
        };
        assert!(matches!(
            Tokenizer::from_spec(s),
            Err(TokenizerError::MissingUnknownToken)
        ));
        // An unknown-token id outside the vocabulary is ignored, leaving none.
        let s = TokenizerSpec {
            model: "bert".into(),
            tokens: vec!["▁a".into()],
            unk_id: Some(7),
            ..Default::default()
        };
        assert!(matches!(
            Tokenizer::from_spec(s),
            Err(TokenizerError::MissingUnknownToken)
        ));
        // Only control tokens: everything is unknown, and nothing panics.
        let tok = wpm(&[]);
        assert_eq!(
            tok.encode("anything at all 我", true, false),
            [2, 1, 1, 1, 1, 3]
        );
        // The unknown token found by id, not by text; no [CLS] / [SEP]: none added.
        let tok = Tokenizer::from_spec(TokenizerSpec {
            model: "bert".into(),
            tokens: vec!["<unk>".into(), "▁a".into()],
            unk_id: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert!(!tok.add_bos() && !tok.add_eos());
        assert_eq!(tok.encode("a b", true, false), [1, 0]);
    }

    #[test]
    fn normalize_matches_the_description() {
        let mut cleaned = String::new();
        let mut out = String::new();
        normalize("Ångström 北京", true, &mut cleaned, &mut out);
        assert_eq!(out, "angstrom  北  京 ");
        normalize("Ångström", false, &mut cleaned, &mut out);
        assert_eq!(out, "Ångström");
        let mut words = Vec::new();
        split_words("a.b  c", |w| words.push(w));
        assert_eq!(words, ["a", ".", "b", "c"]);
    }
}
