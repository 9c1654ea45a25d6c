//! The KV cache: keys and values of every earlier position, per layer, in fixed-size
//! blocks from one pool. A sequence owns a block table (the blocks holding its positions,
//! in order); position `p` lives in block `block_table[p / block_size]` at row
//! `p % block_size`. A single-sequence cache is one block of `n_ctx` positions.

use crate::error::ModelError;
use crate::team::par_each;
use bytemuck::Zeroable;
use half::f16;
use hearth_kernels::{BlockQ4_0, BlockQ8_0, Quantize};

/// Element type of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
    /// 8-bit blocks of 32 with an f16 scale (8.5 bits per value).
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale (4.5 bits per value).
    Q4_0,
}

impl KvType {
    /// Bytes of `n` cached values (`n` a multiple of 32 for the block types).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => 2 * n,
            KvType::F32 => 4 * n,
            KvType::Q8_0 => n / 32 * std::mem::size_of::<BlockQ8_0>(),
            KvType::Q4_0 => n / 32 * std::mem::size_of::<BlockQ4_0>(),
        }
    }

    /// Values per storage element (32 for the block types).
    fn qk(self) -> usize {
        match self {
            KvType::F16 | KvType::F32 => 1,
            KvType::Q8_0 | KvType::Q4_0 => 32,
        }
    }

    /// Whether a head of `head_dim` values can be cached in this type (block types need
    /// whole blocks per head).
    pub fn supports(self, head_dim: usize) -> bool {
        head_dim.is_multiple_of(self.qk())
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(KvType::F16),
            "f32" => Ok(KvType::F32),
            "q8_0" => Ok(KvType::Q8_0),
            "q4_0" => Ok(KvType::Q4_0),
            other => Err(format!(
                "unknown KV cache type '{other}' (expected f16, f32, q8_0 or q4_0)"
            )),
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        })
    }
}

enum Store {
    F16(Vec<f16>),
    F32(Vec<f32>),
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
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
    /// `[n_layer][n_blocks][block_size][n_embd_kv]` (in blocks of 32 for the block types)
    k: Store,
    /// `[n_layer][n_blocks][block_size][n_embd_kv]` (in blocks of 32 for the block types)
    v: Store,
}

/// The memory the kernel says is available for new allocations (Linux `MemAvailable`), if
/// it says.
pub fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl KvCache {
    /// A cache for one sequence of up to `n_ctx` positions: one block of `n_ctx`.
    pub fn new(n_layer: usize, n_ctx: usize, n_embd_kv: usize, kv_type: KvType) -> KvCache {
        Self::paged(n_layer, 1, n_ctx.max(1), n_embd_kv, kv_type)
    }

    /// A pool of `n_blocks` blocks of `block_size` positions. For the block types,
    /// `n_embd_kv` must be a multiple of 32 (see [`KvType::supports`]). Panics when the
    /// memory cannot be had; [`KvCache::try_paged`] says so instead.
    pub fn paged(
        n_layer: usize,
        n_blocks: usize,
        block_size: usize,
        n_embd_kv: usize,
        kv_type: KvType,
    ) -> KvCache {
        Self::try_paged(n_layer, n_blocks, block_size, n_embd_kv, kv_type)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`KvCache::paged`], with every size product checked and the allocation fallible:
    /// a pool the process cannot hold is an error, not an abort.
    pub fn try_paged(
        n_layer: usize,
        n_blocks: usize,
        block_size: usize,
        n_embd_kv: usize,
        kv_type: KvType,
    ) -> Result<KvCache, ModelError> {
        assert_eq!(
            n_embd_kv % kv_type.qk(),
            0,
            "KV rows of {n_embd_kv} values are not whole {kv_type} blocks"
        );
        let too_big = || {
            ModelError::BadHyperparameter(format!(
                "a KV cache of {n_blocks} blocks of {block_size} positions overflows"
            ))
        };
        let n = n_layer
            .checked_mul(n_blocks)
            .and_then(|x| x.checked_mul(block_size))
            .and_then(|x| x.checked_mul(n_embd_kv))
            .ok_or_else(too_big)?
            / kv_type.qk();
        let bytes = kv_type
            .row_bytes(kv_type.qk())
            .checked_mul(n)
            .and_then(|b| b.checked_mul(2))
            .ok_or_else(too_big)?;
        fn zeros<T: Clone>(n: usize, zero: T) -> Option<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).ok()?;
            v.resize(n, zero);
            Some(v)
        }
        let store = || match kv_type {
            KvType::F16 => zeros(n, f16::ZERO).map(Store::F16),
            KvType::F32 => zeros(n, 0.0).map(Store::F32),
            KvType::Q8_0 => zeros(n, BlockQ8_0::zeroed()).map(Store::Q8_0),
            KvType::Q4_0 => zeros(n, BlockQ4_0::zeroed()).map(Store::Q4_0),
        };
        // Refused before it is touched: with overcommit an allocation larger than memory
        // can succeed, and the process is killed when it fills the pages.
        let available = available_memory();
        if available.is_some_and(|a| bytes > a) {
            return Err(ModelError::OutOfMemory { bytes, available });
        }
        let no_memory = || ModelError::OutOfMemory { bytes, available };
        Ok(KvCache {
            kv_type,
            n_layer,
            n_blocks,
            block_size,
            n_embd_kv,
            k: store().ok_or_else(no_memory)?,
            v: store().ok_or_else(no_memory)?,
        })
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
        2 * self.n_layer * self.kv_type.row_bytes(self.n_embd_kv)
    }

    /// Bytes held by keys and values together.
    pub fn size_bytes(&self) -> usize {
        self.n_ctx() * self.bytes_per_token()
    }

    /// Storage elements per position.
    fn row_len(&self) -> usize {
        self.n_embd_kv / self.kv_type.qk()
    }

    fn index(&self, layer: usize, block: usize) -> usize {
        debug_assert!(layer < self.n_layer && block < self.n_blocks);
        (layer * self.n_blocks + block) * self.block_size * self.row_len()
    }

    /// Stores the keys and values of a batch's positions in `layer`: token `t`'s
    /// (`k`, `v`: `[n][n_embd_kv]`) at row `slots[t].1` of block `slots[t].0`. A batch of
    /// [`PAR_SLOTS`] positions or more is converted in parallel (`par_each`). Panics if two
    /// tokens name one slot.
    pub fn store(&mut self, layer: usize, slots: &[(usize, usize)], k: &[f32], v: &[f32]) {
        let (n, ne) = (self.row_len(), self.n_embd_kv);
        assert!(
            k.len() == slots.len() * ne && v.len() == k.len(),
            "KV store: one key and one value row per slot"
        );
        // Storage offset of each slot's row, in increasing order, with its token.
        let mut order: Vec<(usize, usize)> = slots
            .iter()
            .enumerate()
            .map(|(t, &(block, row))| {
                assert!(
                    row < self.block_size,
                    "KV store: row {row} outside a block of {}",
                    self.block_size
                );
                (self.index(layer, block) + row * n, t)
            })
            .collect();
        order.sort_unstable();
        write_rows(&mut self.k, &order, n, k, ne);
        write_rows(&mut self.v, &order, n, v, ne);
    }

    /// Keys and values of rows `0..n_rows` of `block` in `layer`, in place:
    /// `[n_rows][n_embd_kv]` each (`[n_rows][n_embd_kv / 32]` blocks for the block types).
    pub fn block(&self, layer: usize, block: usize, n_rows: usize) -> KvLayer<'_> {
        debug_assert!(n_rows <= self.block_size);
        let i = self.index(layer, block);
        let r = i..i + n_rows * self.row_len();
        match (&self.k, &self.v) {
            (Store::F16(k), Store::F16(v)) => KvLayer::F16(&k[r.clone()], &v[r]),
            (Store::F32(k), Store::F32(v)) => KvLayer::F32(&k[r.clone()], &v[r]),
            (Store::Q8_0(k), Store::Q8_0(v)) => KvLayer::Q8_0(&k[r.clone()], &v[r]),
            (Store::Q4_0(k), Store::Q4_0(v)) => KvLayer::Q4_0(&k[r.clone()], &v[r]),
            _ => unreachable!("keys and values share one element type"),
        }
    }
}

/// Cached keys and values of some positions, borrowed in their stored type.
pub enum KvLayer<'a> {
    F16(&'a [f16], &'a [f16]),
    F32(&'a [f32], &'a [f32]),
    Q8_0(&'a [BlockQ8_0], &'a [BlockQ8_0]),
    Q4_0(&'a [BlockQ4_0], &'a [BlockQ4_0]),
}

/// Batches of at least this many positions convert their KV rows in parallel.
const PAR_SLOTS: usize = 8;

/// Writes token `t`'s row of `src` (`[..][ne]`, converted) at storage offset `i` for each
/// `(i, t)` of `order` (sorted by offset): `n` storage elements per row.
fn write_rows(store: &mut Store, order: &[(usize, usize)], n: usize, src: &[f32], ne: usize) {
    match store {
        Store::Q8_0(d) => convert_rows(d, order, n, src, ne, BlockQ8_0::quantize_row),
        Store::Q4_0(d) => convert_rows(d, order, n, src, ne, BlockQ4_0::quantize_row),
        Store::F16(d) => convert_rows(d, order, n, src, ne, |s, d| {
            d.iter_mut()
                .zip(s)
                .for_each(|(d, &s)| *d = f16::from_f32(s))
        }),
        Store::F32(d) => convert_rows(d, order, n, src, ne, |s, d| d.copy_from_slice(s)),
    }
}

/// Cuts the rows of `order` out of `data` (each once: the offsets are sorted, and a
/// repeated or overlapping one is a caller's bug) and fills each with `f(src row, row)`.
fn convert_rows<T: Send>(
    data: &mut [T],
    order: &[(usize, usize)],
    n: usize,
    src: &[f32],
    ne: usize,
    f: impl Fn(&[f32], &mut [T]) + Sync,
) {
    let mut rows = Vec::with_capacity(order.len());
    let (mut rest, mut at) = (data, 0);
    for &(i, t) in order {
        assert!(i >= at, "KV store: two tokens write one cache slot");
        let (row, tail) = std::mem::take(&mut rest)[i - at..].split_at_mut(n);
        rows.push((t, row));
        (rest, at) = (tail, i + n);
    }
    let put = |(t, row): (usize, &mut [T])| f(&src[t * ne..(t + 1) * ne], row);
    if rows.len() < PAR_SLOTS {
        rows.into_iter().for_each(put);
    } else {
        par_each(rows, put);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows `0..n` of `block` in `layer`, keys and values as f32.
    fn read(kv: &KvCache, layer: usize, block: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        match kv.block(layer, block, n) {
            KvLayer::F32(k, v) => (k.to_vec(), v.to_vec()),
            KvLayer::F16(k, v) => (
                k.iter().map(|x| x.to_f32()).collect(),
                v.iter().map(|x| x.to_f32()).collect(),
            ),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_batch_lands_in_its_slots_serial_or_parallel() {
        for kv_type in [KvType::F32, KvType::F16] {
            // 3 positions (serial path) and 20 (pool path), out of order across blocks.
            for n in [3usize, 20] {
                let (n_blocks, bs, ne) = (8, 4, 6);
                let mut kv = KvCache::paged(2, n_blocks, bs, ne, kv_type);
                let slots: Vec<(usize, usize)> = (0..n)
                    .map(|t| ((t * 3) % n_blocks, (t / n_blocks + t) % bs))
                    .collect();
                let mut seen = std::collections::HashSet::new();
                let slots: Vec<_> = slots.into_iter().filter(|s| seen.insert(*s)).collect();
                let k: Vec<f32> = (0..slots.len() * ne).map(|i| i as f32).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                kv.store(1, &slots, &k, &v);
                for (t, &(block, row)) in slots.iter().enumerate() {
                    let (ck, cv) = read(&kv, 1, block, bs);
                    assert_eq!(&ck[row * ne..(row + 1) * ne], &k[t * ne..(t + 1) * ne]);
                    assert_eq!(&cv[row * ne..(row + 1) * ne], &v[t * ne..(t + 1) * ne]);
                }
                // Layer 0 is untouched.
                assert!((0..n_blocks).all(|b| read(&kv, 0, b, bs).0.iter().all(|&x| x == 0.0)));
            }
        }
    }

    #[test]
    #[should_panic(expected = "two tokens write one cache slot")]
    fn two_tokens_in_one_slot_is_refused() {
        let mut kv = KvCache::paged(1, 2, 4, 2, KvType::F32);
        kv.store(0, &[(1, 2), (0, 0), (1, 2)], &[0.0; 6], &[0.0; 6]);
    }
}
