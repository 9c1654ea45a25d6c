//! Reasoning models (Qwen3, DeepSeek-R1 distills): the thinking a model writes between
//! `<think>` and `</think>` before its answer, separated from the answer (OpenAI's
//! `reasoning_content`, Ollama's `thinking`), and turned off where the template can.

use hearth_model::ChatTemplate;
use serde_json::{Map, Value};

use crate::tools::{ParsedCall, ToolStream, Tools};

pub const OPEN: &str = "<think>";
pub const CLOSE: &str = "</think>";

/// Whether a chat template's model thinks in tags.
pub fn supported(template: Option<&ChatTemplate>) -> bool {
    template.is_some_and(|t| t.source().contains(CLOSE))
}

/// The template variables a request's thinking settings make: `enable_thinking` (Qwen3's
/// switch) and `reasoning_effort`, over the request's own `chat_template_kwargs`.
pub fn kwargs(
    base: Option<&Map<String, Value>>,
    enable: Option<bool>,
    effort: Option<&str>,
) -> Map<String, Value> {
    let mut m = base.cloned().unwrap_or_default();
    if let Some(e) = effort {
        m.insert("reasoning_effort".into(), Value::from(e));
        if e == "none" {
            m.insert("enable_thinking".into(), Value::Bool(false));
        }
    }
    if let Some(b) = enable {
        m.insert("enable_thinking".into(), Value::Bool(b));
    }
    m
}

/// Whether thinking is off by the template variables.
pub fn disabled(kwargs: &Map<String, Value>) -> bool {
    kwargs.get("enable_thinking") == Some(&Value::Bool(false))
}

/// How many trailing bytes of `text` could begin `tag` (held back while streaming).
pub fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k) && tag.starts_with(&text[text.len() - k..])
        })
        .unwrap_or(0)
}

/// A finished answer split into (thinking, answer). With `in_prompt` the template opened
/// the thinking block, so the output starts inside it.
pub fn split(text: &str, in_prompt: bool) -> (String, String) {
    let t = text.trim_start();
    let opened = t.strip_prefix(OPEN);
    match t.find(CLOSE) {
        Some(at) if in_prompt || opened.is_some() => {
            let thought = &t[..at];
            let thought = thought.strip_prefix(OPEN).unwrap_or(thought);
            (
                thought.trim().to_string(),
                t[at + CLOSE.len()..].trim_start().to_string(),
            )
        }
        None if in_prompt => (t.trim().to_string(), String::new()),
        None if opened.is_some() => (opened.unwrap_or("").trim().to_string(), String::new()),
        _ => (String::new(), text.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Nothing but blanks yet: the output may still open a thinking block.
    Start,
    Thinking,
    /// The answer has begun (blanks after `</think>` are dropped until it does).
    AnswerStart,
    Answer,
}

/// Streamed text split into thinking and answer as it comes.
#[derive(Debug)]
pub struct ThinkStream {
    phase: Phase,
    /// Text not yet released.
    held: String,
}

impl ThinkStream {
    pub fn new(in_prompt: bool) -> ThinkStream {
        ThinkStream {
            phase: if in_prompt {
                Phase::Thinking
            } else {
                Phase::Start
            },
            held: String::new(),
        }
    }

    /// Adds generated text; returns the (thinking, answer) text released by it.
    pub fn push(&mut self, piece: &str) -> (String, String) {
        self.held.push_str(piece);
        let (mut thought, mut answer) = (String::new(), String::new());
        loop {
            match self.phase {
                Phase::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.phase = Phase::Thinking;
                    } else if OPEN.starts_with(t) {
                        return (thought, answer); // blanks, or a partial tag
                    } else {
                        self.phase = Phase::Answer;
                    }
                }
                Phase::Thinking => match self.held.find(CLOSE) {
                    Some(at) => {
                        thought.push_str(&self.held[..at]);
                        self.held.drain(..at + CLOSE.len());
                        self.phase = Phase::AnswerStart;
                    }
                    None => {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let cut = self.held.len() - keep;
                        thought.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return (thought, answer);
                    }
                },
                Phase::AnswerStart => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return (thought, answer);
                    }
                    self.held = t.to_string();
                    self.phase = Phase::Answer;
                }
                Phase::Answer => {
                    answer.push_str(&self.held);
                    self.held.clear();
                    return (thought, answer);
                }
            }
        }
    }

    /// Whatever is still held, at the end: (thinking, answer).
    pub fn finish(mut self) -> (String, String) {
        match self.phase {
            Phase::Thinking => (std::mem::take(&mut self.held), String::new()),
            Phase::Start | Phase::Answer => (String::new(), std::mem::take(&mut self.held)),
            Phase::AnswerStart => (String::new(), String::new()),
        }
    }
}

/// A finished choice's text as the APIs report it: (thinking, answer, tool calls).
/// `thinking` is `Some(in_prompt)` for a model that thinks (see [`split`]).
pub fn finished(
    text: &str,
    thinking: Option<bool>,
    tools: &Tools,
) -> (String, String, Vec<ParsedCall>) {
    let (thought, answer) = match thinking {
        Some(in_prompt) => split(text, in_prompt),
        None => (String::new(), text.to_string()),
    };
    let (content, calls) = tools.parse(&answer);
    (thought, content, calls)
}

/// One streamed choice: thinking separated first, then tool calls held from the answer.
#[derive(Debug)]
pub struct OutputStream {
    think: Option<ThinkStream>,
    calls: ToolStream,
}

impl OutputStream {
    pub fn new(thinking: Option<bool>) -> OutputStream {
        OutputStream {
            think: thinking.map(ThinkStream::new),
            calls: ToolStream::new(),
        }
    }

    /// Adds generated text; returns the (thinking, content) it releases.
    pub fn push(&mut self, tools: &Tools, piece: &str) -> (String, String) {
        let (thought, answer) = match &mut self.think {
            Some(t) => t.push(piece),
            None => (String::new(), piece.to_string()),
        };
        let content = if tools.active() {
            self.calls.push(tools, &answer)
        } else {
            answer
        };
        (thought, content)
    }

    /// The end: (thinking, content, calls) still to send, `rest` being the engine's held
    /// back text.
    pub fn finish(mut self, tools: &Tools, rest: &str) -> (String, String, Vec<ParsedCall>) {
        let (mut thought, mut content) = self.push(tools, rest);
        if let Some(t) = self.think.take() {
            let (t, a) = t.finish();
            thought.push_str(&t);
            content.push_str(&if tools.active() {
                self.calls.push(tools, &a)
            } else {
                a
            });
        }
        if !tools.active() {
            return (thought, content, Vec::new());
        }
        let (more, calls) = self.calls.finish(tools);
        content.push_str(&more);
        (thought, content, calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_finished_answers() {
        let s = |t: &str, p| split(t, p);
        assert_eq!(
            s("<think>\nhm, 2\n</think>\n\nFour.", false),
            ("hm, 2".into(), "Four.".into())
        );
        assert_eq!(
            s("just text </think> here", false),
            ("".into(), "just text </think> here".into())
        );
        assert_eq!(
            s("inside</think>\nAnswer", true),
            ("inside".into(), "Answer".into())
        );
        assert_eq!(s("<think>cut off", false), ("cut off".into(), "".into()));
        assert_eq!(s("cut off", true), ("cut off".into(), "".into()));
        assert_eq!(s("Plain.", false), ("".into(), "Plain.".into()));
    }

    #[test]
    fn streams_thinking_then_the_answer_whatever_the_pieces() {
        let text = "<think>\nLet me see.\n</think>\n\nThe answer is 4.";
        for size in 1..8 {
            let mut st = ThinkStream::new(false);
            let (mut thought, mut answer) = (String::new(), String::new());
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(size) {
                let (t, a) = st.push(&piece.iter().collect::<String>());
                thought.push_str(&t);
                answer.push_str(&a);
            }
            let (t, a) = st.finish();
            thought.push_str(&t);
            answer.push_str(&a);
            assert_eq!(
                (thought.trim(), answer.as_str()),
                ("Let me see.", "The answer is 4."),
                "{size}"
            );
        }
        let mut st = ThinkStream::new(false);
        assert_eq!(
            st.push("Hello <think>"),
            (String::new(), "Hello <think>".into())
        );
        let mut st = ThinkStream::new(true);
        assert_eq!(st.push("a</th"), ("a".into(), String::new()));
        assert_eq!(st.push("ink>b"), (String::new(), "b".into()));
    }

    #[test]
    fn kwargs_turn_thinking_off() {
        let m = kwargs(None, Some(false), None);
        assert!(disabled(&m));
        let m = kwargs(None, None, Some("none"));
        assert!(disabled(&m) && m["reasoning_effort"] == "none");
        assert!(!disabled(&kwargs(None, None, Some("high"))));
    }
}
