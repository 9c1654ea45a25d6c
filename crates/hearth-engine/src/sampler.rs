//! Logits → next token: logit bias, repetition / presence / frequency penalties, top-k,
//! top-p, min-p, temperature, then a seeded draw (or argmax when greedy).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::constraint::allows;

/// Sampling settings of one request. `temperature <= 0` means greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Multiplicative penalty on tokens among the last `repeat_last_n` (1 = off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every token already present (0 = off).
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of tokens already present (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of the given tokens before anything else.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random draw; `None` takes one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    /// These settings, greedy when the temperature is 0 or below (the APIs' convention):
    /// the cuts drop out, the penalties, logit bias and seed stay.
    pub fn greedy_if_cold(self) -> SamplingParams {
        if self.temperature > 0.0 {
            return self;
        }
        SamplingParams {
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias,
            seed: self.seed,
            ..SamplingParams::greedy()
        }
    }

    /// Checks every field is in range; `n_vocab` bounds the logit-bias ids.
    pub fn validate(&self, n_vocab: usize) -> Result<(), String> {
        let finite = |name: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number"))
            }
        };
        finite("temperature", self.temperature)?;
        finite("top_p", self.top_p)?;
        finite("min_p", self.min_p)?;
        finite("repeat_penalty", self.repeat_penalty)?;
        finite("presence_penalty", self.presence_penalty)?;
        finite("frequency_penalty", self.frequency_penalty)?;
        if self.temperature < 0.0 {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if self.repeat_penalty <= 0.0 {
            return Err(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty)
            || !(-2.0..=2.0).contains(&self.frequency_penalty)
        {
            return Err("presence_penalty and frequency_penalty must be in [-2, 2]".into());
        }
        for &(id, bias) in &self.logit_bias {
            if id as usize >= n_vocab {
                return Err(format!(
                    "logit_bias names token {id}, outside the vocabulary ({n_vocab})"
                ));
            }
            if !bias.is_finite() && bias != f32::NEG_INFINITY {
                return Err(format!("logit_bias for token {id} must be a number"));
            }
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A sampler with its own random state; one per sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Scratch: `(token, logit)` candidates.
    cand: Vec<(u32, f32)>,
    /// The largest candidate logit of the last [`Sampler::cut`].
    max: f32,
    /// Scratch: `e^(l - max)` of each candidate, in `cand`'s order.
    exps: Vec<f32>,
}

/// Descending logit, then ascending token: the candidates' order.
fn by_logit(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        Sampler {
            params,
            rng,
            cand: Vec::new(),
            max: 0.0,
            exps: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Leaves in `cand` the tokens a draw may pick: the top-k by logit (all when 0), then
    /// top-p and min-p over their probabilities at temperature 1 (llama.cpp's order).
    /// Sorted by [`by_logit`] whenever a cut applies, else in token order. Nothing sorts
    /// more than the cuts need: min-p is a filter, and top-p sorts a growing head of the
    /// candidates until its mass is reached, so a 262,144-token vocabulary costs a scan
    /// and a few exponentials per token, not a full sort.
    fn cut(&mut self, logits: &[f32], mask: Option<&[u32]>) {
        let p = &self.params;
        self.cand.clear();
        let all = logits.iter().enumerate().map(|(i, &l)| (i as u32, l));
        match mask {
            None => self.cand.extend(all),
            Some(m) => self.cand.extend(all.filter(|c| allows(m, c.0))),
        }
        if p.top_k > 0 && p.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            self.cand.truncate(p.top_k);
        }
        self.max = self
            .cand
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        let max = self.max;
        // Each candidate's `e^(l - max)`, once; their sum in f64, rounded once.
        self.exps.clear();
        self.exps
            .extend(self.cand.iter().map(|c| (c.1 - max).exp()));
        let sum = self.exps.iter().map(|&e| f64::from(e)).sum::<f64>() as f32;
        let prob = |c: &(u32, f32)| (c.1 - max).exp() / sum;
        if p.min_p > 0.0 {
            // The most likely candidate has probability `1 / sum`.
            let floor = (1.0 / sum) * p.min_p;
            let mut kept = 0;
            for i in 0..self.cand.len() {
                if self.exps[i] / sum >= floor {
                    self.cand[kept] = self.cand[i];
                    kept += 1;
                }
            }
            self.cand.truncate(kept);
        }
        if p.top_p < 1.0 {
            let mut head = 64;
            loop {
                let n = self.cand.len();
                if head < n {
                    self.cand.select_nth_unstable_by(head - 1, by_logit);
                }
                let sorted = head.min(n);
                self.cand[..sorted].sort_by(by_logit);
                let mut cum = 0.0;
                let reached = self.cand[..sorted].iter().position(|c| {
                    cum += prob(c);
                    cum >= p.top_p
                });
                match reached {
                    Some(i) => {
                        self.cand.truncate(i + 1);
                        return;
                    }
                    None if sorted == n => return,
                    None => head *= 4,
                }
            }
        }
        if p.top_k > 0 || p.min_p > 0.0 {
            self.cand.sort_by(by_logit);
        }
    }

    /// Picks the next token from `logits` given the tokens so far (`history`, prompt and
    /// generated, used by the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.sample_masked(logits, history, None)
    }

    /// [`Sampler::sample`] among the tokens `mask` allows (bit `t % 32` of word `t / 32`;
    /// a constraint's mask, never empty).
    pub fn sample_masked(&mut self, logits: &[f32], history: &[u32], mask: Option<&[u32]>) -> u32 {
        let p = &self.params;
        let mut logits_adj;
        let mut logits = logits;
        if !p.logit_bias.is_empty() || self.has_penalties() {
            logits_adj = logits.to_vec();
            for &(id, b) in &p.logit_bias {
                logits_adj[id as usize] += b;
            }
            self.apply_penalties(&mut logits_adj, history);
            logits = &logits_adj;
        }
        if p.is_greedy() {
            return match mask {
                None => argmax(logits),
                Some(m) => argmax_allowed(logits, m),
            };
        }

        self.cut(logits, mask);
        let max = self.max;

        // Temperature, then a draw.
        let t = self.params.temperature;
        let mut weights: Vec<f64> = self
            .cand
            .iter()
            .map(|c| (((c.1 - max) / t) as f64).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.gen::<f64>() * total;
        for (i, w) in weights.iter_mut().enumerate() {
            if r < *w {
                return self.cand[i].0;
            }
            r -= *w;
        }
        self.cand[self.cand.len() - 1].0
    }

    fn has_penalties(&self) -> bool {
        let p = &self.params;
        p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
    }

    fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        if !self.has_penalties() || p.repeat_last_n == 0 {
            return;
        }
        let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in window {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if p.repeat_penalty != 1.0 {
                *l = if *l > 0.0 {
                    *l / p.repeat_penalty
                } else {
                    *l * p.repeat_penalty
                };
            }
            *l -= n as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }
}

/// Index of the largest logit among the tokens `mask` allows (the first on ties; NaNs
/// count as -inf). A constraint's mask allows few tokens, so this walks its set bits.
pub fn argmax_allowed(logits: &[f32], mask: &[u32]) -> u32 {
    let mut best: Option<(u32, f32)> = None;
    for (w, &bits) in mask.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let t = (w * 32) as u32 + bits.trailing_zeros();
            bits &= bits - 1;
            let Some(&l) = logits.get(t as usize) else {
                continue;
            };
            let l = if l.is_nan() { f32::NEG_INFINITY } else { l };
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((t, l));
            }
        }
    }
    best.map_or(0, |b| b.0)
}

/// Index of the largest logit (the first one on ties; NaNs are passed over, unless the
/// first logit is one).
///
/// In two passes that vectorize (a one-lane scan waits on each compare before the next:
/// ~30 µs for this model's 49152 logits, once per sequence and step): the maximum, with
/// sixteen lanes each keeping the largest of its elements (`>`, so NaNs never enter),
/// then the first logit equal to it. The result is the one-lane scan's
/// ([`argmax_scan`]) for every input: the scan ends on the first occurrence of the
/// maximum.
pub fn argmax(logits: &[f32]) -> u32 {
    const L: usize = 16;
    if logits.len() < 2 * L || logits[0].is_nan() {
        return argmax_scan(logits);
    }
    let chunks = logits.chunks_exact(L);
    let tail = chunks.remainder();
    let mut lanes = [logits[0]; L];
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes
        .iter()
        .chain(tail)
        .fold(logits[0], |m, &v| if v > m { v } else { m });
    // The first chunk that holds it (a whole-chunk test vectorizes), then its place there.
    let c = logits
        .chunks(L)
        .position(|c| c.iter().fold(false, |any, &v| any | (v == max)))
        .unwrap_or(0);
    (c * L + logits[c * L..].iter().position(|&v| v == max).unwrap_or(0)) as u32
}

/// [`argmax`] one logit at a time.
pub fn argmax_scan(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    #[test]
    fn argmax_is_the_one_lane_scan() {
        // Ties, NaNs, signed zeros and infinities, at every length up to four chunks.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let pool = [
            1.0f32,
            2.0,
            2.0,
            -1.0,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3.0,
            3.0,
            -5.0,
        ];
        for n in 1..70 {
            for _ in 0..200 {
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        pool[(x % pool.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(argmax(&v), argmax_scan(&v), "{v:?}");
            }
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&logits(), &[]), 1);
    }

    #[test]
    fn same_seed_same_draws_and_different_seeds_differ() {
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(7),
            ..Default::default()
        };
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..200)
                .map(|_| s.sample(&logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&p), draw(&p));
        let other = SamplingParams {
            seed: Some(8),
            ..p.clone()
        };
        assert_ne!(draw(&p), draw(&other));
    }

    #[test]
    fn top_k_limits_the_support() {
        let p = SamplingParams {
            temperature: 5.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(1),
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        for _ in 0..500 {
            let t = s.sample(&logits(), &[]);
            assert!(t == 1 || t == 4, "token {t} outside top-2");
        }
    }

    /// `Σ e^(l - max)` over `cand` in its order (in f64, rounded once), as `cut` sums.
    fn candidate_mass(cand: &[(u32, f32)], max: f32) -> f32 {
        cand.iter()
            .map(|c| f64::from((c.1 - max).exp()))
            .sum::<f64>() as f32
    }

    /// The cuts as a full sort makes them: every candidate sorted, top-p's prefix, then
    /// min-p's (the same probabilities: the denominator over the candidates in token
    /// order).
    fn cut_by_full_sort(p: &SamplingParams, logits: &[f32]) -> Vec<u32> {
        let mut c: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        c.sort_by(by_logit);
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let max = c[0].1;
        let mut in_token_order = c.clone();
        in_token_order.sort_by_key(|c| c.0);
        let sum = candidate_mass(&in_token_order, max);
        let probs: Vec<f32> = c.iter().map(|c| (c.1 - max).exp() / sum).collect();
        let mut keep = c.len();
        let mut cum = 0.0;
        for (i, pr) in probs.iter().enumerate() {
            cum += pr;
            if p.top_p < 1.0 && cum >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        let floor = probs[0] * p.min_p;
        keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count());
        c[..keep].iter().map(|c| c.0).collect()
    }

    /// The cuts keep the same tokens, in the same order, as a full sort would, over a
    /// vocabulary of Gemma's size with peaked and flat distributions (where top-p needs
    /// most of the vocabulary) and ties.
    #[test]
    fn cuts_equal_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(5);
        for (scale, top_k, top_p, min_p) in [
            (8.0f32, 0, 0.95, 0.05),
            (8.0, 0, 0.9, 0.0),
            (0.01, 0, 0.99, 0.0),
            (1.0, 0, 1.0, 0.02),
            (3.0, 40, 0.95, 0.05),
            (3.0, 1000, 0.8, 0.0),
        ] {
            let mut logits: Vec<f32> = (0..262_144).map(|_| rng.gen::<f32>() * scale).collect();
            logits[7] = logits[3]; // a tie
            let p = SamplingParams {
                temperature: 0.8,
                top_k,
                top_p,
                min_p,
                ..Default::default()
            };
            let mut s = Sampler::new(p.clone());
            s.cut(&logits, None);
            let mut got: Vec<(u32, f32)> = s.cand.clone();
            if top_k == 0 && min_p == 0.0 && top_p == 1.0 {
                got.sort_by(by_logit);
            }
            let got: Vec<u32> = got.iter().map(|c| c.0).collect();
            let want = cut_by_full_sort(&p, &logits);
            let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                got.len() == want.len() && first_difference.is_none(),
                "{p:?}: kept {} tokens, a full sort {}; first difference at {first_difference:?}",
                got.len(),
                want.len()
            );
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        let l = vec![10.0, 9.0, 0.0, -5.0];
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            min_p: 0.0,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        assert!((0..300).all(|_| s.sample(&l, &[]) == 0));
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.2,
            seed: Some(3),
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        let seen: std::collections::HashSet<u32> = (0..500).map(|_| s.sample(&l, &[])).collect();
        assert_eq!(seen, [0u32, 1].into_iter().collect());
    }

    #[test]
    fn penalties_and_bias_change_the_greedy_choice() {
        let p = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p);
        assert_eq!(s.sample(&logits(), &[1]), 4); // 3.0/2 < 2.9
        let p = SamplingParams {
            presence_penalty: 1.5,
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(p).sample(&logits(), &[1, 4]), 2);
        let p = SamplingParams {
            logit_bias: vec![(0, 10.0)],
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(p).sample(&logits(), &[]), 0);
        let p = SamplingParams {
            logit_bias: vec![(1, f32::NEG_INFINITY)],
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(p).sample(&logits(), &[]), 4);
    }

    #[test]
    fn validation_rejects_out_of_range() {
        let ok = SamplingParams::default();
        assert!(ok.validate(10).is_ok());
        for bad in [
            SamplingParams {
                temperature: -1.0,
                ..ok.clone()
            },
            SamplingParams {
                top_p: 0.0,
                ..ok.clone()
            },
            SamplingParams {
                top_p: 1.5,
                ..ok.clone()
            },
            SamplingParams {
                min_p: 2.0,
                ..ok.clone()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..ok.clone()
            },
            SamplingParams {
                logit_bias: vec![(10, 1.0)],
                ..ok.clone()
            },
            SamplingParams {
                repeat_penalty: 0.0,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate(10).is_err(), "{bad:?}");
        }
    }
}
