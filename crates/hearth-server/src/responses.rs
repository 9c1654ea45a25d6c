//! OpenAI's Responses API, text in and text out: `POST /v1/responses`, plain or streamed
//! as its named events. Nothing is stored, so `previous_response_id` is refused.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{Event, FinishReason, Request, SamplingParams, Summary};
use hearth_model::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::ApiError;
use crate::generate::{self, Ending};
use crate::modelfile::Dialect;
use crate::state::AppState;
use crate::util::{new_id, read_body, unix_now};

#[derive(Deserialize, Debug)]
struct ResponsesRequest {
    model: String,
    input: Value,
    instructions: Option<String>,
    max_output_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    /// Accepted: nothing is stored either way.
    #[allow(dead_code)]
    store: Option<bool>,
    /// Any other field (`previous_response_id`, `tools`, `text`, `reasoning`, ...) is one
    /// this text-only version does not implement: refused by name, not ignored.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// The text of a content value: a string, or `input_text`/`output_text` parts.
fn text_of(c: &Value) -> Result<String, ApiError> {
    match c {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(
                |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("input_text" | "output_text" | "text"), Some(Value::String(t))) => {
                        Ok(t.clone())
                    }
                    (t, _) => Err(bad(format!(
                        "input content of type {} is not supported",
                        t.unwrap_or("(none)")
                    ))),
                },
            )
            .collect(),
        _ => Err(bad("input content must be text")),
    }
}

fn messages(req: &ResponsesRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::new();
    if let Some(i) = &req.instructions {
        out.push(ChatMessage::new("system", i.clone()));
    }
    match &req.input {
        Value::String(s) => out.push(ChatMessage::new("user", s.clone())),
        Value::Array(items) => {
            for item in items {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                if kind != "message"
                    || !matches!(role, "user" | "assistant" | "system" | "developer")
                {
                    return Err(bad(format!(
                        "input items of type {kind} (role '{role}') are not supported"
                    )));
                }
                let role = if role == "developer" { "system" } else { role };
                out.push(ChatMessage::new(
                    role,
                    text_of(item.get("content").unwrap_or(&Value::Null))?,
                ));
            }
        }
        _ => return Err(bad("input must be a string or a list of messages")),
    }
    Ok(out)
}

/// The response object (`text` so far, `status`, usage when finished).
fn response_object(id: &str, msg_id: &str, model: &str, text: &str, s: Option<&Summary>) -> Value {
    let status = match s {
        None => "in_progress",
        Some(s) if s.finish_reason == FinishReason::Length => "incomplete",
        Some(_) => "completed",
    };
    let output: Vec<Value> = if s.is_some() {
        vec![
            json!({"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}),
        ]
    } else {
        Vec::new()
    };
    json!({
        "id": id, "object": "response", "created_at": unix_now(), "status": status, "model": model,
        "output": output,
        "incomplete_details": (status == "incomplete").then(|| json!({"reason": "max_output_tokens"})),
        "error": null, "instructions": null, "parallel_tool_calls": false, "tool_choice": "none", "tools": [],
        "usage": s.map(|s| json!({
            "input_tokens": s.prompt_tokens, "output_tokens": s.completion_tokens,
            "total_tokens": s.prompt_tokens + s.completion_tokens,
            "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": 0},
        })),
    })
}

/// `POST /v1/responses`
pub async fn create(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: ResponsesRequest =
        state.parse_request(&read_body(body, &state.opts).await?, Dialect::Responses)?;
    let ready = state.model(&req.model, None).await?;
    if let Some(k) = req.rest.keys().next() {
        return Err(bad(format!("{k} is not supported")));
    }
    let chat =
        generate::chat_prompt(&ready, messages(&req)?, None, Map::new(), Ending::Auto).await?;
    let max_tokens = generate::resolve_max_tokens(
        chat.ids.len(),
        req.max_output_tokens,
        ready.engine.config.n_ctx,
        "max_output_tokens",
        "input",
    )?;
    let t = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&t) {
        return Err(
            bad(format!("temperature must be between 0 and 2 (got {t})")).param("temperature"),
        );
    }
    let sampling = SamplingParams {
        temperature: t,
        top_k: 0,
        top_p: req.top_p.unwrap_or(1.0),
        min_p: 0.0,
        ..SamplingParams::default()
    }
    .greedy_if_cold();
    sampling.validate(ready.model.config.n_vocab).map_err(bad)?;
    let engine_req = Request {
        prompt_ids: chat.ids,
        max_tokens,
        sampling,
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        constraint: None,
    };
    let mut rx = generate::submit(&ready, engine_req, 1)?;
    let (id, msg_id, model) = (new_id("resp"), new_id("msg"), ready.id.clone());
    if !req.stream {
        let choice = generate::collect(rx, 1).await?.remove(0);
        let s = choice.summary.expect("collected choices are finished");
        generate::log_summary("responses", &id, &s);
        return Ok(Json(response_object(
            &id,
            &msg_id,
            &model,
            &choice.text,
            Some(&s),
        ))
        .into_response());
    }
    let (btx, brx) = unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let mut seq = 0u64;
        let mut event = |kind: &str, mut v: Value| {
            v["type"] = json!(kind);
            v["sequence_number"] = json!(seq);
            seq += 1;
            Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
        };
        let start = response_object(&id, &msg_id, &model, "", None);
        let item = json!({"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []});
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        let here = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
        for b in [
            event("response.created", json!({"response": start})),
            event("response.in_progress", json!({"response": start})),
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ),
            event(
                "response.content_part.added",
                json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "part": part}),
            ),
        ] {
            let _ = btx.send(b);
        }
        let mut text = String::new();
        while let Some((_, ev)) = rx.recv().await {
            match ev {
                Event::Token { text: t, .. } => {
                    if t.is_empty() {
                        continue;
                    }
                    text.push_str(&t);
                    let mut d = here.clone();
                    d["delta"] = json!(t);
                    if btx.send(event("response.output_text.delta", d)).is_err() {
                        return; // client gone; dropping `rx` cancels the sequence
                    }
                }
                Event::Done {
                    text: rest,
                    summary,
                } => {
                    generate::log_summary("responses", "stream", &summary);
                    if !rest.is_empty() {
                        text.push_str(&rest);
                        let mut d = here.clone();
                        d["delta"] = json!(rest);
                        let _ = btx.send(event("response.output_text.delta", d));
                    }
                    let done = response_object(&id, &msg_id, &model, &text, Some(&summary));
                    let mut t = here.clone();
                    t["text"] = json!(text);
                    let mut p = here.clone();
                    p["part"] = json!({"type": "output_text", "text": text, "annotations": []});
                    let kind = if done["status"] == "completed" {
                        "response.completed"
                    } else {
                        "response.incomplete"
                    };
                    for b in [
                        event("response.output_text.done", t),
                        event("response.content_part.done", p),
                        event(
                            "response.output_item.done",
                            json!({"output_index": 0, "item": done["output"][0]}),
                        ),
                        event(kind, json!({"response": done})),
                    ] {
                        let _ = btx.send(b);
                    }
                    return;
                }
                Event::Error(e) => {
                    let _ = btx.send(event(
                        "error",
                        json!({"message": e.to_string(), "code": "server_error"}),
                    ));
                    return;
                }
            }
        }
        let _ = btx.send(event(
            "error",
            json!({"message": "the server stopped before the answer was complete",
                                                "code": "server_error"}),
        ));
    });
    Ok(generate::sse_body(brx))
}
