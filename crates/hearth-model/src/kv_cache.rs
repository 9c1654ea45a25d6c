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

    /// Keys of positions `0..n_pos` of `layer` as f32, `[n_pos][n_embd_kv]`, into `out`.
    pub fn read_k(&self, layer: usize, n_pos: usize, out: &mut [f32]) {
        read(&self.k, self.index(layer, 0), n_pos * self.n_embd_kv, out)
    }

    /// Values of positions `0..n_pos` of `layer` as f32, `[n_pos][n_embd_kv]`, into `out`.
    pub fn read_v(&self, layer: usize, n_pos: usize, out: &mut [f32]) {
        read(&self.v, self.index(layer, 0), n_pos * self.n_embd_kv, out)
    }
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

fn read(store: &Store, i: usize, n: usize, out: &mut [f32]) {
    match store {
        Store::F16(d) => {
            for (o, s) in out[..n].iter_mut().zip(&d[i..i + n]) {
                *o = s.to_f32();
            }
        }
        Store::F32(d) => out[..n].copy_from_slice(&d[i..i + n]),
    }
}
