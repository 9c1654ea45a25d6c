//! Fill-in-the-middle prompts for code models: the text before and after a gap, in the
//! model's FIM tokens, so that the model writes the middle.
//!
//! The layout is llama-server's `/infill` (documented there):
//! - with repository tokens (`FIM_REP` and `FIM_SEP`), Qwen2.5-Coder's repo-level pattern:
//!   `<REP>myproject\n` then `<SEP>{filename}\n{text}` per extra file, then
//!   `<SEP>filename\n`;
//! - without them, the extra files' texts in order;
//!
//! then `<PRE>{prefix}<SUF>{suffix}<MID>{prompt}`, after BOS where the model adds one.

use crate::tokenizer::SpecialTokens;

/// A model's FIM tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fim {
    pub pre: u32,
    pub suf: u32,
    pub mid: u32,
    /// `(FIM_REP, FIM_SEP)`, for the repo-level pattern.
    pub repo: Option<(u32, u32)>,
    /// BOS, when the model adds one to its prompts.
    pub bos: Option<u32>,
}

/// What to fill: the code around the gap, other files for context, and text that opens
/// the middle.
#[derive(Debug, Clone, Default)]
pub struct FimRequest<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
    /// `(filename, text)` of other files, most relevant last.
    pub extra: &'a [(String, String)],
    pub prompt: &'a str,
}

/// An assembled prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimPrompt {
    pub ids: Vec<u32>,
    /// Some of the prefix (its start), suffix (its end) or extra files (the first ones)
    /// were left out to fit `budget`.
    pub truncated: bool,
}

impl Fim {
    /// The model's FIM tokens, if it has the three it needs.
    pub fn of(special: &SpecialTokens, add_bos: bool) -> Option<Fim> {
        Some(Fim {
            pre: special.fim_pre?,
            suf: special.fim_suf?,
            mid: special.fim_mid?,
            repo: special.fim_rep.zip(special.fim_sep),
            bos: special.bos.filter(|_| add_bos),
        })
    }

    /// The prompt for `req`, at most `budget` tokens. `encode` tokenizes plain text (no
    /// special tokens parsed, none added). The fixed part (FIM tokens, BOS, `prompt`) is
    /// kept whole; the suffix keeps at most a quarter of the room left, from its start;
    /// the prefix keeps the rest it needs, from its end; the extra files fill what
    /// remains, the last ones first. `None` when even the fixed part does not fit.
    pub fn prompt(
        &self,
        req: &FimRequest,
        budget: usize,
        encode: impl Fn(&str) -> Vec<u32>,
    ) -> Option<FimPrompt> {
        let prompt = encode(req.prompt);
        let fixed = 3 + usize::from(self.bos.is_some()) + prompt.len();
        let mut room = budget.checked_sub(fixed)?;
        let mut truncated = false;
        let take = |ids: Vec<u32>, at_most: usize, keep_end: bool, t: &mut bool| {
            let n = ids.len().min(at_most);
            *t |= n < ids.len();
            if keep_end {
                ids[ids.len() - n..].to_vec()
            } else {
                ids[..n].to_vec()
            }
        };
        let suffix = take(encode(req.suffix), room / 4, false, &mut truncated);
        room -= suffix.len();
        let prefix = take(encode(req.prefix), room, true, &mut truncated);
        room -= prefix.len();

        // The extra context, as whole pieces; the ones nearest the prefix win.
        let mut pieces: Vec<Vec<u32>> = Vec::new();
        if let Some((rep, sep)) = self.repo {
            pieces.push([vec![rep], encode("myproject\n")].concat());
            for (name, text) in req.extra {
                pieces.push([vec![sep], encode(&format!("{name}\n")), encode(text)].concat());
            }
            pieces.push([vec![sep], encode("filename\n")].concat());
        } else {
            pieces.extend(req.extra.iter().map(|(_, text)| encode(text)));
        }
        let mut kept = 0;
        for p in pieces.iter().rev() {
            if p.len() > room {
                truncated = true;
                break;
            }
            room -= p.len();
            kept += 1;
        }
        let extra = pieces[pieces.len() - kept..].concat();

        let mut ids = Vec::with_capacity(budget - room);
        ids.extend(self.bos);
        ids.extend(extra);
        ids.push(self.pre);
        ids.extend(prefix);
        ids.push(self.suf);
        ids.extend(suffix);
        ids.push(self.mid);
        ids.extend(prompt);
        Some(FimPrompt { ids, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRE: u32 = 1000;
    const SUF: u32 = 1001;
    const MID: u32 = 1002;
    const REP: u32 = 1003;
    const SEP: u32 = 1004;

    /// One token per byte.
    fn bytes(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    fn fim(repo: bool, bos: bool) -> Fim {
        Fim {
            pre: PRE,
            suf: SUF,
            mid: MID,
            repo: repo.then_some((REP, SEP)),
            bos: bos.then_some(1),
        }
    }

    #[test]
    fn lays_out_prefix_suffix_middle() {
        let req = FimRequest {
            prefix: "ab",
            suffix: "cd",
            prompt: "e",
            ..Default::default()
        };
        let p = fim(false, true).prompt(&req, 100, bytes).unwrap();
        let want = [
            vec![1, PRE],
            bytes("ab"),
            vec![SUF],
            bytes("cd"),
            vec![MID],
            bytes("e"),
        ];
        assert_eq!(p.ids, want.concat());
        assert!(!p.truncated);
    }

    #[test]
    fn repo_level_pattern_names_each_file() {
        let extra = [("a.py".to_string(), "x=1\n".to_string())];
        let req = FimRequest {
            prefix: "p",
            suffix: "s",
            extra: &extra,
            prompt: "",
        };
        let p = fim(true, false).prompt(&req, 100, bytes).unwrap();
        let want = [
            vec![REP],
            bytes("myproject\n"),
            vec![SEP],
            bytes("a.py\nx=1\n"),
            vec![SEP],
            bytes("filename\n"),
            vec![PRE],
            bytes("p"),
            vec![SUF],
            bytes("s"),
            vec![MID],
        ];
        assert_eq!(p.ids, want.concat());
        // Without repository tokens the files' texts come first, unnamed.
        let p = fim(false, false).prompt(&req, 100, bytes).unwrap();
        let want = [
            bytes("x=1\n"),
            vec![PRE],
            bytes("p"),
            vec![SUF],
            bytes("s"),
            vec![MID],
        ];
        assert_eq!(p.ids, want.concat());
    }

    #[test]
    fn truncation_keeps_the_text_nearest_the_gap() {
        let extra = [
            ("old".to_string(), "0123456789".to_string()),
            ("new".to_string(), "ab".to_string()),
        ];
        let (prefix, suffix) = (
            "P".repeat(100) + "0123",
            "4567".to_string() + &"S".repeat(100),
        );
        let req = FimRequest {
            prefix: &prefix,
            suffix: &suffix,
            extra: &extra,
            prompt: "",
        };
        let p = fim(false, false).prompt(&req, 43, bytes).unwrap();
        assert!(p.truncated);
        assert_eq!(p.ids.len(), 43);
        // 40 tokens of room: the suffix keeps its first 10, the prefix its last 30.
        let want = [
            vec![PRE],
            bytes(&prefix[74..]),
            vec![SUF],
            bytes(&suffix[..10]),
            vec![MID],
        ];
        assert_eq!(p.ids, want.concat());
        // With room to spare, the newest file fits and the older one does not.
        let req = FimRequest {
            prefix: "p",
            suffix: "s",
            ..req
        };
        let p = fim(false, false).prompt(&req, 10, bytes).unwrap();
        assert!(p.truncated);
        let want = [
            bytes("ab"),
            vec![PRE],
            bytes("p"),
            vec![SUF],
            bytes("s"),
            vec![MID],
        ];
        assert_eq!(p.ids, want.concat());
        // The fixed part alone must fit.
        let req = FimRequest {
            prompt: "0123456789",
            ..req
        };
        assert_eq!(fim(false, true).prompt(&req, 13, bytes), None);
    }
}
