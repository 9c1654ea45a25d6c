//! The fast forward pass against the naive f32 oracle, and batch invariance: a prompt
//! prefilled in one batch gives exactly the logits of feeding it token by token.

mod common;

use hearth_model::reference::ReferenceModel;
use hearth_model::{Batch, KvType, Model};

fn softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = l.iter().map(|&v| ((v - m) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[test]
fn fast_forward_matches_naive_f32_oracle() {
    let model = Model::load(common::model_path()).unwrap();
    let mut oracle = ReferenceModel::load(&model);
    let tokens = model.tokenizer.encode(
        "The quick brown fox jumps over the lazy dog because",
        true,
        true,
    );
    let mut kv = model.new_kv_cache(64, KvType::F32);
    let fast = model
        .forward(&Batch::contiguous(&tokens, 0, true), &mut kv)
        .unwrap();
    let (mut worst, mut tv_sum) = (0.0f64, 0.0f64);
    for (i, &t) in tokens.iter().enumerate() {
        let slow = oracle.step(t);
        let (pf, ps) = (softmax(fast.row(i)), softmax(&slow));
        let diff = pf
            .iter()
            .zip(&ps)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let tv = 0.5 * pf.iter().zip(&ps).map(|(a, b)| (a - b).abs()).sum::<f64>();
        eprintln!("position {i}: max |dp| {diff:.4}, total variation {tv:.4}");
        worst = worst.max(diff);
        tv_sum += tv;
    }
    // The fast path quantizes activations to 8 bits (as the reference engine does); the
    // oracle keeps them in f32. This small model amplifies that noise (measured: max |dp|
    // up to 0.06, mean total variation about 0.03); a real bug (wrong RoPE, wrong head
    // mapping, a bad kernel) moves both by far more.
    let tv_mean = tv_sum / tokens.len() as f64;
    eprintln!("fast vs oracle: max |dp| {worst:.4}, mean total variation {tv_mean:.4}");
    assert!(worst < 0.12, "max probability difference {worst}");
    assert!(tv_mean < 0.08, "mean total variation {tv_mean}");
}

/// A prompt that reaches past `TILED_FROM_POSITION`, where float caches switch kernels.
fn long_prompt(model: &Model) -> Vec<u32> {
    let text = "Batch invariance means the same arithmetic per row, at every position. ".repeat(10);
    let tokens = model.tokenizer.encode(&text, true, true);
    assert!(
        tokens.len() > hearth_kernels::attention::TILED_FROM_POSITION + 8,
        "{} tokens",
        tokens.len()
    );
    tokens
}

#[test]
fn prefill_in_one_batch_equals_token_by_token() {
    let model = Model::load(common::model_path()).unwrap();
    let tokens = long_prompt(&model);
    for kv_type in [KvType::F16, KvType::F32, KvType::Q8_0] {
        let mut kv = model.new_kv_cache(256, kv_type);
        let batched = model
            .forward(&Batch::contiguous(&tokens, 0, true), &mut kv)
            .unwrap();
        let mut kv2 = model.new_kv_cache(256, kv_type);
        for (i, &t) in tokens.iter().enumerate() {
            let one = model
                .forward(&Batch::contiguous(&[t], i, false), &mut kv2)
                .unwrap();
            assert_eq!(
                one.last(),
                batched.row(i),
                "{kv_type:?}: position {i} differs"
            );
        }
    }
}

#[test]
fn long_prompt_follows_the_naive_f32_oracle() {
    // Past `TILED_FROM_POSITION` the float caches attend with the tiled kernel.
    let model = Model::load(common::model_path()).unwrap();
    let mut oracle = ReferenceModel::load(&model);
    let tokens = long_prompt(&model);
    let mut kv = model.new_kv_cache(256, KvType::F32);
    let fast = model
        .forward(&Batch::contiguous(&tokens, 0, true), &mut kv)
        .unwrap();
    let (mut worst, mut tv_sum, mut n) = (0.0f64, 0.0f64, 0);
    for (i, &t) in tokens.iter().enumerate() {
        let slow = oracle.step(t);
        if i < hearth_kernels::attention::TILED_FROM_POSITION {
            continue;
        }
        let (pf, ps) = (softmax(fast.row(i)), softmax(&slow));
        worst = pf
            .iter()
            .zip(&ps)
            .map(|(a, b)| (a - b).abs())
            .fold(worst, f64::max);
        tv_sum += 0.5 * pf.iter().zip(&ps).map(|(a, b)| (a - b).abs()).sum::<f64>();
        n += 1;
    }
    let tv_mean = tv_sum / n as f64;
    eprintln!("tiled positions vs oracle: max |dp| {worst:.4}, mean total variation {tv_mean:.4}");
    // The same bounds as at short range (see above).
    assert!(worst < 0.12, "max probability difference {worst}");
    assert!(tv_mean < 0.08, "mean total variation {tv_mean}");
}

#[test]
fn sequences_batched_in_a_paged_cache_equal_each_alone() {
    let model = Model::load(common::model_path()).unwrap();
    // The second prompt reaches the positions of the tiled kernel.
    let prompts: Vec<Vec<u32>> = vec![
        model
            .tokenizer
            .encode("Paged caches hold blocks.", true, true),
        long_prompt(&model),
    ];
    // Alone: each prompt in its own contiguous cache, logits of every position.
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut kv = model.new_kv_cache(256, KvType::F16);
            model
                .forward(&Batch::contiguous(p, 0, true), &mut kv)
                .unwrap()
        })
        .collect();
    // Together: blocks of 4 positions, the two sequences' blocks interleaved in the pool,
    // the prompts fed in uneven chunks that mix both sequences in one batch.
    let bs = 4;
    let mut kv = model.new_paged_kv_cache(128, bs, KvType::F16);
    let tables: Vec<Vec<u32>> = (0..2)
        .map(|s| (0..64).map(|i| (2 * i + s) as u32).rev().collect())
        .collect();
    let mut done = [0usize; 2];
    let mut got: [Vec<Vec<f32>>; 2] = Default::default();
    for chunk in [3usize, 5, 1, 7, 64, 9, 50, 256] {
        let mut batch = Batch {
            block_tables: tables.clone(),
            ..Default::default()
        };
        for s in 0..2 {
            let end = (done[s] + chunk + s).min(prompts[s].len());
            for (p, &tok) in prompts[s].iter().enumerate().take(end).skip(done[s]) {
                batch.push(tok, p, s, true);
            }
            done[s] = end;
        }
        if batch.is_empty() {
            continue;
        }
        let logits = model.forward(&batch, &mut kv).unwrap();
        for (i, &r) in logits.rows.iter().enumerate() {
            got[batch.seq[r] as usize].push(logits.row(i).to_vec());
        }
    }
    for s in 0..2 {
        assert_eq!(got[s].len(), prompts[s].len());
        for (p, row) in got[s].iter().enumerate() {
            assert_eq!(
                row.as_slice(),
                alone[s].row(p),
                "sequence {s} position {p} differs"
            );
        }
    }
}

#[test]
fn bad_batches_are_errors() {
    let model = Model::load(common::model_path()).unwrap();
    let mut kv = model.new_kv_cache(4, KvType::F16);
    assert!(model
        .forward(&Batch::contiguous(&[], 0, false), &mut kv)
        .is_err());
    assert!(model
        .forward(&Batch::contiguous(&[1, 2, 3, 4, 5], 0, false), &mut kv)
        .is_err());
    assert!(model
        .forward(&Batch::contiguous(&[u32::MAX], 0, false), &mut kv)
        .is_err());
    let mut paged = model.new_paged_kv_cache(4, 2, KvType::F16);
    let mut batch = Batch {
        block_tables: vec![vec![0, 1]],
        ..Default::default()
    };
    batch.push(1, 4, 0, true); // past the sequence's two blocks
    assert!(model.forward(&batch, &mut paged).is_err());
    let mut batch = Batch {
        block_tables: vec![vec![9]],
        ..Default::default()
    };
    batch.push(1, 0, 0, true); // a block outside the pool
    assert!(model.forward(&batch, &mut paged).is_err());
    let mut batch = Batch {
        block_tables: vec![vec![0]],
        ..Default::default()
    };
    batch.push(1, 0, 1, true); // a sequence without a table
    assert!(model.forward(&batch, &mut paged).is_err());
}
