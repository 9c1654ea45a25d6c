//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`), with llama.cpp's
//! algorithm: the text (spaces already `▁`) starts as one symbol per character; the
//! adjacent pair whose concatenation is a token with the highest score is merged, leftmost
//! first among equals, until no pair forms a token. Symbols that are not tokens become
//! their `<0xXX>` byte tokens (or the unknown token when the vocabulary has none).

use std::collections::{BinaryHeap, HashMap};

use super::Tokenizer;

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space.
pub(super) const SPACE: char = '\u{2581}';

pub(super) struct SpmModel {
    /// `<0xXX>` token of each byte (or the token of the byte as a one-character text).
    byte_tokens: [Option<u32>; 256],
    unk: Option<u32>,
}

impl SpmModel {
    pub fn new(token_to_id: &HashMap<String, u32>, unk: Option<u32>) -> SpmModel {
        let mut byte_tokens = [None; 256];
        for b in 0..=255u8 {
            byte_tokens[b as usize] =
                token_to_id
                    .get(&format!("<0x{b:02X}>"))
                    .copied()
                    .or_else(|| {
                        // Some vocabularies store low bytes as themselves.
                        (b < 0x80)
                            .then(|| {
                                token_to_id
                                    .get((b as char).encode_utf8(&mut [0u8; 4]) as &str)
                                    .copied()
                            })
                            .flatten()
                    });
        }
        SpmModel { byte_tokens, unk }
    }

    /// Encodes `text` (spaces already escaped, prefix already added), appending to `out`.
    pub fn encode(&self, tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            });
        }
        let Some(last) = syms.last_mut() else { return };
        last.next = -1;

        let mut heap = BinaryHeap::new();
        for i in 1..syms.len() {
            push_pair(tok, text, &syms, &mut heap, i - 1, i);
        }
        while let Some(pair) = heap.pop() {
            let (l, r) = (pair.left, pair.right);
            // Stale: one side changed since the pair was queued.
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != pair.len {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            if syms[l].next >= 0 {
                let n = syms[l].next as usize;
                syms[n].prev = l as isize;
            }
            if syms[l].prev >= 0 {
                push_pair(tok, text, &syms, &mut heap, syms[l].prev as usize, l);
            }
            if syms[l].next >= 0 {
                push_pair(tok, text, &syms, &mut heap, l, syms[l].next as usize);
            }
        }

        let mut i = 0isize;
        while i >= 0 {
            let sym = syms[i as usize];
            let piece = &text[sym.start..sym.start + sym.len];
            match tok.token_id(piece) {
                Some(id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        if let Some(id) = self.byte_tokens[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            i = sym.next;
        }
    }
}

fn push_pair(
    tok: &Tokenizer,
    text: &str,
    syms: &[Symbol],
    heap: &mut BinaryHeap<Pair>,
    left: usize,
    right: usize,
) {
    let len = syms[left].len + syms[right].len;
    let start = syms[left].start;
    if let Some(id) = tok.token_id(&text[start..start + len]) {
        heap.push(Pair {
            score: tok.token_score(id),
            left,
            right,
            len,
        });
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    /// Byte range of the text; `len == 0` once merged into the left neighbour.
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// A pair whose concatenation is a token. The heap yields the highest score first, then the
/// leftmost.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Pair {}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
