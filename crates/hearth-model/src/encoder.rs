//! The encoder-only transformer (BERT and its kin): token, position and token-type
//! embeddings summed and normalized, then per layer `x = norm(x + attention(x))` and
//! `x = norm(x + ffn(x))` (post-LayerNorm), the attention bidirectional within each input.
//! There is no KV cache: a batch is whole inputs, and the result is every token's final
//! hidden state, which [`crate::Model::embed`] pools. A cross-encoder (a reranker) also has
//! a classification head ([`RankHead`]) that turns an input's first (`[CLS]`) hidden state
//! into its relevance score ([`crate::Model::rerank`]).

use hearth_kernels::{ops, WeightBlock};

use crate::layers::each_chunk;
use crate::layers::norm::{Norm, NormKind};
use crate::team::par_each;
use crate::tensor::QTensor;
use crate::ModelConfig;

/// A linear layer with a bias: `y = W x + b`.
pub struct Linear {
    /// `[n_in] -> [n_out]`
    pub w: QTensor,
    /// `[n_out]`
    pub b: Vec<f32>,
}

impl Linear {
    /// `out = W x + b` for the rows of `x` (`[n][n_in]`), `out` `[n][n_out]`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        self.w.matmul(x, out);
        add_bias(out, &self.b);
    }
}

/// `rows[i] += b` for each row (`[n][b.len()]`).
fn add_bias(rows: &mut [f32], b: &[f32]) {
    each_chunk(rows, b.len(), |r| {
        for row in r.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, bv)| *v += bv);
        }
    });
}

/// One post-norm encoder layer.
pub struct EncoderBlock {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// `[n_embd]`: LayerNorm of `x + attention(x)`.
    pub attn_norm: Norm,
    /// `[n_embd] -> [n_ff]`, then GELU.
    pub up: Linear,
    /// `[n_ff] -> [n_embd]`
    pub down: Linear,
    /// `[n_embd]`: LayerNorm of `x + ffn(x)`.
    pub out_norm: Norm,
}

/// A loaded encoder.
pub struct Encoder {
    pub c: ModelConfig,
    /// `[n_vocab][n_embd]`
    pub token_embd: QTensor,
    /// `[n_ctx_train][n_embd]`: learned absolute positions.
    pub position_embd: QTensor,
    /// `[n_token_types][n_embd]`, where the model has segment embeddings.
    pub token_types: Option<QTensor>,
    /// Rows of `token_types` (0 without it). With fewer than two, every token is type 0.
    pub n_token_types: usize,
    /// `[n_embd]`: LayerNorm of the summed embeddings.
    pub embd_norm: Norm,
    pub layers: Vec<EncoderBlock>,
    /// A cross-encoder's classification head (`cls`, `cls.output`), where the file has one.
    pub head: Option<RankHead>,
}

/// A cross-encoder's classification head, llama.cpp's rank pooling for BERT: the `[CLS]`
/// hidden state `h`, then `tanh(cls h + b)` where the file has `cls` (Hugging Face's
/// `bert.pooler.dense`), then `cls.output` (its `classifier`): one score per label.
pub struct RankHead {
    /// `[n_embd] -> [n_embd]`, then tanh.
    pub cls: Option<Linear>,
    /// `[n_embd] -> [n_labels]`.
    pub out: Linear,
}

impl RankHead {
    /// Number of scores per input (labels).
    pub fn n_out(&self) -> usize {
        self.out.b.len()
    }

    /// The scores of the `[CLS]` rows `h` (`[n][n_embd]`), `[n][n_out]`. Each row's scores
    /// depend only on that row.
    pub fn forward(&self, h: &[f32]) -> Vec<f32> {
        let n_embd = self.out.w.ne[0];
        let n = h.len() / n_embd;
        let pooled = match &self.cls {
            Some(cls) => {
                let mut p = vec![0.0f32; n * n_embd];
                cls.forward(h, &mut p);
                p.iter_mut().for_each(|v| *v = v.tanh());
                p
            }
            None => h.to_vec(),
        };
        let mut out = vec![0.0f32; n * self.n_out()];
        self.out.forward(&pooled, &mut out);
        out
    }
}

/// One input: its tokens, of which those from `n_first` on belong to the second segment
/// (token type 1: a cross-encoder's document after its query, as the model's own
/// tokenizer marks a pair; llama.cpp gives every token type 0). A model with one token
/// type gives all tokens that one.
#[derive(Debug, Clone, Copy)]
pub struct EncoderInput<'a> {
    pub tokens: &'a [u32],
    pub n_first: usize,
}

impl Encoder {
    /// LayerNorm with bias, `[n_embd]`, at the config's epsilon.
    pub fn layer_norm(c: &ModelConfig, weight: Vec<f32>, bias: Vec<f32>) -> Norm {
        Norm {
            kind: NormKind::Layer,
            weight,
            bias: Some(bias),
            eps: c.norm_eps,
        }
    }

    /// The final hidden state of every token of every input, `[Σ len][n_embd]`, inputs in
    /// order. Positions start at 0 in each input; the caller checks that every input fits
    /// the trained context and every token the vocabulary. A token's result depends only
    /// on its own input.
    pub fn forward(&self, inputs: &[EncoderInput]) -> Vec<f32> {
        let c = &self.c;
        let n_embd = c.n_embd;
        let n: usize = inputs.iter().map(|i| i.tokens.len()).sum();
        let mut x = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut t = vec![0.0f32; n_embd];
        let mut rows = x.chunks_exact_mut(n_embd);
        for input in inputs {
            for (pos, &tok) in input.tokens.iter().enumerate() {
                let row = rows.next().expect("one row per token");
                self.token_embd.dequantize_row(tok as usize, row);
                self.position_embd.dequantize_row(pos, &mut t);
                row.iter_mut().zip(&t).for_each(|(a, b)| *a += b);
                if let Some(types) = &self.token_types {
                    let ty = usize::from(pos >= input.n_first && self.n_token_types > 1);
                    types.dequantize_row(ty, &mut t);
                    row.iter_mut().zip(&t).for_each(|(a, b)| *a += b);
                }
            }
        }
        self.embd_norm.rows_in_place(&mut x, n_embd);

        let n_ff = self.layers.iter().map(|l| l.up.b.len()).max().unwrap_or(0);
        let (mut q, mut k, mut v) = (
            vec![0.0f32; n * n_embd],
            vec![0.0f32; n * n_embd],
            vec![0.0f32; n * n_embd],
        );
        let mut a = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut d = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut h = vec![0.0f32; n * n_ff]; // [n][n_ff]
        for l in &self.layers {
            QTensor::matmul_many(
                &[&l.q.w, &l.k.w, &l.v.w],
                &x,
                &mut [&mut q[..], &mut k[..], &mut v[..]],
            );
            add_bias(&mut q, &l.q.b);
            add_bias(&mut k, &l.k.b);
            add_bias(&mut v, &l.v.b);
            self.attention(inputs, &q, &k, &v, &mut a);
            l.o.forward(&a, &mut d);
            l.attn_norm.add_then(&mut x, &mut d);
            std::mem::swap(&mut x, &mut d); // x = norm(x + o)

            let h = &mut h[..n * l.up.b.len()];
            l.up.forward(&x, h);
            each_chunk(h, l.up.b.len(), ops::gelu_erf_rows);
            l.down.forward(h, &mut d);
            l.out_norm.add_then(&mut x, &mut d);
            std::mem::swap(&mut x, &mut d);
        }
        x
    }

    /// Softmax attention of each head over its own input's tokens, all of them:
    /// `out = softmax(q k^T / sqrt(head_dim)) v`, rows `[n][n_embd]`.
    fn attention(&self, inputs: &[EncoderInput], q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
        let c = &self.c;
        let (n_embd, n_head) = (c.n_embd, c.n_head);
        let hd = n_embd / n_head;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (input, head): (the input's first row, the head, its output
        // `[len][hd]`), scattered into `out` afterwards.
        let mut results: Vec<(usize, usize, Vec<f32>)> = Vec::new();
        let mut start = 0;
        for input in inputs {
            for head in 0..n_head {
                results.push((start, head, vec![0.0; input.tokens.len() * hd]));
            }
            start += input.tokens.len();
        }
        let tasks: Vec<&mut (usize, usize, Vec<f32>)> = results.iter_mut().collect();
        par_each(tasks, |(start, head, o)| {
            let (start, head) = (*start, *head);
            let len = o.len() / hd;
            let col = head * hd;
            // The head's queries and keys `[len][hd]`, and its values transposed
            // `[hd][len]`, contiguous for the tiled products.
            let mut qh = vec![0.0f32; len * hd];
            let mut kh = vec![0.0f32; len * hd];
            let mut vt = vec![0.0f32; hd * len];
            for j in 0..len {
                let row = (start + j) * n_embd + col;
                qh[j * hd..][..hd].copy_from_slice(&q[row..][..hd]);
                kh[j * hd..][..hd].copy_from_slice(&k[row..][..hd]);
                for (d, &x) in v[row..][..hd].iter().enumerate() {
                    vt[d * len + j] = x;
                }
            }
            // Scores `[len][len]` (query i, key j), then each row's softmax in place.
            let mut p = vec![0.0f32; len * len];
            f32::gemm(hd, &kh, &qh, &mut p[..]);
            for row in p.chunks_exact_mut(len) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
                let mut sum = 0.0f64;
                for x in row.iter_mut() {
                    *x = (*x * scale - max).exp();
                    sum += *x as f64;
                }
                let inv = (1.0 / sum) as f32;
                row.iter_mut().for_each(|x| *x *= inv);
            }
            // Outputs `[len][hd]`: each query's weights against the values.
            f32::gemm(len, &vt, &p, &mut o[..]);
        });
        for (start, head, o) in results {
            let col = head * hd;
            for (i, oi) in o.chunks_exact(hd).enumerate() {
                out[(start + i) * n_embd + col..][..hd].copy_from_slice(oi);
            }
        }
    }
}
