//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
//!
//! Every byte of a pre-tokenized word starts as the token of its GPT-2 "byte-level"
//! character (printable bytes stand for themselves, the others for U+0100 onwards: space
//! is `Ġ`, newline `Ċ`). Then, as in llama.cpp, the adjacent pair whose merge has the lowest
//! rank is merged, leftmost first among equals, until no pair has a merge. Pairs are looked
//! up by token id, and the candidates wait in a binary heap over a linked list of symbols,
//! so a word of n bytes costs O(n log n).

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::pretokenize::{PreTokenizer, Splitter};
use super::{Tokenizer, TokenizerError};

/// The byte-level character standing for each byte (GPT-2's `bytes_to_unicode`).
pub(super) fn byte_char(b: u8) -> char {
    BYTE_CHARS[b as usize]
}

const fn is_printable(b: u32) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Printable bytes stand for themselves, the other 68 for U+0100.. in byte order.
const BYTE_CHARS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0u32;
    while b < 256 {
        let cp = if is_printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\u{FFFD}',
        };
        b += 1;
    }
    table
};

/// The inverse of `BYTE_CHARS` over U+0000..U+0143; -1 for characters that stand for no byte.
const CHAR_BYTES: [i16; 0x144] = {
    let mut table = [-1i16; 0x144];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_CHARS[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The byte a byte-level character stands for, if it is one.
fn char_byte(c: char) -> Option<u8> {
    match CHAR_BYTES.get(c as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

/// The raw bytes of a byte-level token text. Characters outside the byte-level alphabet
/// (found in a few converted vocabularies) are kept as their UTF-8.
pub(super) fn byte_level_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// A fast hasher for the packed `(left, right)` id pairs of the merge table.
#[derive(Default)]
pub(super) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, x: u64) {
        let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type PairMap = HashMap<u64, Merge, BuildHasherDefault<PairHasher>>;

fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

#[derive(Clone, Copy)]
struct Merge {
    rank: u32,
    /// The merged token; ids from `n_vocab` up name merge results missing from the
    /// vocabulary (they encode as the byte tokens of their text).
    result: u32,
}

/// No token: a byte whose byte-level character is not in the vocabulary.
const NONE: u32 = u32::MAX;

pub(super) struct BpeModel {
    splitter: Splitter,
    ignore_merges: bool,
    /// Token of each byte's byte-level character.
    byte_tokens: [u32; 256],
    merges: PairMap,
    n_vocab: u32,
}

impl BpeModel {
    pub fn new(
        pre: PreTokenizer,
        pre_name: &str,
        ignore_merges: bool,
        tokens: &[String],
        token_to_id: &HashMap<String, u32>,
        merges: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<BpeModel, TokenizerError> {
        if merges.is_empty() {
            return Err(TokenizerError::MissingMerges);
        }
        let splitter = Splitter::new(pre, pre_name)?;
        let n_vocab = tokens.len() as u32;
        let mut byte_tokens = [NONE; 256];
        let mut missing = Vec::new();
        for b in 0..=255u8 {
            match token_to_id.get(byte_char(b).encode_utf8(&mut [0u8; 4]) as &str) {
                Some(&id) => byte_tokens[b as usize] = id,
                None => missing.push(format!("{b:#04x}")),
            }
        }
        if !missing.is_empty() {
            warnings.push(format!(
                "byte-level vocabulary lacks the tokens of bytes {}: such bytes are dropped",
                missing.join(" ")
            ));
        }

        let mut table = PairMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut virtual_ids: HashMap<String, u32> = HashMap::new();
        let mut malformed = 0usize;
        let mut merged = String::new();
        for (index, merge) in merges.iter().enumerate() {
            // "left right", split at the first space after the first character.
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let Some(split) = merge[first..].find(' ').map(|p| p + first) else {
                malformed += 1;
                continue;
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            let id = |t: &str| {
                token_to_id
                    .get(t)
                    .copied()
                    .ok_or_else(|| TokenizerError::UnknownMergeToken {
                        index,
                        merge: merge.clone(),
                        token: t.to_string(),
                    })
            };
            let (l, r) = (id(left)?, id(right)?);
            merged.clear();
            merged.push_str(left);
            merged.push_str(right);
            let result = match token_to_id.get(merged.as_str()) {
                Some(&id) => id,
                None => {
                    let next = n_vocab + virtual_ids.len() as u32;
                    *virtual_ids.entry(merged.clone()).or_insert(next)
                }
            };
            table.entry(pair_key(l, r)).or_insert(Merge {
                rank: index as u32,
                result,
            });
        }
        if malformed > 0 {
            warnings.push(format!(
                "{malformed} merges are not of the form \"left right\": ignored"
            ));
        }
        if !virtual_ids.is_empty() {
            warnings.push(format!(
                "{} merges produce text that is not a token",
                virtual_ids.len()
            ));
        }
        Ok(BpeModel {
            splitter,
            ignore_merges,
            byte_tokens,
            merges: table,
            n_vocab,
        })
    }

    /// The words of `text`.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.splitter.split(text)
    }

    /// Encodes one text fragment (no special tokens in it), appending to `out`.
    pub fn encode(&self, tok: &Tokenizer, text: &str, out: &mut Vec<u32>, scratch: &mut Scratch) {
        for word in self.splitter.split(text) {
            self.encode_word(tok, word.as_bytes(), out, scratch);
        }
    }

    fn encode_word(&self, tok: &Tokenizer, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        if self.ignore_merges {
            s.text.clear();
            s.text.extend(word.iter().map(|&b| byte_char(b)));
            if let Some(id) = tok.token_id(&s.text) {
                out.push(id);
                return;
            }
        }
        let syms = &mut s.symbols;
        syms.clear();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Symbol {
                id: self.byte_tokens[b as usize],
                prev: i as i32 - 1,
                next: i as i32 + 1,
                start: i as u32,
                end: i as u32 + 1,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        let heap = &mut s.heap;
        heap.clear();
        for i in 1..syms.len() {
            self.push_pair(syms, heap, i - 1, i);
        }
        while let Some(c) = heap.pop() {
            let (l, r) = (c.left as usize, c.right as usize);
            // Stale: one side was merged into something else meanwhile.
            if syms[l].id != c.left_id
                || syms[r].id != c.right_id
                || syms[l].next != r as i32
                || syms[r].end == 0
            {
                continue;
            }
            syms[l].id = c.result;
            syms[l].end = syms[r].end;
            syms[l].next = syms[r].next;
            syms[r].end = 0;
            syms[r].id = NONE;
            if syms[l].next >= 0 {
                let n = syms[l].next as usize;
                syms[n].prev = l as i32;
            }
            if syms[l].prev >= 0 {
                self.push_pair(syms, heap, syms[l].prev as usize, l);
            }
            if syms[l].next >= 0 {
                self.push_pair(syms, heap, l, syms[l].next as usize);
            }
        }
        if syms.is_empty() {
            return;
        }
        let mut i = 0i32;
        while i >= 0 {
            let sym = &syms[i as usize];
            if sym.id < self.n_vocab {
                out.push(sym.id);
            } else if sym.id != NONE {
                // A merge result that is not a token: fall back to the byte tokens.
                let bytes = &word[sym.start as usize..sym.end as usize];
                out.extend(
                    bytes
                        .iter()
                        .map(|&b| self.byte_tokens[b as usize])
                        .filter(|&t| t != NONE),
                );
            }
            i = sym.next;
        }
    }

    fn push_pair(
        &self,
        syms: &[Symbol],
        heap: &mut BinaryHeap<Candidate>,
        left: usize,
        right: usize,
    ) {
        let (l, r) = (syms[left].id, syms[right].id);
        if l == NONE || r == NONE {
            return;
        }
        if let Some(m) = self.merges.get(&pair_key(l, r)) {
            heap.push(Candidate {
                rank: m.rank,
                left: left as u32,
                right: right as u32,
                left_id: l,
                right_id: r,
                result: m.result,
            });
        }
    }
}

/// Reusable buffers for encoding.
#[derive(Default)]
pub(super) struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Candidate>,
    text: String,
}

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: i32,
    next: i32,
    /// Byte range in the word; `end == 0` once merged into its left neighbour.
    start: u32,
    end: u32,
}

/// A pair that could merge. The heap yields the lowest rank first, then the leftmost.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Candidate {
    rank: u32,
    left: u32,
    right: u32,
    left_id: u32,
    right_id: u32,
    result: u32,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.rank.cmp(&self.rank).then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_byte(byte_char(b)), Some(b));
        }
    }
}
