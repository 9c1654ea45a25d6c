//! `QTensor::matmul` and `matmul_many` on the default model's real weights: every
//! output is bit-identical to the scalar twin's dot product of its row and token, for
//! any number of tokens and whichever other tokens share the batch.

mod common;

use std::sync::Arc;

use hearth_gguf::GgufFile;
use hearth_kernels::*;
use hearth_model::tensor::QTensor;
use hearth_model::Model;

fn input(n: usize, seed: u32) -> Vec<f32> {
    // A cheap deterministic spread of values in about [-2, 2].
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32)
                * 4.0
                - 2.0
        })
        .collect()
}

fn file() -> Arc<GgufFile> {
    Model::load(common::model_path()).unwrap().gguf().clone()
}

/// `out[t][r]` from the scalar twin, one output at a time.
fn twin<W: WeightBlock>(w: &QTensor, x: &[f32], dot: impl Fn(&[W], &[W::Act]) -> f32) -> Vec<f32> {
    let [ne0, ne1] = w.ne;
    let blocks: &[W] = bytemuck::cast_slice(w.bytes());
    let nb = ne0 / W::QK;
    let mut out = Vec::new();
    for xt in x.chunks_exact(ne0) {
        let mut a = vec![<W::Act as bytemuck::Zeroable>::zeroed(); ne0 / <W::Act as Quantize>::QK];
        W::Act::quantize_row_act(xt, &mut a);
        out.extend((0..ne1).map(|r| dot(&blocks[r * nb..(r + 1) * nb], &a)));
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn matmul_is_the_scalar_twin_per_output_for_any_batch() {
    let f = file();
    let q = QTensor::load(&f, "blk.0.attn_q.weight", [576, 576]).unwrap();
    let down = QTensor::load(&f, "blk.3.ffn_down.weight", [1536, 576]).unwrap();
    let out = QTensor::load(&f, "token_embd.weight", [576, 49152]).unwrap();
    for n in [1, 3, 4, 5, 16] {
        for (w, seed) in [(&q, 1), (&down, 2)] {
            let x = input(n * w.ne[0], seed);
            let mut got = vec![0.0; n * w.ne[1]];
            w.matmul(&x, &mut got);
            assert_eq!(
                bits(&got),
                bits(&twin::<BlockQ4_1>(w, &x, vec_dot_q4_1_q8_1_ref)),
                "{} n={n}",
                w.name
            );
            // Token t alone gives its row of the batch.
            let ne0 = w.ne[0];
            let t = n - 1;
            let mut alone = vec![0.0; w.ne[1]];
            w.matmul(&x[t * ne0..(t + 1) * ne0], &mut alone);
            assert_eq!(
                bits(&alone),
                bits(&got[t * w.ne[1]..]),
                "{} n={n}: last token alone",
                w.name
            );
        }
    }
    for n in [1, 5] {
        let x = input(n * 576, 3);
        let mut got = vec![0.0; n * 49152];
        out.matmul(&x, &mut got);
        assert_eq!(
            bits(&got),
            bits(&twin::<BlockQ8_0>(&out, &x, vec_dot_q8_0_q8_0_ref)),
            "output n={n}"
        );
    }
}

#[test]
fn matmul_many_equals_separate_matmuls() {
    let f = file();
    let load = |name: &str, ne1| QTensor::load(&f, name, [576, ne1]).unwrap();
    let (wq, wk, wv) = (
        load("blk.1.attn_q.weight", 576),
        load("blk.1.attn_k.weight", 192),
        load("blk.1.attn_v.weight", 192),
    );
    for n in [1, 3, 16] {
        let x = input(n * 576, 4);
        let (mut q, mut k, mut v) = (vec![0.0; n * 576], vec![0.0; n * 192], vec![0.0; n * 192]);
        QTensor::matmul_many(&[&wq, &wk, &wv], &x, &mut [&mut q, &mut k, &mut v]);
        for (w, got) in [(&wq, &q), (&wk, &k), (&wv, &v)] {
            let mut want = vec![0.0; got.len()];
            w.matmul(&x, &mut want);
            assert_eq!(bits(got), bits(&want), "{} n={n}", w.name);
        }
    }
}
