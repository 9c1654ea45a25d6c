//! The KV cache: keys and values of every earlier position, per layer, in fixed-size
//! blocks from one pool. A sequence owns a block table (the blocks holding its positions,
//! in order); position `p` lives in block `block_table[p / block_size]` at row
//! `p % block_size`. A single-sequence cache is one block of `n_ctx` positions.

use half::f16;

/// Element type of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
}

impl KvType {
    /// Bytes per cached element.
    pub fn size(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(KvType::F16),
            "f32" => Ok(KvType::F32),
            other => Err(format!("unknown KV cache type '{other}' (expected f16 or f32)")),
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        })
    }
}

enum Store {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

/// A pool of KV blocks shared by every sequence.
pub struct KvCache {
    kv_type: KvType,
    n_layer: usize,
    n_blocks: usize,
    /// Positions per block.
    block_size: usize,
    /// `n_head_kv * head_dim`
    n_embd_kv: usize,
    /// `[n_layer][n_blocks][block_size][n_embd_kv]`
    k: Store,
    /// `[n_layer][n_blocks][block_size][n_embd_kv]`
    v: Store,
}

impl KvCache {
    /// A cache for one sequence of up to `n_ctx` positions: one block of `n_ctx`.
    pub fn new(n_layer: usize, n_ctx: usize, n_embd_kv: usize, kv_type: KvType) -> KvCache {
        Self::paged(n_layer, 1, n_ctx.max(1), n_embd_kv, kv_type)
    }

    /// A pool of `n_blocks` blocks of `block_size` positions.
    pub fn paged(n_layer: usize, n_blocks: usize, block_size: usize, n_embd_kv: usize, kv_type: KvType) -> KvCache {
        let n = n_layer * n_blocks * block_size * n_embd_kv;
        let store = || match kv_type {
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
            KvType::F32 => Store::F32(vec![0.0; n]),
        };
        KvCache { kv_type, n_layer, n_blocks, block_size, n_embd_kv, k: store(), v: store() }
    }

    /// Positions the whole pool holds (the context of a single-sequence cache).
    pub fn n_ctx(&self) -> usize {
        self.n_blocks * self.block_size
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Bytes one position takes, keys and values of every layer.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.n_embd_kv * self.kv_type.size()
    }

    /// Bytes held by keys and values together.
    pub fn size_bytes(&self) -> usize {
        self.n_ctx() * self.bytes_per_token()
    }

    fn index(&self, layer: usize, block: usize) -> usize {
        debug_assert!(layer < self.n_layer && block < self.n_blocks);
        (layer * self.n_blocks + block) * self.block_size * self.n_embd_kv
    }

    /// Stores one position's keys and values (`[n_embd_kv]` each) at `row` of `block`.
    pub fn store(&mut self, layer: usize, block: usize, row: usize, k: &[f32], v: &[f32]) {
        debug_assert!(row < self.block_size);
        let i = self.index(layer, block) + row * self.n_embd_kv;
        let n = self.n_embd_kv;
        write(&mut self.k, i, n, k);
        write(&mut self.v, i, n, v);
    }

    /// Keys and values of rows `0..n_rows` of `block` in `layer`, in place:
    /// `[n_rows][n_embd_kv]` each.
    pub fn block(&self, layer: usize, block: usize, n_rows: usize) -> KvLayer<'_> {
        debug_assert!(n_rows <= self.block_size);
        let i = self.index(layer, block);
        let r = i..i + n_rows * self.n_embd_kv;
        match (&self.k, &self.v) {
            (Store::F16(k), Store::F16(v)) => KvLayer::F16(&k[r.clone()], &v[r]),
            (Store::F32(k), Store::F32(v)) => KvLayer::F32(&k[r.clone()], &v[r]),
            _ => unreachable!("keys and values share one element type"),
        }
    }
}

/// Cached keys and values of some positions, borrowed in their stored type.
pub enum KvLayer<'a> {
    F16(&'a [f16], &'a [f16]),
    F32(&'a [f32], &'a [f32]),
}

fn write(store: &mut Store, i: usize, n: usize, src: &[f32]) {
    match store {
        Store::F16(d) => {
            for (dst, &s) in d[i..i + n].iter_mut().zip(src) {
                *dst = f16::from_f32(s);
            }
        }
        Store::F32(d) => d[i..i + n].copy_from_slice(&src[..n]),
    }
}
