//! The OpenAI API: `/v1/chat/completions`, `/v1/completions` (streaming SSE and not),
//! `/v1/models`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{Event, Grammar, Request, SamplingParams, Summary, TokenLogprob};
use hearth_model::{ChatMessage, ToolCall};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::ApiError;
use crate::generate::{self, Choice, Ending};
use crate::modelfile::Dialect;
use crate::reasoning::{self, OutputStream};
use crate::state::{AppState, Ready};
use crate::tools::{self, Syntax, ToolChoice, Tools};
use crate::util::{new_id, read_body, unix_now};

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum StopSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Fields shared by both completion endpoints.
#[derive(Deserialize, Debug)]
struct Common {
    model: String,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<StopSpec>,
    logit_bias: Option<HashMap<String, f32>>,
    n: Option<i64>,
    /// Not part of OpenAI's API: keep generating past end-of-generation (benchmarks).
    #[serde(default)]
    ignore_eos: bool,
    response_format: Option<Value>,
    /// llama.cpp's fields: a GBNF grammar, or a JSON schema, for the output.
    grammar: Option<String>,
    json_schema: Option<Value>,
    /// Identifies the end user to OpenAI; nothing to do with it here.
    #[allow(dead_code)]
    user: Option<String>,
    /// Any other field (`functions`, `audio`, `modalities`, `prediction`, `store`, ...) is
    /// one Hearth does not implement: refused by name, not ignored.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize, Debug)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Debug)]
struct MessageIn {
    role: String,
    content: Option<Content>,
    tool_calls: Option<Vec<ToolCallIn>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Debug)]
struct ToolCallIn {
    id: Option<String>,
    function: FunctionCallIn,
}

#[derive(Deserialize, Debug)]
struct FunctionCallIn {
    name: String,
    /// JSON text, as OpenAI sends it (an object is taken too).
    arguments: Value,
}

#[derive(Deserialize, Debug)]
struct ChatRequest {
    #[serde(flatten)]
    common: Common,
    messages: Vec<MessageIn>,
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// Template variables, as Hugging Face's `apply_chat_template` takes them
    /// (`{"enable_thinking": false}` turns a Qwen3's thinking off).
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// Given to the template; `"none"` also turns thinking off.
    reasoning_effort: Option<String>,
    /// vLLM's and llama-server's prompt endings (see [`Ending`]).
    add_generation_prompt: Option<bool>,
    continue_final_message: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum PromptSpec {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Deserialize, Debug)]
struct CompletionRequest {
    #[serde(flatten)]
    common: Common,
    prompt: PromptSpec,
    logprobs: Option<i64>,
    #[serde(default)]
    echo: bool,
}

/// Validates the sampling fields and builds the engine's settings (llama.cpp's defaults for
/// what the request leaves out; temperature 0 is greedy).
fn sampling(c: &Common, n_vocab: usize) -> Result<SamplingParams, ApiError> {
    let range = |name: &'static str, v: Option<f32>, lo: f32, hi: f32| match v {
        Some(x) if !(lo..=hi).contains(&x) || !x.is_finite() => Err(ApiError::bad_request(
            format!("{name} must be between {lo} and {hi} (got {x})"),
        )
        .param(name)),
        _ => Ok(()),
    };
    range("temperature", c.temperature, 0.0, 2.0)?;
    range("top_p", c.top_p, 0.0, 1.0)?;
    range("min_p", c.min_p, 0.0, 1.0)?;
    range("presence_penalty", c.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", c.frequency_penalty, -2.0, 2.0)?;
    range("repetition_penalty", c.repetition_penalty, 0.0, 10.0)?;
    let mut p = SamplingParams::default();
    if let Some(t) = c.temperature {
        p.temperature = t;
    }
    if let Some(v) = c.top_p {
        p.top_p = v;
    }
    if let Some(k) = c.top_k {
        if k < 0 {
            return Err(ApiError::bad_request(format!(
                "top_k must be 0 (off) or positive (got {k})"
            ))
            .param("top_k"));
        }
        p.top_k = k as usize;
    }
    if let Some(v) = c.min_p {
        p.min_p = v;
    }
    p.presence_penalty = c.presence_penalty.unwrap_or(0.0);
    p.frequency_penalty = c.frequency_penalty.unwrap_or(0.0);
    p.repeat_penalty = c.repetition_penalty.unwrap_or(1.0);
    p.seed = c.seed.map(|s| s as u64);
    if let Some(bias) = &c.logit_bias {
        for (k, &b) in bias {
            let id: u32 = k
                .parse()
                .ok()
                .filter(|&id: &u32| (id as usize) < n_vocab)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "logit_bias key '{k}' is not a token id below {n_vocab}"
                    ))
                    .param("logit_bias")
                })?;
            if !(-100.0..=100.0).contains(&b) {
                return Err(ApiError::bad_request(format!(
                    "logit_bias values must be between -100 and 100 (got {b})"
                ))
                .param("logit_bias"));
            }
            p.logit_bias.push((id, b));
        }
        p.logit_bias.sort_by_key(|&(id, _)| id);
    }
    let p = p.greedy_if_cold();
    p.validate(n_vocab).map_err(ApiError::bad_request)?;
    Ok(p)
}

fn stops(c: &Common) -> Result<Vec<String>, ApiError> {
    let v = match &c.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(v)) => v.clone(),
    };
    if v.len() > 16 || v.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad_request("stop must be up to 16 non-empty strings").param("stop"));
    }
    Ok(v)
}

fn choice_count(c: &Common) -> Result<usize, ApiError> {
    match c.n.unwrap_or(1) {
        n @ 1..=16 => Ok(n as usize),
        n => Err(ApiError::bad_request(format!("n must be between 1 and 16 (got {n})")).param("n")),
    }
}

/// The output grammar of OpenAI's `response_format` (llama.cpp's extension: a `schema`
/// beside `json_object`), llama.cpp's `json_schema` and `grammar`.
fn format_grammars(c: &Common) -> Result<Vec<(&'static str, Option<Grammar>)>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m).param("response_format");
    let rf = match &c.response_format {
        None => None,
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(Grammar::JsonSchema(
                v.get("schema")
                    .cloned()
                    .unwrap_or(json!({"type": "object"})),
            )),
            Some("json_schema") => {
                let schema = v
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| bad("response_format.json_schema.schema is required".into()))?;
                Some(Grammar::JsonSchema(schema.clone()))
            }
            Some(t) => {
                return Err(bad(format!(
                    "response_format type '{t}' is not supported (text, json_object, json_schema)"
                )))
            }
            None => return Err(bad("response_format needs a type".into())),
        },
    };
    Ok(vec![
        ("response_format", rf),
        (
            "json_schema",
            c.json_schema.clone().map(Grammar::JsonSchema),
        ),
        ("grammar", c.grammar.clone().map(Grammar::Gbnf)),
    ])
}

/// The request's tools and `tool_choice`, checked.
fn chat_tools(req: &ChatRequest, ready: &Ready) -> Result<Tools, ApiError> {
    let bad = |m: String, p: &'static str| ApiError::bad_request(m).param(p);
    let specs = match &req.tools {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => tools::parse_specs(v).map_err(|e| bad(e, "tools"))?,
    };
    let choice = match &req.tool_choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(bad(format!("tool_choice '{s}' is not one of none, auto, required"), "tool_choice")),
        },
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => return Err(bad("tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}".into(), "tool_choice")),
        },
    };
    let syntax = Syntax::of(ready.model.chat_template.as_ref());
    Tools::new(
        specs,
        choice,
        req.parallel_tool_calls.unwrap_or(true),
        syntax,
    )
    .map_err(|e| bad(e, "tool_choice"))
}

/// OpenAI's `tool_calls` of a message.
fn openai_calls(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect()
}

/// The served model, once the request names it and asks for nothing Hearth lacks.
async fn check_model(state: &AppState, c: &Common) -> Result<Arc<Ready>, ApiError> {
    if let Some(name) = c.rest.keys().next() {
        return Err(ApiError::bad_request(format!("{name} is not supported")).param(name.as_str()));
    }
    state.model(&c.model, None).await
}

/// Per request, what OpenAI's usage object reports beside the token counts.
#[derive(Default, Clone, Copy)]
struct UsageExtra {
    /// Prompt tokens served from the prefix cache.
    cached: usize,
    /// Speculative decoding: drafted tokens the model confirmed, and those it did not.
    accepted: usize,
    rejected: usize,
}

impl UsageExtra {
    fn add(&mut self, s: &Summary) {
        self.cached = s.cached_tokens; // the same prompt for every choice
        self.accepted += s.accepted_tokens;
        self.rejected += s.drafted_tokens - s.accepted_tokens;
    }
}

/// OpenAI's usage object.
fn usage(prompt_tokens: usize, extra: UsageExtra, choices: impl Iterator<Item = usize>) -> Value {
    let completion: usize = choices.sum();
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion,
           "prompt_tokens_details": {"cached_tokens": extra.cached.min(prompt_tokens)},
           "completion_tokens_details": {"accepted_prediction_tokens": extra.accepted, "rejected_prediction_tokens": extra.rejected}})
}

fn usage_extra(choices: &[Choice]) -> UsageExtra {
    let mut e = UsageExtra::default();
    choices
        .iter()
        .filter_map(|c| c.summary.as_ref())
        .for_each(|s| e.add(s));
    e
}

fn chat_logprob(ready: &Ready, id: u32, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (token, bytes) = generate::token_piece(ready, id);
        json!({"token": token, "logprob": logprob, "bytes": bytes})
    };
    let mut v = entry(id, lp.logprob);
    v["top_logprobs"] = lp.top.iter().map(|&(t, l)| entry(t, l)).collect();
    v
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: ChatRequest =
        state.parse_request(&read_body(body, &state.opts).await?, Dialect::OpenAiChat)?;
    let ready = check_model(&state, &req.common).await?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty").param("messages"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(
                ApiError::bad_request(format!("unknown message role '{}'", m.role))
                    .param("messages"),
            );
        }
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => s.push_str(t),
                        (k, _) => {
                            return Err(ApiError::bad_request(format!(
                                "message content of type '{k}' is not supported"
                            ))
                            .param("messages"))
                        }
                    }
                }
                s
            }
        };
        let role = if m.role == "developer" {
            "system"
        } else {
            m.role.as_str()
        };
        let mut msg = ChatMessage::new(role, content);
        for call in m.tool_calls.iter().flatten() {
            let arguments = match &call.function.arguments {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            msg.tool_calls.push(ToolCall {
                id: call.id.clone().unwrap_or_else(|| new_id("call")),
                name: call.function.name.clone(),
                arguments,
            });
        }
        msg.tool_call_id = m.tool_call_id.clone();
        msg.name = m.name.clone();
        messages.push(msg);
    }
    let c = &req.common;
    let tools = chat_tools(&req, &ready)?;
    let template = ready.model.chat_template.as_ref();
    if req.reasoning_effort.is_some()
        && !reasoning::supported(template)
        && !template.is_some_and(|t| t.source().contains("reasoning_effort"))
    {
        return Err(ApiError::bad_request(
            "reasoning_effort: this model does not reason (its chat template has no thinking)",
        )
        .param("reasoning_effort"));
    }
    let kwargs = reasoning::kwargs(
        req.chat_template_kwargs.as_ref(),
        None,
        req.reasoning_effort.as_deref(),
    );
    let messages = tools.prepare(messages);
    let ending = Ending::from_fields(req.add_generation_prompt, req.continue_final_message)?;
    let chat =
        generate::chat_prompt(&ready, messages, tools.template_value(), kwargs, ending).await?;
    let thinking = chat.thinking;
    let prompt = chat.ids;
    let mut grammars = format_grammars(c)?;
    let call_token = ready.model.tokenizer.special_token("[TOOL_CALLS]");
    grammars.push(("tool_choice", tools.grammar(call_token)));
    let grammar = generate::one_grammar(grammars)?;
    let grammar_param = grammar.as_ref().map(|g| g.0);
    let constraint = match grammar {
        Some((param, g)) => {
            // The grammar applies to the answer, after the thinking.
            let g = match thinking {
                Some(in_prompt) => g.after_thinking(in_prompt).map_err(|e| {
                    ApiError::bad_request(format!("invalid {param}: {e}")).param(param)
                })?,
                None => g,
            };
            Some(generate::compile(&ready, g, param).await?)
        }
        None => None,
    };
    let (max_param, max) = match req.max_completion_tokens {
        Some(m) => ("max_completion_tokens", Some(m)),
        None => ("max_tokens", c.max_tokens),
    };
    let max_tokens = generate::resolve_max_tokens(
        prompt.len(),
        max,
        ready.engine.config.n_ctx,
        max_param,
        "messages",
    )?;
    let top = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(t)) if !(0..=20).contains(&t) => {
            return Err(ApiError::bad_request(format!(
                "top_logprobs must be between 0 and 20 (got {t})"
            ))
            .param("top_logprobs"))
        }
        (false, Some(_)) => {
            return Err(
                ApiError::bad_request("top_logprobs needs logprobs: true").param("top_logprobs")
            )
        }
        (true, t) => Some(t.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let engine_req = Request {
        prompt_ids: prompt,
        max_tokens,
        sampling: sampling(c, ready.model.config.n_vocab)?,
        stop: stops(c)?,
        ignore_eos: c.ignore_eos,
        logprobs: top,
        constraint,
    };
    let n = choice_count(c)?;
    let n_prompt = engine_req.prompt_ids.len();
    let rx = generate::submit(&ready, engine_req, n)?;
    let id = new_id("chatcmpl");
    let (created, model) = (unix_now(), ready.id.clone());

    if !c.stream {
        // A 400 while generating is the grammar failing on the way: its field is named.
        let choices = generate::collect(rx, n)
            .await
            .map_err(|e| e.param_if_unset(grammar_param))?;
        let out: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                let s = ch.summary.as_ref().expect("collected choices are finished");
                generate::log_summary("chat", &id, s);
                let logprobs = top.map(|_| {
                    let content: Vec<Value> = ch
                        .tokens
                        .iter()
                        .filter_map(|(t, _, lp)| lp.as_ref().map(|lp| chat_logprob(&ready, *t, lp)))
                        .collect();
                    json!({"content": content})
                });
                let (thought, content, calls) = reasoning::finished(&ch.text, thinking, &tools);
                let mut message = json!({"role": "assistant", "content": content});
                if !thought.is_empty() {
                    message["reasoning_content"] = json!(thought);
                }
                let mut finish = s.finish_reason.as_str();
                if !calls.is_empty() {
                    message["tool_calls"] = openai_calls(&tools::with_ids(calls, "call"));
                    if content.is_empty() {
                        message["content"] = Value::Null;
                    }
                    finish = "tool_calls";
                }
                json!({
                    "index": i,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                })
            })
            .collect();
        let usage = usage(
            n_prompt,
            usage_extra(&choices),
            choices.iter().map(completion_tokens),
        );
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": crate::FINGERPRINT, "choices": out, "usage": usage,
        }))
        .into_response());
    }

    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let head = ChunkHead {
        id,
        created,
        model,
        object: "chat.completion.chunk",
        route: "chat",
    };
    let st = ready.clone();
    Ok(sse_response(rx, move |rx, btx| async move {
        let ready: &Ready = &st;
        let opening = (0..n).map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}));
        // Per choice: thinking split off, and text held back while it may be a tool call.
        let streams = std::sync::Mutex::new(
            (0..n)
                .map(|_| Some(OutputStream::new(thinking)))
                .collect::<Vec<_>>(),
        );
        let delta = |thought: String, content: String| {
            let mut d = json!({});
            if !thought.is_empty() {
                d["reasoning_content"] = json!(thought);
            }
            if !content.is_empty() {
                d["content"] = json!(content);
            }
            d
        };
        let token = |i: usize, tok: u32, text: String, logprob: Option<TokenLogprob>| {
            let (thought, content) = match streams.lock().expect("not poisoned")[i].as_mut() {
                Some(os) => os.push(&tools, &text),
                None => (String::new(), text),
            };
            let logprobs = logprob
                .as_ref()
                .map(|lp| json!({"content": [chat_logprob(ready, tok, lp)]}));
            (!thought.is_empty() || !content.is_empty() || logprobs.is_some())
                .then(|| json!({"index": i, "delta": delta(thought, content), "logprobs": logprobs, "finish_reason": null}))
        };
        let done = |i: usize, text: String, s: &Summary| {
            let mut out = Vec::new();
            let (thought, content, calls) = match streams.lock().expect("not poisoned")[i].take() {
                Some(os) => os.finish(&tools, &text),
                None => (String::new(), text, Vec::new()),
            };
            let calls = tools::with_ids(calls, "call");
            if !thought.is_empty() || !content.is_empty() {
                out.push(json!({"index": i, "delta": delta(thought, content), "logprobs": null, "finish_reason": null}));
            }
            for (k, c) in calls.iter().enumerate() {
                out.push(json!({"index": i, "delta": {"tool_calls": [{"index": k, "id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null}));
                out.push(json!({"index": i, "delta": {"tool_calls": [{"index": k,
                    "function": {"arguments": c.arguments}}]}, "logprobs": null, "finish_reason": null}));
            }
            let finish = if calls.is_empty() {
                s.finish_reason.as_str()
            } else {
                "tool_calls"
            };
            out.push(json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}));
            out
        };
        pump(
            rx,
            btx,
            head,
            n,
            n_prompt,
            include_usage,
            opening.collect(),
            token,
            done,
        )
        .await
    }))
}

/// What every streamed chunk of one response repeats.
struct ChunkHead {
    id: String,
    created: u64,
    model: String,
    object: &'static str,
    /// For the log line of each finished choice.
    route: &'static str,
}

impl ChunkHead {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut v = json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                           "system_fingerprint": crate::FINGERPRINT, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        sse(&v)
    }
}

/// Streams `n` choices as SSE chunks: `opening` first (one choice object each), then one
/// chunk per token that `token` turns into a choice object (`None` skips it), one per
/// finished choice from `done`, the usage chunk when asked for, and `[DONE]`. Returns
/// early when the client goes away (dropping `rx` cancels the sequences).
#[allow(clippy::too_many_arguments)]
async fn pump(
    mut rx: UnboundedReceiver<(usize, Event)>,
    btx: UnboundedSender<Bytes>,
    head: ChunkHead,
    n: usize,
    n_prompt: usize,
    include_usage: bool,
    opening: Vec<Value>,
    mut token: impl FnMut(usize, u32, String, Option<TokenLogprob>) -> Option<Value>,
    mut done: impl FnMut(usize, String, &Summary) -> Vec<Value>,
) {
    for choice in opening {
        if btx.send(head.chunk(json!([choice]), None)).is_err() {
            return;
        }
    }
    let (mut finished, mut completion, mut extra) = (0, vec![0usize; n], UsageExtra::default());
    while finished < n {
        let Some((i, ev)) = rx.recv().await else {
            // The engine stopped (the drain ran out): an error, never a `[DONE]` that
            // would pass the cut text off as complete.
            let _ = btx.send(sse(&json!({"error": {
                "message": "the server stopped before the answer was complete",
                "type": "server_error"}})));
            return;
        };
        let choices = match ev {
            Event::Token { id, text, logprob } => match token(i, id, text, logprob) {
                Some(c) => vec![c],
                None => continue,
            },
            Event::Done { text, summary } => {
                finished += 1;
                completion[i] = summary.completion_tokens;
                extra.add(&summary);
                generate::log_summary(head.route, &head.id, &summary);
                done(i, text, &summary)
            }
            Event::Error(e) => {
                let _ = btx.send(sse(
                    &json!({"error": {"message": e.to_string(), "type": "server_error"}}),
                ));
                return;
            }
        };
        for choice in choices {
            if btx.send(head.chunk(json!([choice]), None)).is_err() {
                return;
            }
        }
    }
    if include_usage {
        let _ = btx.send(head.chunk(
            json!([]),
            Some(usage(n_prompt, extra, completion.into_iter())),
        ));
    }
    let _ = btx.send(Bytes::from_static(b"data: [DONE]\n\n"));
}

fn completion_tokens(c: &Choice) -> usize {
    c.summary
        .as_ref()
        .map_or(0, |s: &Summary| s.completion_tokens)
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Runs `produce` on its own task, feeding an SSE response body.
fn sse_response<F, Fut>(rx: UnboundedReceiver<(usize, Event)>, produce: F) -> Response
where
    F: FnOnce(UnboundedReceiver<(usize, Event)>, UnboundedSender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (btx, brx) = unbounded_channel();
    tokio::spawn(produce(rx, btx));
    generate::sse_body(brx)
}

/// OpenAI's legacy completion logprobs for one choice.
fn completion_logprobs(
    ready: &Ready,
    tokens: &[(u32, String, Option<TokenLogprob>)],
    offset0: usize,
) -> Value {
    let (mut toks, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    let mut offset = offset0;
    for (id, text, lp) in tokens {
        let Some(lp) = lp else { continue };
        toks.push(generate::token_piece(ready, *id).0);
        lps.push(lp.logprob);
        let top: serde_json::Map<String, Value> = lp
            .top
            .iter()
            .map(|&(t, l)| (generate::token_piece(ready, t).0, json!(l)))
            .collect();
        tops.push(Value::Object(top));
        offsets.push(offset);
        offset += text.len();
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// `POST /v1/completions`
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = state.parse_request(
        &read_body(body, &state.opts).await?,
        Dialect::OpenAiCompletion,
    )?;
    let ready = check_model(&state, &req.common).await?;
    let c = &req.common;
    if req.echo {
        return Err(ApiError::bad_request("echo is not supported").param("echo"));
    }
    let prompt = match &req.prompt {
        PromptSpec::Text(t) => generate::text_prompt(&ready, t.clone()).await?,
        PromptSpec::Texts(v) if v.len() == 1 => generate::text_prompt(&ready, v[0].clone()).await?,
        PromptSpec::Texts(_) => {
            return Err(ApiError::bad_request(
                "prompt must be one string (batches of prompts are not supported)",
            )
            .param("prompt"))
        }
        PromptSpec::Tokens(ids) => ids.clone(),
    };
    let max_tokens = generate::resolve_max_tokens(
        prompt.len(),
        c.max_tokens.or(Some(16)),
        ready.engine.config.n_ctx,
        "max_tokens",
        "prompt",
    )?;
    let logprobs = match req.logprobs {
        Some(l) if !(0..=20).contains(&l) => {
            return Err(ApiError::bad_request(format!(
                "logprobs must be between 0 and 20 (got {l})"
            ))
            .param("logprobs"))
        }
        l => l.map(|l| l as usize),
    };
    let grammar = generate::one_grammar(format_grammars(c)?)?;
    let grammar_param = grammar.as_ref().map(|g| g.0);
    let constraint = match grammar {
        Some((param, g)) => Some(generate::compile(&ready, g, param).await?),
        None => None,
    };
    let engine_req = Request {
        prompt_ids: prompt,
        max_tokens,
        sampling: sampling(c, ready.model.config.n_vocab)?,
        stop: stops(c)?,
        ignore_eos: c.ignore_eos,
        logprobs,
        constraint,
    };
    let n = choice_count(c)?;
    let n_prompt = engine_req.prompt_ids.len();
    let rx = generate::submit(&ready, engine_req, n)?;
    let id = new_id("cmpl");
    let (created, model) = (unix_now(), ready.id.clone());

    if !c.stream {
        // A 400 while generating is the grammar failing on the way: its field is named.
        let choices = generate::collect(rx, n)
            .await
            .map_err(|e| e.param_if_unset(grammar_param))?;
        let out: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                let s = ch.summary.as_ref().expect("collected choices are finished");
                generate::log_summary("completions", &id, s);
                json!({
                    "index": i,
                    "text": ch.text,
                    "logprobs": logprobs.map(|_| completion_logprobs(&ready, &ch.tokens, 0)),
                    "finish_reason": s.finish_reason.as_str(),
                })
            })
            .collect();
        let usage = usage(
            n_prompt,
            usage_extra(&choices),
            choices.iter().map(completion_tokens),
        );
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": crate::FINGERPRINT, "choices": out, "usage": usage,
        }))
        .into_response());
    }

    let include_usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let head = ChunkHead {
        id,
        created,
        model,
        object: "text_completion",
        route: "completions",
    };
    let st = ready.clone();
    Ok(sse_response(rx, move |rx, btx| async move {
        let ready: &Ready = &st;
        let mut offsets = vec![0usize; n];
        let token = |i: usize, tok: u32, text: String, logprob: Option<TokenLogprob>| {
            if text.is_empty() && logprob.is_none() {
                return None;
            }
            let len = text.len();
            let entry = [(tok, text, logprob)];
            let lp = logprobs.map(|_| completion_logprobs(ready, &entry, offsets[i]));
            offsets[i] += len;
            let [(_, text, _)] = entry;
            Some(json!({"index": i, "text": text, "logprobs": lp, "finish_reason": null}))
        };
        let done = |i: usize, text: String, s: &Summary| {
            vec![
                json!({"index": i, "text": text, "logprobs": null, "finish_reason": s.finish_reason.as_str()}),
            ]
        };
        pump(
            rx,
            btx,
            head,
            n,
            n_prompt,
            include_usage,
            Vec::new(),
            token,
            done,
        )
        .await
    }))
}

/// `GET /v1/models`
pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state.models().iter().map(model_object).collect();
    Json(json!({"object": "list", "data": data}))
}

fn model_object(m: &Arc<crate::state::ModelInfo>) -> Value {
    let created = m
        .modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `capabilities` is not OpenAI's: Ollama's names for what the model does, so that a
    // client (the web page) can tell a chat model from an embedding model.
    json!({"id": m.id, "object": "model", "created": created, "owned_by": "hearth",
           "capabilities": m.capabilities})
}

/// `GET /v1/models/{id}`
pub async fn model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = state
        .models()
        .into_iter()
        .find(|m| m.id == id.strip_suffix(":latest").unwrap_or(&id));
    let m = m.ok_or_else(|| state.unknown(&id))?;
    Ok(Json(model_object(&m)))
}
