//! Anthropic's Messages API: `POST /v1/messages` (streamed as its named SSE events, or
//! one message) and `POST /v1/messages/count_tokens`, with text, tools (`tool_use` and
//! `tool_result` blocks) and thinking blocks for models that think.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{Event, FinishReason, Grammar, Request, SamplingParams, Summary};
use hearth_model::{ChatMessage, ToolCall};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::ApiError;
use crate::generate::{self, Ending};
use crate::modelfile::Dialect;
use crate::reasoning::{self, OutputStream};
use crate::state::{AppState, Ready};
use crate::tools::{self, ParsedCall, Syntax, ToolChoice, Tools};
use crate::util::{new_id, read_body};

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Deserialize, Debug)]
struct MessageIn {
    role: String,
    content: Content,
}

#[derive(Deserialize, Debug)]
struct MessagesRequest {
    model: String,
    max_tokens: Option<i64>,
    messages: Vec<MessageIn>,
    system: Option<Content>,
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    /// `{"type": "enabled" | "disabled"}`: the template's thinking switch.
    thinking: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema": ...}}`: constrained output.
    output_config: Option<Value>,
    /// Not in Anthropic's API: the sampler's seed.
    seed: Option<u64>,
    /// Informational (`user_id`); nothing to do with it.
    #[allow(dead_code)]
    metadata: Option<Value>,
    /// Any other field is one Hearth does not implement: refused by name, not ignored.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg).anthropic()
}

/// The text of a content value (a string, or text blocks).
fn text_of(c: &Content, what: &str) -> Result<String, ApiError> {
    match c {
        Content::Text(t) => Ok(t.clone()),
        Content::Blocks(blocks) => {
            let mut s = String::new();
            for b in blocks {
                match (b.get("type").and_then(Value::as_str), b.get("text")) {
                    (Some("text"), Some(Value::String(t))) => s.push_str(t),
                    (t, _) => {
                        return Err(bad(format!(
                            "{what}: content blocks of type {} are not supported here",
                            t.unwrap_or("(none)")
                        )))
                    }
                }
            }
            Ok(s)
        }
    }
}

/// The conversation as chat messages: the system prompt, text, `tool_use` blocks as the
/// assistant's calls and `tool_result` blocks as tool messages.
fn messages(req: &MessagesRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::new();
    if let Some(s) = &req.system {
        out.push(ChatMessage::new("system", text_of(s, "system")?));
    }
    for m in &req.messages {
        if m.role != "user" && m.role != "assistant" {
            return Err(bad(format!(
                "message role '{}' is not user or assistant",
                m.role
            )));
        }
        let blocks = match &m.content {
            Content::Text(t) => {
                out.push(ChatMessage::new(m.role.clone(), t.clone()));
                continue;
            }
            Content::Blocks(b) => b,
        };
        let mut msg = ChatMessage::new(m.role.clone(), "");
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => {
                    msg.content
                        .push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
                }
                // The model's earlier thinking is not sent back to it.
                Some("thinking" | "redacted_thinking") if m.role == "assistant" => {}
                Some("tool_use") if m.role == "assistant" => {
                    let name = b.get("name").and_then(Value::as_str);
                    let Some(name) = name else {
                        return Err(bad("a tool_use block has no name"));
                    };
                    msg.tool_calls.push(ToolCall {
                        id: b
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| new_id("toolu"), str::to_string),
                        name: name.to_string(),
                        arguments: b.get("input").cloned().unwrap_or(json!({})).to_string(),
                    });
                }
                Some("tool_result") if m.role == "user" => {
                    let content = match b.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(a)) => {
                            text_of(&Content::Blocks(a.clone()), "tool_result")?
                        }
                        Some(_) => return Err(bad("tool_result content must be text")),
                    };
                    let mut r = ChatMessage::new("tool", content);
                    r.tool_call_id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    out.push(r);
                }
                t => {
                    return Err(bad(format!(
                        "content blocks of type {} are not supported in {} messages",
                        t.unwrap_or("(none)"),
                        m.role
                    )))
                }
            }
        }
        if !msg.content.is_empty() || !msg.tool_calls.is_empty() {
            out.push(msg);
        }
    }
    Ok(out)
}

/// Anthropic's tools (`{name, description, input_schema}`) and `tool_choice`.
fn request_tools(req: &MessagesRequest, ready: &Ready) -> Result<Tools, ApiError> {
    let as_openai: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .map(|t| {
            json!({"type": "function", "function": {"name": t.get("name"), "description": t.get("description"),
                   "parameters": t.get("input_schema")}})
        })
        .collect();
    let specs = tools::parse_specs(&Value::Array(as_openai)).map_err(bad)?;
    let (choice, parallel) = match &req.tool_choice {
        None | Some(Value::Null) => (ToolChoice::Auto, true),
        Some(c) => {
            let parallel = c.get("disable_parallel_tool_use") != Some(&Value::Bool(true));
            let choice = match c.get("type").and_then(Value::as_str) {
                Some("auto") => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => match c.get("name").and_then(Value::as_str) {
                    Some(n) => ToolChoice::Named(n.to_string()),
                    None => return Err(bad("tool_choice of type tool needs a name")),
                },
                _ => return Err(bad("tool_choice type must be auto, any, tool or none")),
            };
            (choice, parallel)
        }
    };
    let syntax = Syntax::of(ready.model.chat_template.as_ref());
    Tools::new(specs, choice, parallel, syntax).map_err(bad)
}

fn sampling(req: &MessagesRequest, n_vocab: usize) -> Result<SamplingParams, ApiError> {
    let t = req.temperature.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&t) {
        return Err(bad(format!(
            "temperature must be between 0 and 1 (got {t})"
        )));
    }
    let mut p = SamplingParams {
        temperature: t,
        top_k: 0,
        top_p: req.top_p.unwrap_or(1.0),
        min_p: 0.0,
        ..SamplingParams::default()
    };
    if let Some(k) = req.top_k {
        p.top_k =
            usize::try_from(k).map_err(|_| bad(format!("top_k must not be negative (got {k})")))?;
    }
    p.seed = req.seed;
    let p = p.greedy_if_cold();
    p.validate(n_vocab).map_err(bad)?;
    Ok(p)
}

/// The thinking switch of `thinking`.
fn thinking_kwargs(req: &MessagesRequest, ready: &Ready) -> Result<Map<String, Value>, ApiError> {
    let enable = match req
        .thinking
        .as_ref()
        .map(|t| t.get("type").and_then(Value::as_str))
    {
        None => None,
        Some(Some("enabled")) => Some(true),
        Some(Some("disabled")) => Some(false),
        Some(_) => return Err(bad("thinking type must be enabled or disabled")),
    };
    if enable == Some(true) && !reasoning::supported(ready.model.chat_template.as_ref()) {
        return Err(bad(format!(
            "thinking: '{}' does not think (its chat template has no thinking)",
            ready.info.id
        )));
    }
    Ok(reasoning::kwargs(None, enable, None))
}

fn stop_reason(s: &Summary, calls: bool) -> &'static str {
    if calls {
        "tool_use"
    } else if s.finish_reason == FinishReason::Length {
        "max_tokens"
    } else if s.stop_string.is_some() {
        "stop_sequence"
    } else {
        "end_turn"
    }
}

/// Content blocks of a finished answer.
fn blocks(thought: &str, text: &str, calls: Vec<ParsedCall>) -> Vec<Value> {
    let mut out = Vec::new();
    if !thought.is_empty() {
        out.push(json!({"type": "thinking", "thinking": thought, "signature": ""}));
    }
    if !text.is_empty() || calls.is_empty() {
        out.push(json!({"type": "text", "text": text}));
    }
    for c in tools::with_ids(calls, "toolu") {
        let input: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
        out.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    out
}

struct Prepared {
    req: Request,
    tools: Tools,
    thinking: Option<bool>,
}

/// The request checked and its prompt made: what `/v1/messages` and `count_tokens` share.
async fn prompt(
    state: &Arc<AppState>,
    req: &MessagesRequest,
) -> Result<(Arc<Ready>, Tools, generate::ChatPrompt), ApiError> {
    let ready = state
        .model(&req.model, None)
        .await
        .map_err(ApiError::anthropic)?;
    if let Some(name) = req.rest.keys().next() {
        return Err(bad(format!("{name} is not supported")));
    }
    if req.messages.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let tools = request_tools(req, &ready)?;
    let kwargs = thinking_kwargs(req, &ready)?;
    let msgs = tools.prepare(messages(req)?);
    let chat = generate::chat_prompt(&ready, msgs, tools.template_value(), kwargs, Ending::Auto)
        .await
        .map_err(ApiError::anthropic)?;
    Ok((ready, tools, chat))
}

async fn prepare(
    state: &Arc<AppState>,
    req: &MessagesRequest,
) -> Result<(Arc<Ready>, Prepared), ApiError> {
    let (ready, tools, chat) = prompt(state, req).await?;
    let max_tokens = generate::resolve_max_tokens(
        chat.ids.len(),
        Some(
            req.max_tokens
                .ok_or_else(|| bad("max_tokens is required"))?,
        ),
        ready.engine.config.n_ctx,
        "max_tokens",
        "messages",
    )
    .map_err(ApiError::anthropic)?;
    let format = match req
        .output_config
        .as_ref()
        .map(|o| (o.get("format"), o.get("effort")))
    {
        None => None,
        Some((_, Some(_))) => return Err(bad("output_config.effort is not supported")),
        Some((None, None)) => None,
        Some((Some(f), None)) => {
            match (f.get("type").and_then(Value::as_str), f.get("schema")) {
                (Some("json_schema"), Some(schema)) => Some(Grammar::JsonSchema(schema.clone())),
                _ => return Err(bad(
                    "output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}",
                )),
            }
        }
    };
    let call = tools.grammar(ready.model.tokenizer.special_token("[TOOL_CALLS]"));
    let grammar = generate::one_grammar(vec![("output_config", format), ("tool_choice", call)])
        .map_err(ApiError::anthropic)?;
    let constraint = match grammar {
        Some((param, g)) => {
            let g = match chat.thinking {
                Some(in_prompt) => g.after_thinking(in_prompt).map_err(|e| bad(e.0))?,
                None => g,
            };
            Some(
                generate::compile(&ready, g, param)
                    .await
                    .map_err(ApiError::anthropic)?,
            )
        }
        None => None,
    };
    let stop = req.stop_sequences.clone().unwrap_or_default();
    if stop.iter().any(String::is_empty) || stop.len() > 16 {
        return Err(bad("stop_sequences must be up to 16 non-empty strings"));
    }
    let sampling = sampling(req, ready.model.config.n_vocab)?;
    Ok((
        ready,
        Prepared {
            req: Request {
                prompt_ids: chat.ids,
                max_tokens,
                sampling,
                stop,
                ignore_eos: false,
                logprobs: None,
                constraint,
            },
            tools,
            thinking: chat.thinking,
        },
    ))
}

fn usage(prompt: usize, output: usize, cached: usize) -> Value {
    json!({"input_tokens": prompt, "output_tokens": output, "cache_read_input_tokens": cached,
           "cache_creation_input_tokens": 0})
}

/// `POST /v1/messages`
pub async fn messages_route(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::anthropic)?;
    let req: MessagesRequest = state
        .parse_request(&bytes, Dialect::Anthropic)
        .map_err(ApiError::anthropic)?;
    let (ready, p) = prepare(&state, &req).await?;
    let n_prompt = p.req.prompt_ids.len();
    let rx = generate::submit(&ready, p.req, 1).map_err(ApiError::anthropic)?;
    let id = new_id("msg");
    let model = ready.id.clone();
    let (tools, thinking) = (p.tools, p.thinking);
    if !req.stream {
        let choice = generate::collect(rx, 1)
            .await
            .map_err(ApiError::anthropic)?
            .remove(0);
        let s = choice.summary.expect("collected choices are finished");
        generate::log_summary("messages", &id, &s);
        let (thought, text, calls) = reasoning::finished(&choice.text, thinking, &tools);
        let reason = stop_reason(&s, !calls.is_empty());
        return Ok(Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": blocks(&thought, &text, calls),
            "stop_reason": reason, "stop_sequence": s.stop_string,
            "usage": usage(s.prompt_tokens, s.completion_tokens, s.cached_tokens),
        }))
        .into_response());
    }

    let (btx, brx) = unbounded_channel::<Bytes>();
    let event = |kind: &str, v: Value| Bytes::from(format!("event: {kind}\ndata: {v}\n\n"));
    let mut rx = rx;
    tokio::spawn(async move {
        let start = json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(n_prompt, 0, 0)}});
        // The open content block: its index and kind ("thinking" or "text").
        let mut open: Option<(usize, &'static str)> = None;
        let mut next_index = 0;
        let mut out = Some(OutputStream::new(thinking));
        let mut sends = vec![
            event("message_start", start),
            event("ping", json!({"type": "ping"})),
        ];
        // Moves to a block of `kind` (closing the open one) and adds `text` to it.
        let mut emit = |sends: &mut Vec<Bytes>, kind: &'static str, text: &str| {
            if text.is_empty() {
                return;
            }
            if open.map(|o| o.1) != Some(kind) {
                if let Some((i, _)) = open.take() {
                    sends.push(event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": i}),
                    ));
                }
                let block = if kind == "thinking" {
                    json!({"type": "thinking", "thinking": ""})
                } else {
                    json!({"type": "text", "text": ""})
                };
                sends.push(event("content_block_start", json!({"type": "content_block_start", "index": next_index, "content_block": block})));
                open = Some((next_index, kind));
                next_index += 1;
            }
            let delta = if kind == "thinking" {
                json!({"type": "thinking_delta", "thinking": text})
            } else {
                json!({"type": "text_delta", "text": text})
            };
            let i = open.map_or(0, |o| o.0);
            sends.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": delta}),
            ));
        };
        while let Some((_, ev)) = rx.recv().await {
            match ev {
                Event::Token { text, .. } => {
                    if let Some(os) = out.as_mut() {
                        let (thought, content) = os.push(&tools, &text);
                        emit(&mut sends, "thinking", &thought);
                        emit(&mut sends, "text", &content);
                    }
                }
                Event::Done { text, summary } => {
                    generate::log_summary("messages", "stream", &summary);
                    let (thought, content, calls) = match out.take() {
                        Some(os) => os.finish(&tools, &text),
                        None => (String::new(), text, Vec::new()),
                    };
                    emit(&mut sends, "thinking", &thought);
                    emit(&mut sends, "text", &content);
                    let reason = stop_reason(&summary, !calls.is_empty());
                    if let Some((i, _)) = open.take() {
                        sends.push(event(
                            "content_block_stop",
                            json!({"type": "content_block_stop", "index": i}),
                        ));
                    }
                    for b in blocks("", "", calls)
                        .into_iter()
                        .filter(|b| b["type"] == "tool_use")
                    {
                        let i = next_index;
                        next_index += 1;
                        let input = b["input"].to_string();
                        let mut start = b.clone();
                        start["input"] = json!({});
                        sends.push(event("content_block_start", json!({"type": "content_block_start", "index": i, "content_block": start})));
                        sends.push(event(
                            "content_block_delta",
                            json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": input}}),
                        ));
                        sends.push(event(
                            "content_block_stop",
                            json!({"type": "content_block_stop", "index": i}),
                        ));
                    }
                    sends.push(event(
                        "message_delta",
                        json!({"type": "message_delta",
                        "delta": {"stop_reason": reason, "stop_sequence": summary.stop_string},
                        "usage": {"output_tokens": summary.completion_tokens}}),
                    ));
                    sends.push(event("message_stop", json!({"type": "message_stop"})));
                    for b in sends.drain(..) {
                        let _ = btx.send(b);
                    }
                    return;
                }
                Event::Error(e) => {
                    sends.push(event("error", json!({"type": "error", "error": {"type": "api_error", "message": e.to_string()}})));
                    for b in sends.drain(..) {
                        let _ = btx.send(b);
                    }
                    return;
                }
            }
            for b in sends.drain(..) {
                if btx.send(b).is_err() {
                    return; // client gone; dropping `rx` cancels the sequence
                }
            }
        }
        // The engine stopped (the drain ran out) before the message ended: say so.
        let _ = btx.send(event(
            "error",
            json!({"type": "error", "error": {"type": "api_error",
                "message": "the server stopped before the answer was complete"}}),
        ));
    });
    Ok(generate::sse_body(brx))
}

/// `POST /v1/messages/count_tokens`
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::anthropic)?;
    let req: MessagesRequest = state
        .parse_request(&bytes, Dialect::Anthropic)
        .map_err(ApiError::anthropic)?;
    let (_, _, chat) = prompt(&state, &req).await?;
    Ok(Json(json!({"input_tokens": chat.ids.len()})).into_response())
}
