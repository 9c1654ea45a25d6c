//! Speculative decoding: cheap guesses of the next tokens that the model then checks in one
//! batch. A sequence with `k` drafts runs its pending token and the drafts together; the
//! target model's token at each position is sampled as usual and a draft is kept while it
//! equals that token. Because the drafts are a deterministic function of the context (a
//! point-mass proposal), this is exactly the rejection-sampling rule: greedy output is
//! token-for-token that of plain decoding, and sampled output keeps the model's
//! distribution.

use std::sync::Arc;

use hearth_model::Model;

/// Where drafts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the
    /// sequence's last few tokens.
    Ngram,
    /// A smaller or cheaper model with the same vocabulary, decoding greedily ahead of the
    /// target with its own KV cache (`EngineConfig::draft_model`).
    Draft,
}

/// The draft model of [`SpecKind::Draft`].
#[derive(Clone)]
pub struct DraftModel(pub Arc<Model>);

impl std::fmt::Debug for DraftModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DraftModel({})",
            self.0.config.name.as_deref().unwrap_or("unnamed")
        )
    }
}

/// Checks that `draft` can propose tokens for `target`: the same vocabulary, token by token.
pub fn check_draft(target: &Model, draft: &Model) -> Result<(), String> {
    let (t, d) = (&target.tokenizer, &draft.tokenizer);
    if t.n_vocab() != d.n_vocab() {
        return Err(format!(
            "the draft model's vocabulary has {} tokens, the model's {}",
            d.n_vocab(),
            t.n_vocab()
        ));
    }
    if let Some(id) = (0..t.n_vocab() as u32).find(|&id| t.token_text(id) != d.token_text(id)) {
        return Err(format!(
            "the draft model's token {id} is {:?}, the model's {:?}",
            d.token_text(id),
            t.token_text(id)
        ));
    }
    Ok(())
}

/// Speculation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecConfig {
    pub kind: SpecKind,
    /// Drafts per step at most.
    pub n_draft: usize,
    /// Longest and shortest suffix looked up (n-gram).
    pub ngram_max: usize,
    pub ngram_min: usize,
}

impl SpecConfig {
    pub fn ngram(n_draft: usize) -> SpecConfig {
        SpecConfig {
            kind: SpecKind::Ngram,
            n_draft,
            ngram_max: 4,
            ngram_min: 2,
        }
    }

    pub fn draft(n_draft: usize) -> SpecConfig {
        SpecConfig {
            kind: SpecKind::Draft,
            ..Self::ngram(n_draft)
        }
    }
}

/// Up to `n_draft` tokens that followed the most recent earlier occurrence of the longest
/// suffix of `tokens` (from `ngram_max` down to `ngram_min` tokens) found in `tokens`,
/// cut where the continuation of the occurrence before it differs (keeping at least one).
pub fn ngram_drafts(
    tokens: &[u32],
    n_draft: usize,
    ngram_max: usize,
    ngram_min: usize,
) -> Vec<u32> {
    let len = tokens.len();
    if n_draft == 0 {
        return Vec::new();
    }
    for n in (ngram_min.max(1)..=ngram_max).rev() {
        if n >= len {
            continue;
        }
        let suffix = &tokens[len - n..];
        // Latest start `i < len - n` with tokens[i..i + n] == suffix.
        let mut hits = (0..len - n).rev().filter(|&i| &tokens[i..i + n] == suffix);
        if let Some(i) = hits.next() {
            let from = i + n;
            let mut k = len.min(from + n_draft) - from;
            // When the suffix occurred before that too, draft only as far as the two
            // continuations agree (at least one token): past a point where the text has
            // gone two ways, a draft is a guess that costs a verify slot.
            if let Some(j) = hits.next() {
                k = (0..k)
                    .take_while(|&d| j + n + d < len && tokens[j + n + d] == tokens[from + d])
                    .count()
                    .max(1);
            }
            return tokens[from..from + k].to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_continue_the_latest_match_of_the_longest_suffix() {
        //            0  1  2  3  4  5  6  7  8  9
        let t = [1, 2, 3, 9, 4, 2, 3, 7, 8, 5, 2, 3];
        // Suffix [5, 2, 3] never occurred before; [2, 3] last did at 5..7, followed by
        // 7, 8, 5 (and at 1..3 before that, followed by 9: the continuations differ at
        // once, so one token).
        assert_eq!(ngram_drafts(&t, 3, 3, 1), vec![7]);
        // Only one earlier occurrence: its whole continuation, up to n_draft.
        let u = [6, 1, 2, 7, 8, 9, 1, 2];
        assert_eq!(ngram_drafts(&u, 3, 3, 2), vec![7, 8, 9]);
        // Two earlier occurrences agreeing on [7, 8]: drafts stop where they part.
        let v = [5, 1, 2, 7, 8, 1, 1, 2, 7, 8, 3, 1, 2];
        assert_eq!(ngram_drafts(&v, 4, 2, 2), vec![7, 8]);
        // Nothing repeats: no drafts.
        assert!(ngram_drafts(&[1, 2, 3, 4], 4, 3, 1).is_empty());
        // The continuation stops at the end of the text.
        assert_eq!(ngram_drafts(&[5, 6, 5], 4, 3, 1), vec![6, 5]);
        assert!(ngram_drafts(&[5], 4, 3, 1).is_empty());
    }
}
