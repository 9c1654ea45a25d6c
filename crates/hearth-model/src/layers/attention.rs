//! Grouped-query self-attention over the paged KV cache: the projections (separate or
//! fused, with optional biases), per-head QK-norm, RoPE, the cache write, causal
//! attention (global or over a sliding window) and the output projection.

use hearth_kernels::attention::{self, KvSpan};
use hearth_kernels::{BlockQ4_0, BlockQ8_0};

use super::norm::Norm;
use super::rope::Rope;
use crate::team::par_each;
use crate::tensor::QTensor;
use crate::{Batch, KvCache, KvLayer, KvType};

/// The shape of one layer's attention.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Multiplies each score `q · k`.
    pub kq_scale: f32,
    /// Sliding window: a query at position `p` sees positions `p - window + 1 ..= p`;
    /// `None` for every earlier position (global attention).
    pub window: Option<usize>,
}

/// One layer's attention weights and options.
pub struct Attention {
    pub shape: AttnShape,
    /// `[n_embd] -> [n_head * head_dim]`, and the keys' and values'
    /// `[n_embd] -> [n_head_kv * head_dim]` each (views into one matrix when the file
    /// fuses them as `attn_qkv`).
    pub wq: QTensor,
    pub wk: QTensor,
    pub wv: QTensor,
    /// `[n_head * head_dim]`, `[n_head_kv * head_dim]` twice: Qwen2's biases.
    pub bias: Option<[Vec<f32>; 3]>,
    /// `[head_dim]` each: RMSNorm of every query and key head (Qwen3, Gemma 3).
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    /// Multiplies the queries (in f32, after RoPE) before the scores; 1 when the scale
    /// is all in `kq_scale`.
    pub q_scale: f32,
    /// Index of this layer's RoPE configuration in the model's list.
    pub rope: usize,
    /// `[n_head * head_dim] -> [n_embd]`
    pub wo: QTensor,
}

/// Scratch rows of one batch, `[n_tokens][..]` each.
pub struct AttnScratch {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub out: Vec<f32>,
}

impl AttnScratch {
    pub fn new(n: usize, shape: &AttnShape) -> AttnScratch {
        let (n_q, n_kv) = (
            shape.n_head * shape.head_dim,
            shape.n_head_kv * shape.head_dim,
        );
        AttnScratch {
            q: vec![0.0; n * n_q],
            k: vec![0.0; n * n_kv],
            v: vec![0.0; n * n_kv],
            out: vec![0.0; n * n_q],
        }
    }
}

impl Attention {
    /// `xn = attention(xn)` for the batch (`[n][n_embd]`), writing the batch's keys and
    /// values into layer `il` of `kv` at `slots` first. `rope` is this layer's
    /// configuration and `cs` its angles for the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        il: usize,
        batch: &Batch,
        kv: &mut KvCache,
        slots: &[(usize, usize)],
        rope: &Rope,
        cs: &[(f32, f32)],
        xn: &mut [f32],
        s: &mut AttnScratch,
    ) {
        let sh = &self.shape;
        let (n_q, n_kv) = (sh.n_head * sh.head_dim, sh.n_head_kv * sh.head_dim);
        QTensor::matmul_many(
            &[&self.wq, &self.wk, &self.wv],
            &*xn,
            &mut [&mut s.q, &mut s.k, &mut s.v],
        );
        if let Some([bq, bk, bv]) = &self.bias {
            add_bias(&mut s.q, bq);
            add_bias(&mut s.k, bk);
            add_bias(&mut s.v, bv);
        }
        if let Some(norm) = &self.q_norm {
            norm.rows_in_place(&mut s.q, n_q);
        }
        if let Some(norm) = &self.k_norm {
            norm.rows_in_place(&mut s.k, n_kv);
        }
        rope.apply(&mut s.q, n_q, &mut s.k, n_kv, cs, sh.head_dim);
        if self.q_scale != 1.0 {
            let scale = self.q_scale;
            super::each_chunk(&mut s.q, n_q, |r| r.iter_mut().for_each(|x| *x *= scale));
        }
        kv.store(il, slots, &s.k, &s.v);
        attend(sh, il, batch, kv, &s.q, &mut s.out);
        self.wo.matmul(&s.out, xn);
    }
}

/// `x[t] += b` for each row of `x`.
fn add_bias(x: &mut [f32], b: &[f32]) {
    super::each_chunk(x, b.len(), |rows| {
        for r in rows.chunks_exact_mut(b.len()) {
            r.iter_mut().zip(b).for_each(|(x, b)| *x += b);
        }
    });
}

/// Causal grouped-query attention of each batch row over its sequence's cached
/// positions (the cache already holds this batch's keys and values).
/// `q`, `out`: `[n_tokens][n_head * head_dim]`.
pub fn attend(
    sh: &AttnShape,
    layer: usize,
    batch: &Batch,
    kv: &KvCache,
    q: &[f32],
    out: &mut [f32],
) {
    match kv.kv_type() {
        KvType::F16 => attend_as::<half::f16>(sh, layer, batch, kv, q, out),
        KvType::F32 => attend_as::<f32>(sh, layer, batch, kv, q, out),
        KvType::Q8_0 => attend_as::<BlockQ8_0>(sh, layer, batch, kv, q, out),
        KvType::Q4_0 => attend_as::<BlockQ4_0>(sh, layer, batch, kv, q, out),
    }
}

/// Every (token, head) pair of the batch against its sequence's blocks, in place.
fn attend_as<T: CachedAs>(
    sh: &AttnShape,
    layer: usize,
    batch: &Batch,
    kv: &KvCache,
    q: &[f32],
    out: &mut [f32],
) {
    let (hd, bs) = (sh.head_dim, kv.block_size());
    // A cached row holds `n_kv` storage elements; a head `hd / T::QK` of them.
    let (n_kv, hd_el) = (sh.n_head_kv * hd / T::QK, hd / T::QK);
    let group = sh.n_head / sh.n_head_kv;
    // The first position each token sees: 0, or the start of its window.
    let first = |t: usize| match sh.window {
        Some(w) => (batch.positions[t] as usize + 1).saturating_sub(w),
        None => 0,
    };
    // Per token, the spans of positions first..=pos: a partial block, whole blocks, then
    // a partial one.
    let spans: Vec<Vec<KvSpan<'_, T>>> = (0..batch.len())
        .map(|t| {
            let table = &batch.block_tables[batch.seq[t] as usize];
            let (start, len) = (first(t), batch.positions[t] as usize + 1);
            (start / bs..len.div_ceil(bs))
                .map(|i| {
                    let n_pos = bs.min(len - i * bs);
                    let (k, v) = T::cached(kv.block(layer, table[i] as usize, n_pos));
                    let skip = start.saturating_sub(i * bs);
                    KvSpan {
                        k: &k[skip * n_kv..],
                        v: &v[skip * n_kv..],
                        n_pos: n_pos - skip,
                    }
                })
                .collect()
        })
        .collect();
    // Positions from `T::TILED_FROM` on take the tiled kernel: runs of consecutive
    // positions of a sequence, up to `TILED_QUERIES` per call (one query per call under
    // a sliding window, where each query's first position differs), one task per (run,
    // KV head).
    let tiled = |t: usize| batch.positions[t] as usize >= T::TILED_FROM;
    let max_run = if sh.window.is_some() {
        1
    } else {
        attention::TILED_QUERIES
    };
    let mut runs = Vec::new();
    let mut t = 0;
    while t < batch.len() {
        let mut e = t + 1;
        if tiled(t) {
            while e < batch.len()
                && e - t < max_run
                && batch.seq[e] == batch.seq[t]
                && batch.positions[e] == batch.positions[e - 1] + 1
            {
                e += 1;
            }
            runs.push((t, e - t));
        }
        t = e;
    }
    // Each (token, KV head) pair's output: `out` is `[n][n_head_kv][group * head_dim]`.
    let (row, gw) = (sh.n_head * hd, group * hd);
    let mut outs: Vec<Option<&mut [f32]>> = out.chunks_exact_mut(gw).map(Some).collect();
    // One task per run, taking its KV heads one after another: a cached row holds
    // every KV head's part side by side, so the lines the first head brings in
    // serve the others from this core's cache. With fewer runs than threads (one
    // decoded token) each KV head is a task of its own, so no thread sits idle. For
    // each head the task packs its queries into the kernel's `[n_q][group][head_dim]`
    // layout, followed by room for the result, which it then copies to its output
    // slices. A head's arithmetic is the same either way.
    let heads_per_task = if runs.len() < rayon::current_num_threads() {
        1
    } else {
        sh.n_head_kv
    };
    let mut tasks = Vec::with_capacity(runs.len() * sh.n_head_kv.div_ceil(heads_per_task));
    for &(t0, n_q) in &runs {
        for h0 in (0..sh.n_head_kv).step_by(heads_per_task) {
            let h1 = (h0 + heads_per_task).min(sh.n_head_kv);
            // `[n_q][h1 - h0]`
            let dst: Vec<&mut [f32]> = (t0..t0 + n_q)
                .flat_map(|t| (h0..h1).map(move |h| t * sh.n_head_kv + h))
                .map(|i| outs[i].take().expect("one task per (token, KV head)"))
                .collect();
            tasks.push((t0, n_q, h0..h1, dst));
        }
    }
    let scale = sh.kq_scale;
    par_each(tasks, |(t0, n_q, heads, mut dst)| {
        let n_h = heads.len();
        let mut buf = vec![0.0f32; 2 * n_q * gw];
        let (qg, o) = buf.split_at_mut(n_q * gw);
        let mut lens = [0usize; attention::TILED_QUERIES];
        for (j, t) in (t0..t0 + n_q).enumerate() {
            lens[j] = batch.positions[t] as usize + 1 - first(t);
        }
        for (i, h_kv) in heads.enumerate() {
            for (j, t) in (t0..t0 + n_q).enumerate() {
                qg[j * gw..][..gw].copy_from_slice(&q[t * row + h_kv * gw..][..gw]);
            }
            T::attend_tiled(
                qg,
                hd,
                &lens[..n_q],
                &spans[t0 + n_q - 1],
                n_kv,
                h_kv * hd_el,
                scale,
                o,
            );
            for (j, o) in o.chunks_exact(gw).enumerate() {
                dst[j * n_h + i].copy_from_slice(o);
            }
        }
    });
    // Every other token: one task per (token, KV head); the group's query heads share
    // its keys and values. (None with a quantized cache.) Only these pairs are split
    // over the pool: they are the first positions of a sequence, and a split of all
    // pairs by index would leave one thread with every one of them.
    let rest: Vec<(usize, &mut [f32])> = outs
        .into_iter()
        .enumerate()
        .filter_map(|(i, o)| Some((i, o?)))
        .collect();
    par_each(rest, |(i, o)| {
        let (t, h_kv) = (i / sh.n_head_kv, i % sh.n_head_kv);
        T::attend(
            &q[i * gw..(i + 1) * gw],
            hd,
            &spans[t],
            n_kv,
            h_kv * hd_el,
            scale,
            o,
        );
    });
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
    fn attend(
        q: &[f32],
        head_dim: usize,
        spans: &[KvSpan<'_, Self>],
        stride: usize,
        offset: usize,
        scale: f32,
        out: &mut [f32],
    );
    /// Consecutive queries of a sequence (`q` is `[lens.len()][g][head_dim]`), query `i`
    /// over the first `lens[i]` positions, as [`attention::attend_heads_tiled`].
    #[allow(clippy::too_many_arguments)]
    fn attend_tiled(
        q: &[f32],
        head_dim: usize,
        lens: &[usize],
        spans: &[KvSpan<'_, Self>],
        stride: usize,
        offset: usize,
        scale: f32,
        out: &mut [f32],
    );
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
            fn attend(
                q: &[f32],
                head_dim: usize,
                spans: &[KvSpan<'_, Self>],
                stride: usize,
                offset: usize,
                scale: f32,
                out: &mut [f32],
            ) {
                $kernel(q, head_dim, spans, stride, offset, scale, out)
            }
            fn attend_tiled(
                q: &[f32],
                head_dim: usize,
                lens: &[usize],
                spans: &[KvSpan<'_, Self>],
                stride: usize,
                offset: usize,
                scale: f32,
                out: &mut [f32],
            ) {
                $tiled_kernel(q, head_dim, lens, spans, stride, offset, scale, out)
            }
        }
    };
}

cached_as!(
    half::f16,
    F16,
    1,
    attention::attend_heads,
    attention::attend_heads_tiled,
    attention::TILED_FROM_POSITION
);
cached_as!(
    f32,
    F32,
    1,
    attention::attend_heads,
    attention::attend_heads_tiled,
    attention::TILED_FROM_POSITION
);
cached_as!(
    BlockQ8_0,
    Q8_0,
    32,
    attention::attend_heads_quant,
    attention::attend_heads_quant_tiled,
    0
);
cached_as!(
    BlockQ4_0,
    Q4_0,
    32,
    attention::attend_heads_quant,
    attention::attend_heads_quant_tiled,
    0
);
