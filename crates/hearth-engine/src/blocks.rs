//! The KV block allocator, with prefix caching.
//!
//! Every block has a reference count (the sequences whose block tables hold it). A block
//! that a sequence has filled completely is registered under a chained hash of its tokens
//! (the hash of the block before it, then its own tokens; the chain starts from a seed
//! that names the model and the KV type), so a later sequence whose tokens start the same
//! way takes those blocks instead of recomputing them. Blocks whose count drops to zero
//! stay registered in an LRU list and are evicted (their registration dropped) only when
//! a fresh block is needed: unregistered free blocks are handed out first, then the least
//! recently freed cached ones.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// A registered full block: its chained hash and its tokens (compared on every hit, so a
/// hash collision can never hand out the wrong keys and values).
struct Cached {
    hash: u64,
    tokens: Box<[u32]>,
}

pub struct BlockManager {
    block_size: usize,
    /// `[n_blocks]`
    ref_count: Vec<u32>,
    /// `[n_blocks]`: the registration of full blocks in the prefix cache.
    cached: Vec<Option<Cached>>,
    by_hash: HashMap<u64, u32>,
    /// Blocks with no references, next to hand out at the front: unregistered blocks
    /// first, then cached ones from the least recently freed.
    free: VecDeque<u32>,
    /// How many of `free` are registered (kept up to date, read every engine step).
    n_cached_free: usize,
    /// Whether blocks are registered and looked up at all.
    prefix_caching: bool,
    seed: u64,
}

/// The chained hash of one block: `parent` (the previous block's hash, or the seed) then
/// the block's tokens.
pub fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl BlockManager {
    /// `seed` should differ between models and KV types (see [`chain_hash`]).
    pub fn new(
        n_blocks: usize,
        block_size: usize,
        prefix_caching: bool,
        seed: u64,
    ) -> BlockManager {
        BlockManager {
            block_size,
            ref_count: vec![0; n_blocks],
            cached: (0..n_blocks).map(|_| None).collect(),
            by_hash: HashMap::new(),
            free: (0..n_blocks as u32).collect(),
            n_cached_free: 0,
            prefix_caching,
            seed,
        }
    }

    /// Blocks that can be handed out now (free, whether cached or not).
    pub fn n_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks referenced by at least one sequence.
    pub fn n_used(&self) -> usize {
        self.ref_count.len() - self.free.len()
    }

    /// Free blocks that still hold a cached prefix.
    pub fn n_cached_free(&self) -> usize {
        self.n_cached_free
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A fresh block for one sequence, evicting the least recently freed cached block if
    /// no unregistered one is left.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = self.free.pop_front()?;
        if let Some(c) = self.cached[b as usize].take() {
            self.by_hash.remove(&c.hash);
            self.n_cached_free -= 1;
        }
        self.ref_count[b as usize] = 1;
        Some(b)
    }

    /// Drops one reference to each of `blocks` (a sequence's table, in order). Blocks left
    /// unreferenced become free; the table's last blocks are freed most recently, so a
    /// shared prefix outlives the tails that hang off it.
    pub fn release(&mut self, blocks: &[u32]) {
        for &b in blocks {
            let rc = &mut self.ref_count[b as usize];
            debug_assert!(*rc > 0, "block {b} released twice");
            *rc -= 1;
            if *rc == 0 {
                if self.cached[b as usize].is_some() {
                    self.free.push_back(b);
                    self.n_cached_free += 1;
                } else {
                    self.free.push_front(b);
                }
            }
        }
    }

    /// The cached blocks that hold the start of `tokens`, at most `max_blocks`, each with a
    /// new reference taken; with their chained hashes.
    pub fn match_prefix(&mut self, tokens: &[u32], max_blocks: usize) -> (Vec<u32>, Vec<u64>) {
        let (mut blocks, mut hashes) = (Vec::new(), Vec::new());
        if !self.prefix_caching {
            return (blocks, hashes);
        }
        let mut parent = self.seed;
        for chunk in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let h = chain_hash(parent, chunk);
            let Some(&b) = self.by_hash.get(&h) else {
                break;
            };
            if self.cached[b as usize].as_ref().map(|c| &*c.tokens) != Some(chunk) {
                break;
            }
            if self.ref_count[b as usize] == 0 {
                let i = self
                    .free
                    .iter()
                    .position(|&f| f == b)
                    .expect("an unreferenced block is free");
                self.free.remove(i);
                self.n_cached_free -= 1;
            }
            self.ref_count[b as usize] += 1;
            blocks.push(b);
            hashes.push(h);
            parent = h;
        }
        (blocks, hashes)
    }

    /// Registers `block`, now full with `tokens`, after the block whose hash is `parent`
    /// (the seed for a sequence's first block); returns its hash. When the same content is
    /// already registered under another block, that one stays the cached copy.
    pub fn register(&mut self, block: u32, parent: u64, tokens: &[u32]) -> u64 {
        debug_assert_eq!(tokens.len(), self.block_size);
        let h = chain_hash(parent, tokens);
        if self.prefix_caching
            && self.cached[block as usize].is_none()
            && !self.by_hash.contains_key(&h)
        {
            self.by_hash.insert(h, block);
            self.cached[block as usize] = Some(Cached {
                hash: h,
                tokens: tokens.into(),
            });
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(m: &mut BlockManager, n: usize) -> Vec<u32> {
        (0..n).map(|_| m.allocate().unwrap()).collect()
    }

    #[test]
    fn a_finished_prefix_is_found_again_and_evicted_last() {
        let mut m = BlockManager::new(4, 2, true, 7);
        let toks = [1, 2, 3, 4, 5];
        let a = take(&mut m, 3);
        let h0 = m.register(a[0], m.seed(), &toks[0..2]);
        m.register(a[1], h0, &toks[2..4]);
        m.release(&a);
        assert_eq!(m.n_free(), 4);
        // The same start finds both full blocks; a different second block finds one.
        let (hit, _) = m.match_prefix(&toks, 2);
        assert_eq!(hit, a[..2]);
        m.release(&hit);
        let (hit, _) = m.match_prefix(&[1, 2, 9, 9], 2);
        assert_eq!(hit, a[..1]);
        // While referenced, a cached block is not handed out; unregistered blocks go first.
        let fresh = take(&mut m, 2);
        assert!(
            !fresh.contains(&a[0]) && !fresh.contains(&a[1]),
            "{fresh:?}"
        );
        // Out of unregistered blocks: the cached a[1] is evicted, and its content forgotten.
        let last = m.allocate().unwrap();
        assert_eq!(last, a[1]);
        assert!(m.allocate().is_none());
        assert_eq!(m.n_cached_free(), 0);
        m.release(&hit);
        m.release(&fresh);
        m.release(&[last]);
        let (hit, _) = m.match_prefix(&toks, 2);
        assert_eq!(hit, a[..1]);
    }

    #[test]
    fn disabled_caching_never_matches() {
        let mut m = BlockManager::new(2, 2, false, 0);
        let a = take(&mut m, 1);
        m.register(a[0], 0, &[1, 2]);
        m.release(&a);
        assert!(m.match_prefix(&[1, 2, 3], 1).0.is_empty());
    }

    #[test]
    fn the_chain_distinguishes_position_and_seed() {
        assert_ne!(chain_hash(1, &[5, 6]), chain_hash(2, &[5, 6]));
        assert_ne!(chain_hash(1, &[5, 6]), chain_hash(1, &[6, 5]));
    }
}
