//! The tokenizer against llama.cpp's output for the default model (tests/data/tokenize.json,
//! tests/data/gpl-3.txt), plus hand-made vocabularies for what that model does not cover
//! (SentencePiece, other pre-tokenizers, special-token rules, streaming).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use hearth_model::tokenizer::{
    PreTokenizer, TokenAttr, Tokenizer, TokenizerError, TokenizerModel, TokenizerSpec,
};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// `$HEARTH_TEST_MODEL`, else `$HEARTH_MODELS/<file>`, else `~/.cache/hearth/models/<file>`.
fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let dir = match std::env::var_os("HEARTH_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth/models")
        }
    };
    dir.join(MODEL_FILE)
}

/// The default model's tokenizer, loaded once through hearth-gguf.
fn smollm() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = model_path();
        assert!(
            path.exists(),
            "model file {} not found: run `hearth pull` to download the default model \
             (or point HEARTH_TEST_MODEL at a copy of {MODEL_FILE})",
            path.display()
        );
        let file = hearth_gguf::GgufFile::open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        Tokenizer::from_gguf(&file)
            .unwrap_or_else(|e| panic!("building the tokenizer of {}: {e}", path.display()))
    })
}

/// A piece in tokenize.json: a string when valid UTF-8, else a list of byte values.
fn piece_bytes(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|b| b.as_u64().expect("byte value") as u8)
            .collect(),
        other => panic!("unexpected piece {other}"),
    }
}

#[test]
fn reference_cases_match_llama_cpp() {
    let tok = smollm();
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("tokenize.json"))
            .expect("tests/data/tokenize.json"),
    )
    .expect("tokenize.json is JSON");
    assert_eq!(cases.len(), 31);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let parse_special = case["parse_special"].as_bool().unwrap();
        let add_special = case["add_special"].as_bool().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, add_special, parse_special);
        if got != want {
            failures.push(format!(
                "case {i} {text:?}: ids {got:?}, llama.cpp {want:?}"
            ));
            continue;
        }
        if let Some(pieces) = case.get("pieces").and_then(|p| p.as_array()) {
            let got: Vec<Vec<u8>> = want
                .iter()
                .map(|&id| tok.token_to_piece(id, true).to_vec())
                .collect();
            let want: Vec<Vec<u8>> = pieces.iter().map(piece_bytes).collect();
            if got != want {
                failures.push(format!(
                    "case {i} {text:?}: pieces {got:?}, llama.cpp {want:?}"
                ));
            }
        }
        let back = tok.decode(&want, true);
        if back != text {
            failures.push(format!("case {i} {text:?}: decodes to {back:?}"));
        }
        if let Some(d) = case.get("detokenized").and_then(|d| d.as_str()) {
            if back != d {
                failures.push(format!(
                    "case {i} {text:?}: decodes to {back:?}, llama.cpp {d:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn gpl3_has_the_reference_token_count() {
    let tok = smollm();
    let text = std::fs::read_to_string(data_dir().join("gpl-3.txt")).expect("tests/data/gpl-3.txt");
    let start = Instant::now();
    let ids = tok.encode(&text, true, false);
    let elapsed = start.elapsed();
    eprintln!(
        "gpl-3.txt: {} bytes -> {} tokens in {:.2?}",
        text.len(),
        ids.len(),
        elapsed
    );
    assert_eq!(ids.len(), 7639);
    assert_eq!(tok.decode(&ids, false), text);
}

#[test]
fn default_model_metadata() {
    let tok = smollm();
    assert_eq!(tok.model(), TokenizerModel::Bpe);
    assert_eq!(tok.pre_tokenizer(), PreTokenizer::StarCoder);
    assert_eq!(tok.pre_tokenizer_name(), "smollm");
    assert_eq!(tok.n_vocab(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eot_id(), Some(2));
    assert!(!tok.add_bos());
    assert!(!tok.add_eos());
    assert!(tok.is_eog(0) && tok.is_eog(2));
    assert!(!tok.is_eog(1) && !tok.is_eog(19556));
    assert_eq!(tok.special_token("<|im_start|>"), Some(1));
    assert_eq!(tok.special_token("<|im_end|>"), Some(2));
    assert_eq!(tok.special_token("Hello"), None);
    assert_eq!(tok.token_id("Hello"), Some(19556));
    assert_eq!(tok.token_text(1), "<|im_start|>");
    assert_eq!(tok.token_text(905), "Ġworld");
    assert!(tok.token_attr(1).contains(TokenAttr::CONTROL));
    // Control tokens render only on request.
    assert_eq!(tok.token_to_piece(2, false), b"");
    assert_eq!(tok.token_to_piece(2, true), b"<|im_end|>");
    assert_eq!(tok.decode(&[1, 4093, 2], false), "user");
    assert_eq!(tok.token_to_piece(u32::MAX, true), b"");
    assert!(
        tok.warnings().iter().all(|w| !w.contains("pre-tokenizer")),
        "{:?}",
        tok.warnings()
    );
}

#[test]
fn bytes_missing_from_the_vocabulary_are_dropped_like_llama_cpp() {
    let tok = smollm();
    assert_eq!(
        tok.token_id("ē"),
        None,
        "byte 0x13 has no token in this vocabulary"
    );
    // Three words, "a" "\x13" "b"; the middle one has no token.
    assert_eq!(
        tok.encode("a\u{13}b", false, false),
        [tok.token_id("a").unwrap(), tok.token_id("b").unwrap()]
    );
    assert!(
        tok.warnings().iter().any(|w| w.contains("0x13")),
        "{:?}",
        tok.warnings()
    );
}

#[test]
fn streaming_never_splits_a_character() {
    let tok = smollm();
    let text = "I love pizza 🍕🍕 and 🤖! Привет, 你好 — ça va?";
    let ids = tok.encode(text, false, false);
    let mut stream = tok.stream_decoder(false);
    let mut out = String::new();
    let mut held_back = false;
    for &id in &ids {
        let chunk = stream.push(id);
        held_back |= !stream.pending().is_empty();
        assert!(!chunk.contains('\u{FFFD}'), "chunk {chunk:?}");
        out.push_str(&chunk);
    }
    out.push_str(&stream.finish());
    assert!(held_back, "the emoji should arrive in several byte tokens");
    assert_eq!(out, text);
}

/// Encodes random text and checks that decoding gives it back (a small deterministic fuzz).
#[test]
fn random_text_round_trips() {
    let tok = smollm();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let pool: Vec<char> = "aZ09 \t\n\r  .,;'\"!?-_()[]{}<>|/\\@#$%^&*~`+=éàüßøÅñçœ日本語中文한국어עבריתالعربيةहिन्दी🍕🤖👍🏽🇫🇷\u{301}\u{200d}\u{a0}\u{3000}\u{85}\u{2028}\u{feff}\u{0}\u{7f}"
        .chars()
        .collect();
    for round in 0..400 {
        let len = (rng.next() % 60) as usize;
        let text: String = if round % 4 == 3 {
            // Any scalar value, assigned or not.
            (0..len)
                .filter_map(|_| char::from_u32((rng.next() % 0x11_0000) as u32))
                .collect()
        } else if round % 4 == 2 {
            // Random bytes, made valid.
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..len)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize])
                .collect()
        };
        // The vocabulary lacks the byte tokens of a few bytes (0x04, 0x13, 0xF5.., …): like
        // llama.cpp, the tokenizer drops them, so characters using them cannot come back.
        let text: String = text
            .chars()
            .filter(|c| {
                c.to_string()
                    .bytes()
                    .all(|b| tok.token_id(&byte_char(b).to_string()).is_some())
            })
            .collect();
        let ids = tok.encode(&text, false, false);
        assert_eq!(tok.decode(&ids, false), text, "ids {ids:?}");
        // With special parsing, the special-token texts come back too.
        let with_special = format!("<|im_start|>{text}<|im_end|>");
        let ids = tok.encode(&with_special, false, true);
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(tok.decode(&ids, true), with_special);
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---------------------------------------------------------------------------------------
// Hand-made vocabularies.

/// GPT-2's byte-level character of byte `b`.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return b as char;
    }
    let k = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(0x100 + k).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte tokens (id = byte), then `extra` tokens made
/// by `merges` (in byte-level spelling), then `specials` as control tokens.
fn bpe_spec(pre: &str, merges: &[&str], specials: &[(&str, i32)]) -> TokenizerSpec {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    for m in merges {
        let t = m.replace(' ', "");
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    let mut types = vec![1; tokens.len()];
    for (text, ty) in specials {
        tokens.push(text.to_string());
        types.push(*ty);
    }
    TokenizerSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: Some(types),
        merges: merges.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    }
}

fn bpe(pre: &str, merges: &[&str], specials: &[(&str, i32)]) -> Tokenizer {
    Tokenizer::from_spec(bpe_spec(pre, merges, specials)).unwrap()
}

fn texts(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| tok.token_text(id).to_string())
        .collect()
}

#[test]
fn bpe_merges_lowest_rank_first() {
    // "l o" outranks "l l": hello = h e l lo, not he ll o.
    let tok = bpe("gpt-2", &["l o", "h e", "l l", "he ll", "hell o"], &[]);
    assert_eq!(
        texts(&tok, &tok.encode("hello", false, false)),
        ["he", "l", "lo"]
    );
    let tok = bpe("gpt-2", &["h e", "l l", "he ll", "hell o", "l o"], &[]);
    assert_eq!(texts(&tok, &tok.encode("hello", false, false)), ["hello"]);
    // Words do not merge across the pre-tokenizer's cuts; space is Ġ.
    let tok = bpe("gpt-2", &["Ġ h", "Ġh e"], &[]);
    assert_eq!(
        texts(&tok, &tok.encode("he he", false, false)),
        ["h", "e", "Ġhe"]
    );
    assert_eq!(
        tok.decode(&tok.encode("he he", false, false), false),
        "he he"
    );
}

#[test]
fn decode_cleans_spaces_where_the_pre_tokenizer_asks() {
    // gpt-2 (like llama-bpe and default) has llama.cpp's clean_spaces; smollm does not.
    let tok = bpe("gpt-2", &["a b"], &[]);
    assert_eq!(
        tok.decode(&tok.encode("a , b 's", false, false), false),
        "a, b's"
    );
    assert_eq!(
        smollm().decode(&smollm().encode("a , b 's", false, false), false),
        "a , b 's"
    );
}

#[test]
fn tokenizer_can_be_shared_between_threads() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

#[test]
fn bpe_default_bos_eos_and_add_special() {
    let mut spec = bpe_spec(
        "llama-bpe",
        &["h e"],
        &[("<|begin_of_text|>", 3), ("<|eot_id|>", 3)],
    );
    spec.bos_id = Some(257);
    spec.eos_id = Some(258);
    let tok = Tokenizer::from_spec(spec).unwrap();
    // The Llama 3 pre-tokenizer adds BOS by default.
    assert!(tok.add_bos());
    assert_eq!(tok.encode("he", true, false), [257, 256]);
    assert_eq!(tok.encode("he", false, false), [256]);
    assert_eq!(tok.eot_id(), Some(258));
    assert!(tok.is_eog(258));
    let mut spec = bpe_spec("llama-bpe", &["h e"], &[]);
    spec.add_bos = Some(true);
    spec.bos_id = None;
    // gpt2 vocabularies default BOS to id 11 when the file names none.
    assert_eq!(
        Tokenizer::from_spec(spec).unwrap().encode("x", true, false),
        [11, b'x' as u32]
    );
}

#[test]
fn special_tokens_are_parsed_only_on_request_but_user_defined_always() {
    let tok = bpe(
        "gpt-2",
        &["h i"],
        &[("<|im_start|>", 3), ("<tool>", 4), ("<|im_start|>x", 3)],
    );
    let (start, tool, longer) = (257, 258, 259);
    assert_eq!(tok.encode("<|im_start|>hi", false, true), [start, 256]);
    assert_eq!(
        tok.encode("<|im_start|>xhi", false, true),
        [longer, 256],
        "longest special token first"
    );
    let plain = tok.encode("<|im_start|>hi", false, false);
    assert!(!plain.contains(&start) && plain.len() > 3);
    assert_eq!(tok.decode(&plain, false), "<|im_start|>hi");
    // User-defined tokens are cut out even without parse_special and always render.
    assert_eq!(tok.encode("hi<tool>hi", false, false), [256, tool, 256]);
    assert_eq!(tok.decode(&[256, tool, start], false), "hi<tool>");
    assert_eq!(
        tok.decode(&[256, tool, start], true),
        "hi<tool><|im_start|>"
    );
    assert_eq!(tok.special_token("<tool>"), Some(tool));
}

#[test]
fn pre_tokenizers_cut_like_llama_cpp() {
    let cut = |pre: &str, text: &str| -> Vec<String> {
        bpe(pre, &["a b"], &[])
            .pre_tokenize(text)
            .into_iter()
            .map(String::from)
            .collect()
    };
    let text = "Hello WORLD'S 12345 ,,\n\n  x";
    assert_eq!(
        cut("gpt-2", text),
        ["Hello", " WORLD", "'", "S", " 12345", " ,,", "\n\n ", " x"]
    );
    assert_eq!(
        cut("llama-bpe", text),
        ["Hello", " WORLD", "'S", " ", "123", "45", " ,,\n\n", " ", " x"]
    );
    assert_eq!(
        cut("qwen2", text),
        ["Hello", " WORLD", "'S", " ", "1", "2", "3", "4", "5", " ,,\n\n", " ", " x"]
    );
    assert_eq!(
        cut("smollm", "x 2024's"),
        ["x", " ", "2", "0", "2", "4", "'s"]
    );
    assert_eq!(
        cut("default", "a+b=c... 12345 it's"),
        ["a", "+", "b", "=", "c", "...", " ", "123", "45", " it", "'", "s"]
    );
    // Unicode classes: letters, numbers, marks and whitespace beyond ASCII.
    assert_eq!(
        cut("gpt-2", "naïve café ٣٤ 日本\u{3000}語"),
        ["naïve", " café", " ٣٤", " 日本", "\u{3000}", "語"]
    );
    assert_eq!(
        cut("llama-bpe", "🍕🍕 and\u{a0}🤖"),
        ["🍕🍕", " and", "\u{a0}", "🤖"]
    );
    // Cuts cover the text exactly.
    for pre in [
        "gpt-2",
        "llama-bpe",
        "qwen2",
        "smollm",
        "default",
        "falcon",
        "tekken",
        "gpt-4o",
        "deepseek-v3",
        "viking",
    ] {
        let text = "It's 2024!  Ünïcödé\tand 🤖\r\n  end ";
        assert_eq!(cut(pre, text).concat(), text, "{pre}");
    }
}

#[test]
fn unknown_pre_tokenizer_falls_back_to_default_with_a_warning() {
    let tok = bpe("no-such-pre", &["a b"], &[]);
    assert_eq!(tok.pre_tokenizer(), PreTokenizer::Default);
    assert!(
        tok.warnings().iter().any(|w| w.contains("no-such-pre")),
        "{:?}",
        tok.warnings()
    );
}

#[test]
fn construction_errors_are_explained() {
    let mut spec = bpe_spec("gpt-2", &["a b"], &[]);
    spec.model = "rwkv".into();
    let err = Tokenizer::from_spec(spec).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownModel(_)));
    assert!(err.to_string().contains("rwkv"));

    let mut spec = bpe_spec("gpt-2", &["a b"], &[]);
    spec.merges.push("a zz".into());
    let err = Tokenizer::from_spec(spec).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnknownMergeToken { ref token, .. } if token == "zz"),
        "{err}"
    );

    let mut spec = bpe_spec("gpt-2", &["a b"], &[]);
    spec.tokens.push("ab".into());
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::DuplicateToken { .. })
    ));

    let mut spec = bpe_spec("gpt-2", &["a b"], &[]);
    spec.merges.clear();
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::MissingMerges)
    ));

    let spec = TokenizerSpec {
        model: "llama".into(),
        ..Default::default()
    };
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::EmptyVocabulary)
    ));

    let mut spec = bpe_spec("gpt-2", &["a b"], &[]);
    spec.token_types = Some(vec![1; 3]);
    assert!(matches!(
        Tokenizer::from_spec(spec),
        Err(TokenizerError::LengthMismatch { .. })
    ));
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, optionally the 256 byte tokens, then
/// `pieces` with their scores and `user` user-defined tokens.
fn spm(pieces: &[(&str, f32)], byte_tokens: bool, user: &[&str]) -> Tokenizer {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    if byte_tokens {
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    for u in user {
        tokens.push(u.to_string());
        types.push(4);
        scores.push(0.0);
    }
    Tokenizer::from_spec(TokenizerSpec {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        ..Default::default()
    })
    .unwrap()
}

const PIECES: &[(&str, f32)] = &[
    ("▁", -1.0),
    ("▁h", -2.0),
    ("▁he", -3.0),
    ("ll", -1.5),
    ("▁hell", -2.5),
    ("▁hello", -1.0),
    ("h", -5.0),
    ("e", -5.0),
    ("l", -5.0),
    ("o", -5.0),
    ("w", -5.0),
    ("r", -5.0),
    ("d", -5.0),
    ("▁w", -2.0),
    ("or", -2.0),
    ("ld", -2.0),
    ("▁wor", -3.0),
    ("▁world", -1.0),
];

#[test]
fn spm_merges_highest_score_first() {
    let tok = spm(PIECES, true, &[]);
    assert_eq!(tok.model(), TokenizerModel::Spm);
    assert!(tok.add_bos() && tok.add_space_prefix());
    let ids = tok.encode("hello world", false, false);
    assert_eq!(texts(&tok, &ids), ["▁hello", "▁world"]);
    assert_eq!(tok.decode(&ids, false), "hello world");
    // BOS in front with add_special; the leading space is only removed from the first piece.
    let ids = tok.encode("hello", true, false);
    assert_eq!(ids[0], 1);
    assert_eq!(texts(&tok, &ids[1..]), ["▁hello"]);
    assert_eq!(tok.decode(&ids, true), "<s> hello");

    // A higher-scored "lo" changes the segmentation: ▁ h e l l o → ▁he l lo.
    let mut pieces = PIECES.to_vec();
    pieces.push(("lo", -0.5));
    let tok = spm(&pieces, true, &[]);
    assert_eq!(
        texts(&tok, &tok.encode("hello", false, false)),
        ["▁he", "l", "lo"]
    );

    // Equal scores: the leftmost pair goes first.
    let tok = spm(&[("▁", -1.0), ("a", -1.0), ("aa", -1.0)], true, &[]);
    assert_eq!(
        texts(&tok, &tok.encode("aaa", false, false)),
        ["▁", "aa", "a"]
    );
}

#[test]
fn spm_byte_fallback_and_unknown() {
    let tok = spm(PIECES, true, &[]);
    let ids = tok.encode("hé", false, false);
    assert_eq!(texts(&tok, &ids), ["▁h", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&ids, false), "hé");
    assert_eq!(tok.token_to_piece(ids[1], false), [0xC3]);
    // Without byte tokens, unknown characters become <unk>, once per byte.
    let tok = spm(PIECES, false, &[]);
    let ids = tok.encode("hé", false, false);
    assert_eq!(ids[1..], [0, 0]);
    assert_eq!(tok.decode(&ids, false), "h");
    assert_eq!(tok.decode(&ids, true), "h<unk><unk>");
}

#[test]
fn spm_special_tokens_and_space_prefix() {
    let tok = spm(PIECES, true, &["<tool>"]);
    let tool = tok.token_id("<tool>").unwrap();
    // After a special token, the text gets its space prefix again.
    let ids = tok.encode("<s>hello</s>world", false, true);
    assert_eq!(texts(&tok, &ids), ["<s>", "▁hello", "</s>", "▁world"]);
    // Without parse_special, "<s>" is text (here: bytes).
    let ids = tok.encode("<s>hello", false, false);
    assert_eq!(texts(&tok, &ids)[..4], ["▁", "<0x3C>", "<0x73>", "<0x3E>"]);
    assert_eq!(tok.decode(&ids, false), "<s>hello");
    // User-defined tokens are always cut out and rendered verbatim.
    let ids = tok.encode("hello<tool>world", false, false);
    assert_eq!(texts(&tok, &ids), ["▁hello", "<tool>", "▁world"]);
    assert_eq!(tok.decode(&ids, false), "hello<tool> world");
    assert_eq!(tool, ids[1]);
    assert!(tok.is_eog(2) && !tok.is_eog(1));
    assert_eq!(tok.encode("", true, false), [1]);
    assert!(tok.encode("", false, false).is_empty());
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    let tok = bpe("gpt-2", &["a b"], &[]);
    let emoji = "🍕".as_bytes(); // F0 9F 8D 95: four byte tokens (id = byte here)
    let mut stream = tok.stream_decoder(false);
    for &b in &emoji[..3] {
        assert_eq!(stream.push(b as u32), "");
    }
    assert_eq!(stream.pending(), &emoji[..3]);
    assert_eq!(stream.push(emoji[3] as u32), "🍕");
    // A byte that cannot continue the sequence: U+FFFD for the broken part, then the rest.
    let mut stream = tok.stream_decoder(false);
    assert_eq!(stream.push(0xF0), "");
    assert_eq!(stream.push(b'a' as u32), "\u{FFFD}a");
    assert_eq!(stream.push(0xFF), "\u{FFFD}");
    assert_eq!(stream.push(0xE2), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
    // Same result as decoding everything at once.
    let ids = [0xF0, b'a' as u32, 0xFF, 0xE2, 0x82, 0xAC];
    let mut stream = tok.stream_decoder(false);
    let streamed: String =
        ids.iter().map(|&id| stream.push(id)).collect::<String>() + &stream.finish();
    assert_eq!(streamed, tok.decode(&ids, false));
    assert_eq!(streamed, "\u{FFFD}a\u{FFFD}€");
}
