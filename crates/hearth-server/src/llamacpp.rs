//! llama-server's native endpoints, for the tools built on them: `POST /completion`
//! (streamed as `data:` lines, or one object), `POST /infill` (fill-in-the-middle, for
//! editor plugins), `GET /props`, `POST /apply-template`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{Event, FinishReason, Grammar, Request, SamplingParams, Summary};
use hearth_model::{ChatMessage, Fim, FimRequest};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::ApiError;
use crate::generate;
use crate::modelfile::Dialect;
use crate::state::{AppState, Ready};
use crate::util::{parse_json, read_body};

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Deserialize, Debug)]
struct CompletionRequest {
    /// Required by `/completion`; for `/infill`, text that opens the middle.
    prompt: Option<Prompt>,
    /// Tokens to generate; -1 (the default) runs to the end of the context.
    n_predict: Option<i64>,
    temperature: Option<f32>,
    top_k: Option<i64>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    seed: Option<i64>,
    #[serde(default)]
    stop: Vec<String>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    ignore_eos: bool,
    grammar: Option<String>,
    json_schema: Option<Value>,
    /// Always on here (the prefix cache); accepted as llama-server's clients send it.
    #[allow(dead_code)]
    cache_prompt: Option<bool>,
    /// Any other field (`samplers`, `mirostat`, `n_probs`, DRY, XTC, ...) is one Hearth
    /// does not implement: refused by name, not ignored (`n_probs: 0` asks for nothing).
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// One `input_extra` entry; any other field is refused by name.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ExtraFile {
    #[serde(default)]
    filename: String,
    text: String,
}

#[derive(Deserialize, Debug)]
struct InfillRequest {
    #[serde(default)]
    input_prefix: String,
    #[serde(default)]
    input_suffix: String,
    /// Other files for context, most relevant last.
    #[serde(default)]
    input_extra: Vec<ExtraFile>,
    #[serde(flatten)]
    completion: CompletionRequest,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn sampling(r: &CompletionRequest, n_vocab: usize) -> Result<SamplingParams, ApiError> {
    // llama-server's defaults.
    let mut p = SamplingParams {
        temperature: r.temperature.unwrap_or(0.8),
        top_k: 40,
        top_p: r.top_p.unwrap_or(0.95),
        min_p: r.min_p.unwrap_or(0.05),
        repeat_penalty: r.repeat_penalty.unwrap_or(1.0),
        repeat_last_n: 64,
        presence_penalty: r.presence_penalty.unwrap_or(0.0),
        frequency_penalty: r.frequency_penalty.unwrap_or(0.0),
        logit_bias: Vec::new(),
        seed: r.seed.filter(|&s| s >= 0).map(|s| s as u64),
    };
    if let Some(k) = r.top_k {
        p.top_k =
            usize::try_from(k).map_err(|_| bad(format!("top_k must not be negative (got {k})")))?;
    }
    match r.repeat_last_n {
        Some(-1) => p.repeat_last_n = usize::MAX,
        Some(n) => {
            p.repeat_last_n = usize::try_from(n)
                .map_err(|_| bad(format!("repeat_last_n must be -1 or more (got {n})")))?
        }
        None => {}
    }
    let p = p.greedy_if_cold();
    p.validate(n_vocab).map_err(bad)?;
    Ok(p)
}

/// llama-server's final object: the text and its accounting.
fn final_object(model: &str, content: &str, s: &Summary, truncated: bool) -> Value {
    let t = &s.timings;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let per = |d: std::time::Duration, n: usize| if n > 0 { ms(d) / n as f64 } else { 0.0 };
    let stop_type = match (&s.stop_string, s.finish_reason) {
        (Some(_), _) => "word",
        (None, FinishReason::Length) => "limit",
        (None, FinishReason::Stop) => "eos",
    };
    json!({
        "content": content, "id_slot": 0, "stop": true, "model": model,
        "tokens_predicted": s.completion_tokens, "tokens_evaluated": s.prompt_tokens,
        "tokens_cached": s.cached_tokens, "truncated": truncated,
        "stop_type": stop_type, "stopping_word": s.stop_string.clone().unwrap_or_default(),
        "timings": {
            "prompt_n": t.prompt_eval_count, "prompt_ms": ms(t.prompt_eval_duration),
            "prompt_per_token_ms": per(t.prompt_eval_duration, t.prompt_eval_count),
            "prompt_per_second": t.prompt_tokens_per_second(),
            "predicted_n": t.eval_count, "predicted_ms": ms(t.eval_duration),
            "predicted_per_token_ms": per(t.eval_duration, t.eval_count),
            "predicted_per_second": t.eval_tokens_per_second(),
        },
    })
}

/// `POST /completion`
pub async fn completion(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CompletionRequest =
        state.parse_request(&read_body(body, &state.opts).await?, Dialect::LlamaCpp)?;
    refuse_unknown(&req)?;
    let ready = state.default_model().await?;
    let prompt = match &req.prompt {
        Some(Prompt::Text(t)) => generate::text_prompt(&ready, t.clone()).await?,
        Some(Prompt::Tokens(ids)) => ids.clone(),
        None => return Err(bad("prompt is required").param("prompt")),
    };
    run(ready, req, prompt, false).await
}

/// `POST /infill`: fills the gap between `input_prefix` and `input_suffix` with the
/// model's FIM tokens ([`Fim`]); a model without them is refused.
pub async fn infill(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: InfillRequest = parse_json(&read_body(body, &state.opts).await?)?;
    refuse_unknown(&req.completion)?;
    let ready = state.default_model().await?;
    let opening = match &req.completion.prompt {
        None => String::new(),
        Some(Prompt::Text(t)) => t.clone(),
        Some(Prompt::Tokens(_)) => {
            return Err(bad("prompt must be text for /infill").param("prompt"))
        }
    };
    let n_predict = req.completion.n_predict;
    let extra: Vec<(String, String)> = req
        .input_extra
        .iter()
        .map(|f| (f.filename.clone(), f.text.clone()))
        .collect();
    let (prefix, suffix) = (req.input_prefix.clone(), req.input_suffix.clone());
    let fim = generate::blocking(&ready, move |ready| {
        let tok = &ready.model.tokenizer;
        let fim = Fim::of(tok.special_tokens(), tok.add_bos()).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this model has no fill-in-the-middle tokens (FIM_PRE, FIM_SUF, FIM_MID)",
            )
        })?;
        // The input may use what the answer does not: n_predict tokens when given, else
        // three quarters of the context.
        let n_ctx = ready.engine.config.n_ctx;
        let budget = match n_predict {
            Some(n) if n > 0 => n_ctx.saturating_sub(n as usize),
            _ => n_ctx / 4 * 3,
        };
        let request = FimRequest {
            prefix: &prefix,
            suffix: &suffix,
            extra: &extra,
            prompt: &opening,
        };
        fim.prompt(&request, budget, |t| tok.encode(t, false, false))
            .ok_or_else(|| {
                bad(format!(
                    "prompt does not fit in the {budget} tokens left for the input"
                ))
                .param("prompt")
            })
    })
    .await?;
    run(ready, req.completion, fim.ids, fim.truncated).await
}

/// Refuses a field Hearth does not implement, by name (`n_probs: 0` asks for nothing).
fn refuse_unknown(req: &CompletionRequest) -> Result<(), ApiError> {
    match req
        .rest
        .iter()
        .find(|(k, v)| !(*k == "n_probs" && **v == json!(0)))
    {
        Some((k, _)) => Err(bad(format!("{k} is not supported")).param(k.as_str())),
        None => Ok(()),
    }
}

/// Generates from `prompt` and answers in llama-server's shape (`truncated`: the input
/// was cut to fit).
async fn run(
    ready: Arc<Ready>,
    req: CompletionRequest,
    prompt: Vec<u32>,
    truncated: bool,
) -> Result<Response, ApiError> {
    let max_tokens = match req.n_predict {
        None | Some(-1) => None,
        Some(n) => Some(n),
    };
    let max_tokens = generate::resolve_max_tokens(
        prompt.len(),
        max_tokens,
        ready.engine.config.n_ctx,
        "n_predict",
        "prompt",
    )?;
    if req.stop.iter().any(String::is_empty) || req.stop.len() > 16 {
        return Err(bad("stop must be up to 16 non-empty strings"));
    }
    let grammar = generate::one_grammar(vec![
        ("grammar", req.grammar.clone().map(Grammar::Gbnf)),
        (
            "json_schema",
            req.json_schema.clone().map(Grammar::JsonSchema),
        ),
    ])?;
    let constraint = match grammar {
        Some((param, g)) => Some(generate::compile(&ready, g, param).await?),
        None => None,
    };
    let engine_req = Request {
        prompt_ids: prompt,
        max_tokens,
        sampling: sampling(&req, ready.model.config.n_vocab)?,
        stop: req.stop.clone(),
        ignore_eos: req.ignore_eos,
        logprobs: None,
        constraint,
    };
    let mut rx = generate::submit(&ready, engine_req, 1)?;
    let model = ready.id.clone();
    if !req.stream {
        let choice = generate::collect(rx, 1).await?.remove(0);
        let s = choice.summary.expect("collected choices are finished");
        generate::log_summary("completion", "-", &s);
        return Ok(Json(final_object(&model, &choice.text, &s, truncated)).into_response());
    }
    let (btx, brx) = unbounded_channel::<Bytes>();
    let data = |v: Value| Bytes::from(format!("data: {v}\n\n"));
    tokio::spawn(async move {
        while let Some((_, ev)) = rx.recv().await {
            let v = match ev {
                Event::Token { text, .. } if text.is_empty() => continue,
                Event::Token { text, .. } => {
                    json!({"content": text, "stop": false, "id_slot": 0, "index": 0})
                }
                Event::Done { text, summary } => {
                    generate::log_summary("completion", "stream", &summary);
                    if !text.is_empty() {
                        let _ = btx.send(data(
                            json!({"content": text, "stop": false, "id_slot": 0, "index": 0}),
                        ));
                    }
                    let _ = btx.send(data(final_object(&model, "", &summary, truncated)));
                    return;
                }
                Event::Error(e) => {
                    json!({"error": {"message": e.to_string(), "type": "server_error"}})
                }
            };
            if btx.send(data(v)).is_err() {
                return; // client gone; dropping `rx` cancels the sequence
            }
        }
        let _ = btx.send(data(json!({"error": {
            "message": "the server stopped before the answer was complete", "type": "server_error"}})));
    });
    Ok(generate::sse_body(brx))
}

/// `GET /props`
pub async fn props(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let ready = state.default_model().await?;
    let tok = &ready.model.tokenizer;
    let text = |id: Option<u32>| {
        id.map(|i| tok.token_text(i).to_string())
            .unwrap_or_default()
    };
    Ok(Json(json!({
        "default_generation_settings": {"n_ctx": ready.engine.config.n_ctx,
            "params": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "n_predict": -1}},
        "total_slots": ready.engine.config.max_seqs,
        "model_alias": ready.id,
        "model_path": ready.info.path().display().to_string(),
        "chat_template": ready.model.chat_template.as_ref().map(|t| t.source()).unwrap_or(""),
        "bos_token": text(tok.bos_id()),
        "eos_token": text(tok.eos_id()),
        "modalities": {"vision": false, "audio": false},
        "build_info": crate::FINGERPRINT,
    })))
}

#[derive(Deserialize)]
struct ApplyTemplateRequest {
    messages: Vec<ChatMessage>,
}

/// `POST /apply-template`: the prompt the chat template makes of `messages`, with the
/// assistant's turn opened.
pub async fn apply_template(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: ApplyTemplateRequest = parse_json(&read_body(body, &state.opts).await?)?;
    let ready = state.default_model().await?;
    let text = generate::blocking(&ready, move |ready| {
        let t = ready
            .model
            .chat_template
            .as_ref()
            .ok_or_else(|| bad("the model has no chat template"))?;
        t.render(&req.messages, true)
            .map_err(|e| bad(format!("cannot apply the chat template: {e}")))
    })
    .await?;
    Ok(Json(json!({"prompt": text})))
}
