//! Micro-benchmarks of the dot-product kernels, on one thread, at the default model's
//! shapes (SmolLM2-135M: n_embd 576, n_ff 1536, n_vocab 49152; Q4_1 weights, Q8_0
//! output). Throughput is in weight bytes (criterion's GB/s); each benchmark's name
//! carries its floating-point work per iteration (`MFLOP`, two per multiply-add), so
//! GFLOP/s = MFLOP / time in ms.
//!
//! `cargo bench -p hearth-kernels --bench kernels` (filter: `-- gemm/q4_1`,
//! `-- attention`);
//! `HEARTH_ISA=scalar` benchmarks the scalar twins.

use bytemuck::Zeroable;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth_kernels::*;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

fn quantize<T: Quantize>(x: &[f32]) -> Vec<T> {
    let mut q = vec![T::zeroed(); x.len() / T::QK];
    T::quantize_row(x, &mut q);
    q
}

fn mflop(n: usize) -> String {
    format!("{:.3}MFLOP", 2.0 * n as f64 / 1e6)
}

/// One row's dot product per iteration.
fn bench_vec_dot<W: WeightBlock>(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group(format!("vec_dot/{name}"));
    for ne0 in [576, 1536] {
        let w = quantize::<W>(&data(ne0, 1));
        let mut a = vec![W::Act::zeroed(); ne0 / <W::Act as Quantize>::QK];
        W::Act::quantize_row_act(&data(ne0, 2), &mut a);
        g.throughput(Throughput::Bytes(std::mem::size_of_val(&w[..]) as u64));
        g.bench_function(BenchmarkId::new(mflop(ne0), ne0), |b| {
            b.iter(|| W::vec_dot(black_box(&w), black_box(&a)))
        });
    }
    g.finish();
}

/// `[n_tokens][ne0] x [ne1][ne0]^T` on one thread: the tiled kernel (`gemm`) and, for
/// comparison, one `vec_dot` per output (`loop`).
fn bench_gemm<W: WeightBlock>(
    c: &mut Criterion,
    name: &str,
    shapes: &[(usize, usize)],
    tokens: &[usize],
) {
    let mut g = c.benchmark_group(format!("gemm/{name}"));
    g.sample_size(20);
    for &(ne0, ne1) in shapes {
        let nb = ne0 / W::QK;
        let w = quantize::<W>(&data(ne0 * ne1, 3));
        for &n in tokens {
            let mut a = vec![W::Act::zeroed(); n * ne0 / <W::Act as Quantize>::QK];
            W::Act::quantize_row_act(&data(n * ne0, 4), &mut a);
            let mut out = vec![0.0f32; n * ne1];
            g.throughput(Throughput::Bytes(std::mem::size_of_val(&w[..]) as u64));
            let id = format!("{ne0}x{ne1}/t{n}/{}", mflop(ne0 * ne1 * n));
            g.bench_function(BenchmarkId::new("gemm", &id), |b| {
                b.iter(|| with_isa(|| W::gemm(nb, black_box(&w), black_box(&a), &mut out)))
            });
            g.bench_function(BenchmarkId::new("loop", &id), |b| {
                b.iter(|| {
                    with_isa(|| gemm_with(nb, black_box(&w), black_box(&a), &mut out, W::vec_dot))
                })
            });
        }
    }
    g.finish();
}

/// A product over sixteen interleaved rows (`gemm/q8_0x16`: [`gemm_q8_0x16`], the
/// output layer's; `gemm/q4_1x16` and `gemm/q5_0x16`: [`gemm_rows16`]), beside the plain layout's
/// `gemm/<type>` at the same shapes: `interleave` lays out the `W` rows, `gemm` runs the
/// product.
fn bench_x16<W: WeightBlock, X>(
    c: &mut Criterion,
    name: &str,
    shapes: &[(usize, usize)],
    tokens: &[usize],
    interleave: fn(&[W], usize) -> Vec<X>,
    gemm: impl Fn(usize, &[X], &[W::Act], &mut [f32]),
) {
    let mut g = c.benchmark_group(format!("gemm/{name}"));
    g.sample_size(20);
    for &(ne0, ne1) in shapes {
        let nb = ne0 / W::QK;
        let w = interleave(&quantize::<W>(&data(ne0 * ne1, 3)), nb);
        for &n in tokens {
            let mut a = vec![W::Act::zeroed(); n * ne0 / <W::Act as Quantize>::QK];
            W::Act::quantize_row_act(&data(n * ne0, 4), &mut a);
            let mut out = vec![0.0f32; n * ne1];
            g.throughput(Throughput::Bytes(std::mem::size_of_val(&w[..]) as u64));
            let id = format!("{ne0}x{ne1}/t{n}/{}", mflop(ne0 * ne1 * n));
            g.bench_function(BenchmarkId::new("gemm", &id), |b| {
                b.iter(|| gemm(nb, black_box(&w), black_box(&a), &mut out))
            });
        }
    }
    g.finish();
}

/// The layers' shapes: q/o (576x576), k/v (576x192), gate/up (576x1536), down (1536x576).
const LAYER: &[(usize, usize)] = &[(576, 576), (576, 192), (576, 1536), (1536, 576)];

/// One decoded token's attention over a `Q8_0` cache of 1024 positions, four query heads
/// sharing one KV head, at each head width (64: SmolLM2, 128: Qwen3, 256: Gemma 3).
fn bench_attention(c: &mut Criterion) {
    use hearth_kernels::attention::{attend_heads_quant, KvSpan};
    let mut g = c.benchmark_group("attention/q8_0");
    let (n_pos, g_heads) = (1024, 4);
    for hd in [64, 128, 256] {
        let k = quantize::<BlockQ8_0>(&data(n_pos * hd, 3));
        let v = quantize::<BlockQ8_0>(&data(n_pos * hd, 4));
        let q = data(g_heads * hd, 5);
        let mut out = vec![0.0f32; g_heads * hd];
        let spans = [KvSpan {
            k: &k,
            v: &v,
            n_pos,
        }];
        let scale = 1.0 / (hd as f32).sqrt();
        g.bench_function(BenchmarkId::new("decode", hd), |b| {
            b.iter(|| attend_heads_quant(black_box(&q), hd, &spans, hd / 32, 0, scale, &mut out))
        });
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    bench_attention(c);
    bench_vec_dot::<BlockQ4_1>(c, "q4_1");
    bench_vec_dot::<BlockQ4_0>(c, "q4_0");
    bench_vec_dot::<BlockQ8_0>(c, "q8_0");
    bench_gemm::<BlockQ4_1>(c, "q4_1", LAYER, &[1, 4, 16, 64]);
    bench_x16::<BlockQ4_1, _>(
        c,
        "q4_1x16",
        LAYER,
        &[1, 4, 16, 64],
        interleave_q4_1x16,
        |nb, w, a, o| gemm_rows16(nb, w, a, o),
    );
    bench_gemm::<BlockQ4_0>(c, "q4_0", &[(576, 1536)], &[1, 16]);
    bench_gemm::<BlockQ5_0>(c, "q5_0", &[(576, 1536)], &[1, 16]);
    bench_x16::<BlockQ5_0, _>(
        c,
        "q5_0x16",
        &[(576, 1536)],
        &[1, 16],
        interleave_q5_0x16,
        |nb, w, a, o| gemm_rows16(nb, w, a, o),
    );
    // K-quants need rows of 256: the FFN's down projection.
    bench_gemm::<BlockQ4_K>(c, "q4_k", &[(1536, 576)], &[1, 16]);
    bench_gemm::<BlockQ6_K>(c, "q6_k", &[(1536, 576)], &[1, 16]);
    // F32 (an embedding model's weights): MiniLM's task shapes, rows of 384 (Q/K/V, the
    // output and up projections) and of 1536 (down); `HEARTH_ISA=avx2` for the AVX2 tile.
    bench_gemm::<f32>(c, "f32", &[(384, 96), (1536, 24)], &[16, 64]);
    // The tied output layer (49152 rows): decode, and a 16-sequence batch.
    bench_gemm::<BlockQ8_0>(c, "q8_0", &[(576, 49152)], &[1, 16]);
    bench_x16::<BlockQ8_0, _>(
        c,
        "q8_0x16",
        &[(576, 49152)],
        &[1, 16],
        interleave_q8_0x16,
        |nb, w, a, o| gemm_q8_0x16(nb, w, a, o),
    );
}

criterion_group!(benches, kernels);
criterion_main!(benches);
