//! Building blocks of a decoder layer, each described by data: which norm, which RoPE,
//! which attention options, which FFN. An architecture file (`arch/`) names its tensors
//! and fills these in; [`crate::decoder::Decoder`] runs them.

pub mod attention;
pub mod ffn;
pub mod moe;
pub mod norm;
pub mod rope;

use hearth_kernels::with_isa;

use crate::team::par_each;

/// Batches with at least this many rows spread the per-row steps (norms, RoPE, GLUs,
/// residual adds) over the pool; smaller ones run them on the calling thread.
const PAR_ROWS: usize = 8;

/// `f(dst_row, src_row)` for each row of `dst` (`[n][d]`) and `src` (`[n][s]`), compiled
/// for the process's ISA, in parallel (`par_each`, four rows a task) for a batch of
/// [`PAR_ROWS`] rows or more. A row's arithmetic is the same either way.
pub(crate) fn for_rows<S: Sync>(
    dst: &mut [f32],
    d: usize,
    src: &[S],
    s: usize,
    f: impl Fn(&mut [f32], &[S]) + Sync + Send,
) {
    for_chunks(dst, d, src, s, |a, b| {
        a.chunks_exact_mut(d)
            .zip(b.chunks_exact(s))
            .for_each(|(a, b)| f(a, b))
    });
}

/// As [`for_rows`], with `f` taking several rows at once (whole rows, four at a time in a
/// parallel batch, all of them in a small one).
pub(crate) fn for_chunks<S: Sync>(
    dst: &mut [f32],
    d: usize,
    src: &[S],
    s: usize,
    f: impl Fn(&mut [f32], &[S]) + Sync + Send,
) {
    debug_assert_eq!(dst.len() / d, src.len() / s);
    if dst.len() / d < PAR_ROWS {
        with_isa(|| f(dst, src));
    } else {
        let rows: Vec<_> = dst.chunks_mut(4 * d).zip(src.chunks(4 * s)).collect();
        par_each(rows, |(a4, b4)| with_isa(|| f(a4, b4)));
    }
}

/// [`for_chunks`] over two row sets that both change, `[n][d]` each.
pub(crate) fn for_chunks_mut(
    a: &mut [f32],
    b: &mut [f32],
    d: usize,
    f: impl Fn(&mut [f32], &mut [f32]) + Sync + Send,
) {
    debug_assert_eq!(a.len(), b.len());
    if a.len() / d < PAR_ROWS {
        with_isa(|| f(a, b));
    } else {
        let rows: Vec<_> = a.chunks_mut(4 * d).zip(b.chunks_mut(4 * d)).collect();
        par_each(rows, |(a4, b4)| with_isa(|| f(a4, b4)));
    }
}

/// `f(rows)` over the rows of `x` (`[n][d]`), several whole rows a call, as
/// [`for_chunks`].
pub(crate) fn each_chunk(x: &mut [f32], d: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    if x.len() / d < PAR_ROWS {
        with_isa(|| f(x));
    } else {
        let rows: Vec<_> = x.chunks_mut(4 * d).collect();
        par_each(rows, |r4| with_isa(|| f(r4)));
    }
}
