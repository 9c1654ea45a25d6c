//! Embeddings against the references (tests/data/embeddings/README.md): all-MiniLM-L6-v2
//! (BERT, as `hearth pull all-minilm` converts it) against a float64 oracle, and the
//! default (decoder) model pooled by its last token and by the mean of its tokens against
//! llama.cpp.

mod common;

use hearth_model::{Model, Pooling};
use serde_json::Value;

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Each text's tokens are the reference's, and its vector is within cosine 0.999 of
/// llama.cpp's, for both poolings; an input's vector is the same alone or in a batch.
#[test]
fn decoder_embeddings_match_the_reference() {
    let model = Model::load(common::model_path()).unwrap();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_path("embeddings/smollm2_decoder_pooling.json"))
            .unwrap(),
    )
    .unwrap();
    let texts = r["texts"].as_array().unwrap();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .zip(r["token_ids_llama_tokenize"].as_array().unwrap())
        .map(|(t, want)| {
            let got = model.tokenizer.encode(t.as_str().unwrap(), true, true);
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(got, want, "tokens of {t}");
            got
        })
        .collect();
    let inputs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    for (name, pooling) in [("last", Pooling::Last), ("mean", Pooling::Mean)] {
        let got = model.embed(&inputs, pooling).unwrap();
        let want = r["vectors"][name].as_array().unwrap();
        let mut worst = 1.0f64;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let cos = cosine(g, &floats(w));
            assert!(cos >= 0.999, "{name} pooling, text {i}: cosine {cos}");
            worst = worst.min(cos);
        }
        eprintln!(
            "{name} pooling: lowest cosine {worst:.6} over {} texts",
            got.len()
        );
        // Batch invariance: the first text alone gives the same bits.
        assert_eq!(model.embed(&inputs[..1], pooling).unwrap()[0], got[0]);
    }
}

/// all-MiniLM-L6-v2 on the 30 reference texts, from the oracle's token ids: within cosine
/// 0.9999 of the float64 forward pass, and the same bits alone as in the batch.
#[test]
fn bert_embeddings_match_the_float64_oracle() {
    let model = Model::load(common::minilm_path()).unwrap();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_path("embeddings/minilm_numpy.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<Vec<u32>> = r["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let inputs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let got = model.embed(&inputs, Pooling::Mean).unwrap();
    let mut worst = 1.0f64;
    for (i, (g, w)) in got.iter().zip(r["vectors"].as_array().unwrap()).enumerate() {
        let cos = cosine(g, &floats(w));
        assert!(cos >= 0.9999, "text {i}: cosine {cos}");
        worst = worst.min(cos);
    }
    eprintln!(
        "all-MiniLM-L6-v2: lowest cosine {worst:.8} over {} texts",
        got.len()
    );
    for i in [0, 7, inputs.len() - 1] {
        assert_eq!(
            model.embed(&inputs[i..=i], Pooling::Mean).unwrap()[0],
            got[i]
        );
    }
    // An encoder embeds and does not generate.
    let mut kv = model.new_kv_cache(8, hearth_model::KvType::F32);
    assert!(model
        .forward(&hearth_model::Batch::contiguous(&ids[0], 0, false), &mut kv)
        .is_err());
}

/// all-MiniLM-L6-v2 from text, with Hearth's WordPiece, against llama.cpp's vectors from
/// its own: within cosine 0.9999 on every text but the two it tokenizes wrongly (Hangul,
/// Devanagari vowel signs), where Hearth follows the model's tokenizer instead.
#[test]
fn bert_embeddings_from_text_match_llama_cpp_where_it_tokenizes_right() {
    let model = Model::load(common::minilm_path()).unwrap();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_path("embeddings/minilm_llamacpp_f32.json")).unwrap(),
    )
    .unwrap();
    let wrong: Vec<u64> = r["tokenization_differs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(wrong, [25, 28]);
    let ids: Vec<Vec<u32>> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| model.tokenizer.encode(t.as_str().unwrap(), true, false))
        .collect();
    let inputs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let got = model.embed(&inputs, Pooling::Mean).unwrap();
    for (i, (g, w)) in got
        .iter()
        .zip(r["vectors_f32"].as_array().unwrap())
        .enumerate()
    {
        let cos = cosine(g, &floats(w));
        if wrong.contains(&(i as u64)) {
            assert!(
                cos < 0.9999,
                "text {i} was expected to differ: cosine {cos}"
            );
        } else {
            assert!(cos >= 0.9999, "text {i}: cosine {cos}");
        }
    }
}
