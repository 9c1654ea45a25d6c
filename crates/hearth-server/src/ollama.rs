//! The Ollama API: `/api/generate`, `/api/chat` (NDJSON streaming by default), and the
//! model endpoints `/api/tags`, `/api/ps`, `/api/delete`, `/api/copy`, `/api/version`
//! (`/api/show`, `/api/create` and `/api/pull` are in `ollama_models.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{Constraint, Event, Grammar, Request, SamplingParams, Summary};
use hearth_model::{ChatMessage, ToolCall};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::ApiError;
use crate::generate::{self, channel_body, Ending};
use crate::modelfile::{Dialect, Manifest, MANIFEST_SUFFIX};
use crate::ollama_models::details;
use crate::reasoning::{self, OutputStream};
use crate::state::{AppState, KeepAlive, ModelInfo, Ready};
use crate::tools::{self, ParsedCall, Syntax, ToolChoice, Tools};
use crate::util::{new_id, parse_json, read_body, rfc3339};

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Options {
    temperature: Option<f32>,
    top_k: Option<i64>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    num_predict: Option<i64>,
    num_ctx: Option<i64>,
    seed: Option<i64>,
    stop: Option<Vec<String>>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
}

#[derive(Deserialize, Debug)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    /// How long the model stays loaded once idle.
    keep_alive: Option<Value>,
    /// `"json"` or a JSON schema: the output's shape.
    format: Option<Value>,
    think: Option<Value>,
    /// Any other field (`images`, `suffix`, `template`, `context`, ...) is one Hearth does
    /// not implement: refused by name, not ignored.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize, Debug)]
struct MessageIn {
    role: String,
    #[serde(default)]
    content: String,
    /// An assistant's calls: `[{"function": {"name", "arguments": {...}}}]`.
    tool_calls: Option<Vec<CallIn>>,
    /// A tool result's tool.
    tool_name: Option<String>,
    images: Option<Value>,
}

#[derive(Deserialize, Debug)]
struct CallIn {
    id: Option<String>,
    function: FunctionIn,
}

#[derive(Deserialize, Debug)]
struct FunctionIn {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize, Debug)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<MessageIn>,
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    /// How long the model stays loaded once idle.
    keep_alive: Option<Value>,
    format: Option<Value>,
    tools: Option<Value>,
    think: Option<Value>,
    /// Any other field is one Hearth does not implement: refused by name, not ignored.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Ollama's `format`: `"json"` (any JSON object) or a JSON schema; `""` is none.
fn format_grammar(format: &Option<Value>) -> Result<Option<Grammar>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => {
            Ok(Some(Grammar::JsonSchema(json!({"type": "object"}))))
        }
        Some(Value::Object(_)) => Ok(format.clone().map(Grammar::JsonSchema)),
        Some(v) => Err(ApiError::bad_request(format!(
            "format must be \"json\" or a JSON schema object (got {v})"
        ))
        .ollama()),
    }
}

/// The constraint of an Ollama request's `format`, on the answer after any thinking.
async fn format_constraint(
    ready: &Arc<Ready>,
    format: &Option<Value>,
    thinking: Option<bool>,
) -> Result<Option<Constraint>, ApiError> {
    let Some(g) = format_grammar(format)? else {
        return Ok(None);
    };
    let g = match thinking {
        Some(in_prompt) => g
            .after_thinking(in_prompt)
            .map_err(|e| ApiError::bad_request(format!("invalid format: {e}")).ollama())?,
        None => g,
    };
    Ok(Some(
        generate::compile(ready, g, "format")
            .await
            .map_err(ApiError::ollama)?,
    ))
}

/// Ollama's `think`: `true` or `false` (Qwen3's `enable_thinking`), or an effort (`"low"`,
/// `"medium"`, `"high"`: the template's `reasoning_effort`). Asking a model without
/// thinking to think is an error.
fn think_kwargs(think: &Option<Value>, ready: &Ready) -> Result<Map<String, Value>, ApiError> {
    let template = ready.model.chat_template.as_ref();
    let bad = |m: String| Err(ApiError::bad_request(m).ollama());
    let no_thinking = || format!("\"{}\" does not support thinking", ready.info.id);
    match think {
        None | Some(Value::Null) => Ok(reasoning::kwargs(None, None, None)),
        Some(Value::Bool(true)) if !reasoning::supported(template) => bad(no_thinking()),
        Some(Value::Bool(b)) => Ok(reasoning::kwargs(None, Some(*b), None)),
        Some(Value::String(e)) if matches!(e.as_str(), "low" | "medium" | "high") => {
            if !template.is_some_and(|t| t.source().contains("reasoning_effort")) {
                return bad(no_thinking());
            }
            Ok(reasoning::kwargs(None, None, Some(e)))
        }
        Some(v) => bad(format!(
            "think must be true, false, \"low\", \"medium\" or \"high\" (got {v})"
        )),
    }
}

/// A request's fields Hearth does not implement (`images` of a message among them): the
/// first one named in a 400.
fn refuse(rest: &Map<String, Value>, images: bool) -> Result<(), ApiError> {
    let name = rest.keys().next().map(String::as_str);
    match name.or(images.then_some("images")) {
        Some(name) => Err(ApiError::bad_request(format!("{name} is not supported")).ollama()),
        None => Ok(()),
    }
}

/// Ollama's `tool_calls` of a message: arguments as objects.
fn ollama_calls(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let args: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
            json!({"id": c.id, "function": {"index": k, "name": c.name, "arguments": args}})
        })
        .collect()
}

/// The model `name` names, loaded (or loading) for this request; `keep_alive` is the
/// request's (Ollama's: a duration like "5m", seconds, 0 to unload once idle, negative to
/// keep it loaded).
async fn check_model(
    state: &AppState,
    name: &str,
    keep_alive: &Option<Value>,
) -> Result<Arc<Ready>, ApiError> {
    let keep_alive = parse_keep_alive(keep_alive).map_err(ApiError::ollama)?;
    state
        .model(name, keep_alive)
        .await
        .map_err(ApiError::ollama)
}

/// Ollama's `keep_alive`: a number of seconds or a Go-style duration ("10m", "1h30m",
/// "500ms"); 0 unloads the model once idle, a negative value keeps it loaded.
pub fn parse_keep_alive(v: &Option<Value>) -> Result<KeepAlive, ApiError> {
    let bad = |v: &Value| {
        ApiError::bad_request(format!(
            "keep_alive must be a duration such as \"5m\" or a number of seconds (got {v})"
        ))
        .param("keep_alive")
    };
    let secs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| bad(v.as_ref().unwrap()))?,
        Some(Value::String(s)) => parse_duration(s).ok_or_else(|| bad(v.as_ref().unwrap()))?,
        Some(other) => return Err(bad(other)),
    };
    Ok(Some(if secs < 0.0 {
        None
    } else if secs.is_finite() && secs < 1e9 {
        Some(Duration::from_secs_f64(secs))
    } else {
        return Err(bad(v.as_ref().unwrap()));
    }))
}

/// Seconds in a Go-style duration: a signed sequence of numbers with units h, m, s, ms,
/// us, ns (a bare number is seconds).
fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if let Ok(n) = rest.parse::<f64>() {
        return Some(if neg { -n } else { n });
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&e| e > 0)?;
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(if neg { -total } else { total })
}

/// Ollama's defaults for what the request leaves out.
fn sampling(o: &Options, n_vocab: usize) -> Result<SamplingParams, ApiError> {
    let mut p = SamplingParams {
        temperature: o.temperature.unwrap_or(0.8),
        top_k: 40,
        top_p: o.top_p.unwrap_or(0.9),
        min_p: o.min_p.unwrap_or(0.0),
        repeat_penalty: o.repeat_penalty.unwrap_or(1.1),
        repeat_last_n: 64,
        presence_penalty: o.presence_penalty.unwrap_or(0.0),
        frequency_penalty: o.frequency_penalty.unwrap_or(0.0),
        logit_bias: Vec::new(),
        seed: o.seed.map(|s| s as u64),
    };
    if let Some(k) = o.top_k {
        p.top_k = usize::try_from(k)
            .map_err(|_| ApiError::bad_request(format!("top_k must not be negative (got {k})")))?;
    }
    match o.repeat_last_n {
        // Ollama's -1: the whole context.
        Some(-1) => p.repeat_last_n = usize::MAX,
        Some(n) => {
            p.repeat_last_n = usize::try_from(n).map_err(|_| {
                ApiError::bad_request(format!("repeat_last_n must be -1 or more (got {n})"))
            })?
        }
        None => {}
    }
    if p.temperature < 0.0 {
        return Err(ApiError::bad_request(format!(
            "temperature must not be negative (got {})",
            p.temperature
        )));
    }
    let p = p.greedy_if_cold();
    p.validate(n_vocab).map_err(ApiError::bad_request)?;
    Ok(p)
}

/// The engine request for `prompt` under Ollama's options: `num_ctx` narrows the context,
/// `num_predict` -1 (the default) or -2 runs to the end of it.
fn engine_request(ready: &Ready, prompt: Vec<u32>, o: &Options) -> Result<Request, ApiError> {
    let server_ctx = ready.engine.config.n_ctx;
    let n_ctx = match o.num_ctx {
        None => server_ctx,
        Some(n) if n >= 1 => (n as usize).min(server_ctx),
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "num_ctx must be positive (got {n})"
            )))
        }
    };
    let room = generate::resolve_max_tokens(prompt.len(), None, n_ctx, "num_predict", "prompt")?;
    let max_tokens = match o.num_predict {
        None | Some(-1) | Some(-2) => room,
        Some(n) if n >= 1 => (n as usize).min(room),
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "num_predict must be positive, -1 or -2 (got {n})"
            )))
        }
    };
    let stop = o.stop.clone().unwrap_or_default();
    if stop.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad_request("stop strings must not be empty"));
    }
    Ok(Request {
        prompt_ids: prompt,
        max_tokens,
        sampling: sampling(o, ready.model.config.n_vocab)?,
        stop,
        ignore_eos: false,
        logprobs: None,
        constraint: None,
    })
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// The statistics Ollama puts in its final message. `load_duration` is the time the request
/// waited for a place in the running batch (the model itself is loaded at start-up).
fn final_stats(s: &Summary) -> Value {
    let t = &s.timings;
    let mut v = json!({
        "done_reason": s.finish_reason.as_str(),
        "total_duration": nanos(t.total_duration),
        "load_duration": nanos(s.queue_duration),
        "prompt_eval_count": t.prompt_eval_count,
        "prompt_eval_duration": nanos(t.prompt_eval_duration),
        "eval_count": t.eval_count,
        "eval_duration": nanos(t.eval_duration),
    });
    // Not in Ollama's API: what the prefix cache and speculative decoding saved.
    if s.cached_tokens > 0 {
        v["prompt_cached_count"] = json!(s.cached_tokens);
    }
    if s.drafted_tokens > 0 {
        v["draft_count"] = json!(s.drafted_tokens);
        v["draft_accepted_count"] = json!(s.accepted_tokens);
    }
    v
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Runs one generation and answers as NDJSON lines (streaming) or one object. `piece`
/// wraps a piece of (content, thinking) in the endpoint's message shape; a thinking
/// model's thinking (`thinking` is `Some(in_prompt)`, see [`reasoning::split`]) is
/// separated, and calls to `tools` (chat) are parsed from the answer and sent as the
/// message's `tool_calls`.
async fn respond(
    ready: Arc<Ready>,
    req: Request,
    stream: bool,
    route: &'static str,
    piece: fn(&str, &str) -> Value,
    tools: Tools,
    thinking: Option<bool>,
) -> Result<Response, ApiError> {
    let mut rx = generate::submit(&ready, req, 1).map_err(ApiError::ollama)?;
    let model = ready.id.clone();
    let head = move || json!({"model": model, "created_at": rfc3339(SystemTime::now())});
    let message = move |content: &str, thought: &str, calls: Vec<ParsedCall>| {
        let mut msg = piece(content, thought);
        if !calls.is_empty() {
            msg["message"]["tool_calls"] = ollama_calls(&tools::with_ids(calls, "call"));
        }
        msg
    };
    if !stream {
        let choice = generate::collect(rx, 1)
            .await
            .map_err(ApiError::ollama)?
            .remove(0);
        let s = choice.summary.expect("collected choices are finished");
        generate::log_summary(route, "-", &s);
        let (thought, content, calls) = reasoning::finished(&choice.text, thinking, &tools);
        return Ok(Json(merge(
            merge(head(), message(&content, &thought, calls)),
            merge(json!({"done": true}), final_stats(&s)),
        ))
        .into_response());
    }
    let (btx, brx) = unbounded_channel::<Bytes>();
    let line = |v: Value| Bytes::from(format!("{v}\n"));
    tokio::spawn(async move {
        let mut out = Some(OutputStream::new(thinking));
        while let Some((_, ev)) = rx.recv().await {
            let msg = match ev {
                Event::Token { text, .. } => {
                    let Some(os) = out.as_mut() else { continue };
                    let (thought, content) = os.push(&tools, &text);
                    if thought.is_empty() && content.is_empty() {
                        continue;
                    }
                    merge(
                        merge(head(), piece(&content, &thought)),
                        json!({"done": false}),
                    )
                }
                Event::Done { text, summary } => {
                    generate::log_summary(route, "stream", &summary);
                    let (thought, content, calls) = match out.take() {
                        Some(os) => os.finish(&tools, &text),
                        None => (String::new(), text, Vec::new()),
                    };
                    if !thought.is_empty() || !content.is_empty() || !calls.is_empty() {
                        let msg = message(&content, &thought, calls);
                        let _ = btx.send(line(merge(merge(head(), msg), json!({"done": false}))));
                    }
                    let last = merge(
                        merge(head(), piece("", "")),
                        merge(json!({"done": true}), final_stats(&summary)),
                    );
                    let _ = btx.send(line(last));
                    return;
                }
                Event::Error(e) => json!({"error": e.to_string()}),
            };
            if btx.send(line(msg)).is_err() {
                return; // client gone; dropping `rx` cancels the sequence
            }
        }
        // The engine stopped (the drain ran out) before `done`: say so.
        let _ = btx.send(line(
            json!({"error": "the server stopped before the answer was complete"}),
        ));
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        channel_body(brx),
    )
        .into_response())
}

/// The reply to a request with nothing to generate: Ollama loads the model and says so.
fn load_reply(ready: &Ready, piece: Value) -> Response {
    Json(merge(
        merge(
            json!({"model": ready.id, "created_at": rfc3339(SystemTime::now())}),
            piece,
        ),
        json!({"done": true, "done_reason": "load"}),
    ))
    .into_response()
}

/// `POST /api/generate`
pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: GenerateRequest = state
        .parse_request(&bytes, Dialect::OllamaGenerate)
        .map_err(ApiError::ollama)?;
    // An empty request with keep_alive 0 unloads the model, without loading it first.
    if req.prompt.is_empty()
        && req.system.is_none()
        && parse_keep_alive(&req.keep_alive).map_err(ApiError::ollama)?
            == Some(Some(Duration::ZERO))
    {
        refuse(&req.rest, false)?;
        state.unload(&req.model).map_err(ApiError::ollama)?;
        return Ok(Json(
            json!({"model": req.model, "created_at": rfc3339(SystemTime::now()),
            "response": "", "done": true, "done_reason": "unload"}),
        )
        .into_response());
    }
    let ready = check_model(&state, &req.model, &req.keep_alive).await?;
    refuse(&req.rest, false)?;
    let kwargs = think_kwargs(&req.think, &ready)?;
    if req.prompt.is_empty() && req.system.is_none() {
        return Ok(load_reply(&ready, json!({"response": ""})));
    }
    let (prompt, thinking) = if req.raw || ready.model.chat_template.is_none() {
        let text = format!("{}{}", req.system.as_deref().unwrap_or(""), req.prompt);
        (
            generate::text_prompt(&ready, text)
                .await
                .map_err(ApiError::ollama)?,
            None,
        )
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &req.system {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", req.prompt.clone()));
        let chat = generate::chat_prompt(&ready, messages, None, kwargs, Ending::Auto)
            .await
            .map_err(ApiError::ollama)?;
        (chat.ids, chat.thinking)
    };
    let mut engine_req = engine_request(&ready, prompt, &req.options).map_err(ApiError::ollama)?;
    engine_req.constraint = format_constraint(&ready, &req.format, thinking).await?;
    let no_tools = Tools::new(Vec::new(), ToolChoice::None, false, Syntax::Generic)
        .expect("no tools is valid");
    respond(
        ready.clone(),
        engine_req,
        req.stream.unwrap_or(true),
        "generate",
        |t, thought| {
            let mut v = json!({"response": t});
            if !thought.is_empty() {
                v["thinking"] = json!(thought);
            }
            v
        },
        no_tools,
        thinking,
    )
    .await
}

/// `POST /api/chat`
pub async fn chat(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: ChatRequest = state
        .parse_request(&bytes, Dialect::OllamaChat)
        .map_err(ApiError::ollama)?;
    let ready = check_model(&state, &req.model, &req.keep_alive).await?;
    if req.messages.is_empty() {
        return Ok(load_reply(
            &ready,
            json!({"message": {"role": "assistant", "content": ""}}),
        ));
    }
    refuse(&req.rest, req.messages.iter().any(|m| m.images.is_some()))?;
    let kwargs = think_kwargs(&req.think, &ready)?;
    let mut messages = Vec::new();
    for m in &req.messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return Err(
                ApiError::bad_request(format!("unknown message role '{}'", m.role)).ollama(),
            );
        }
        let mut msg = ChatMessage::new(m.role.clone(), m.content.clone());
        for c in m.tool_calls.iter().flatten() {
            msg.tool_calls.push(ToolCall {
                id: c.id.clone().unwrap_or_else(|| new_id("call")),
                name: c.function.name.clone(),
                arguments: match &c.function.arguments {
                    Value::String(s) => s.clone(),
                    Value::Null => "{}".into(),
                    v => v.to_string(),
                },
            });
        }
        msg.name = m.tool_name.clone();
        messages.push(msg);
    }
    let specs = match &req.tools {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => tools::parse_specs(v).map_err(|e| ApiError::bad_request(e).ollama())?,
    };
    let syntax = Syntax::of(ready.model.chat_template.as_ref());
    let tools = Tools::new(specs, ToolChoice::Auto, true, syntax)
        .map_err(|e| ApiError::bad_request(e).ollama())?;
    let messages = tools.prepare(messages);
    let chat = generate::chat_prompt(
        &ready,
        messages,
        tools.template_value(),
        kwargs,
        Ending::Auto,
    )
    .await
    .map_err(ApiError::ollama)?;
    let mut engine_req =
        engine_request(&ready, chat.ids, &req.options).map_err(ApiError::ollama)?;
    engine_req.constraint = format_constraint(&ready, &req.format, chat.thinking).await?;
    respond(
        ready.clone(),
        engine_req,
        req.stream.unwrap_or(true),
        "chat",
        |t, thought| {
            let mut v = json!({"message": {"role": "assistant", "content": t}});
            if !thought.is_empty() {
                v["message"]["thinking"] = json!(thought);
            }
            v
        },
        tools,
        chat.thinking,
    )
    .await
}

fn model_entry(i: &ModelInfo) -> Value {
    json!({
        "name": format!("{}:latest", i.id),
        "model": format!("{}:latest", i.id),
        "modified_at": rfc3339(i.modified),
        "size": i.size_bytes,
        "digest": i.digest(),
        "details": details(i),
        // Not in Ollama's listing (its /api/show has them): what the model can do, for
        // the web page's model picker.
        "capabilities": i.capabilities,
    })
}

/// `GET /api/tags`: every model this server serves, loaded or not.
pub async fn tags(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state.models().iter().map(|i| model_entry(i)).collect();
    Json(json!({"models": models}))
}

/// `GET /api/ps`: the loaded models, with their footprint and when they unload.
pub async fn ps(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state
        .loaded()
        .into_iter()
        .map(|(r, expires)| {
            let mut m = model_entry(&r.info);
            // Kept loaded: an expiry far ahead, as Ollama reports keep_alive -1.
            m["expires_at"] = json!(expires.map_or("2318-01-01T00:00:00Z".to_string(), rfc3339));
            m["size"] = json!(r.footprint);
            m["size_vram"] = json!(0);
            m["context_length"] = json!(r.engine.config.n_ctx);
            m
        })
        .collect();
    Json(json!({"models": models}))
}

/// `GET /api/version`
pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    #[serde(alias = "name")]
    model: String,
}

/// `DELETE /api/delete`: stops serving a model, and deletes its file when it lives in the
/// models directory (a file given with `-m` elsewhere is only no longer served).
pub async fn delete(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: DeleteRequest = parse_json(&bytes).map_err(ApiError::ollama)?;
    let path = state.remove(&req.model).map_err(ApiError::ollama)?;
    let ours = state.opts.models_dir.as_ref().is_some_and(|d| {
        path.parent().and_then(|p| p.canonicalize().ok()) == d.canonicalize().ok()
    });
    if ours {
        std::fs::remove_file(&path).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot delete {}: {e}", path.display()),
            )
            .ollama()
        })?;
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyRequest {
    source: String,
    destination: String,
}

/// `POST /api/copy`: serves a model under a second name, as a file in the models
/// directory (a hard link where the file system allows, else a copy).
pub async fn copy(State(state): State<Arc<AppState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: CopyRequest = parse_json(&bytes).map_err(ApiError::ollama)?;
    let dest_name = req
        .destination
        .strip_suffix(":latest")
        .unwrap_or(&req.destination)
        .to_string();
    if dest_name.is_empty()
        || !dest_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || dest_name.starts_with('.')
    {
        return Err(ApiError::bad_request(format!(
            "destination '{}' must be letters, digits, '.', '_' and '-'",
            req.destination
        ))
        .param("destination")
        .ollama());
    }
    let Some(dir) = state.opts.models_dir.clone() else {
        return Err(
            ApiError::bad_request("this server has no models directory to copy into").ollama(),
        );
    };
    let src = state.path_of(&req.source).map_err(ApiError::ollama)?;
    if state.serves(&dest_name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("model '{dest_name}' already exists"),
        )
        .param("destination")
        .ollama());
    }
    // A created model's copy is a copy of its manifest; a GGUF's, a link or a copy.
    let created = crate::modelfile::manifest_name(&src).is_some();
    let dest = match created {
        true => dir.join(format!("{dest_name}{MANIFEST_SUFFIX}")),
        false => dir.join(format!("{dest_name}.gguf")),
    };
    let d = dest.clone();
    tokio::task::spawn_blocking(move || {
        if created {
            let m = Manifest::read(&src).map_err(|e| std::io::Error::other(e.0))?;
            return m
                .relocated(&src, &dir)
                .write(&d)
                .map_err(|e| std::io::Error::other(e.0));
        }
        std::fs::hard_link(&src, &d).or_else(|_| std::fs::copy(&src, &d).map(|_| ()))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).ollama())?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {}: {e}", dest.display()),
        )
        .ollama()
    })?;
    state.add(&dest_name, dest).map_err(ApiError::ollama)?;
    Ok(Json(json!({})))
}
