//! Reranking against a float64 oracle (tests/data/rerank/README.md): a small random-weight
//! `BertForSequenceClassification` cross-encoder, converted by `hearth convert`'s library,
//! tokenized by Hearth into `[CLS] query [SEP] document [SEP]` with the document's token
//! type 1, scored by the pooler and classifier, and compared with the numpy forward pass
//! of the model's own (Hugging Face) computation.

mod common;

use std::path::PathBuf;

use hearth_convert::OutType;
use hearth_model::encoder::EncoderInput;
use hearth_model::{Model, Pooling};
use serde_json::Value;

struct Oracle {
    pairs: Vec<(String, String)>,
    token_ids: Vec<Vec<u32>>,
    n_first: Vec<usize>,
    scores: Vec<f64>,
}

fn oracle() -> Oracle {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_path("rerank/tiny_numpy.json")).unwrap(),
    )
    .unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Oracle {
        pairs: r["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_owned(),
                    p[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        token_ids: r["token_ids"].as_array().unwrap().iter().map(ids).collect(),
        // The type ids are 0 then 1: the first segment's length is the count of zeros.
        n_first: r["type_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let t = ids(t);
                let n = t.iter().take_while(|&&x| x == 0).count();
                assert!(t[n..].iter().all(|&x| x == 1), "type ids {t:?}");
                n
            })
            .collect(),
        scores: r["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
    }
}

fn folder() -> PathBuf {
    common::data_path("rerank/tiny-cross-encoder")
}

/// The cross-encoder converted to `out` in a temporary directory, loaded.
fn model(out: OutType) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("tiny-cross-encoder-{out}.gguf"));
    hearth_convert::convert_file(&folder(), &path, out).unwrap();
    let model = Model::load(&path).unwrap();
    (dir, model)
}

/// Hearth's inputs for the oracle's pairs, from its own tokenizer.
fn inputs(model: &Model, o: &Oracle) -> Vec<(Vec<u32>, usize)> {
    o.pairs
        .iter()
        .map(|(q, d)| {
            let q = model.tokenizer.encode(q, false, false);
            let d = model.tokenizer.encode(d, false, false);
            model
                .rerank_input(&q, &d, model.config.n_ctx_train, false)
                .unwrap()
        })
        .collect()
}

fn batch(inputs: &[(Vec<u32>, usize)]) -> Vec<EncoderInput<'_>> {
    inputs
        .iter()
        .map(|(t, n)| EncoderInput {
            tokens: t,
            n_first: *n,
        })
        .collect()
}

/// Largest |Hearth - oracle| over the pairs.
fn max_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn pairs_tokenize_as_the_models_own_tokenizer() {
    let o = oracle();
    let (_dir, model) = model(OutType::F32);
    assert_eq!(model.config.pooling, Some(Pooling::Rank));
    assert!(model.can_rerank());
    for (i, (ids, n_first)) in inputs(&model, &o).into_iter().enumerate() {
        assert_eq!(ids, o.token_ids[i], "pair {i}: {:?}", o.pairs[i]);
        assert_eq!(n_first, o.n_first[i], "pair {i}: token types");
    }
}

#[test]
fn f32_scores_match_the_oracle() {
    let o = oracle();
    let (_dir, model) = model(OutType::F32);
    let inputs = inputs(&model, &o);
    let got = model.rerank(&batch(&inputs)).unwrap();
    let diff = max_diff(&got, &o.scores);
    eprintln!(
        "f32: max |score - oracle| = {diff:.3e} over {} pairs",
        got.len()
    );
    assert!(diff < 1e-5, "f32 scores {got:?} vs oracle {:?}", o.scores);
}

#[test]
fn f16_and_q8_0_scores_stay_close() {
    let o = oracle();
    // Q8_0 of 32-wide random rows is coarse: a bound, not the ranking.
    for (out, bound) in [(OutType::F16, 0.01), (OutType::Q8_0, 0.15)] {
        let (_dir, model) = model(out);
        let inputs = inputs(&model, &o);
        let got = model.rerank(&batch(&inputs)).unwrap();
        let diff = max_diff(&got, &o.scores);
        eprintln!("{out}: max |score - oracle| = {diff:.3e}");
        assert!(diff < bound, "{out}: {got:?} vs {:?}", o.scores);
    }
}

/// A pair's score is the same alone, in a batch, and in a batch in another order, bit
/// for bit, with float and quantized weights.
#[test]
fn scores_do_not_depend_on_the_batch() {
    let o = oracle();
    for out in [OutType::F32, OutType::Q8_0] {
        let (_dir, model) = model(out);
        let inputs = inputs(&model, &o);
        let all = model.rerank(&batch(&inputs)).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            let alone = model.rerank(&batch(std::slice::from_ref(input))).unwrap();
            assert_eq!(
                alone[0].to_bits(),
                all[i].to_bits(),
                "{out}: pair {i} alone"
            );
        }
        let reversed: Vec<_> = inputs.iter().rev().cloned().collect();
        let rev = model.rerank(&batch(&reversed)).unwrap();
        for (i, s) in rev.iter().rev().enumerate() {
            assert_eq!(s.to_bits(), all[i].to_bits(), "{out}: pair {i} reversed");
        }
    }
}

/// The oracle would catch a model that fed every token type 0 (llama.cpp's way): the
/// scores move well beyond the bound.
#[test]
fn the_document_is_token_type_one() {
    let o = oracle();
    let (_dir, model) = model(OutType::F32);
    let inputs = inputs(&model, &o);
    let all_zero: Vec<EncoderInput> = inputs
        .iter()
        .map(|(t, _)| EncoderInput {
            tokens: t,
            n_first: t.len(),
        })
        .collect();
    let got = model.rerank(&all_zero).unwrap();
    let diff = max_diff(&got, &o.scores);
    assert!(diff > 0.05, "type ids made no difference ({diff})");
}

#[test]
fn long_pairs_are_refused_or_cut_longest_first() {
    let (_dir, model) = model(OutType::F32);
    let q: Vec<u32> = (2000..2010).collect();
    let d: Vec<u32> = (2000..2200).collect();
    let n_ctx = model.config.n_ctx_train;
    assert!(model.rerank_input(&q, &d, n_ctx, false).is_err());
    let (ids, n_first) = model.rerank_input(&q, &d, n_ctx, true).unwrap();
    assert_eq!(ids.len(), n_ctx);
    assert_eq!(n_first, 12, "the shorter query is kept whole");
    assert_eq!(&ids[1..11], &q[..]);
    assert_eq!(ids[n_ctx - 1], ids[11], "ends with the separator");
    // Both parts long: each cut to about half.
    let q: Vec<u32> = (2000..2300).collect();
    let (ids, n_first) = model.rerank_input(&q, &d, n_ctx, true).unwrap();
    assert_eq!(ids.len(), n_ctx);
    assert_eq!(n_first, 2 + (n_ctx - 3).div_ceil(2));
    assert!(model.rerank(&batch(&[(ids, n_first)])).unwrap()[0].is_finite());
}

#[test]
fn bad_inputs_are_errors() {
    let (_dir, model) = model(OutType::F32);
    let too_far = [101u32, 4000, 102];
    assert!(model
        .rerank(&[EncoderInput {
            tokens: &too_far,
            n_first: 2
        }])
        .is_err());
    assert!(model
        .rerank(&[EncoderInput {
            tokens: &[],
            n_first: 0
        }])
        .is_err());
    assert!(model
        .rerank(&[EncoderInput {
            tokens: &[101, 102],
            n_first: 3
        }])
        .is_err());
    // A reranker does not embed, and an embedding model does not rerank.
    assert!(model.embed(&[&[101, 102]], Pooling::Rank).is_err());
    if common::models_dir()
        .join("all-minilm-l6-v2-f32.gguf")
        .is_file()
    {
        let minilm = Model::load(common::minilm_path()).unwrap();
        assert!(!minilm.can_rerank());
        let e = minilm
            .rerank(&[EncoderInput {
                tokens: &[101, 102],
                n_first: 1,
            }])
            .unwrap_err();
        assert!(e.to_string().contains("no classification head"), "{e}");
    }
}
