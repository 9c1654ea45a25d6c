//! WordPiece (`tokenizer.ggml.model = "bert"`) against the model's own tokenizer: the
//! vocabulary of all-MiniLM-L6-v2 as converted to GGUF (`hearth pull all-minilm`), and the
//! ids Hugging Face `tokenizers` gives for 30 texts in many scripts
//! (`tests/data/embeddings/minilm_numpy.json`, from the shared embedding reference). Two of
//! them, Korean and Hindi, are where llama.cpp's WordPiece goes wrong; Hearth must not.

mod common;

use hearth_gguf::GgufFile;
use hearth_model::tokenizer::{Tokenizer, TokenizerModel};

/// The reference texts and Hugging Face's ids for them ([CLS] … [SEP] included).
fn reference() -> (Vec<String>, Vec<Vec<u32>>) {
    let path = common::data_path("embeddings/minilm_numpy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("minilm_numpy.json");
    let texts: Vec<String> = serde_json::from_value(json["texts"].clone()).expect("texts");
    let ids: Vec<Vec<u32>> = serde_json::from_value(json["token_ids"].clone()).expect("token_ids");
    assert_eq!(texts.len(), 30);
    assert_eq!(ids.len(), texts.len());
    (texts, ids)
}

fn minilm() -> Tokenizer {
    let path = common::minilm_path();
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn minilm_ids_match_hugging_face_on_every_reference_text() {
    let tok = minilm();
    assert_eq!(tok.model(), TokenizerModel::Wpm);
    assert_eq!(tok.n_vocab(), 30522);
    assert_eq!(tok.bos_id(), Some(101));
    assert_eq!(tok.eos_id(), Some(102));
    assert_eq!(tok.unk_id(), Some(100));
    assert_eq!(tok.pad_id(), Some(0));
    assert!(tok.add_bos() && tok.add_eos());

    let (texts, expected) = reference();
    let mut wrong = Vec::new();
    for (i, (text, want)) in texts.iter().zip(&expected).enumerate() {
        // Hugging Face cuts special-token text out of the input; none of these has any, so
        // parse_special changes nothing here.
        for parse_special in [false, true] {
            let got = tok.encode(text, true, parse_special);
            if &got != want {
                wrong.push(format!(
                    "#{i} {text:?} (parse_special {parse_special}):\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} texts differ from Hugging Face's ids:\n{}",
        wrong.len() / 2,
        texts.len(),
        wrong.join("\n")
    );
}

#[test]
fn minilm_decodes_to_words() {
    let tok = minilm();
    let ids = tok.encode("Hello world! Playing Ångström", true, false);
    assert_eq!(tok.decode(&ids, false), "hello world! playing angstrom");
    assert_eq!(
        tok.decode(&ids, true),
        "[CLS] hello world! playing angstrom [SEP]"
    );
    assert_eq!(tok.token_to_piece(101, false), b"");
    assert_eq!(tok.token_to_piece(101, true), b"[CLS]");
    // Special-token text is a token only when asked for.
    assert_eq!(
        tok.encode("[SEP]", false, true),
        tok.eos_id().into_iter().collect::<Vec<_>>()
    );
    assert_eq!(tok.encode("[SEP]", false, false).len(), 3);
}
