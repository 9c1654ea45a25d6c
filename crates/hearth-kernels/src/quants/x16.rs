//! What the layouts of sixteen interleaved rows share ([`super::q4_1x16`],
//! [`super::q5_0x16`]): the way back to a plain row, the product without their kernel,
//! and the test that holds each kernel to its type's twin.

use crate::{IntoGemmOut, WeightBlock};

/// A block of sixteen interleaved rows of the plain type [`Rows16::Plain`].
pub trait Rows16: bytemuck::Pod {
    type Plain: WeightBlock;
    /// One block of each of sixteen rows, side by side.
    fn pack(rows: [&Self::Plain; 16]) -> Self;
    /// Row `r`'s block (`r < 16`), back in the plain layout.
    fn row(&self, r: usize) -> Self::Plain;

    /// Row `r` (`< 16`) of the group of `nb` blocks `g`, back in the plain layout.
    fn row_of(g: &[Self], r: usize) -> Vec<Self::Plain> {
        g.iter().map(|x| x.row(r)).collect()
    }
    /// The layout's AVX-512 kernel, as [`gemm_rows16`].
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `nb > 0` and `w`
    /// and `a` are whole rows of `nb` blocks.
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm_avx512<'o>(
        nb: usize,
        w: &[Self],
        a: &[<Self::Plain as WeightBlock>::Act],
        out: impl IntoGemmOut<'o>,
    );
}

/// Interleaves rows of `nb` blocks, sixteen at a time: block `b` of rows `16 i..16 i + 16`
/// goes to element `i * nb + b`. The number of rows must be a multiple of 16.
pub fn interleave_rows16<X: Rows16>(rows: &[X::Plain], nb: usize) -> Vec<X> {
    assert!(
        nb > 0 && rows.len().is_multiple_of(nb * 16),
        "interleave_rows16: rows are not whole groups of 16"
    );
    rows.chunks_exact(nb * 16)
        .flat_map(|group| {
            (0..nb).map(move |b| X::pack(std::array::from_fn(|r| &group[r * nb + b])))
        })
        .collect()
}

/// `qs[64 c + 4 r + j]` (of an interleaved block) from row `r`'s sixteen nibble bytes `q`
/// (byte `4 c + j`): four bytes of each row per 64-byte group.
pub(crate) fn put_nibbles(qs: &mut [u8; 256], r: usize, q: &[u8; 16]) {
    for (i, &v) in q.iter().enumerate() {
        qs[64 * (i / 4) + 4 * r + i % 4] = v;
    }
}

/// Row `r`'s sixteen nibble bytes back out of `qs` (see [`put_nibbles`]).
pub(crate) fn nibbles(qs: &[u8; 256], r: usize) -> [u8; 16] {
    std::array::from_fn(|i| qs[64 * (i / 4) + 4 * r + i % 4])
}

/// Output (token `t`, row `r`) is the plain type's `vec_dot` of row `r` and token `t`,
/// bit for bit: `w` holds `n_rows / 16` groups of `nb` interleaved blocks, `a` is
/// `[n_tokens][nb]`, `out` `[n_tokens][n_rows]` (or a [`crate::GemmOut`] of that shape).
/// Worth the layout with AVX-512 ([`rows16_pay`]); elsewhere each row is taken back to
/// the plain layout.
pub fn gemm_rows16<'o, X: Rows16>(
    nb: usize,
    w: &[X],
    a: &[<X::Plain as WeightBlock>::Act],
    out: impl IntoGemmOut<'o>,
) {
    assert!(
        nb > 0 && w.len().is_multiple_of(nb) && a.len().is_multiple_of(nb),
        "gemm_rows16: lengths are not whole rows"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::isa() >= crate::Isa::Avx512 {
        // SAFETY: `isa()` reports AVX-512 (F/BW/VL/VNNI, with AVX2, FMA and F16C) only
        // when the CPU has them; the lengths are whole rows (checked above).
        return unsafe { X::gemm_avx512(nb, w, a, out) };
    }
    gemm_rows(nb, w, a, out)
}

/// Whether this process's ISA has the kernels of the interleaved layouts (else the plain
/// layout's kernels are faster).
pub fn rows16_pay() -> bool {
    crate::isa() >= crate::Isa::Avx512
}

/// Each output as the plain type's `vec_dot`: the product where the CPU has no kernel
/// for the layout.
fn gemm_rows<'o, X: Rows16>(
    nb: usize,
    w: &[X],
    a: &[<X::Plain as WeightBlock>::Act],
    out: impl IntoGemmOut<'o>,
) {
    let mut out = out.into_gemm_out(w.len() / nb * 16, a.len() / nb);
    for (gi, g) in w.chunks_exact(nb).enumerate() {
        for r in 0..16 {
            let row = X::row_of(g, r);
            for (t, ar) in a.chunks_exact(nb).enumerate() {
                out.set(t, gi * 16 + r, X::Plain::vec_dot(&row, ar));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Quantize;
    use bytemuck::Zeroable;

    type Act<X> = <<X as Rows16>::Plain as WeightBlock>::Act;
    type GemmFn<X> = fn(usize, &[X], &[Act<X>], &mut [f32]);
    type TwinFn<X> = fn(&[<X as Rows16>::Plain], &[Act<X>]) -> f32;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 1.5
            })
            .collect()
    }

    /// Every output of `gemm` against `twin`, bit for bit, over token counts that fill
    /// and split the tiles and one- and many-block rows; `extremes` sets some rows'
    /// blocks to extreme quants and scales (row `i` starts at block `i * nb`). Also
    /// checks that [`Rows16::row_of`] undoes `interleave`.
    pub(crate) fn product_is_the_twin<X: Rows16>(
        interleave: fn(&[X::Plain], usize) -> Vec<X>,
        gemm: GemmFn<X>,
        twin: TwinFn<X>,
        extremes: fn(&mut [X::Plain], usize),
    ) {
        for &(nb, n_rows) in &[(1usize, 16usize), (3, 48), (20, 32)] {
            let mut w = vec![X::Plain::zeroed(); n_rows * nb];
            X::Plain::quantize_row(&data(n_rows * nb * 32, 7), &mut w);
            extremes(&mut w, nb);
            let x16 = interleave(&w, nb);
            for g in 0..n_rows / 16 {
                for r in 0..16 {
                    assert_eq!(
                        bytemuck::cast_slice::<_, u8>(&X::row_of(&x16[g * nb..(g + 1) * nb], r)),
                        bytemuck::cast_slice::<_, u8>(&w[(16 * g + r) * nb..(16 * g + r + 1) * nb])
                    );
                }
            }
            for n_tokens in [1usize, 2, 3, 5, 16] {
                let x = data(n_tokens * nb * 32, 11 + n_tokens as u32);
                let mut a = vec![Act::<X>::zeroed(); n_tokens * nb];
                Act::<X>::quantize_row_act(&x, &mut a);
                // The first and last blocks at the activations' extremes.
                let mut ext = vec![Act::<X>::zeroed(); 2];
                Act::<X>::quantize_row_act(&[[-127.0f32; 32], [127.0; 32]].concat(), &mut ext);
                (a[0], a[nb - 1]) = (ext[0], ext[1]);
                let mut got = vec![f32::NAN; n_tokens * n_rows];
                gemm(nb, &x16, &a, &mut got);
                for (i, got) in got.iter().enumerate() {
                    let (t, r) = (i / n_rows, i % n_rows);
                    let want = twin(&w[r * nb..(r + 1) * nb], &a[t * nb..(t + 1) * nb]);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{:?}: nb {nb} tokens {n_tokens} output {i}",
                        crate::isa()
                    );
                }
            }
        }
    }
}
