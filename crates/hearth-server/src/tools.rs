//! Tool calling: the request's tools offered to the model in its own chat template's
//! syntax, the call syntax constrained when a call is required, and the model's text parsed
//! back into structured calls.
//!
//! Call syntaxes by model family, chosen from the chat template's text:
//! - Hermes (Qwen 2.5/3, Hermes, SmolLM3): `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`;
//! - Llama 3.x: one JSON object `{"name": ..., "parameters": {...}}`;
//! - Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`;
//! - generic, for templates that do not render tools: Hermes' tags, taught by a system
//!   message that lists the tools, with tool calls and results written into the history
//!   as text.

use hearth_engine::Grammar;
use hearth_model::{ChatMessage, ChatTemplate, ToolCall};
use serde_json::{json, Value};

use crate::util::new_id;

/// Calls in one answer at most when a call is required (a small model that is not trained
/// for tools would otherwise repeat its call until `max_tokens`).
pub const MAX_PARALLEL_CALLS: usize = 8;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// The arguments' JSON schema.
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Syntax {
    Hermes,
    Llama3,
    Mistral,
    Generic,
}

impl Syntax {
    /// The syntax a chat template's model was trained on.
    pub fn of(template: Option<&ChatTemplate>) -> Syntax {
        let Some(t) = template.filter(|t| t.knows_tools()) else {
            return Syntax::Generic;
        };
        let src = t.source();
        if src.contains("<tool_call>") {
            Syntax::Hermes
        } else if src.contains("[TOOL_CALLS]") {
            Syntax::Mistral
        } else if src.contains("<|python_tag|>") || src.contains("ipython") {
            Syntax::Llama3
        } else {
            Syntax::Generic
        }
    }
}

/// The tools of one request and how they may be used.
#[derive(Debug, Clone)]
pub struct Tools {
    pub specs: Vec<ToolSpec>,
    pub choice: ToolChoice,
    /// More than one call per answer.
    pub parallel: bool,
    pub syntax: Syntax,
}

/// A call parsed from the model's text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments as compact JSON text.
    pub arguments: String,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Reads OpenAI's (and Ollama's) `tools`: `[{"type": "function", "function": {"name",
/// "description", "parameters"}}]`. Every problem is named.
pub fn parse_specs(tools: &Value) -> Result<Vec<ToolSpec>, String> {
    let list = tools.as_array().ok_or("tools must be an array")?;
    if list.len() > 128 {
        return Err(format!("at most 128 tools (got {})", list.len()));
    }
    let mut specs: Vec<ToolSpec> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(format!(
                "tools[{i}].type '{kind}' is not supported (only 'function')"
            ));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or(format!("tools[{i}] has no function object"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("tools[{i}].function has no name"))?;
        if !valid_name(name) {
            return Err(format!(
                "tools[{i}].function.name '{name}' must be 1 to 64 letters, digits, '_', '-' or '.'"
            ));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("two tools are named '{name}'"));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                ))
            }
        };
        let description = match f.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => return Err(format!("tools[{i}].function.description must be a string")),
        };
        specs.push(ToolSpec {
            name: name.to_string(),
            description,
            parameters,
        });
    }
    Ok(specs)
}

impl Tools {
    /// Checks `choice` against the tools.
    pub fn new(
        specs: Vec<ToolSpec>,
        choice: ToolChoice,
        parallel: bool,
        syntax: Syntax,
    ) -> Result<Tools, String> {
        if let ToolChoice::Named(n) = &choice {
            if !specs.iter().any(|s| &s.name == n) {
                return Err(format!(
                    "tool_choice names '{n}', which is not among the tools"
                ));
            }
        }
        if specs.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
            return Err("tool_choice requires a call, but no tools were given".into());
        }
        Ok(Tools {
            specs,
            choice,
            parallel,
            syntax,
        })
    }

    /// Whether the model is offered the tools at all.
    pub fn active(&self) -> bool {
        !self.specs.is_empty() && self.choice != ToolChoice::None
    }

    /// OpenAI's shape of the tools, for templates that render them.
    pub fn template_value(&self) -> Option<Value> {
        (self.active() && self.syntax != Syntax::Generic).then(|| {
            self.specs
                .iter()
                .map(|s| {
                    json!({"type": "function", "function": {
                        "name": s.name, "description": s.description.clone().unwrap_or_default(),
                        "parameters": s.parameters}})
                })
                .collect()
        })
    }

    /// The conversation as the template should see it. For the generic syntax: a system
    /// message teaching the tools (merged into the first system message), earlier calls as
    /// tagged text, and tool results as user turns (consecutive results merged), since such
    /// templates know neither.
    pub fn prepare(&self, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        if self.syntax != Syntax::Generic {
            return messages;
        }
        let mut out = messages;
        if self.active() {
            let mut listing =
                String::from("You can call these tools (JSON schemas of their arguments):\n");
            for s in &self.specs {
                let d = json!({"name": s.name, "description": s.description, "parameters": s.parameters});
                listing.push_str(&d.to_string());
                listing.push('\n');
            }
            listing.push_str(
                "To call a tool, answer with only <tool_call>{\"name\": \"tool name\", \"arguments\": {...}}</tool_call>. \
                 The result comes back in <tool_response></tool_response>; then answer the user.",
            );
            match out.first_mut() {
                Some(m) if m.role == "system" && m.content.is_empty() => m.content = listing,
                Some(m) if m.role == "system" => m.content = format!("{}\n\n{listing}", m.content),
                _ => out.insert(0, ChatMessage::new("system", listing)),
            }
        }
        let mut history: Vec<ChatMessage> = Vec::with_capacity(out.len());
        for mut m in out {
            if m.role == "assistant" && !m.tool_calls.is_empty() {
                for c in std::mem::take(&mut m.tool_calls) {
                    let call = json!({"name": c.name, "arguments": arguments_value(&c.arguments)});
                    if !m.content.is_empty() {
                        m.content.push('\n');
                    }
                    m.content
                        .push_str(&format!("<tool_call>{call}</tool_call>"));
                }
                history.push(m);
            } else if m.role == "tool" {
                let text = format!("<tool_response>{}</tool_response>", m.content);
                match history.last_mut() {
                    Some(prev)
                        if prev.role == "user" && prev.content.ends_with("</tool_response>") =>
                    {
                        prev.content.push('\n');
                        prev.content.push_str(&text);
                    }
                    _ => history.push(ChatMessage::new("user", text)),
                }
            } else {
                history.push(m);
            }
        }
        history
    }

    /// The grammar that forces a well-formed call when `tool_choice` requires one.
    pub fn grammar(&self, mistral_call_token: Option<u32>) -> Option<Grammar> {
        let candidates: Vec<&ToolSpec> = match &self.choice {
            ToolChoice::Required => self.specs.iter().collect(),
            ToolChoice::Named(n) => self.specs.iter().filter(|s| &s.name == n).collect(),
            ToolChoice::None | ToolChoice::Auto => return None,
        };
        let args_key = if self.syntax == Syntax::Llama3 {
            "parameters"
        } else {
            "arguments"
        };
        let alternatives: Vec<Value> = candidates
            .iter()
            .map(|s| {
                let mut params = s.parameters.clone();
                close_objects(&mut params);
                json!({"type": "object", "properties": {"name": {"const": s.name}, args_key: params},
                       "required": ["name", args_key], "additionalProperties": false})
            })
            .collect();
        let mut schema = if alternatives.len() == 1 {
            alternatives[0].clone()
        } else {
            json!({"anyOf": alternatives})
        };
        schema["x-guidance"] =
            json!({"whitespace_pattern": hearth_engine::constraint::JSON_WHITESPACE});
        let call = format!("%json {schema}");
        let repeat = |sep: &str, one: &str| {
            if self.parallel {
                format!("{one} ({sep:?} {one}){{0,{}}}", MAX_PARALLEL_CALLS - 1)
            } else {
                one.to_string()
            }
        };
        let lark = match self.syntax {
            Syntax::Hermes | Syntax::Generic => format!(
                "start: {}\ncall: \"<tool_call>\\n\" {call} \"\\n</tool_call>\"\n",
                repeat("\n", "call")
            ),
            Syntax::Llama3 => format!("start: {call}\n"),
            Syntax::Mistral => {
                let open = match mistral_call_token {
                    Some(id) => format!("<[{id}]>"),
                    None => "\"[TOOL_CALLS]\"".to_string(),
                };
                format!(
                    "start: {open} \"[\" {} \"]\"\ncall: {call}\n",
                    repeat(", ", "call")
                )
            }
        };
        Some(Grammar::Lark(lark))
    }

    /// The calls in the model's `text`, and the text outside them. Text that only looks
    /// like a call (bad JSON, an unknown tool) stays text.
    pub fn parse(&self, text: &str) -> (String, Vec<ParsedCall>) {
        if !self.active() {
            return (text.to_string(), Vec::new());
        }
        let calls = match self.syntax {
            Syntax::Hermes | Syntax::Generic => self.parse_tagged(text),
            Syntax::Llama3 => serde_json::from_str::<Value>(text.trim())
                .ok()
                .and_then(|v| self.call_of(&v))
                .map(|c| (String::new(), vec![c])),
            Syntax::Mistral => {
                let t = text.trim_start();
                let t = t.strip_prefix("[TOOL_CALLS]").unwrap_or(t);
                serde_json::from_str::<Value>(t.trim())
                    .ok()
                    .and_then(|v| {
                        let list = v.as_array()?;
                        list.iter()
                            .map(|c| self.call_of(c))
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|c| !c.is_empty())
                    .map(|c| (String::new(), c))
            }
        };
        calls.unwrap_or_else(|| (text.to_string(), Vec::new()))
    }

    fn parse_tagged(&self, text: &str) -> Option<(String, Vec<ParsedCall>)> {
        const OPEN: &str = "<tool_call>";
        const CLOSE: &str = "</tool_call>";
        let (mut content, mut calls) = (String::new(), Vec::new());
        let mut rest = text;
        while let Some(at) = rest.find(OPEN) {
            content.push_str(&rest[..at]);
            let body = &rest[at + OPEN.len()..];
            let (inner, after) = match body.find(CLOSE) {
                Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
                None => (body, ""),
            };
            let v: Value = serde_json::from_str(inner.trim()).ok()?;
            calls.push(self.call_of(&v)?);
            rest = after;
        }
        content.push_str(rest);
        (!calls.is_empty()).then(|| (content.trim().to_string(), calls))
    }

    fn call_of(&self, v: &Value) -> Option<ParsedCall> {
        let name = v.get("name")?.as_str()?;
        if !self.specs.iter().any(|s| s.name == name) {
            return None;
        }
        let args = v.get("arguments").or_else(|| v.get("parameters"))?;
        // Some models write the arguments as a JSON string.
        let args = match args {
            Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
            a => a.clone(),
        };
        args.is_object().then(|| ParsedCall {
            name: name.to_string(),
            arguments: args.to_string(),
        })
    }

    /// Where a call may begin in streamed text: the tagged syntaxes' opening tag, or a JSON
    /// value at the very start for the others.
    fn opening(&self) -> &'static str {
        match self.syntax {
            Syntax::Hermes | Syntax::Generic => "<tool_call>",
            Syntax::Llama3 => "{",
            Syntax::Mistral => "[",
        }
    }
}

/// Makes every object schema in `schema` that lists its properties and says nothing of
/// others refuse others (OpenAI's strict mode): an argument the function does not take is
/// never a useful call, and a small model would otherwise invent them without end.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (k, v) in o.iter_mut() {
                if !matches!(k.as_str(), "const" | "enum" | "default" | "examples") {
                    close_objects(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// `arguments` as a JSON value (a string when it is not JSON).
fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// Gives each parsed call an id (`{prefix}-...`), as the APIs report them.
pub fn with_ids(calls: Vec<ParsedCall>, prefix: &str) -> Vec<ToolCall> {
    calls
        .into_iter()
        .map(|c| ToolCall {
            id: new_id(prefix),
            name: c.name,
            arguments: c.arguments,
        })
        .collect()
}

/// Streamed text of a choice that may call tools: text is released as content until a
/// call may have begun, then held to be parsed at the end.
#[derive(Debug, Default)]
pub struct ToolStream {
    /// Everything generated.
    text: String,
    /// Bytes of `text` already released as content.
    released: usize,
    /// A call has begun: nothing more is released.
    held: bool,
}

impl ToolStream {
    pub fn new() -> ToolStream {
        ToolStream::default()
    }

    /// Adds generated text; returns what can be released as content now.
    pub fn push(&mut self, tools: &Tools, piece: &str) -> String {
        self.text.push_str(piece);
        if self.held {
            return String::new();
        }
        let open = tools.opening();
        let pending = &self.text[self.released..];
        let at_start = self.text.trim_start().len() == pending.trim_start().len();
        let cut = if open.len() == 1 {
            // A JSON call can only start the answer.
            if at_start && pending.trim_start().is_empty() {
                return String::new();
            }
            if at_start && pending.trim_start().starts_with(open) {
                self.held = true;
                return String::new();
            }
            pending.len()
        } else if let Some(at) = pending.find(open) {
            self.held = true;
            at
        } else {
            // Hold back a suffix that could be the start of the tag.
            pending.len() - crate::reasoning::partial_suffix(pending, open)
        };
        let out = pending[..cut].to_string();
        self.released += cut;
        out
    }

    /// At the end: the content not yet released and the calls.
    pub fn finish(self, tools: &Tools) -> (String, Vec<ParsedCall>) {
        let (content, calls) = tools.parse(&self.text);
        if calls.is_empty() {
            return (self.text[self.released..].to_string(), calls);
        }
        // The content before the first call went out already.
        let sent = self.text[..self.released].trim();
        let rest = content
            .strip_prefix(sent)
            .unwrap_or(&content)
            .trim()
            .to_string();
        (rest, calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(syntax: Syntax, choice: ToolChoice) -> Tools {
        let specs = parse_specs(&json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
             "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}
        ]))
        .unwrap();
        Tools::new(specs, choice, true, syntax).unwrap()
    }

    #[test]
    fn parses_each_syntax_and_keeps_the_rest_as_content() {
        let t = tools(Syntax::Hermes, ToolChoice::Auto);
        let (content, calls) = t.parse(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>",
        );
        assert_eq!(content, "Let me check.");
        assert_eq!(
            calls,
            vec![
                ParsedCall {
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                ParsedCall {
                    name: "add".into(),
                    arguments: r#"{"a":1}"#.into()
                },
            ]
        );
        // An unknown tool or broken JSON stays text.
        for text in [
            "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"add\", \"arguments\": {</tool_call>",
        ] {
            assert_eq!(t.parse(text), (text.to_string(), vec![]));
        }
        let l = tools(Syntax::Llama3, ToolChoice::Auto);
        let (_, calls) = l.parse(" {\"name\": \"add\", \"parameters\": {\"a\": 2, \"b\": 3}}");
        assert_eq!(calls[0].arguments, r#"{"a":2,"b":3}"#);
        assert_eq!(l.parse("Hello").1, vec![]);
        let m = tools(Syntax::Mistral, ToolChoice::Auto);
        let (_, calls) = m.parse("[{\"name\": \"add\", \"arguments\": {\"a\": 1}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]");
        assert_eq!(calls.len(), 2);
        // With tool_choice none nothing is parsed.
        let n = tools(Syntax::Hermes, ToolChoice::None);
        assert!(n
            .parse("<tool_call>{\"name\": \"add\", \"arguments\": {}}</tool_call>")
            .1
            .is_empty());
    }

    #[test]
    fn streams_content_until_a_call_begins() {
        let t = tools(Syntax::Hermes, ToolChoice::Auto);
        let mut s = ToolStream::new();
        let mut out = String::new();
        for piece in [
            "Sure",
            ", checking.",
            " <tool",
            "_call>{\"name\": \"add\", ",
            "\"arguments\": {\"a\": 1}}</tool_call>",
        ] {
            out.push_str(&s.push(&t, piece));
        }
        assert_eq!(out, "Sure, checking. ");
        let (rest, calls) = s.finish(&t);
        assert_eq!((rest.as_str(), calls.len()), ("", 1));
        // A '<' that does not open a call is released once it cannot.
        let mut s = ToolStream::new();
        assert_eq!(s.push(&t, "a <"), "a ");
        assert_eq!(s.push(&t, "b"), "<b");
        assert_eq!(s.finish(&t), (String::new(), vec![]));
        // JSON syntaxes: a call can only open the answer.
        let l = tools(Syntax::Llama3, ToolChoice::Auto);
        let mut s = ToolStream::new();
        assert_eq!(s.push(&l, " "), "");
        assert_eq!(s.push(&l, "{\"name\": \"add\", \"parameters\": {}}"), "");
        assert_eq!(s.finish(&l).1.len(), 1);
        let mut s = ToolStream::new();
        assert_eq!(s.push(&l, "Hi {x}"), "Hi {x}");
    }

    #[test]
    fn bad_tools_and_choices_are_named() {
        for (v, needle) in [
            (json!({}), "must be an array"),
            (
                json!([{"type": "retrieval"}]),
                "'retrieval' is not supported",
            ),
            (json!([{"type": "function"}]), "no function object"),
            (
                json!([{"type": "function", "function": {"description": "x"}}]),
                "has no name",
            ),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                "must be 1 to 64",
            ),
            (
                json!([{"function": {"name": "a"}}, {"function": {"name": "a"}}]),
                "two tools are named 'a'",
            ),
            (
                json!([{"function": {"name": "a", "parameters": 3}}]),
                "must be a JSON schema object",
            ),
        ] {
            let e = parse_specs(&v).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
        let e =
            Tools::new(vec![], ToolChoice::Named("x".into()), true, Syntax::Generic).unwrap_err();
        assert!(e.contains("'x', which is not among the tools"), "{e}");
        let e = Tools::new(vec![], ToolChoice::Required, true, Syntax::Generic).unwrap_err();
        assert!(e.contains("no tools were given"), "{e}");
    }

    #[test]
    fn generic_history_teaches_the_tools_and_writes_calls_as_text() {
        let t = tools(Syntax::Generic, ToolChoice::Auto);
        let mut asst = ChatMessage::new("assistant", "");
        asst.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "add".into(),
            arguments: r#"{"a":1,"b":2}"#.into(),
        }];
        let mut r1 = ChatMessage::new("tool", "3");
        r1.tool_call_id = Some("call_1".into());
        let msgs = t.prepare(vec![
            ChatMessage::new("user", "1+2?"),
            asst,
            r1,
            ChatMessage::new("tool", "4"),
        ]);
        assert_eq!(msgs[0].role, "system");
        assert!(
            msgs[0].content.contains("\"name\":\"get_weather\"")
                && msgs[0].content.contains("<tool_call>")
        );
        assert_eq!(
            msgs[2].content,
            r#"<tool_call>{"name":"add","arguments":{"a":1,"b":2}}</tool_call>"#
        );
        assert_eq!(msgs[3].role, "user");
        assert_eq!(
            msgs[3].content,
            "<tool_response>3</tool_response>\n<tool_response>4</tool_response>"
        );
        assert_eq!(msgs.len(), 4);
    }
}
