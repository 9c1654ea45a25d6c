//! Constrained decoding: a sequence whose output must match a JSON schema, a grammar or a
//! regular expression. Each step the constraint gives the set of tokens that keep the
//! output on the grammar (a mask over the vocabulary); the sampler draws only from it, and
//! the drawn token advances the constraint. The grammar engine is `llguidance`, over a
//! token trie built from the model's own vocabulary.

use std::sync::Arc;

use hearth_model::tokenizer::TokenAttr;
use hearth_model::Model;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use serde_json::Value;

use crate::gbnf;

/// What a sequence's output must match. Plain data; [`Grammars::compile`] checks it.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// One JSON value valid against this JSON Schema (`{}` or `{"type": "object"}` for any
    /// value or any object).
    JsonSchema(Value),
    /// A grammar in llguidance's Lark-like syntax (which can embed `%json {...}`).
    Lark(String),
    /// A grammar in llama.cpp's GBNF syntax (`root ::= ...`).
    Gbnf(String),
    /// Text matching this regular expression, whole.
    Regex(String),
}

impl Grammar {
    /// This grammar for the answer of a reasoning model, after its free-text thinking
    /// block (`<think>...</think>`), which the grammar leaves alone. With `in_prompt` the
    /// template opened the block already, so the output starts inside it; otherwise the
    /// block may open the output or be left out.
    pub fn after_thinking(&self, in_prompt: bool) -> Result<Grammar, GrammarError> {
        let answer = match self {
            Grammar::JsonSchema(schema) => format!("%json {}", with_json_options(schema)?),
            Grammar::Lark(text) => format!("%lark {{\n{text}\n}}"),
            Grammar::Gbnf(text) => format!("%lark {{\n{}\n}}", gbnf::to_lark(text)?),
            Grammar::Regex(rx) => format!("/{}/", rx.replace('/', "\\/")),
        };
        let start = if in_prompt {
            "start: thought answer_ws answer"
        } else {
            "start: \"<think>\" thought answer_ws answer | answer"
        };
        Ok(Grammar::Lark(format!(
            "{start}\nthought[suffix=\"</think>\"]: /(?s:.*)/\nanswer_ws: /[ \\t\\n]{{0,4}}/\nanswer: {answer}\n"
        )))
    }
}

/// `schema` with Hearth's JSON formatting options, unless it names its own.
fn with_json_options(schema: &Value) -> Result<Value, GrammarError> {
    let mut schema = match schema {
        Value::Bool(true) => serde_json::json!({}),
        Value::Object(_) => schema.clone(),
        _ => {
            return Err(GrammarError(
                "a JSON schema must be an object (or true)".into(),
            ))
        }
    };
    if schema.get("x-guidance").is_none() {
        json_options().apply_to(&mut schema);
    }
    Ok(schema)
}

/// Why a grammar cannot be used: the request's fault, named for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GrammarError(pub String);

/// The JSON the constraint lets the model write: compact or indented, as the model likes
/// (models write better JSON in the layout they were trained on), but the whitespace
/// between two tokens is one space, or one newline and at most 16 spaces or tabs of
/// indentation: a small model cannot wander into runs of blank lines.
pub const JSON_WHITESPACE: &str = r"\x20|\x0A[\x20\x09]{0,16}";

fn json_options() -> JsonCompileOptions {
    JsonCompileOptions {
        whitespace_pattern: Some(JSON_WHITESPACE.into()),
        ..Default::default()
    }
}

/// The grammar compiler of one model: its vocabulary as a token trie and llguidance's
/// parser factory. Built once per model, on the first constrained request (a few tens of
/// milliseconds for a 262,144-token vocabulary).
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    pub fn new(model: Arc<Model>) -> Result<Grammars, GrammarError> {
        let env: TokEnv = Arc::new(VocabEnv::new(model));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError(e.to_string()))?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// Compiles `g` into a fresh constraint, or says what is wrong with it.
    pub fn compile(&self, g: &Grammar) -> Result<Constraint, GrammarError> {
        let top = match g {
            Grammar::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_json_options(schema)?)
            }
            Grammar::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            Grammar::Gbnf(text) => TopLevelGrammar::from_lark(gbnf::to_lark(text)?),
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| GrammarError(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError(e));
        }
        let mut c = Constraint {
            matcher,
            mask: None,
        };
        // The first mask now: a grammar that fails at its start fails here, as the
        // request's error, and the first step finds the mask ready.
        c.prepare()?;
        Ok(c)
    }
}

/// One sequence's position in its grammar.
pub struct Constraint {
    matcher: Matcher,
    /// The allowed tokens at the current position, when already computed.
    mask: Option<SimpleVob>,
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Constraint {
            matcher: self.matcher.deep_clone(),
            mask: self.mask.clone(),
        }
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Constraint {
    /// Computes the allowed tokens at the current position (kept until the next
    /// [`Constraint::commit`]); cheap when already computed.
    pub fn prepare(&mut self) -> Result<(), GrammarError> {
        if self.mask.is_none() {
            let m = self
                .matcher
                .compute_mask_or_eos()
                .map_err(|e| GrammarError(e.to_string()))?;
            if m.is_zero() {
                return Err(GrammarError("the grammar allows no token here".into()));
            }
            self.mask = Some(m);
        }
        Ok(())
    }

    /// The allowed tokens as bit words (token `t` is bit `t % 32` of word `t / 32`);
    /// computes them first if needed.
    pub fn mask(&mut self) -> Result<&[u32], GrammarError> {
        self.prepare()?;
        Ok(self.mask.as_ref().expect("prepared").as_slice())
    }

    /// Advances past `tok`, which the mask allowed.
    pub fn commit(&mut self, tok: u32) -> Result<(), GrammarError> {
        self.mask = None;
        self.matcher
            .consume_token(tok)
            .map_err(|e| GrammarError(e.to_string()))
    }

    /// How many of `tokens` (drafts) the grammar accepts in a row from here.
    pub fn valid_prefix(&mut self, tokens: &[u32]) -> usize {
        self.matcher.validate_tokens(tokens).unwrap_or(0)
    }

    /// The grammar is complete and admits nothing more.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }
}

/// Whether bit `tok` is set in `mask` (see [`Constraint::mask`]).
pub fn allows(mask: &[u32], tok: u32) -> bool {
    mask.get(tok as usize / 32)
        .is_some_and(|w| w >> (tok % 32) & 1 == 1)
}

/// The model's vocabulary as llguidance sees it: each token's bytes, control tokens
/// behind the trie's special marker (a grammar's text never produces them; they stay
/// reachable as end-of-generation), the end-of-generation tokens as its EOS set.
struct VocabEnv {
    model: Arc<Model>,
    trie: TokTrie,
}

impl VocabEnv {
    fn new(model: Arc<Model>) -> VocabEnv {
        let tok = &model.tokenizer;
        let words: Vec<Vec<u8>> = (0..tok.n_vocab() as u32)
            .map(|id| {
                let piece = tok.token_to_piece(id, true);
                if tok
                    .token_attr(id)
                    .intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN)
                {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(piece);
                    w
                } else {
                    piece.to_vec()
                }
            })
            .collect();
        let eog = tok.eog_ids();
        let eos = eog.first().copied().or(tok.eos_id()).unwrap_or(0);
        let mut info = TokRxInfo::new(words.len() as u32, eos);
        info.tok_bos = tok.bos_id();
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eog);
        VocabEnv { model, trie }
    }
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie
            .tokenize_with_greedy_fallback(s, |s| self.model.tokenizer.encode(s, false, false))
    }
}
