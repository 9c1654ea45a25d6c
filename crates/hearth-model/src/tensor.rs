//! Weight tensors used in place from the mmap, and the threaded matrix product over them.

use std::borrow::Cow;
use std::sync::Arc;

use half::{bf16, f16};
use hearth_gguf::{GgmlType, GgufFile};
use hearth_kernels::*;

use crate::error::{ModelError, Result};
use crate::team::par_each;

/// Calls `$f::<BlockType>($args)` for the block type that matches a `GgmlType`.
/// Only types listed here can be computed with; [`QTensor::load`] rejects the rest.
macro_rules! with_block_type {
    ($t:expr, $f:ident ( $($arg:expr),* )) => {
        match $t {
            GgmlType::F32 => $f::<f32>($($arg),*),
            GgmlType::F16 => $f::<f16>($($arg),*),
            GgmlType::BF16 => $f::<bf16>($($arg),*),
            GgmlType::Q4_0 => $f::<BlockQ4_0>($($arg),*),
            GgmlType::Q4_1 => $f::<BlockQ4_1>($($arg),*),
            GgmlType::Q5_0 => $f::<BlockQ5_0>($($arg),*),
            GgmlType::Q5_1 => $f::<BlockQ5_1>($($arg),*),
            GgmlType::Q8_0 => $f::<BlockQ8_0>($($arg),*),
            GgmlType::Q2_K => $f::<BlockQ2_K>($($arg),*),
            GgmlType::Q3_K => $f::<BlockQ3_K>($($arg),*),
            GgmlType::Q4_K => $f::<BlockQ4_K>($($arg),*),
            GgmlType::Q5_K => $f::<BlockQ5_K>($($arg),*),
            GgmlType::Q6_K => $f::<BlockQ6_K>($($arg),*),
            other => unreachable!("QTensor::load admitted unsupported type {other}"),
        }
    };
}

pub(crate) use with_block_type;

/// Whether Hearth has kernels for weights of this type.
pub fn is_supported(t: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        t,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// A 2-D weight matrix `[ne1 rows][ne0 columns]` in any supported GGUF type, read in place
/// from the memory-mapped file (never copied).
#[derive(Clone)]
pub struct QTensor {
    file: Arc<GgufFile>,
    pub name: String,
    pub ggml_type: GgmlType,
    /// `[ne0, ne1]`: row length (contiguous) and number of rows.
    pub ne: [usize; 2],
    /// Byte range of the data within the file.
    start: usize,
    len: usize,
    /// The rows also interleaved sixteen at a time, for a type and CPU that have the
    /// kernel that reads them (the same products, faster).
    x16: Option<Interleaved>,
}

/// A matrix's rows interleaved sixteen at a time, `[ne1 / 16][ne0 / 32]`.
#[derive(Clone)]
enum Interleaved {
    Q4_1(Arc<Vec<BlockQ4_1x16>>),
    Q5_0(Arc<Vec<BlockQ5_0x16>>),
}

impl Interleaved {
    /// Whether one token's product reads this layout too. For `Q4_1` the plain layout's
    /// kernel, with its prefetches, measured faster streaming one token's weights from
    /// memory (perf.md 51); for `Q5_0` the two measured alike (perf.md 55), so its
    /// products always read the copy and the file's pages are released.
    fn for_one_token(&self) -> bool {
        matches!(self, Interleaved::Q5_0(_))
    }

    /// The `Q4_1` layout's blocks (a matrix of another type has none: a caller's bug).
    fn q4_1(&self) -> &[BlockQ4_1x16] {
        match self {
            Interleaved::Q4_1(v) => v,
            _ => unreachable!("matrices of one type share a layout"),
        }
    }

    /// The `Q5_0` layout's blocks, as [`Interleaved::q4_1`].
    fn q5_0(&self) -> &[BlockQ5_0x16] {
        match self {
            Interleaved::Q5_0(v) => v,
            _ => unreachable!("matrices of one type share a layout"),
        }
    }
}

impl std::fmt::Debug for QTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QTensor({} {} {:?})", self.name, self.ggml_type, self.ne)
    }
}

impl QTensor {
    /// Looks up tensor `name`, checks it is `[ne0, ne1]` (a 1-D tensor is `[ne0, 1]`) of a
    /// supported type, and returns a view of it.
    pub fn load(file: &Arc<GgufFile>, name: &str, ne: [usize; 2]) -> Result<QTensor> {
        let expected: &[usize] = if ne[1] == 1 { &ne[..1] } else { &ne };
        Ok(Self::load_shape(file, name, expected, ne)?.interleaved())
    }

    /// Looks up the 3-D tensor `name`, `[ne0, ne1, n_expert]` (a mixture of experts'
    /// `ffn_*_exps`), and returns one `[ne0, ne1]` view per expert, each read in place.
    pub fn load_experts(
        file: &Arc<GgufFile>,
        name: &str,
        ne: [usize; 2],
        n_expert: usize,
    ) -> Result<Vec<QTensor>> {
        let all = Self::load_shape(
            file,
            name,
            &[ne[0], ne[1], n_expert],
            [ne[0], ne[1] * n_expert],
        )?;
        (0..n_expert)
            .map(|e| Ok(all.rows(e * ne[1], (e + 1) * ne[1])?.interleaved()))
            .collect()
    }

    /// Tensor `name`, checked to have shape `expected` (trailing 1s aside) and a supported
    /// type, as a `[ne0, ne1]` matrix.
    fn load_shape(
        file: &Arc<GgufFile>,
        name: &str,
        expected: &[usize],
        ne: [usize; 2],
    ) -> Result<QTensor> {
        let info = file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let trim = |s: &mut Vec<u64>| {
            while s.len() > 1 && s.last() == Some(&1) {
                s.pop();
            }
        };
        let mut shape: Vec<u64> = info.shape.clone();
        let mut expected: Vec<u64> = expected.iter().map(|&v| v as u64).collect();
        trim(&mut shape);
        trim(&mut expected);
        if shape != expected {
            return Err(ModelError::BadShape {
                name: name.into(),
                got: info.shape.clone(),
                expected,
            });
        }
        if !is_supported(info.ggml_type) {
            return Err(ModelError::UnsupportedType {
                name: name.into(),
                ggml_type: info.ggml_type,
            });
        }
        let t = QTensor {
            file: file.clone(),
            name: name.into(),
            ggml_type: info.ggml_type,
            ne,
            start: (file.data_offset() + info.offset) as usize,
            len: info.n_bytes as usize,
            x16: None,
        };
        // Block structs need their alignment (at most 4); GGUF aligns tensor data to 32.
        if !(t.bytes().as_ptr() as usize).is_multiple_of(4) {
            return Err(ModelError::Misaligned(name.into()));
        }
        // (The reader sized the data from the shape checked above: whole rows of blocks.)
        Ok(t)
    }

    /// This matrix with its `Q4_1` or `Q5_0` rows also interleaved sixteen at a time, when
    /// this CPU has the kernel that reads them.
    fn interleaved(mut self) -> QTensor {
        if self.ne[0] == 0 || !self.ne[1].is_multiple_of(16) {
            return self;
        }
        let rows = self.bytes();
        self.x16 = match self.ggml_type {
            GgmlType::Q4_1 if rows16_pay() => Some(Interleaved::Q4_1(Arc::new(
                interleave_q4_1x16(bytemuck::cast_slice(rows), self.ne[0] / QK4_1),
            ))),
            GgmlType::Q5_0 if rows16_pay() => Some(Interleaved::Q5_0(Arc::new(
                interleave_q5_0x16(bytemuck::cast_slice(rows), self.ne[0] / QK5_0),
            ))),
            _ => None,
        };
        if self.x16.as_ref().is_some_and(Interleaved::for_one_token) {
            self.release();
        }
        self
    }

    /// Rows `r0..r1` of this matrix as a matrix of their own, still read in place (the
    /// parts of a fused weight such as `attn_qkv`). An error if the part does not start
    /// on its block type's alignment.
    pub fn rows(&self, r0: usize, r1: usize) -> Result<QTensor> {
        assert!(
            r0 < r1 && r1 <= self.ne[1],
            "rows {r0}..{r1} of a {}-row matrix",
            self.ne[1]
        );
        let row_bytes = self.len / self.ne[1];
        let t = QTensor {
            file: self.file.clone(),
            name: format!("{}[{r0}..{r1}]", self.name),
            ggml_type: self.ggml_type,
            ne: [self.ne[0], r1 - r0],
            start: self.start + r0 * row_bytes,
            len: (r1 - r0) * row_bytes,
            x16: None,
        };
        fn align<T>() -> usize {
            std::mem::align_of::<T>()
        }
        if !(t.bytes().as_ptr() as usize).is_multiple_of(with_block_type!(t.ggml_type, align())) {
            return Err(ModelError::Misaligned(t.name));
        }
        Ok(if self.x16.is_some() {
            t.interleaved()
        } else {
            t
        })
    }

    /// Lets the OS drop this tensor's pages from the resident set (see
    /// [`GgufFile::release`]): for a tensor whose product reads a copy in another layout.
    /// Reads still work; they fault the pages back in.
    pub fn release(&self) {
        self.file.release(self.start, self.len);
    }

    /// The raw bytes of the tensor.
    pub fn bytes(&self) -> &[u8] {
        &self.file.bytes()[self.start..self.start + self.len]
    }

    /// Dequantizes the whole tensor to f32 (for small tensors such as norms, and the oracle).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.ne[0] * self.ne[1]];
        with_block_type!(self.ggml_type, dequantize_bytes(self.bytes(), &mut out));
        out
    }

    /// Dequantizes row `row` into `out` (`out.len() == ne0`); an embedding lookup.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let row_bytes = self.len / self.ne[1];
        let bytes = &self.bytes()[row * row_bytes..(row + 1) * row_bytes];
        with_block_type!(self.ggml_type, dequantize_bytes(bytes, out));
    }

    /// `out[t][r] = dot(row r, x[t])` for `n_tokens` inputs `x: [n_tokens][ne0]`,
    /// `out: [n_tokens][ne1]`, in parallel (on the forward pass's team, see `team.rs`,
    /// else on the current rayon pool). Each input row is quantized once to the weight
    /// type's activation format. A row's arithmetic does not depend on the number of
    /// tokens or on its neighbours, so results are batch-invariant.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        let n_tokens = x.len() / self.ne[0];
        assert_eq!(x.len(), n_tokens * self.ne[0]);
        assert_eq!(out.len(), n_tokens * self.ne[1]);
        with_block_type!(
            self.ggml_type,
            matmul_typed(&[self], x, n_tokens, &mut [out])
        );
    }

    /// Several products of one input, `outs[i] = ws[i].matmul(x)` (as Q, K and V share
    /// the normed input, or the FFN's gate and up): the input is quantized once and all
    /// the matrices' rows are split over one parallel section. Results are bit-identical
    /// to separate [`QTensor::matmul`] calls. Falls back to them when the weights differ
    /// in type or row length.
    pub fn matmul_many(ws: &[&QTensor], x: &[f32], outs: &mut [&mut [f32]]) {
        assert_eq!(ws.len(), outs.len());
        let Some(first) = ws.first() else { return };
        if ws
            .iter()
            .any(|w| w.ggml_type != first.ggml_type || w.ne[0] != first.ne[0])
        {
            for (w, out) in ws.iter().zip(outs.iter_mut()) {
                w.matmul(x, out);
            }
            return;
        }
        let n_tokens = x.len() / first.ne[0];
        assert_eq!(x.len(), n_tokens * first.ne[0]);
        for (w, out) in ws.iter().zip(outs.iter()) {
            assert_eq!(out.len(), n_tokens * w.ne[1]);
        }
        with_block_type!(first.ggml_type, matmul_typed(ws, x, n_tokens, outs));
    }

    /// Several matrices of one type and row length, each against its own rows of `x`
    /// (`[n][ne0]`): `outs[i]` (`[rows[i].len()][ne1]`) row `j` is `ws[i] · x[rows[i][j]]`.
    /// `x` is quantized once and all the products share one parallel section: a mixture
    /// of experts, each expert against its tokens. Bit-identical to [`QTensor::matmul`]
    /// of the gathered rows.
    pub fn matmul_gather(ws: &[&QTensor], x: &[f32], rows: &[&[usize]], outs: &mut [&mut [f32]]) {
        assert!(ws.len() == rows.len() && ws.len() == outs.len());
        let Some(first) = ws.first() else { return };
        for ((w, r), o) in ws.iter().zip(rows).zip(outs.iter()) {
            assert_eq!(o.len(), r.len() * w.ne[1]);
        }
        if ws
            .iter()
            .any(|w| w.ggml_type != first.ggml_type || w.ne[0] != first.ne[0])
        {
            let ne0 = first.ne[0];
            for ((w, r), out) in ws.iter().zip(rows).zip(outs.iter_mut()) {
                let xg: Vec<f32> = r
                    .iter()
                    .flat_map(|&i| &x[i * ne0..(i + 1) * ne0])
                    .copied()
                    .collect();
                w.matmul(&xg, out);
            }
            return;
        }
        if first.ne[0] == 0 {
            // Empty rows: every dot product is 0.
            outs.iter_mut().for_each(|o| o.fill(0.0));
            return;
        }
        with_block_type!(first.ggml_type, matmul_gather_typed(ws, x, rows, outs));
    }
}

fn matmul_gather_typed<W: WeightBlock>(
    ws: &[&QTensor],
    x: &[f32],
    rows: &[&[usize]],
    outs: &mut [&mut [f32]],
) {
    let ne0 = ws[0].ne[0];
    let a_per_row = ne0 / <W::Act as Quantize>::QK;
    let xq = quantize_input::<W::Act>(x, ne0, x.len() / ne0);
    // Each matrix's rows, borrowed where they are consecutive, else gathered.
    let inputs: Vec<Cow<[W::Act]>> = rows
        .iter()
        .map(|r| match (r.first(), r.last()) {
            (Some(&i0), Some(&i1)) if i1 - i0 + 1 == r.len() && r.is_sorted() => {
                Cow::Borrowed(&xq[i0 * a_per_row..(i1 + 1) * a_per_row])
            }
            _ => Cow::Owned(
                r.iter()
                    .flat_map(|&i| &xq[i * a_per_row..(i + 1) * a_per_row])
                    .copied()
                    .collect(),
            ),
        })
        .collect();
    let inputs: Vec<&[W::Act]> = inputs.iter().map(|c| &c[..]).collect();
    plain_product::<W>(ws, &inputs, outs);
}

fn dequantize_bytes<W: Quantize>(bytes: &[u8], out: &mut [f32]) {
    W::dequantize_row(bytemuck::cast_slice(bytes), out);
}

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of indices (its own rows of its own tokens),
// and the pointer outlives the parallel section (it borrows `out` for the whole call).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `outs[i] = ws[i] · x` for weights of one type `W` and one row length: `x` quantized
/// once, then every matrix's rows split into tasks run in parallel. A batch's product
/// over `Q4_1` weights interleaved at load takes their sixteen-row kernel (the same
/// outputs, bit for bit).
fn matmul_typed<W: WeightBlock>(
    ws: &[&QTensor],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    let ne0 = ws[0].ne[0];
    let w_per_row = ne0 / W::QK;
    if w_per_row == 0 {
        // Empty rows: every dot product is 0.
        outs.iter_mut().for_each(|o| o.fill(0.0));
        return;
    }
    let ne1s: Vec<usize> = ws.iter().map(|w| w.ne[1]).collect();
    let x16 = ws
        .iter()
        .map(|w| w.x16.as_ref().filter(|x| n_tokens > 1 || x.for_one_token()))
        .collect::<Option<Vec<_>>>();
    // (Every matrix here has type `W`, so their layouts are of one kind.)
    match x16.as_deref() {
        Some([Interleaved::Q4_1(_), ..]) => {
            let x16 = x16.iter().flatten().map(|x| x.q4_1()).collect::<Vec<_>>();
            return rows16_product(&ne1s, x, n_tokens, outs, w_per_row, &x16);
        }
        Some([Interleaved::Q5_0(_), ..]) => {
            let x16 = x16.iter().flatten().map(|x| x.q5_0()).collect::<Vec<_>>();
            return rows16_product(&ne1s, x, n_tokens, outs, w_per_row, &x16);
        }
        _ => {}
    }
    let xq = quantize_input::<W::Act>(x, ne0, n_tokens);
    plain_product::<W>(ws, &vec![&xq[..]; ws.len()], outs);
}

/// `outs[m] = x16[m] · x`: matrices of sixteen interleaved rows (`w_per_row` blocks a
/// row), `x` quantized once to their activation type.
fn rows16_product<X: Rows16 + Sync>(
    ne1s: &[usize],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
    w_per_row: usize,
    x16: &[&[X]],
) {
    let ne0 = w_per_row * X::Plain::QK;
    let rows = |r0: usize, r1: usize| r0 / 16 * w_per_row..r1 / 16 * w_per_row;
    product(ne0, ne1s, x, n_tokens, outs, 16, |m, r0, r1, a, out| {
        gemm_rows16(w_per_row, &x16[m][rows(r0, r1)], a, out)
    });
}

/// `outs[m] = ws[m] · inputs[m]` (quantized activation rows, non-empty weight rows) with
/// the weights in their file layout, in one parallel section.
fn plain_product<W: WeightBlock>(ws: &[&QTensor], inputs: &[&[W::Act]], outs: &mut [&mut [f32]]) {
    let w_per_row = ws[0].ne[0] / W::QK;
    let ne1s: Vec<usize> = ws.iter().map(|w| w.ne[1]).collect();
    let weights: Vec<&[W]> = ws.iter().map(|w| bytemuck::cast_slice(w.bytes())).collect();
    product_each::<W::Act>(ws[0].ne[0], &ne1s, inputs, outs, 4, |m, r0, r1, a, out| {
        with_isa(|| {
            W::gemm(
                w_per_row,
                &weights[m][r0 * w_per_row..r1 * w_per_row],
                a,
                out,
            )
        })
    });
}

/// A matrix product's driver: `x` (`[n_tokens][ne0]`) quantized once to `A`, then every
/// matrix `m`'s `ne1s[m]` rows split into tasks run in parallel; `kernel(m, r0, r1, a,
/// out)` computes rows `r0..r1` of matrix `m` against the activation rows `a` into `out`
/// (`outs[m]`'s part). Task rows are a multiple of `align` (the kernel's row tile; every
/// `ne1` must be one too, or `align` must be at most 4).
pub(crate) fn product<A: Quantize>(
    ne0: usize,
    ne1s: &[usize],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
    align: usize,
    kernel: impl Fn(usize, usize, usize, &[A], GemmOut<'_>) + Sync,
) {
    let xq = quantize_input::<A>(x, ne0, n_tokens);
    product_each(ne0, ne1s, &vec![&xq[..]; ne1s.len()], outs, align, kernel)
}

/// [`product`] with each matrix `m` against its own quantized rows `inputs[m]`
/// (`outs[m]` is `[rows of inputs[m]][ne1s[m]]`).
pub(crate) fn product_each<A: Quantize>(
    ne0: usize,
    ne1s: &[usize],
    inputs: &[&[A]],
    outs: &mut [&mut [f32]],
    align: usize,
    kernel: impl Fn(usize, usize, usize, &[A], GemmOut<'_>) + Sync,
) {
    let a_per_row = ne0 / A::QK;
    let n_tokens = |m: usize| inputs[m].len() / a_per_row;

    // Rows are split into about eight tasks per thread to balance the threads (at most
    // 256 rows: the output layer's 49152 rows in 768 tasks of 64 cost 3.5% more cycles
    // per decoded token than in 192), a multiple of the kernel's row tile; a batch's
    // tokens into chunks of `TOKENS_PER_CHUNK`, each chunk its own task, so a prompt's
    // product ends with one short task, not one of all its tokens, on one thread while
    // the other waits. A task's weights stay in L1/L2 while they meet its tokens.
    let n_threads = rayon::current_num_threads().max(1);
    let all_rows: usize = ne1s.iter().sum();
    let rows_per_task = (all_rows / (n_threads * 8)).clamp(align, 256) / align * align;
    let mut tasks = Vec::new(); // (matrix, first row, end row, first token)
    for (m, &ne1) in ne1s.iter().enumerate() {
        for t0 in (0..n_tokens(m)).step_by(TOKENS_PER_CHUNK) {
            tasks.extend(
                (0..ne1)
                    .step_by(rows_per_task)
                    .map(|r0| (m, r0, (r0 + rows_per_task).min(ne1), t0)),
            );
        }
    }
    let dsts: Vec<(SharedOut, usize)> = ne1s
        .iter()
        .zip(outs.iter_mut())
        .map(|(&ne1, o)| (SharedOut(o.as_mut_ptr()), ne1))
        .collect();
    par_each(tasks, |(m, r0, r1, t0)| {
        let (dst, ne1) = dsts[m];
        let (n_rows, nt) = (r1 - r0, TOKENS_PER_CHUNK.min(n_tokens(m) - t0));
        // SAFETY: elements (t0 + t) * ne1 + r0 + r (t < nt, r < n_rows) lie inside output
        // `m` (r1 <= ne1, t0 + nt <= its tokens), which lives through this call, and
        // belong to this task's rows and tokens alone.
        let out = unsafe { GemmOut::from_raw_parts(dst.0.add(t0 * ne1 + r0), ne1, n_rows, nt) };
        kernel(
            m,
            r0,
            r1,
            &inputs[m][t0 * a_per_row..(t0 + nt) * a_per_row],
            out,
        );
    });
}

/// The `n_tokens` input rows of `ne0` values in `x`, each quantized once to `A` (a
/// product's activation format), compiled for the process's ISA (the arithmetic is plain
/// IEEE either way); a batch's rows spread over the pool.
fn quantize_input<A: Quantize>(x: &[f32], ne0: usize, n_tokens: usize) -> Aligned<A> {
    let a_per_row = ne0 / A::QK;
    let mut xq = Aligned::<A>::zeroed(a_per_row * n_tokens);
    if n_tokens < 8 {
        for (xr, qr) in x.chunks_exact(ne0).zip(xq.chunks_exact_mut(a_per_row)) {
            with_isa(|| A::quantize_row_act(xr, qr));
        }
    } else {
        let rows: Vec<_> = x
            .chunks(4 * ne0)
            .zip(xq.chunks_mut(4 * a_per_row))
            .collect();
        par_each(rows, |(x4, q4)| {
            for (xr, qr) in x4.chunks_exact(ne0).zip(q4.chunks_exact_mut(a_per_row)) {
                with_isa(|| A::quantize_row_act(xr, qr));
            }
        });
    }
    xq
}

/// A zeroed buffer of `A` that starts on a cache line (64 bytes), so that rows whose
/// length is a multiple of 64 bytes are read by whole-line SIMD loads, none split across
/// two lines (split loads halved the F32 tiles' speed, perf.md 58c).
struct Aligned<A> {
    lines: Vec<Line>,
    len: usize,
    _a: std::marker::PhantomData<A>,
}

/// One cache line.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl<A: Quantize> Aligned<A> {
    fn zeroed(len: usize) -> Self {
        Aligned {
            lines: vec![Line([0; 64]); (len * std::mem::size_of::<A>()).div_ceil(64)],
            len,
            _a: std::marker::PhantomData,
        }
    }
}

impl<A: Quantize> std::ops::Deref for Aligned<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        let bytes: &[u8] = bytemuck::cast_slice(&self.lines);
        bytemuck::cast_slice(&bytes[..self.len * std::mem::size_of::<A>()])
    }
}

impl<A: Quantize> std::ops::DerefMut for Aligned<A> {
    fn deref_mut(&mut self) -> &mut [A] {
        let n = self.len * std::mem::size_of::<A>();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.lines);
        bytemuck::cast_slice_mut(&mut bytes[..n])
    }
}

/// Tokens of one task: a batch's chunk (bounds the task's length and its scratch tile).
const TOKENS_PER_CHUNK: usize = 64;
