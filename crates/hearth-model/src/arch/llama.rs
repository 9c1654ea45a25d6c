//! The llama family: RMSNorm, RoPE (adjacent pairs), grouped-query attention, SwiGLU,
//! tied or separate output weights. Llama 1/2/3, Mistral, SmolLM.

use std::sync::Arc;

use hearth_gguf::GgufFile;
use hearth_kernels::attention::{self, KvSpan};
use hearth_kernels::{BlockQ4_0, BlockQ8_0};
use hearth_kernels::{ops, with_isa};

use crate::error::Result;
use crate::team::par_each;
use crate::output::OutputWeights;
use crate::tensor::QTensor;
use crate::{Batch, KvCache, KvLayer, KvType, Logits, ModelConfig};

struct Layer {
    /// `[n_embd]`
    attn_norm: Vec<f32>,
    /// `[n_embd] -> [n_head * head_dim]`
    wq: QTensor,
    /// `[n_embd] -> [n_head_kv * head_dim]`
    wk: QTensor,
    /// `[n_embd] -> [n_head_kv * head_dim]`
    wv: QTensor,
    /// `[n_head * head_dim] -> [n_embd]`
    wo: QTensor,
    /// `[n_embd]`
    ffn_norm: Vec<f32>,
    /// `[n_embd] -> [n_ff]`
    ffn_gate: QTensor,
    /// `[n_embd] -> [n_ff]`
    ffn_up: QTensor,
    /// `[n_ff] -> [n_embd]`
    ffn_down: QTensor,
}

pub struct Llama {
    c: ModelConfig,
    /// `[n_vocab][n_embd]`
    token_embd: QTensor,
    layers: Vec<Layer>,
    /// `[n_embd]`
    output_norm: Vec<f32>,
    /// `[n_embd] -> [n_vocab]`; `token_embd` itself when the embedding is tied.
    output: OutputWeights,
}

impl Llama {
    pub fn load(file: &Arc<GgufFile>, c: &ModelConfig) -> Result<Llama> {
        let t = |name: &str, ne: [usize; 2]| QTensor::load(file, name, ne);
        let (n_embd, n_q, n_kv) = (c.n_embd, c.n_head * c.head_dim, c.n_embd_kv());
        let token_embd = t("token_embd.weight", [n_embd, c.n_vocab])?;
        let layers = (0..c.n_layer)
            .map(|i| {
                let l = |n: &str, ne| t(&format!("blk.{i}.{n}.weight"), ne);
                Ok(Layer {
                    attn_norm: l("attn_norm", [n_embd, 1])?.to_f32(),
                    wq: l("attn_q", [n_embd, n_q])?,
                    wk: l("attn_k", [n_embd, n_kv])?,
                    wv: l("attn_v", [n_embd, n_kv])?,
                    wo: l("attn_output", [n_q, n_embd])?,
                    ffn_norm: l("ffn_norm", [n_embd, 1])?.to_f32(),
                    ffn_gate: l("ffn_gate", [n_embd, c.n_ff])?,
                    ffn_up: l("ffn_up", [n_embd, c.n_ff])?,
                    ffn_down: l("ffn_down", [c.n_ff, n_embd])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match file.tensor("output.weight") {
            Some(_) => t("output.weight", [n_embd, c.n_vocab])?,
            None => token_embd.clone(),
        };
        Ok(Llama {
            c: c.clone(),
            output_norm: t("output_norm.weight", [n_embd, 1])?.to_f32(),
            token_embd,
            layers,
            output: OutputWeights::new(output),
        })
    }

    /// Causal grouped-query attention of each batch row over its sequence's cached
    /// positions (the cache already holds this batch's keys and values).
    /// `q: [n_tokens][n_head * head_dim]`.
    fn attention(&self, layer: usize, batch: &Batch, kv: &KvCache, q: &[f32], out: &mut [f32]) {
        match kv.kv_type() {
            KvType::F16 => self.attend::<half::f16>(layer, batch, kv, q, out),
            KvType::F32 => self.attend::<f32>(layer, batch, kv, q, out),
            KvType::Q8_0 => self.attend::<BlockQ8_0>(layer, batch, kv, q, out),
            KvType::Q4_0 => self.attend::<BlockQ4_0>(layer, batch, kv, q, out),
        }
    }

    /// Every (token, head) pair of the batch against its sequence's blocks, in place.
    fn attend<T: CachedAs>(&self, layer: usize, batch: &Batch, kv: &KvCache, q: &[f32], out: &mut [f32]) {
        let c = &self.c;
        let (hd, bs) = (c.head_dim, kv.block_size());
        // A cached row holds `n_kv` storage elements; a head `hd / T::QK` of them.
        let (n_kv, hd_el) = (c.n_embd_kv() / T::QK, hd / T::QK);
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        // Per token, the spans of positions 0..=pos: whole blocks, then a partial one.
        let spans: Vec<Vec<KvSpan<'_, T>>> = (0..batch.len())
            .map(|t| {
                let table = &batch.block_tables[batch.seq[t] as usize];
                let len = batch.positions[t] as usize + 1;
                (0..len.div_ceil(bs))
                    .map(|i| {
                        let n_pos = bs.min(len - i * bs);
                        let (k, v) = T::cached(kv.block(layer, table[i] as usize, n_pos));
                        KvSpan { k, v, n_pos }
                    })
                    .collect()
            })
            .collect();
        // Positions from `T::TILED_FROM` on take the tiled kernel: runs of consecutive
        // positions of a sequence, up to `TILED_QUERIES` per call, one task per (run, KV
        // head).
        let tiled = |t: usize| batch.positions[t] as usize >= T::TILED_FROM;
        let mut runs = Vec::new();
        let mut t = 0;
        while t < batch.len() {
            let mut e = t + 1;
            if tiled(t) {
                while e < batch.len() && e - t < attention::TILED_QUERIES && batch.seq[e] == batch.seq[t] && batch.positions[e] == batch.positions[e - 1] + 1 {
                    e += 1;
                }
                runs.push((t, e - t));
            }
            t = e;
        }
        // Each (token, KV head) pair's output: `out` is `[n][n_head_kv][group * head_dim]`.
        let (row, gw) = (c.n_head * hd, group * hd);
        let mut outs: Vec<Option<&mut [f32]>> = out.chunks_exact_mut(gw).map(Some).collect();
        // One task per run, taking its KV heads one after another: a cached row holds
        // every KV head's part side by side, so the lines the first head brings in
        // serve the others from this core's cache. With fewer runs than threads (one
        // decoded token) each KV head is a task of its own, so no thread sits idle. For
        // each head the task packs its queries into the kernel's `[n_q][group][head_dim]`
        // layout, followed by room for the result, which it then copies to its output
        // slices. A head's arithmetic is the same either way.
        let heads_per_task = if runs.len() < rayon::current_num_threads() { 1 } else { c.n_head_kv };
        let mut tasks = Vec::with_capacity(runs.len() * c.n_head_kv.div_ceil(heads_per_task));
        for &(t0, n_q) in &runs {
            for h0 in (0..c.n_head_kv).step_by(heads_per_task) {
                let h1 = (h0 + heads_per_task).min(c.n_head_kv);
                // `[n_q][h1 - h0]`
                let dst: Vec<&mut [f32]> = (t0..t0 + n_q)
                    .flat_map(|t| (h0..h1).map(move |h| t * c.n_head_kv + h))
                    .map(|i| outs[i].take().expect("one task per (token, KV head)"))
                    .collect();
                tasks.push((t0, n_q, h0..h1, dst));
            }
        }
        par_each(tasks, |(t0, n_q, heads, mut dst)| {
            let n_h = heads.len();
            let mut buf = vec![0.0f32; 2 * n_q * gw];
            let (qg, o) = buf.split_at_mut(n_q * gw);
            let mut lens = [0usize; attention::TILED_QUERIES];
            for (j, t) in (t0..t0 + n_q).enumerate() {
                lens[j] = batch.positions[t] as usize + 1;
            }
            for (i, h_kv) in heads.enumerate() {
                for (j, t) in (t0..t0 + n_q).enumerate() {
                    qg[j * gw..][..gw].copy_from_slice(&q[t * row + h_kv * gw..][..gw]);
                }
                T::attend_tiled(qg, hd, &lens[..n_q], &spans[t0 + n_q - 1], n_kv, h_kv * hd_el, scale, o);
                for (j, o) in o.chunks_exact(gw).enumerate() {
                    dst[j * n_h + i].copy_from_slice(o);
                }
            }
        });
        // Every other token: one task per (token, KV head); the group's query heads share
        // its keys and values. (None with a quantized cache.) Only these pairs are split
        // over the pool: they are the first positions of a sequence, and a split of all
        // pairs by index would leave one thread with every one of them.
        let rest: Vec<(usize, &mut [f32])> = outs.into_iter().enumerate().filter_map(|(i, o)| Some((i, o?))).collect();
        par_each(rest, |(i, o)| {
            let (t, h_kv) = (i / c.n_head_kv, i % c.n_head_kv);
            T::attend(&q[i * gw..(i + 1) * gw], hd, &spans[t], n_kv, h_kv * hd_el, scale, o);
        });
    }
}

/// Batches with at least this many rows spread the per-row steps (norms, RoPE, SwiGLU,
/// residual adds) over the pool; smaller ones run them on the calling thread.
const PAR_ROWS: usize = 8;

/// `f(dst_row, src_row)` for each row of `dst` (`[n][d]`) and `src` (`[n][s]`), compiled
/// for the process's ISA, in parallel (`par_each`, four rows a task) for a batch of
/// [`PAR_ROWS`] rows or more. A row's arithmetic is the same either way.
fn for_rows<S: Sync>(dst: &mut [f32], d: usize, src: &[S], s: usize, f: impl Fn(&mut [f32], &[S]) + Sync + Send) {
    for_chunks(dst, d, src, s, |a, b| a.chunks_exact_mut(d).zip(b.chunks_exact(s)).for_each(|(a, b)| f(a, b)));
}

/// As [`for_rows`], with `f` taking several rows at once (whole rows, four at a time in a
/// parallel batch, all of them in a small one).
fn for_chunks<S: Sync>(dst: &mut [f32], d: usize, src: &[S], s: usize, f: impl Fn(&mut [f32], &[S]) + Sync + Send) {
    debug_assert_eq!(dst.len() / d, src.len() / s);
    if dst.len() / d < PAR_ROWS {
        with_isa(|| f(dst, src));
    } else {
        let rows: Vec<_> = dst.chunks_mut(4 * d).zip(src.chunks(4 * s)).collect();
        par_each(rows, |(a4, b4)| with_isa(|| f(a4, b4)));
    }
}

/// RoPE on each token's query row (`q`, `[n][n_q]`) and key row (`k`, `[n][n_kv]`) with
/// its angles (`rope`, `[n][n_pairs]`), in one parallel section for a batch of
/// [`PAR_ROWS`] tokens or more.
fn rope_rows(q: &mut [f32], n_q: usize, k: &mut [f32], n_kv: usize, rope: &[(f32, f32)], n_pairs: usize, head_dim: usize) {
    // (`rope_rotate` picks its ISA itself.)
    let rotate = |q: &mut [f32], k: &mut [f32], cs: &[(f32, f32)]| {
        for ((q, k), cs) in q.chunks_exact_mut(n_q).zip(k.chunks_exact_mut(n_kv)).zip(cs.chunks_exact(n_pairs)) {
            ops::rope_rotate(q, head_dim, cs);
            ops::rope_rotate(k, head_dim, cs);
        }
    };
    if q.len() / n_q < PAR_ROWS {
        rotate(q, k, rope);
    } else {
        let rows: Vec<_> = q.chunks_mut(4 * n_q).zip(k.chunks_mut(4 * n_kv)).zip(rope.chunks(4 * n_pairs)).collect();
        par_each(rows, |((q4, k4), cs4)| rotate(q4, k4, cs4));
    }
}

/// [`for_chunks`] over two row sets that both change, `[n][d]` each.
fn for_chunks_mut(a: &mut [f32], b: &mut [f32], d: usize, f: impl Fn(&mut [f32], &mut [f32]) + Sync + Send) {
    debug_assert_eq!(a.len(), b.len());
    if a.len() / d < PAR_ROWS {
        with_isa(|| f(a, b));
    } else {
        let rows: Vec<_> = a.chunks_mut(4 * d).zip(b.chunks_mut(4 * d)).collect();
        par_each(rows, |(a4, b4)| with_isa(|| f(a4, b4)));
    }
}

/// A KV-cache storage type: picks its slices out of a [`KvLayer`] and runs its attention
/// kernel.
trait CachedAs: Sized + Send + Sync {
    /// Values per storage element.
    const QK: usize;
    /// First position that attends with [`CachedAs::attend_tiled`]: the quantized caches'
    /// kernels take every query that way; the float caches from
    /// [`attention::TILED_FROM_POSITION`].
    const TILED_FROM: usize;
    fn cached(l: KvLayer<'_>) -> (&[Self], &[Self]);
    /// The heads of `q` (`[g][head_dim]`) that share the KV head at `offset`.
    fn attend(q: &[f32], head_dim: usize, spans: &[KvSpan<'_, Self>], stride: usize, offset: usize, scale: f32, out: &mut [f32]);
    /// Consecutive queries of a sequence (`q` is `[lens.len()][g][head_dim]`), query `i`
    /// over the first `lens[i]` positions, as [`attention::attend_heads_tiled`].
    #[allow(clippy::too_many_arguments)]
    fn attend_tiled(q: &[f32], head_dim: usize, lens: &[usize], spans: &[KvSpan<'_, Self>], stride: usize, offset: usize, scale: f32, out: &mut [f32]);
}

macro_rules! cached_as {
    ($t:ty, $variant:ident, $qk:expr, $kernel:path, $tiled_kernel:path, $tiled_from:expr) => {
        impl CachedAs for $t {
            const QK: usize = $qk;
            const TILED_FROM: usize = $tiled_from;
            fn cached(l: KvLayer<'_>) -> (&[Self], &[Self]) {
                match l {
                    KvLayer::$variant(k, v) => (k, v),
                    _ => unreachable!("the cache holds one element type"),
                }
            }
            fn attend(q: &[f32], head_dim: usize, spans: &[KvSpan<'_, Self>], stride: usize, offset: usize, scale: f32, out: &mut [f32]) {
                $kernel(q, head_dim, spans, stride, offset, scale, out)
            }
            fn attend_tiled(q: &[f32], head_dim: usize, lens: &[usize], spans: &[KvSpan<'_, Self>], stride: usize, offset: usize, scale: f32, out: &mut [f32]) {
                $tiled_kernel(q, head_dim, lens, spans, stride, offset, scale, out)
            }
        }
    };
}

cached_as!(half::f16, F16, 1, attention::attend_heads, attention::attend_heads_tiled, attention::TILED_FROM_POSITION);
cached_as!(f32, F32, 1, attention::attend_heads, attention::attend_heads_tiled, attention::TILED_FROM_POSITION);
cached_as!(BlockQ8_0, Q8_0, 32, attention::attend_heads_quant, attention::attend_heads_quant_tiled, 0);
cached_as!(BlockQ4_0, Q4_0, 32, attention::attend_heads_quant, attention::attend_heads_quant_tiled, 0);

impl super::Architecture for Llama {
    fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Logits {
        let c = &self.c;
        let n = batch.tokens.len();
        let (n_embd, n_q, n_kv) = (c.n_embd, c.n_head * c.head_dim, c.n_embd_kv());

        // Activations for the whole batch, row-major by token.
        let mut x = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut xn = vec![0.0f32; n * n_embd]; // [n][n_embd]
        let mut q = vec![0.0f32; n * n_q]; // [n][n_head * head_dim]
        let mut k = vec![0.0f32; n * n_kv]; // [n][n_embd_kv]
        let mut v = vec![0.0f32; n * n_kv]; // [n][n_embd_kv]
        let mut attn = vec![0.0f32; n * n_q]; // [n][n_head * head_dim]
        let mut gate = vec![0.0f32; n * c.n_ff]; // [n][n_ff]
        let mut up = vec![0.0f32; n * c.n_ff]; // [n][n_ff]

        for (row, &tok) in x.chunks_exact_mut(n_embd).zip(&batch.tokens) {
            self.token_embd.dequantize_row(tok as usize, row);
        }

        // Each position's rotation angles, [n][n_rot / 2]: the same for every layer and head.
        let n_pairs = c.n_rot / 2;
        let mut rope = vec![(0.0f32, 0.0f32); n * n_pairs];
        for (cs, &pos) in rope.chunks_exact_mut(n_pairs).zip(&batch.positions) {
            ops::rope_angles(pos, c.n_rot, c.rope_freq_base, cs);
        }

        // Each token's KV cache slot: (block, row).
        let bs = kv.block_size();
        let slots: Vec<(usize, usize)> = (0..n)
            .map(|t| {
                let pos = batch.positions[t] as usize;
                (batch.block_tables[batch.seq[t] as usize][pos / bs] as usize, pos % bs)
            })
            .collect();

        let eps = c.rms_norm_eps;
        // Each layer ends with its residual add and the next layer's first norm in one
        // pass (the first layer's norm and the last add stand alone).
        if let Some(first) = self.layers.first() {
            for_chunks(&mut xn, n_embd, &x, n_embd, |y, x| ops::rms_norm(x, &first.attn_norm, eps, y));
        }
        for (il, l) in self.layers.iter().enumerate() {
            QTensor::matmul_many(&[&l.wq, &l.wk, &l.wv], &xn, &mut [&mut q, &mut k, &mut v]);
            rope_rows(&mut q, n_q, &mut k, n_kv, &rope, n_pairs, c.head_dim);
            kv.store(il, &slots, &k, &v);
            self.attention(il, batch, kv, &q, &mut attn);
            l.wo.matmul(&attn, &mut xn);
            for_chunks_mut(&mut x, &mut xn, n_embd, |x, d| ops::add_rms_norm(x, d, &l.ffn_norm, eps));
            QTensor::matmul_many(&[&l.ffn_gate, &l.ffn_up], &xn, &mut [&mut gate, &mut up]);
            for_rows(&mut gate, c.n_ff, &up, c.n_ff, ops::swiglu);
            l.ffn_down.matmul(&gate, &mut xn);
            match self.layers.get(il + 1) {
                Some(next) => for_chunks_mut(&mut x, &mut xn, n_embd, |x, d| ops::add_rms_norm(x, d, &next.attn_norm, eps)),
                None => for_rows(&mut x, n_embd, &xn, n_embd, |x, y| x.iter_mut().zip(y).for_each(|(a, b)| *a += b)),
            }
        }

        let rows: Vec<usize> = (0..n).filter(|&i| batch.output[i]).collect();
        let mut h = vec![0.0f32; rows.len() * n_embd];
        for (dst, &r) in h.chunks_exact_mut(n_embd).zip(&rows) {
            ops::rms_norm(&x[r * n_embd..(r + 1) * n_embd], &self.output_norm, c.rms_norm_eps, dst);
        }
        let mut data = vec![0.0f32; rows.len() * c.n_vocab];
        if !rows.is_empty() {
            self.output.matmul(&h, &mut data);
        }
        Logits { n_vocab: c.n_vocab, rows, data }
    }
}
