//! AVX-512 twin of the tiled attention over a `Q8_0` cache, for every head width the
//! AVX2 kernels take (`x86_attention::attention_head_dim_supported`: multiples of 32 up to 256).
//!
//! The same tile loop as the AVX2 kernel (`x86_attention::attend_tiled_q8_0`): per tile of eight
//! positions the key and value rows are read once for every query and head, then the
//! scores, the softmax step and the values. The tile walk and the softmax step are the
//! AVX2 code itself. Every other operation is one lane's own, so it moves to 512-bit
//! registers unchanged:
//! - the scores ([`Q8_0Kv512`]): two keys per register, each half the AVX2 score's eight
//!   lanes (`vpmaddwd` pairs, their sum, one FMA by `d_k d_q` per block);
//! - the values: a value row is `q * d` per element, an accumulator element takes
//!   `v * p + acc` per position in position order, and the end divides by the weight sum.
//!   A head's `32 * NB` dims are `2 * NB` 512-bit registers instead of `4 * NB` 256-bit
//!   ones.
//!
//! So every result is still bit for bit [`crate::attention::attend_head_quant`]'s.

use std::arch::x86_64::*;

use half::f16;

use super::x86::f16x2;
use super::x86_attention::{
    attention_head_dim_supported, head_scales, quantize_head, softmax_step, with_head_width,
    Q8_0Kv, TileScores, TileWalk, TiledKv,
};
use crate::attention::{KvSpan, KV_TILE};
use crate::BlockQ8_0;

/// AVX-512 twin of [`crate::attention::attend_heads_quant_tiled`] over a `Q8_0` cache for
/// heads of `head_dim` dims (a width `x86_attention::attention_head_dim_supported` takes: `head_dim
/// / 32` blocks per head; `offset` counts blocks): `q` and `out` are `[n_q][g][head_dim]`
/// (`n_q = lens.len()`), query `i` sees the first `lens[i]` positions. Each (query, head)
/// is bit for bit [`crate::attention::attend_head_quant`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C. (The width, `q.len() ==
/// out.len()`, a non-zero multiple of `head_dim * lens.len()`, `lens.len() <=
/// TILED_QUERIES` and each span holding its rows are checked.)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attend_tiled_q8_0(
    q: &[f32],
    head_dim: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, BlockQ8_0>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    use crate::attention::TILED_QUERIES;
    assert!(
        attention_head_dim_supported(head_dim),
        "attention: no SIMD kernel for heads of {head_dim}"
    );
    let n_q = lens.len();
    assert!(
        n_q > 0
            && n_q <= TILED_QUERIES
            && q.len() == out.len()
            && q.len().is_multiple_of(head_dim * n_q)
            && !q.is_empty()
    );
    let g = q.len() / (head_dim * n_q);
    with_head_width!(head_dim, _NR, NB, NZ => {
        let mut h0 = 0;
        while h0 < g {
            h0 += match g - h0 {
                1 => group::<1, NB, NZ>(q, g, h0, lens, spans, stride, offset, scale, out),
                2 => group::<2, NB, NZ>(q, g, h0, lens, spans, stride, offset, scale, out),
                3 => group::<3, NB, NZ>(q, g, h0, lens, spans, stride, offset, scale, out),
                _ => group::<4, NB, NZ>(q, g, h0, lens, spans, stride, offset, scale, out),
            };
        }
    })
}

/// The value row of `NB` `Q8_0` blocks at `v`: `q * d`, dims `16r..16r + 16` in register
/// `r` (`NZ = 2 * NB`).
#[inline(always)]
unsafe fn value<const NB: usize, const NZ: usize>(v: *const BlockQ8_0) -> [__m512; NZ] {
    const { assert!(NZ == 2 * NB) };
    let mut row = [_mm512_setzero_ps(); NZ];
    for b in 0..NB {
        let vb = &*v.add(b);
        let d = _mm512_broadcastss_ps(f16x2(vb.d, f16::ZERO));
        for i in 0..2 {
            let bytes = _mm_loadu_si128(vb.qs.as_ptr().add(16 * i).cast());
            row[2 * b + i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), d);
        }
    }
    row
}

/// Heads `h0..h0 + G` (of `g` per query), of `NB` blocks: the AVX2 group loop
/// ([`TileWalk`] for the scores) with 512-bit value rows and accumulators; returns `G`.
/// (A function of its own for each shape, as the AVX2 loop's.)
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)] // lanes, heads and rows read best indexed
unsafe fn group<const G: usize, const NB: usize, const NZ: usize>(
    q: &[f32],
    g: usize,
    h0: usize,
    lens: &[usize],
    spans: &[KvSpan<'_, BlockQ8_0>],
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) -> usize {
    use crate::attention::TILED_QUERIES;
    const { assert!(NZ == 2 * NB) };
    let n_q = lens.len();
    let mut walk = TileWalk::<Q8_0Kv512<NB>, G>::new(q, g, h0, lens, spans, stride, offset, scale);
    let mut acc = [[[_mm512_setzero_ps(); NZ]; G]; TILED_QUERIES];
    let (mut m, mut s_sum) = (
        [[f32::NEG_INFINITY; G]; TILED_QUERIES],
        [[0.0f32; G]; TILED_QUERIES],
    );
    // Rows past a tile's end keep the previous tile's (stale) contents; they are never read.
    let mut vals = [[_mm512_setzero_ps(); NZ]; KV_TILE];
    while let Some(TileScores {
        rows,
        n,
        nq,
        scores,
    }) = walk.next()
    {
        for j in 0..n {
            vals[j] = value::<NB, NZ>(rows[j].1);
        }
        // 2. The softmax step; 3. the value rows in position order, each feeding every
        // live head of the query, four registers of a row at a time.
        for qi in 0..n_q {
            let mut w = [[0.0f32; 8]; G];
            let mut live = [false; G];
            for h in 0..G {
                let Some(ms) =
                    softmax_step(scores[qi][h], &mut m[qi][h], &mut s_sum[qi][h], &mut w[h])
                else {
                    continue;
                };
                live[h] = true;
                if let Some(ms) = ms {
                    let msv = _mm512_set1_ps(ms);
                    for x in acc[qi][h].iter_mut() {
                        *x = _mm512_mul_ps(*x, msv);
                    }
                }
            }
            let mut c = 0;
            while c + 4 <= NZ {
                add_values::<G, 4, NZ>(&mut acc[qi], c, &vals, &w, &live, nq[qi]);
                c += 4;
            }
            if c < NZ {
                add_values::<G, 2, NZ>(&mut acc[qi], c, &vals, &w, &live, nq[qi]);
            }
        }
    }
    let hd = 32 * NB;
    for qi in 0..n_q {
        let at = (qi * g + h0) * hd;
        let out = &mut out[at..at + hd * G];
        for h in 0..G {
            let inv = _mm512_set1_ps(if s_sum[qi][h] == 0.0 {
                0.0
            } else {
                1.0 / s_sum[qi][h]
            });
            for (r, a) in acc[qi][h].iter().enumerate() {
                _mm512_storeu_ps(
                    out.as_mut_ptr().add(hd * h + 16 * r),
                    _mm512_mul_ps(*a, inv),
                );
            }
        }
    }
    G
}

/// Registers `c..c + W` of each live head's accumulator: `acc += v * w[j]` for the first
/// `n` value rows in order (a fused multiply-add per element and row), each value
/// register feeding every head.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // heads and rows read best indexed
unsafe fn add_values<const G: usize, const W: usize, const NZ: usize>(
    acc: &mut [[__m512; NZ]; G],
    c: usize,
    vals: &[[__m512; NZ]; KV_TILE],
    w: &[[f32; 8]; G],
    live: &[bool; G],
    n: usize,
) {
    let mut a = [[_mm512_setzero_ps(); W]; G];
    for h in 0..G {
        a[h].copy_from_slice(&acc[h][c..c + W]);
    }
    for j in 0..n {
        // The row's registers loaded once for every head.
        let mut v = [_mm512_setzero_ps(); W];
        v.copy_from_slice(&vals[j][c..c + W]);
        for h in 0..G {
            if live[h] {
                let p = _mm512_set1_ps(w[h][j]);
                for r in 0..W {
                    a[h][r] = _mm512_fmadd_ps(v[r], p, a[h][r]);
                }
            }
        }
    }
    for h in 0..G {
        acc[h][c..c + W].copy_from_slice(&a[h]);
    }
}

/// A block's 32 values widened to i16: elements 0..16 in both 256-bit halves of the
/// first register, 16..32 in both halves of the second. (A function, not a closure: a
/// closure would not inherit the caller's target features.)
#[inline(always)]
unsafe fn halves(b: &BlockQ8_0) -> [__m512i; 2] {
    let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.qs.as_ptr().cast()));
    [
        _mm512_shuffle_i64x2::<0b01_00_01_00>(x, x),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(x, x),
    ]
}

/// The score side of a `Q8_0` head of `NB` blocks in 512-bit registers: a row holds, per
/// block, its two halves of sixteen widened values, each repeated in both 256-bit halves
/// of a register (`[b][h]`), and the block scales. Two keys' rows blend into one register
/// per half, so one `vpmaddwd` does both keys' pairs.
pub(crate) struct Q8_0Kv512<const NB: usize>;

impl<const NB: usize> TiledKv for Q8_0Kv512<NB> {
    type Elem = BlockQ8_0;
    type Row = ([[__m512i; 2]; NB], [f32; NB]);
    const HEAD_DIM: usize = 32 * NB;
    const HEAD_ELEMS: usize = NB;
    #[inline(always)]
    unsafe fn query(q: *const f32) -> Self::Row {
        Self::key(quantize_head::<NB>(q).as_ptr())
    }
    #[inline(always)]
    unsafe fn key(k: *const BlockQ8_0) -> Self::Row {
        let mut q16 = [[_mm512_setzero_si512(); 2]; NB];
        for (b, q16) in q16.iter_mut().enumerate() {
            *q16 = halves(&*k.add(b));
        }
        (q16, head_scales::<NB>(k))
    }
    #[inline(always)]
    unsafe fn zero() -> Self::Row {
        ([[_mm512_setzero_si512(); 2]; NB], [0.0; NB])
    }
    #[inline(always)]
    unsafe fn value<const NR: usize>(v: *const BlockQ8_0, out: &mut [__m256; NR]) {
        Q8_0Kv::<NB>::value(v, out)
    }
    /// As `Q8_0Kv::scores`, two keys at a time: lanes 0..8 key `2i`, 8..16 key `2i + 1`.
    #[inline(always)]
    unsafe fn scores(q: &Self::Row, keys: &[Self::Row; 8]) -> [__m256; 8] {
        let mut parts = [_mm256_setzero_ps(); 8];
        for i in 0..4 {
            let (ka, kb) = (&keys[2 * i], &keys[2 * i + 1]);
            let mut acc = _mm512_setzero_ps();
            for b in 0..NB {
                let k0 = _mm512_mask_blend_epi64(0xf0, ka.0[b][0], kb.0[b][0]);
                let k1 = _mm512_mask_blend_epi64(0xf0, ka.0[b][1], kb.0[b][1]);
                let sumi = _mm512_add_epi32(
                    _mm512_madd_epi16(k0, q.0[b][0]),
                    _mm512_madd_epi16(k1, q.0[b][1]),
                );
                let kd = _mm512_insertf64x4::<1>(
                    _mm512_castps_pd(_mm512_set1_ps(ka.1[b])),
                    _mm256_castps_pd(_mm256_set1_ps(kb.1[b])),
                );
                let d = _mm512_mul_ps(_mm512_castpd_ps(kd), _mm512_set1_ps(q.1[b]));
                acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
            }
            parts[2 * i] = _mm512_castps512_ps256(acc);
            parts[2 * i + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        }
        parts
    }
}
