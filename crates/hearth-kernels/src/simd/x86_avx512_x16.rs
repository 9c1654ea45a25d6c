//! The driver the AVX-512 kernels over sixteen interleaved rows share
//! (`x86_avx512_q4_1x16.rs`, `x86_avx512_q5_0x16.rs`): per group of sixteen rows, each
//! block's quants are unpacked once into the thread's scratch, lane `l` of the twin's
//! eight for all sixteen rows in one register's worth; then tiles of up to two tokens
//! read them for every token of the call.

use std::arch::x86_64::*;

use super::x86::{scratch, SCRATCH};
use crate::IntoGemmOut;

/// Lanes of the twin per output (and registers per block of unpacked quants).
pub(crate) const LANES: usize = 8;

/// Rows per group.
pub(crate) const ROWS: usize = 16;

/// Most tokens per tile: each keeps its eight lane accumulators and a scale register.
const TILE_TOKENS: usize = 2;

/// One interleaved layout's kernel.
pub(crate) trait Tile16 {
    /// A block of sixteen interleaved rows.
    type W;
    /// An activation block.
    type A;
    /// What the tile needs of an activation block, computed once per call.
    type Prep: Copy;
    fn prep(a: &Self::A) -> Self::Prep;
    /// Block `w`'s quants: lane `l` of the sixteen rows at `quants.add(l)`, as the
    /// unsigned operand of `vpdpbusd`.
    unsafe fn unpack(w: &Self::W, quants: *mut __m512i);
    /// `res[t][r]`: the sixteen rows (the `nb` blocks at `g`, unpacked at `quants`)
    /// against token `t < T` (blocks at `a + t * nb`, their prep at `prep + t * nb`).
    unsafe fn tile<const T: usize>(
        nb: usize,
        g: *const Self::W,
        quants: *const __m512i,
        a: *const Self::A,
        prep: *const Self::Prep,
        res: &mut [[f32; ROWS]; 2],
    );
}

/// The product over interleaved rows with kernel `K` (`w`: groups of `nb` blocks, `a`:
/// `[n_tokens][nb]`), inlined into each kernel's `#[target_feature]` function.
#[inline(always)]
pub(crate) unsafe fn gemm16<'o, K: Tile16>(
    nb: usize,
    w: &[K::W],
    a: &[K::A],
    out: impl IntoGemmOut<'o>,
) {
    let (n_groups, n_tokens) = (w.len() / nb, a.len() / nb);
    let mut out = out.into_gemm_out(n_groups * ROWS, n_tokens);
    let prep: Vec<K::Prep> = a.iter().map(K::prep).collect();
    // (The thread's scratch, two 256-bit words per register: a fresh allocation per call
    // was measurable.)
    let mut buf = SCRATCH.with(|c| c.take());
    let quants = scratch::<__m256i>(&mut buf, 2 * nb * LANES)
        .as_mut_ptr()
        .cast::<__m512i>();
    for gi in 0..n_groups {
        let g = &w[gi * nb..(gi + 1) * nb];
        for (b, wb) in g.iter().enumerate() {
            K::unpack(wb, quants.add(b * LANES));
        }
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = (n_tokens - t0).min(TILE_TOKENS);
            let mut res = [[0.0f32; ROWS]; TILE_TOKENS];
            let (ap, pp) = (a.as_ptr().add(t0 * nb), prep.as_ptr().add(t0 * nb));
            // (A match, not a closure: a closure would not inherit the target features.)
            match nt {
                1 => K::tile::<1>(nb, g.as_ptr(), quants, ap, pp, &mut res),
                _ => K::tile::<2>(nb, g.as_ptr(), quants, ap, pp, &mut res),
            }
            for (t, row) in res.iter().enumerate().take(nt) {
                for (r, &v) in row.iter().enumerate() {
                    out.set(t0 + t, gi * ROWS + r, v);
                }
            }
            t0 += nt;
        }
    }
    SCRATCH.with(|c| c.set(buf));
}

/// The twin's horizontal order over its eight lanes, lane by lane for sixteen rows:
/// `acc[l] + acc[l + 4]`, then `(0 + 2) + (1 + 3)`.
#[inline(always)]
pub(crate) unsafe fn twin_lanes_sum(acc: &[__m512; LANES]) -> __m512 {
    let s: [__m512; 4] = std::array::from_fn(|i| _mm512_add_ps(acc[i], acc[i + 4]));
    _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]))
}
