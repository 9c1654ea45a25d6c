//! Chat templates: the Jinja template stored in `tokenizer.chat_template`, rendered with
//! minijinja the way Hugging Face renders it (trim_blocks, lstrip_blocks, Python string
//! methods).

use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::Tokenizer;

/// One message of a conversation, as templates see it (OpenAI's shape: an assistant's
/// `tool_calls`, a tool result's `tool_call_id` and `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A function call made by the model. Templates see OpenAI's shape,
/// `{"id", "type": "function", "function": {"name", "arguments"}}`, with `arguments` as
/// the JSON object it encodes (what tool-aware templates expect to `tojson`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

impl Serialize for ToolCall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let arguments: serde_json::Value = serde_json::from_str(&self.arguments)
            .unwrap_or_else(|_| serde_json::Value::String(self.arguments.clone()));
        serde_json::json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        })
        .serialize(s)
    }
}

/// Instructions one rendering may execute: about 0.1 s of work, hundreds of times what a
/// real template needs for a long conversation.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are taken from the tokenizer.
    pub fn new(source: &str, tokenizer: &Tokenizer) -> Result<ChatTemplate> {
        let text = |id: Option<u32>| {
            id.map(|i| tokenizer.token_text(i).to_string())
                .unwrap_or_default()
        };
        Self::with_tokens(source, &text(tokenizer.bos_id()), &text(tokenizer.eos_id()))
    }

    pub fn with_tokens(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // A hostile template (nested loops) must fail, not hang its caller.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| -> String {
            strftime_utc_now(&fmt)
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ModelError::Template(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, None, None)
    }

    /// [`ChatTemplate::render`] with the request's tools (OpenAI's
    /// `[{"type": "function", "function": {...}}]`) in the template's `tools` variable, and
    /// `kwargs` as further variables (`enable_thinking`, `reasoning_effort`, ...), as
    /// Hugging Face's `apply_chat_template` passes its keyword arguments.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
        kwargs: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ModelError::Template(e.to_string()))?;
        let extra = minijinja::Value::from_serialize(kwargs.cloned().unwrap_or_default());
        tmpl.render(context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..extra
        })
        .map_err(|e| match e.kind() {
            ErrorKind::OutOfFuel => ModelError::Template(format!(
                "the chat template runs too long (more than {TEMPLATE_FUEL} steps)"
            )),
            _ => ModelError::Template(e.to_string()),
        })
    }

    /// Whether the template renders tools itself (it reads a `tools` variable).
    pub fn knows_tools(&self) -> bool {
        self.env
            .get_template("chat")
            .is_ok_and(|t| t.undeclared_variables(false).contains("tools"))
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Today's UTC date formatted with the strftime directives chat templates use
/// (`%d %m %Y %y %b %B %%`); anything else is copied through.
fn strftime_utc_now(fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_inserts_default_system_and_generation_prompt() {
        let t = ChatTemplate::with_tokens(CHATML, "", "").unwrap();
        let out = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0]['content'].strip().upper() }}";
        let t = ChatTemplate::with_tokens(src, "", "").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi ")], false)
                .unwrap(),
            "HI"
        );
        let err = t
            .render(&[ChatMessage::new("system", "x")], false)
            .unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn bad_template_is_an_error_not_a_panic() {
        assert!(ChatTemplate::with_tokens("{% for %}", "", "").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
    }

    #[test]
    fn tools_and_calls_reach_the_template_as_objects() {
        let src = "{% for t in tools %}{{ t.function.name }}{{ t.function.parameters | tojson }}\n{% endfor %}\
                   {% for m in messages %}{{ m.role }}:{{ m.content }}\
                   {% for c in m.tool_calls %}<tool_call>{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}</tool_call>{% endfor %}\
                   {% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}\n{% endfor %}";
        let t = ChatTemplate::with_tokens(src, "", "").unwrap();
        assert!(t.knows_tools());
        assert!(
            !ChatTemplate::with_tokens("{{ messages[0].content }}", "", "")
                .unwrap()
                .knows_tools()
        );
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "add".into(),
            arguments: r#"{"a": 1}"#.into(),
        });
        let mut result = ChatMessage::new("tool", "2");
        result.tool_call_id = Some("c1".into());
        let tools = serde_json::json!([{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]);
        let out = t
            .render_with(
                &[ChatMessage::new("user", "1+1"), call, result],
                false,
                Some(&tools),
                None,
            )
            .unwrap();
        assert_eq!(
            out,
            "add{\"type\":\"object\"}\nuser:1+1assistant:<tool_call>{\"name\":\"add\",\"arguments\":{\"a\":1}}</tool_call>tool:2(c1)"
        );
    }

    #[test]
    fn a_template_that_loops_too_long_runs_out_of_fuel() {
        let src =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let t = ChatTemplate::with_tokens(src, "", "").unwrap();
        let e = t
            .render(&[ChatMessage::new("user", "hi")], true)
            .unwrap_err();
        assert!(e.to_string().contains("runs too long"), "{e}");
    }
}
