//! Pre-tokenizers of byte-level BPE vocabularies: the regexes that cut text into words
//! before merging, named by `tokenizer.ggml.pre`, as llama.cpp defines them.
//!
//! llama.cpp applies a list of regexes in turn: the first splits the text into its matches
//! and the stretches between them, each further regex splits every piece again the same
//! way. It matches `\p{L}`, `\p{N}`, `\s` … against its own Unicode tables, either with
//! hand-written matchers (the GPT-2 and Llama-3 patterns) or with `std::regex` over a
//! "collapsed" text where every non-ASCII code point stands for its category. Both are
//! the same as running the patterns with Unicode-aware regexes, which is what this module
//! does with `fancy-regex` (the patterns need look-ahead).

use fancy_regex::Regex;

use super::TokenizerError;

/// A family of pre-tokenizer regexes (several `tokenizer.ggml.pre` names share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreTokenizer {
    /// llama.cpp's fallback for unknown or missing names.
    Default,
    /// Llama 3 (`llama-bpe`, `llama3`, `dbrx`, `smaug-bpe`, `chatglm-bpe`, …).
    Llama3,
    /// GPT-2 (`gpt-2`, `phi-2`, `mpt`, `olmo`, `jais`, `roberta-bpe`, …).
    Gpt2,
    /// Single digits, then GPT-2 (`smollm`, `starcoder`, `refact`, `command-r`, …).
    StarCoder,
    /// Qwen 2 (`qwen2`, `stablelm2`, `deepseek-r1-qwen`, `megrez`, `grok-2`, …).
    Qwen2,
    /// Qwen 3.5 (`qwen35`): Qwen 2 with combining marks kept in words.
    Qwen35,
    /// `falcon`
    Falcon,
    /// `deepseek-coder`
    DeepSeekCoder,
    /// `deepseek-llm`
    DeepSeekLlm,
    /// `deepseek-v3`, `hunyuan-dense`, …
    DeepSeek3,
    /// `poro-chat`, `bloom`, `gpt3-finnish`
    Poro,
    /// `viking`
    Viking,
    /// `tekken` (Mistral Nemo)
    Tekken,
    /// `gpt-4o`, `llama4`, `minimax-m2`, …
    Gpt4o,
    /// `seed-coder`
    SeedCoder,
    /// `bailingmoe`, `bailingmoe2`, `llada-moe`
    BailingMoe,
    /// `ufakzeka`
    Ufakzeka,
}

const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_TAIL: &str =
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_TAIL: &str =
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_TAIL: &str = r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER_TAIL: &str =
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
const UPPER_LOWER_WORDS: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*";

impl PreTokenizer {
    /// The regexes of this family, applied in order.
    pub fn patterns(self) -> Vec<String> {
        let s = |p: &str| p.to_string();
        match self {
            PreTokenizer::Default => vec![
                s(r"[\p{P}\$\+<=>\^~\|]+"),
                s(GPT2),
                s(r"\p{N}+"),
                s(r"[0-9][0-9][0-9]"),
            ],
            PreTokenizer::Llama3 => vec![format!("{CONTRACTIONS}{LLAMA3_TAIL}")],
            PreTokenizer::Gpt2 => vec![s(GPT2)],
            PreTokenizer::StarCoder => vec![s(r"\p{N}"), s(GPT2)],
            PreTokenizer::Qwen2 => vec![format!("{CONTRACTIONS}{QWEN2_TAIL}")],
            PreTokenizer::Qwen35 => vec![format!("{CONTRACTIONS}{QWEN35_TAIL}")],
            PreTokenizer::Falcon => {
                vec![s(r"[\p{P}\$\+<=>\^~\|`]+"), s(GPT2), s(r"[0-9][0-9][0-9]")]
            }
            PreTokenizer::DeepSeekCoder => {
                vec![
                    s(r"[\r\n]"),
                    s(r"\s?\p{L}+"),
                    s(r"\s?\p{P}+"),
                    s(r"[一-龥ࠀ-一가-퟿]+"),
                    s(r"\p{N}"),
                ]
            }
            PreTokenizer::DeepSeekLlm => {
                vec![
                    s(r"[\r\n]"),
                    s(r"\s?\p{L}+"),
                    s(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"),
                    s(r"\s+$"),
                    s(r"[一-龥ࠀ-一가-퟿]+"),
                    s(r"\p{N}+"),
                ]
            }
            PreTokenizer::DeepSeek3 => vec![
                s(r"\p{N}{1,3}"),
                s(r"[一-龥぀-ゟ゠-ヿ]+"),
                s(
                    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
                ),
            ],
            PreTokenizer::Poro => vec![s(PORO)],
            PreTokenizer::Viking => vec![s(PORO), s(r"\p{N}")],
            PreTokenizer::Tekken => {
                vec![format!(
                    r"{UPPER_LOWER_WORDS}|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                )]
            }
            PreTokenizer::Gpt4o => vec![format!(
                r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))*((?=[\p{{L}}])([^A-Z]))+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))+((?=[\p{{L}}])([^A-Z]))*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            )],
            PreTokenizer::SeedCoder => vec![format!("{CONTRACTIONS}{SEED_CODER_TAIL}")],
            PreTokenizer::BailingMoe => vec![s(
                r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
            )],
            PreTokenizer::Ufakzeka => {
                vec![s(
                    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                )]
            }
        }
    }

    /// Every family, for tests and listings.
    pub const ALL: [PreTokenizer; 17] = [
        PreTokenizer::Default,
        PreTokenizer::Llama3,
        PreTokenizer::Gpt2,
        PreTokenizer::StarCoder,
        PreTokenizer::Qwen2,
        PreTokenizer::Qwen35,
        PreTokenizer::Falcon,
        PreTokenizer::DeepSeekCoder,
        PreTokenizer::DeepSeekLlm,
        PreTokenizer::DeepSeek3,
        PreTokenizer::Poro,
        PreTokenizer::Viking,
        PreTokenizer::Tekken,
        PreTokenizer::Gpt4o,
        PreTokenizer::SeedCoder,
        PreTokenizer::BailingMoe,
        PreTokenizer::Ufakzeka,
    ];

    /// The family and settings of a `tokenizer.ggml.pre` name, `None` if unknown.
    pub fn from_gguf_name(name: &str) -> Option<PreTokenizer> {
        PreConfig::lookup(name).map(|c| c.kind)
    }
}

/// What a `tokenizer.ggml.pre` name implies besides its regexes.
#[derive(Debug, Clone, Copy)]
pub(super) struct PreConfig {
    pub kind: PreTokenizer,
    /// Detokenizer removes spaces before punctuation and contractions.
    pub clean_spaces: bool,
    /// A word that is a whole token is taken as is, without merging.
    pub ignore_merges: bool,
    /// BOS is added unless the file says otherwise.
    pub add_bos: bool,
    /// The model has no BOS token unless the file names one.
    pub no_bos: bool,
}

impl PreConfig {
    pub const DEFAULT: PreConfig = PreConfig {
        kind: PreTokenizer::Default,
        clean_spaces: true,
        ignore_merges: false,
        add_bos: false,
        no_bos: false,
    };

    /// The configuration of a pre-tokenizer name, as llama.cpp's vocabulary loader sets it.
    pub fn lookup(name: &str) -> Option<PreConfig> {
        use PreTokenizer as P;
        let plain = |kind| PreConfig {
            kind,
            ..PreConfig::DEFAULT
        };
        let unclean = |kind| PreConfig {
            kind,
            clean_spaces: false,
            ..PreConfig::DEFAULT
        };
        Some(match name {
            "default" => plain(P::Default),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => PreConfig {
                kind: P::Llama3,
                ignore_merges: true,
                add_bos: true,
                ..PreConfig::DEFAULT
            },
            "dbrx" | "smaug-bpe" => plain(P::Llama3),
            "glm4" | "chatglm-bpe" => PreConfig {
                kind: P::Llama3,
                no_bos: true,
                ..PreConfig::DEFAULT
            },
            "deepseek-coder" => unclean(P::DeepSeekCoder),
            "deepseek-llm" => unclean(P::DeepSeekLlm),
            "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => unclean(P::DeepSeek3),
            "falcon" => plain(P::Falcon),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" | "exaone4" => {
                plain(P::Gpt2)
            }
            "trillion" | "granite-docling" => unclean(P::Gpt2),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                plain(P::StarCoder)
            }
            "smollm" | "command-r" => unclean(P::StarCoder),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open"
            | "grok-2" => unclean(P::Qwen2),
            "stablelm2" | "megrez" => plain(P::Qwen2),
            "qwen35" => unclean(P::Qwen35),
            "poro-chat" => unclean(P::Poro),
            "bloom" | "gpt3-finnish" => plain(P::Poro),
            "viking" => unclean(P::Viking),
            "tekken" => PreConfig {
                kind: P::Tekken,
                clean_spaces: false,
                ignore_merges: true,
                add_bos: true,
                no_bos: false,
            },
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => unclean(P::Gpt4o),
            "seed-coder" => unclean(P::SeedCoder),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => unclean(P::BailingMoe),
            "ufakzeka" => unclean(P::Ufakzeka),
            _ => return None,
        })
    }
}

/// Compiled regexes of one pre-tokenizer.
pub(super) struct Splitter {
    regexes: Vec<Regex>,
}

impl Splitter {
    pub fn new(pre: PreTokenizer, pre_name: &str) -> Result<Splitter, TokenizerError> {
        let mut regexes = Vec::new();
        for pattern in pre.patterns() {
            let regex = fancy_regex::RegexBuilder::new(&pattern)
                .backtrack_limit(10_000_000)
                .build()
                .map_err(|e| TokenizerError::BadRegex {
                    pre: pre_name.to_string(),
                    pattern: pattern.clone(),
                    message: e.to_string(),
                })?;
            regexes.push(regex);
        }
        Ok(Splitter { regexes })
    }

    /// Cuts `text` into words: the pieces cover `text` exactly, in order, none empty.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        let mut next = Vec::new();
        for regex in &self.regexes {
            next.clear();
            for &piece in &pieces {
                split_one(regex, piece, &mut next);
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        pieces.retain(|p| !p.is_empty());
        pieces
    }
}

/// Splits `piece` into the matches of `regex` and the stretches between them.
fn split_one<'t>(regex: &Regex, piece: &'t str, out: &mut Vec<&'t str>) {
    let mut last = 0;
    for m in regex.find_iter(piece) {
        // A regex that gives up (backtracking limit) leaves the rest of the piece whole.
        let Ok(m) = m else { break };
        if m.start() == m.end() {
            continue;
        }
        if m.start() > last {
            out.push(&piece[last..m.start()]);
        }
        out.push(m.as_str());
        last = m.end();
    }
    if last < piece.len() {
        out.push(&piece[last..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: PreTokenizer, text: &str) -> Vec<String> {
        Splitter::new(pre, "test")
            .unwrap()
            .split(text)
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_family_compiles() {
        for pre in PreTokenizer::ALL {
            Splitter::new(pre, "test").unwrap();
        }
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(
            split(PreTokenizer::Gpt2, "Hello world's  end\n\nx 123"),
            ["Hello", " world", "'s", " ", " end", "\n", "\n", "x", " 123"]
        );
    }

    /// DeepSeek LLM keeps a space with the punctuation after it, and whole numbers
    /// (llama.cpp's vocabulary test for it has `" ("` as one token).
    #[test]
    fn deepseek_llm_words() {
        assert_eq!(
            split(PreTokenizer::DeepSeekLlm, "a (b) 123\n"),
            ["a", " (", "b", ")", " ", "123", "\n"]
        );
    }
}
