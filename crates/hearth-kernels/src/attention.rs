//! Attention of one query head over cached keys and values, with the numerics of the
//! reference engine's CPU flash-attention kernel, so that Hearth's logits follow the
//! reference's closely (this model amplifies any rounding difference, see
//! hearth-model's greedy_reference test):
//! - the query is rounded to f16 (keys are f16 in the cache);
//! - scores use a fixed summation order (64 lanes in 4 groups of 16, reduced as its
//!   AVX-512 build does);
//! - the softmax is online (one pass over the cache) and the value accumulator is f16,
//!   rounded after every key, with the final division done in f32;
//! - exponentials are the C library's `expf`, bit for bit ([`crate::ops::expf`]).
//!
//! Quantized caches (Q8_0, Q4_0) have no reference to follow; their attention
//! ([`attend_head_quant`]) takes the softmax over tiles of [`KV_TILE`] positions with an
//! f32 accumulator, which costs fewer operations per key. Float caches do the same from
//! [`TILED_FROM_POSITION`] on ([`attend_heads_tiled`]), several queries per call.
//!
//! The arithmetic is fixed by this code, not by the CPU's ISA, so results are the same on
//! every machine.

use bytemuck::Zeroable;
use half::f16;

use crate::ops::expf;
use crate::quants::q8::hsum8;
use crate::Quantize;

/// An element type of the KV cache, read in place by the attention kernels.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// Whether the element is an IEEE half (read with F16C by the SIMD kernel).
    const IS_F16: bool;
    fn to_f32(self) -> f32;
}

impl KvElem for f32 {
    const IS_F16: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl KvElem for f16 {
    const IS_F16: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// `sum a[i] * b[i]` in the reference engine's f16-dot order (its AVX-512 form): lane
/// `i % 64` accumulates with fused multiply-adds; the four groups of 16 lanes are added
/// (0+2, 1+3, then 0+1); the 16 lanes are reduced as `(l + l+8)`, `(l + l+4)`,
/// `(l + l+2)`, then the last two. Leftovers past a multiple of 64 are added one by one.
#[inline]
#[allow(clippy::needless_range_loop)] // the lanes read best indexed
pub fn dot_f16_order<T: KvElem>(a: &[f32], b: &[T]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [[0.0f32; 16]; 4];
    let main = a.len() / 64 * 64;
    for (ca, cb) in a[..main].chunks_exact(64).zip(b[..main].chunks_exact(64)) {
        for g in 0..4 {
            for l in 0..16 {
                acc[g][l] = ca[g * 16 + l].mul_add(cb[g * 16 + l].to_f32(), acc[g][l]);
            }
        }
    }
    for l in 0..16 {
        acc[0][l] += acc[2][l];
        acc[1][l] += acc[3][l];
    }
    for l in 0..16 {
        acc[0][l] += acc[1][l];
    }
    let t3: [f32; 8] = std::array::from_fn(|l| acc[0][l + 8] + acc[0][l]);
    let t6: [f32; 4] = std::array::from_fn(|l| t3[l + 4] + t3[l]);
    let mut sum = ((t6[0] + t6[2]) + (t6[1] + t6[3])) as f64;
    for (x, y) in a[main..].iter().zip(&b[main..]) {
        sum += (*x * y.to_f32()) as f64;
    }
    sum as f32
}

/// A run of consecutive cached positions (one KV-cache block, or the whole cache of a
/// contiguous sequence): keys and values `[n_pos][stride]` each, read in place.
#[derive(Debug, Clone, Copy)]
pub struct KvSpan<'a, T> {
    /// `[n_pos][stride]`
    pub k: &'a [T],
    /// `[n_pos][stride]`
    pub v: &'a [T],
    pub n_pos: usize,
}

impl<'a, T> KvSpan<'a, T> {
    /// Whether every row of the span, at `offset..offset + head_dim`, lies inside `k` and `v`.
    pub fn holds(&self, stride: usize, offset: usize, head_dim: usize) -> bool {
        self.n_pos == 0
            || (self.n_pos - 1) * stride + offset + head_dim <= self.k.len().min(self.v.len())
    }
}

/// `out = softmax(scale * q·k_p) · v_p` over the positions `p` of `spans`, in order, for
/// each head of `q` (`[g][head_dim]`, into `out` alike): the heads of a grouped-query
/// group, which share the key and value of a position, its row's
/// `offset..offset + head_dim` (same for `v`). How positions are split into spans does
/// not change the result, nor does how many heads go together: each head's result is
/// [`attend_head_ref`]'s, bit for bit, and the SIMD twin is used when the ISA allows.
///
/// The SIMD twin takes heads whose width is a multiple of 32 up to 256
/// ([`crate::simd::x86_attention::attention_head_dim_supported`]); other widths run the scalar
/// twin, and with an ISA that has the kernels that is noted in [`crate::fallback`].
pub fn attend_heads<T: KvElem>(
    q: &[f32],
    head_dim: usize,
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(
        q.len() == out.len() && head_dim > 0 && q.len().is_multiple_of(head_dim),
        "attention: q and out must be whole heads"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        if crate::simd::x86_attention::attention_head_dim_supported(head_dim) {
            // SAFETY: AVX2/FMA/F16C are present (`isa()`) and the kernel takes this head
            // width; it checks that q and out are whole heads and that every row it reads
            // lies inside its span.
            return unsafe {
                crate::simd::x86_attention::attend_heads(
                    q, head_dim, spans, stride, offset, scale, out,
                )
            };
        }
        crate::fallback::record("attention::attend_heads");
    }
    for (q, out) in q.chunks_exact(head_dim).zip(out.chunks_exact_mut(head_dim)) {
        attend_head_ref(q, spans, stride, offset, scale, out);
    }
}

/// One head of [`attend_heads`]: the scalar reference, twin of the SIMD kernel.
#[inline]
pub fn attend_head_ref<T: KvElem>(
    q: &[f32],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    let q16: Vec<f32> = q.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    let mut acc = vec![f16::ZERO; hd];
    let (mut m, mut s_sum) = (f32::NEG_INFINITY, 0.0f32);
    for span in spans {
        assert!(
            span.holds(stride, offset, hd),
            "attention span out of bounds"
        );
        for p in 0..span.n_pos {
            let s = dot_f16_order(&q16, &span.k[p * stride + offset..][..hd]) * scale;
            let (ms, vs) = if s > m {
                let ms = expf(m - s);
                m = s;
                for a in acc.iter_mut() {
                    *a = f16::from_f32(a.to_f32() * ms);
                }
                (ms, 1.0)
            } else {
                (1.0, expf(s - m))
            };
            for (a, &vv) in acc.iter_mut().zip(&span.v[p * stride + offset..][..hd]) {
                *a = f16::from_f32(vv.to_f32().mul_add(vs, a.to_f32()));
            }
            s_sum = s_sum.mul_add(ms, vs);
        }
    }
    let inv = if s_sum == 0.0 { 0.0 } else { 1.0 / s_sum };
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = a.to_f32() * inv;
    }
}

/// [`attend_heads`] over a cache of quantized blocks (spans, `stride` and `offset` count
/// blocks): each head is [`attend_head_quant`], bit for bit.
pub fn attend_heads_quant<B: QuantKv>(
    q: &[f32],
    head_dim: usize,
    spans: &[KvSpan<'_, B>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let n_pos = spans.iter().map(|s| s.n_pos).sum();
    attend_heads_quant_tiled(q, head_dim, &[n_pos], spans, stride, offset, scale, out);
}

/// [`attend_heads_tiled`] over a cache of quantized blocks (spans, `stride` and `offset`
/// count blocks): each (query, head) is [`attend_head_quant`], bit for bit, with the SIMD
/// twin for a `Q8_0` cache when the ISA allows and the head width is a multiple of 32 up
/// to 256 ([`crate::simd::x86_attention::attention_head_dim_supported`]). Other widths, and a
/// `Q4_0` cache (no SIMD kernel), run the scalar twin; with an ISA that has the kernels
/// that is noted in [`crate::fallback`].
#[allow(clippy::too_many_arguments)]
pub fn attend_heads_quant_tiled<B: QuantKv>(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, B>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    check_tiled_batch(q, head_dim, lens, out);
    if !B::attend_tiled_simd(q, head_dim, lens, spans, stride, offset, scale, out) {
        each_query_head(q, head_dim, lens, spans, out, |q, visible, out| {
            attend_head_quant(q, visible, stride, offset, scale, out)
        });
    }
}

/// Panics unless `q` and `out` hold whole heads of `lens.len()` queries, at most
/// [`TILED_QUERIES`].
fn check_tiled_batch(q: &[f32], head_dim: usize, lens: &[usize], out: &[f32]) {
    let n_q = lens.len();
    assert!(
        n_q > 0 && n_q <= TILED_QUERIES && q.len() == out.len() && head_dim > 0,
        "attention: bad tiled query batch"
    );
    assert!(
        q.len().is_multiple_of(n_q * head_dim),
        "attention: q and out must be whole heads"
    );
}

/// `one(q_head, visible_spans, out_head)` for each (query, head) of a tiled batch, query
/// `i` over the first `lens[i]` positions of `spans`.
fn each_query_head<T>(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, T>],
    out: &mut [f32],
    one: impl Fn(&[f32], &[KvSpan<'_, T>], &mut [f32]),
) {
    let g = q.len() / (lens.len() * head_dim);
    for (i, &len) in lens.iter().enumerate() {
        let visible = first_positions(spans, len);
        for h in 0..g {
            let at = (i * g + h) * head_dim;
            one(&q[at..at + head_dim], &visible, &mut out[at..at + head_dim]);
        }
    }
}

/// A quantized KV-cache block type, and whether it has a SIMD attention kernel.
pub trait QuantKv: crate::WeightBlock<Act = crate::BlockQ8_0> {
    /// A key row's score against the query quantized to `Q8_0` (before `scale`): the
    /// type's `vec_dot` unless the type says otherwise.
    #[inline]
    fn score(k: &[Self], q: &[crate::BlockQ8_0]) -> f32 {
        Self::vec_dot(k, q)
    }

    /// Runs the SIMD twin of [`attend_heads_quant_tiled`] if there is one for this type,
    /// head width and ISA; `false` if not (nothing written), after noting the fallback in
    /// [`crate::fallback`] where the ISA has SIMD kernels. The default is a type without
    /// a kernel (`Q4_0`).
    #[allow(clippy::too_many_arguments)]
    fn attend_tiled_simd(
        _q: &[f32],
        _head_dim: usize,
        _lens: &[usize],
        _spans: &[KvSpan<'_, Self>],
        _stride: usize,
        _offset: usize,
        _scale: f32,
        _out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            crate::fallback::record(
                "attention::attend_heads_quant_tiled (cache type without a SIMD kernel)",
            );
        }
        false
    }
}

impl QuantKv for crate::BlockQ4_0 {}

impl QuantKv for crate::BlockQ8_0 {
    /// The attention kernels' order, [`crate::vec_dot_q8_0_paired_ref`].
    #[inline]
    fn score(k: &[Self], q: &[crate::BlockQ8_0]) -> f32 {
        crate::vec_dot_q8_0_paired_ref(k, q)
    }

    fn attend_tiled_simd(
        q: &[f32],
        head_dim: usize,
        lens: &[usize],
        spans: &[KvSpan<'_, Self>],
        stride: usize,
        offset: usize,
        scale: f32,
        out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() >= crate::Isa::Avx2 {
            if !crate::simd::x86_attention::attention_head_dim_supported(head_dim) {
                crate::fallback::record("attention::attend_heads_quant_tiled (Q8_0)");
                return false;
            }
            if crate::isa() >= crate::Isa::Avx512 {
                // SAFETY: AVX-512 F/BW/VL with AVX2/FMA/F16C are present (`isa()`), the
                // kernel takes this head width, and it checks that q and out are whole
                // heads of at most `TILED_QUERIES` queries and every span it reads.
                unsafe {
                    crate::simd::x86_avx512_attention::attend_tiled_q8_0(
                        q, head_dim, lens, spans, stride, offset, scale, out,
                    )
                };
            } else {
                // SAFETY: AVX2/FMA/F16C are present (`isa()`); as above otherwise.
                unsafe {
                    crate::simd::x86_attention::attend_tiled_q8_0(
                        q, head_dim, lens, spans, stride, offset, scale, out,
                    )
                };
            }
            return true;
        }
        let _ = (q, head_dim, lens, spans, stride, offset, scale, out);
        false
    }
}

/// Positions per softmax tile of the quantized-cache attention: a head's positions,
/// counted from its first, go in tiles of this many (the last one shorter), however the
/// spans split them.
pub const KV_TILE: usize = 8;

/// Walks the positions of `spans` in tiles of [`KV_TILE`], yielding each tile's key and
/// value rows (a tile may take rows from several spans).
pub(crate) struct Tiles<'s, 'a, T> {
    spans: &'s [KvSpan<'a, T>],
    stride: usize,
    offset: usize,
    span: usize,
    pos: usize,
}

impl<'s, 'a, T> Tiles<'s, 'a, T> {
    /// Panics if a span does not hold its rows (`elems` per head at `offset`).
    pub(crate) fn new(
        spans: &'s [KvSpan<'a, T>],
        stride: usize,
        offset: usize,
        elems: usize,
    ) -> Self {
        for span in spans {
            assert!(
                span.holds(stride, offset, elems),
                "attention span out of bounds"
            );
        }
        Tiles {
            spans,
            stride,
            offset,
            span: 0,
            pos: 0,
        }
    }

    /// The next tile's rows as (key, value) pointers to each row's head, in `rows`;
    /// returns their number, 0 at the end. Each row holds the `elems` of [`Tiles::new`].
    #[inline(always)]
    pub(crate) fn next(&mut self, rows: &mut [(*const T, *const T); KV_TILE]) -> usize {
        let mut n = 0;
        while n < KV_TILE && self.span < self.spans.len() {
            let span = &self.spans[self.span];
            if self.pos == span.n_pos {
                (self.span, self.pos) = (self.span + 1, 0);
                continue;
            }
            // In bounds: `new` checked that the span holds all its rows.
            let at = self.pos * self.stride + self.offset;
            rows[n] = (span.k[at..].as_ptr(), span.v[at..].as_ptr());
            (n, self.pos) = (n + 1, self.pos + 1);
        }
        n
    }
}

/// The maximum of eight lanes as the SIMD kernel takes it: `l` against `l+4`, then `0+2`
/// and `1+3`, then the two; `max(a, b)` is `a > b ? a : b` (x86 `maxps`).
#[inline(always)]
pub(crate) fn hmax8(x: [f32; 8]) -> f32 {
    let max = |a: f32, b: f32| if a > b { a } else { b };
    let m: [f32; 4] = std::array::from_fn(|l| max(x[l], x[l + 4]));
    max(max(m[0], m[2]), max(m[1], m[3]))
}

/// One head of [`attend_heads`] over a cache of quantized blocks (`Q8_0` or `Q4_0`): spans,
/// `stride` and `offset` count blocks. The query is quantized once to `Q8_0` and each
/// score is the block types' integer dot product; the value rows are dequantized. The
/// softmax is [`tile_softmax`]'s.
///
/// Keys and values are read in place, never expanded into a full-precision copy.
pub fn attend_head_quant<B>(
    q: &[f32],
    spans: &[KvSpan<'_, B>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) where
    B: QuantKv,
{
    let hd = q.len();
    let nb = hd / B::QK;
    assert!(
        hd.is_multiple_of(B::QK) && out.len() == hd,
        "head of {hd} is not whole blocks"
    );
    let mut qq = vec![crate::BlockQ8_0::zeroed(); nb];
    crate::BlockQ8_0::quantize_row_act(q, &mut qq);
    // SAFETY: `Tiles` yields rows that hold `nb` blocks (checked by `Tiles::new`).
    let blocks = |p: *const B| unsafe { std::slice::from_raw_parts(p, nb) };
    tile_softmax(
        spans,
        stride,
        offset,
        nb,
        scale,
        out,
        |k| B::score(blocks(k), &qq),
        |v, row| B::dequantize_row(blocks(v), row),
    );
}

/// First position that attends with [`attend_heads_tiled`] over an f16 or f32 cache;
/// earlier positions use [`attend_heads`], the reference engine's one-key-at-a-time
/// arithmetic. The choice depends on the position alone, so a query's result never
/// depends on its batch, on how a prompt is split into chunks, or on which request put
/// its keys and values in a shared prefix.
///
/// Short contexts thus follow the reference engine closely (its greedy test cases reach
/// position 101; any other arithmetic moves their top-5 probabilities by more than the
/// 0.01 allowed), while long prompts, where attention costs most, take the kernel with
/// fewer operations: in a 512-token prompt, 94% of the (query, key) pairs are past
/// position 128. (The reference engine switches by batch instead: its tiled kernel runs
/// for batches of 64 queries or more.)
pub const TILED_FROM_POSITION: usize = 128;

/// Most queries one call of [`attend_heads_tiled`] takes.
pub const TILED_QUERIES: usize = 8;

/// [`attend_heads`] for consecutive queries of one sequence over an f16 or f32 cache, with
/// the tile-wise softmax of the quantized caches instead of the reference engine's
/// one-key-at-a-time arithmetic: `q` and `out` are `[n_q][g][head_dim]` (`n_q = lens.len()`,
/// at most [`TILED_QUERIES`]), and query `i` attends to the first `lens[i]` positions of
/// `spans`. Each (query, head) is [`attend_head_tiled`], bit for bit, however many
/// queries go together: the SIMD twin converts each tile's key and value rows once for
/// all of them. It takes heads whose width is a multiple of 32 up to 256
/// ([`crate::simd::x86_attention::attention_head_dim_supported`]); other widths run the scalar
/// twin, and with an ISA that has the kernels that is noted in [`crate::fallback`].
#[allow(clippy::too_many_arguments)]
pub fn attend_heads_tiled<T: KvElem>(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    check_tiled_batch(q, head_dim, lens, out);
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx2 {
        if crate::simd::x86_attention::attention_head_dim_supported(head_dim) {
            // SAFETY: AVX2/FMA/F16C are present (`isa()`) and the kernel takes this head
            // width; it checks that q and out are whole heads of at most `TILED_QUERIES`
            // queries and every span it reads.
            return unsafe {
                crate::simd::x86_attention::attend_tiled(
                    q, head_dim, lens, spans, stride, offset, scale, out,
                )
            };
        }
        crate::fallback::record("attention::attend_heads_tiled");
    }
    each_query_head(q, head_dim, lens, spans, out, |q, visible, out| {
        attend_head_tiled(q, visible, stride, offset, scale, out)
    });
}

/// The first `n` positions of `spans`.
pub fn first_positions<'a, T>(spans: &[KvSpan<'a, T>], mut n: usize) -> Vec<KvSpan<'a, T>> {
    let mut out = Vec::new();
    for span in spans {
        if n == 0 {
            break;
        }
        let take = span.n_pos.min(n);
        out.push(KvSpan {
            k: span.k,
            v: span.v,
            n_pos: take,
        });
        n -= take;
    }
    out
}

/// One head of [`attend_heads_tiled`], the scalar twin: each score is `q · k` in f32,
/// element `i` going to lane `i % 8` by a fused multiply-add in element order, the lanes
/// then summed as [`hsum8`]; the softmax is [`tile_softmax`]'s.
pub fn attend_head_tiled<T: KvElem>(
    q: &[f32],
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    assert_eq!(out.len(), hd, "attention: q and out differ");
    // SAFETY: `Tiles` yields rows that hold `hd` elements (checked by `Tiles::new`).
    let row = |p: *const T| unsafe { std::slice::from_raw_parts(p, hd) };
    let score = |k: *const T| {
        let mut lanes = [0.0f32; 8];
        for (i, (&x, &y)) in q.iter().zip(row(k)).enumerate() {
            lanes[i % 8] = x.mul_add(y.to_f32(), lanes[i % 8]);
        }
        hsum8(lanes)
    };
    let value = |v: *const T, out: &mut [f32]| {
        out.iter_mut()
            .zip(row(v))
            .for_each(|(o, x)| *o = x.to_f32())
    };
    tile_softmax(spans, stride, offset, hd, scale, out, score, value);
}

/// The online softmax over tiles of [`KV_TILE`] positions shared by the tiled kernels;
/// `score(k)` is a key row's dot product with the query (before `scale`), `value(v, row)`
/// writes a value row as f32 (`out.len()` of them). Per tile:
/// - the tile's scores (missing lanes `-inf`) and their maximum ([`hmax8`]); a tile whose
///   maximum is `-inf` adds nothing;
/// - a maximum above the running one rescales the f32 accumulator and the weight sum by
///   `expf(m_old - m_new)`;
/// - the weights `expf(s - m)` are summed as [`hsum8`], and each value row is added in
///   position order, times its weight, by a fused multiply-add.
///
/// A query's arithmetic depends only on its keys and values: not on the other queries of
/// a batch, nor on how the positions are split into spans.
#[allow(clippy::too_many_arguments)]
fn tile_softmax<T>(
    spans: &[KvSpan<'_, T>],
    stride: usize,
    offset: usize,
    elems: usize,
    scale: f32,
    out: &mut [f32],
    score: impl Fn(*const T) -> f32,
    value: impl Fn(*const T, &mut [f32]),
) {
    let hd = out.len();
    let (mut acc, mut row) = (vec![0.0f32; hd], vec![0.0f32; hd]);
    let (mut m, mut s_sum) = (f32::NEG_INFINITY, 0.0f32);
    let mut tiles = Tiles::new(spans, stride, offset, elems);
    let mut rows = [(std::ptr::null(), std::ptr::null()); KV_TILE];
    loop {
        let n = tiles.next(&mut rows);
        if n == 0 {
            break;
        }
        let mut s = [f32::NEG_INFINITY; KV_TILE];
        for (s, &(k, _)) in s.iter_mut().zip(&rows[..n]) {
            *s = score(k) * scale;
        }
        let t_max = hmax8(s);
        if t_max == f32::NEG_INFINITY {
            continue;
        }
        if t_max > m {
            let ms = expf(m - t_max);
            acc.iter_mut().for_each(|a| *a *= ms);
            s_sum *= ms;
            m = t_max;
        }
        let p: [f32; KV_TILE] = std::array::from_fn(|j| expf(s[j] - m));
        s_sum += hsum8(p);
        for (&p, &(_, v)) in p.iter().zip(&rows[..n]) {
            value(v, &mut row);
            for (a, &v) in acc.iter_mut().zip(&row) {
                *a = v.mul_add(p, *a);
            }
        }
    }
    let inv = if s_sum == 0.0 { 0.0 } else { 1.0 / s_sum };
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = a * inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_dot_matches_plain_sum() {
        let a: Vec<f32> = (0..70).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..70).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        assert!((dot_f16_order(&a, &b) as f64 - plain).abs() < 1e-4);
    }

    #[test]
    fn attention_is_a_softmax_weighted_mean() {
        // Two positions, one head of 4: keys chosen so the weights are known.
        let q = [1.0f32, 0.0, 0.0, 0.0];
        let k = [0.0f32, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0f32; 4];
        attend_head_ref(
            &q,
            &[KvSpan {
                k: &k,
                v: &v,
                n_pos: 2,
            }],
            4,
            0,
            1.0,
            &mut out,
        );
        let w1 = 2f32.exp() / (1.0 + 2f32.exp());
        for d in 0..4 {
            let want = (1.0 - w1) * v[d] + w1 * v[4 + d];
            assert!(
                (out[d] - want).abs() < 5e-3 * want,
                "dim {d}: {} vs {want}",
                out[d]
            );
        }
    }

    #[test]
    fn quantized_cache_attention_follows_the_f32_one() {
        use crate::{BlockQ4_0, BlockQ8_0};
        let (n_pos, hd) = (40, 64);
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 0.8;
        let k: Vec<f32> = (0..n_pos * hd).map(|i| f(i, 0.37)).collect();
        let v: Vec<f32> = (0..n_pos * hd).map(|i| f(i, 0.11)).collect();
        let q: Vec<f32> = (0..hd).map(|i| f(i, 0.7) * 3.0).collect();
        let mut want = vec![0.0f32; hd];
        attend_head_ref(
            &q,
            &[KvSpan {
                k: &k,
                v: &v,
                n_pos,
            }],
            hd,
            0,
            0.125,
            &mut want,
        );
        fn quant<B: Quantize>(x: &[f32]) -> Vec<B> {
            let mut y = vec![B::zeroed(); x.len() / B::QK];
            B::quantize_row(x, &mut y);
            y
        }
        let (k8, v8) = (quant::<BlockQ8_0>(&k), quant::<BlockQ8_0>(&v));
        let (k4, v4) = (quant::<BlockQ4_0>(&k), quant::<BlockQ4_0>(&v));
        // Split into blocks of 16 positions, as the paged cache holds them.
        let spans8: Vec<_> = (0..n_pos)
            .step_by(16)
            .map(|p| KvSpan {
                k: &k8[p * 2..],
                v: &v8[p * 2..],
                n_pos: 16.min(n_pos - p),
            })
            .collect();
        let spans4: Vec<_> = (0..n_pos)
            .step_by(16)
            .map(|p| KvSpan {
                k: &k4[p * 2..],
                v: &v4[p * 2..],
                n_pos: 16.min(n_pos - p),
            })
            .collect();
        let (mut o8, mut o4) = (vec![0.0f32; hd], vec![0.0f32; hd]);
        attend_head_quant(&q, &spans8, 2, 0, 0.125, &mut o8);
        attend_head_quant(&q, &spans4, 2, 0, 0.125, &mut o4);
        let err = |o: &[f32]| {
            o.iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(err(&o8) < 0.01, "q8_0 error {}", err(&o8));
        assert!(err(&o4) < 0.08, "q4_0 error {}", err(&o4));
        assert!(err(&o4) > err(&o8));
    }

    #[test]
    fn quantized_cache_attention_does_not_depend_on_the_spans() {
        use crate::BlockQ8_0;
        let (n_pos, hd) = (45, 64);
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 0.8;
        let mut k = vec![BlockQ8_0::zeroed(); n_pos * 2];
        let mut v = k.clone();
        BlockQ8_0::quantize_row(
            &(0..n_pos * hd).map(|i| f(i, 0.37)).collect::<Vec<_>>(),
            &mut k,
        );
        BlockQ8_0::quantize_row(
            &(0..n_pos * hd).map(|i| f(i, 0.11)).collect::<Vec<_>>(),
            &mut v,
        );
        // Large scores, so the running maximum moves across tiles.
        let q: Vec<f32> = (0..hd).map(|i| f(i, 0.7) * 12.0).collect();
        let mut whole = vec![0.0f32; hd];
        attend_heads_quant(
            &q,
            hd,
            &[KvSpan {
                k: &k,
                v: &v,
                n_pos,
            }],
            2,
            0,
            0.125,
            &mut whole,
        );
        for bs in [1, 3, 5, 8, 13] {
            let spans: Vec<_> = (0..n_pos)
                .step_by(bs)
                .map(|p| KvSpan {
                    k: &k[p * 2..],
                    v: &v[p * 2..],
                    n_pos: bs.min(n_pos - p),
                })
                .collect();
            let (mut simd, mut twin) = (vec![0.0f32; hd], vec![0.0f32; hd]);
            attend_heads_quant(&q, hd, &spans, 2, 0, 0.125, &mut simd);
            attend_head_quant(&q, &spans, 2, 0, 0.125, &mut twin);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&simd), bits(&whole), "spans of {bs}");
            assert_eq!(bits(&twin), bits(&whole), "spans of {bs} (scalar twin)");
        }
    }

    #[test]
    fn tiled_attention_is_a_softmax_and_each_query_sees_its_prefix() {
        let (n_pos, hd, g) = (40, 64, 2);
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 0.8;
        let k: Vec<f16> = (0..n_pos * hd).map(|i| f16::from_f32(f(i, 0.37))).collect();
        let v: Vec<f16> = (0..n_pos * hd).map(|i| f16::from_f32(f(i, 0.11))).collect();
        let spans: Vec<_> = (0..n_pos)
            .step_by(16)
            .map(|p| KvSpan {
                k: &k[p * hd..],
                v: &v[p * hd..],
                n_pos: 16.min(n_pos - p),
            })
            .collect();
        let lens = [36, 37, 38, 39, 40];
        let q: Vec<f32> = (0..lens.len() * g * hd).map(|i| f(i, 0.7) * 6.0).collect();
        let mut out = vec![0.0f32; q.len()];
        attend_heads_tiled(&q, hd, &lens, &spans, hd, 0, 0.125, &mut out);
        for (i, &len) in lens.iter().enumerate() {
            for h in 0..g {
                let qh = &q[(i * g + h) * hd..][..hd];
                // Exact softmax over the first `len` positions, in f64.
                let s: Vec<f64> = (0..len)
                    .map(|p| {
                        (0..hd)
                            .map(|d| qh[d] as f64 * k[p * hd + d].to_f64())
                            .sum::<f64>()
                            * 0.125
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = w.iter().sum();
                for d in 0..hd {
                    let want: f64 =
                        (0..len).map(|p| w[p] * v[p * hd + d].to_f64()).sum::<f64>() / sum;
                    let got = out[(i * g + h) * hd + d] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "query {i} head {h} dim {d}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_position_returns_its_value() {
        let mut out = [0.0f32; 2];
        attend_head_ref(
            &[0.3, -0.2],
            &[KvSpan {
                k: &[1.0, 1.0],
                v: &[0.5, -4.0],
                n_pos: 1,
            }],
            2,
            0,
            0.5,
            &mut out,
        );
        assert_eq!(out, [0.5, -4.0]);
    }
}
