//! The KV cache: keys and values of every earlier position, per layer.

use half::f16;

/// Element type of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
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

enum Store {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

/// One sequence's KV cache, contiguous by position.
pub struct KvCache {
    kv_type: KvType,
    n_layer: usize,
    n_ctx: usize,
    /// `n_head_kv * head_dim`
    n_embd_kv: usize,
    /// `[n_layer][n_ctx][n_embd_kv]`
    k: Store,
    /// `[n_layer][n_ctx][n_embd_kv]`
    v: Store,
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, n_embd_kv: usize, kv_type: KvType) -> KvCache {
        let n = n_layer * n_ctx * n_embd_kv;
        let store = || match kv_type {
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
            KvType::F32 => Store::F32(vec![0.0; n]),
        };
        KvCache { kv_type, n_layer, n_ctx, n_embd_kv, k: store(), v: store() }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Bytes held by keys and values together.
    pub fn size_bytes(&self) -> usize {
        let el = match self.kv_type {
            KvType::F16 => 2,
            KvType::F32 => 4,
        };
        2 * self.n_layer * self.n_ctx * self.n_embd_kv * el
    }

    fn index(&self, layer: usize, pos: usize) -> usize {
        debug_assert!(layer < self.n_layer && pos < self.n_ctx);
        (layer * self.n_ctx + pos) * self.n_embd_kv
    }

    /// Stores one position's keys and values (`[n_embd_kv]` each).
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let i = self.index(layer, pos);
        let n = self.n_embd_kv;
        write(&mut self.k, i, n, k);
        write(&mut self.v, i, n, v);
    }

    /// Keys and values of positions `0..n_pos` of `layer`, in place: `[n_pos][n_embd_kv]`
    /// each.
    pub fn layer(&self, layer: usize, n_pos: usize) -> KvLayer<'_> {
        let r = self.index(layer, 0)..self.index(layer, 0) + n_pos * self.n_embd_kv;
        match (&self.k, &self.v) {
            (Store::F16(k), Store::F16(v)) => KvLayer::F16(&k[r.clone()], &v[r]),
            (Store::F32(k), Store::F32(v)) => KvLayer::F32(&k[r.clone()], &v[r]),
            _ => unreachable!("keys and values share one element type"),
        }
    }
}

/// One layer's cached keys and values, borrowed in their stored type.
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
