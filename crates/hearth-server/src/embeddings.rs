//! Embeddings: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed` and its older
//! `POST /api/embeddings`. Texts are tokenized off the async threads and embedded by the
//! engine ([`hearth_engine::Engine::embed`]), batched with whatever else is running.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use hearth_engine::EmbedRequest;
use hearth_model::Pooling;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::generate;
use crate::state::{AppState, Ready};
use crate::util::{parse_json, read_body};

/// Inputs in one request at most (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// What to embed: text(s) or token arrays.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// Embeds `input` and returns each input's vector (L2-normalized, cut to `dimensions`
/// and renormalized when asked) and the number of tokens embedded. An input longer than
/// the model's context is cut (keeping a final end-of-input token the tokenizer adds)
/// when `truncate` is set, and refused otherwise.
async fn embed(
    state: &AppState,
    ready: &Arc<Ready>,
    input: Input,
    truncate: bool,
    dimensions: Option<i64>,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let pooling = pooling(state, ready)?;
    let n_embd = ready.model.config.n_embd;
    let dimensions = match dimensions {
        None => None,
        Some(d) if (1..=n_embd as i64).contains(&d) => Some(d as usize),
        Some(d) => {
            return Err(ApiError::bad_request(format!(
                "dimensions must be 1 to {n_embd} (got {d})"
            ))
            .param("dimensions"))
        }
    };
    let n_inputs = match &input {
        Input::Text(_) | Input::Tokens(_) => 1,
        Input::Texts(v) => v.len(),
        Input::TokenLists(v) => v.len(),
    };
    if n_inputs == 0 || n_inputs > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "input must hold 1 to {MAX_INPUTS} items (got {n_inputs})"
        ))
        .param("input"));
    }
    // An encoder's engine context is its trained one (`state::plan`).
    let n_ctx = ready.engine.config.n_ctx;
    let inputs = generate::blocking(ready, move |ready| {
        let tok = &ready.model.tokenizer;
        let lists = match input {
            Input::Text(t) => vec![encode(ready, &t)?],
            Input::Texts(v) => v
                .iter()
                .map(|t| encode(ready, t))
                .collect::<Result<_, _>>()?,
            Input::Tokens(ids) => vec![ids],
            Input::TokenLists(v) => v,
        };
        let keep_last = tok.add_eos();
        lists
            .into_iter()
            .map(|mut ids| {
                if ids.is_empty() {
                    return Err(ApiError::bad_request("an input is empty").param("input"));
                }
                if ids.len() > n_ctx {
                    if !truncate {
                        return Err(ApiError::bad_request(format!(
                            "an input has {} tokens, more than the model's context of {n_ctx}; \
                             shorten it, or ask for truncation",
                            ids.len()
                        ))
                        .param("input")
                        .code("context_length_exceeded"));
                    }
                    let last = *ids.last().expect("non-empty");
                    ids.truncate(n_ctx);
                    if keep_last {
                        ids[n_ctx - 1] = last;
                    }
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let n_tokens = inputs.iter().map(Vec::len).sum();
    let rx = ready.engine.embed(EmbedRequest { inputs, pooling })?;
    let mut vectors = rx
        .await
        .map_err(|_| ApiError::from(hearth_engine::EngineError::Stopped))??;
    if let Some(d) = dimensions {
        for v in &mut vectors {
            v.truncate(d);
            let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
            }
        }
    }
    Ok((vectors, n_tokens))
}

/// Tokens of one text input, with the model's special tokens added (BERT's `[CLS]` and
/// `[SEP]`); special-token texts inside it are plain text.
fn encode(ready: &Ready, text: &str) -> Result<Vec<u32>, ApiError> {
    if text.is_empty() {
        return Err(ApiError::bad_request("an input is empty").param("input"));
    }
    Ok(ready.model.tokenizer.encode(text, true, false))
}

/// How this server pools: `--pooling`, else the model's own; a model with neither (a
/// generative model served without `--pooling`, or a reranker) cannot embed.
fn pooling(state: &AppState, ready: &Ready) -> Result<Pooling, ApiError> {
    match state.opts.pooling.or(ready.model.config.pooling) {
        Some(p @ (Pooling::Mean | Pooling::Cls | Pooling::Last)) => Ok(p),
        _ => Err(ApiError::bad_request(format!(
            "model '{}' has no pooling for embeddings; start the server with \
             --pooling mean|cls|last to embed with it",
            ready.id
        ))
        .param("model")),
    }
}

#[derive(Deserialize, Debug)]
struct OpenAiRequest {
    model: String,
    input: Input,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
    /// Names the end user; asks nothing of Hearth.
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /v1/embeddings`
pub async fn openai(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: OpenAiRequest = parse_json(&read_body(body, &state.opts).await?)?;
    if let Some(name) = req.rest.keys().next() {
        return Err(ApiError::bad_request(format!("{name} is not supported")).param(name.as_str()));
    }
    let ready = state.model(&req.model, None).await?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format must be float or base64 (got {other})"
            ))
            .param("encoding_format"))
        }
    };
    let (vectors, n_tokens) = embed(&state, &ready, req.input, false, req.dimensions).await?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": ready.id,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    })))
}

#[derive(Deserialize, Debug)]
struct OllamaEmbed {
    model: String,
    input: Input,
    /// Cut inputs longer than the context (Ollama's default), else refuse them.
    truncate: Option<bool>,
    dimensions: Option<i64>,
    /// How long the model stays loaded once idle.
    keep_alive: Option<Value>,
    /// Generation settings; clients send them unset (null), which asks for nothing.
    #[serde(default)]
    options: Map<String, Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /api/embed`
pub async fn ollama(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let t0 = Instant::now();
    let req: OllamaEmbed = parse_json(
        &read_body(body, &state.opts)
            .await
            .map_err(ApiError::ollama)?,
    )
    .map_err(ApiError::ollama)?;
    refuse_rest(&req.rest)?;
    if let Some((k, _)) = req.options.iter().find(|(_, v)| !v.is_null()) {
        return Err(
            ApiError::bad_request(format!("options.{k} is not supported for embeddings"))
                .param(format!("options.{k}"))
                .ollama(),
        );
    }
    let keep_alive = crate::ollama::parse_keep_alive(&req.keep_alive).map_err(ApiError::ollama)?;
    let ready = state
        .model(&req.model, keep_alive)
        .await
        .map_err(ApiError::ollama)?;
    let (vectors, n_tokens) = embed(
        &state,
        &ready,
        req.input,
        req.truncate.unwrap_or(true),
        req.dimensions,
    )
    .await
    .map_err(ApiError::ollama)?;
    Ok(Json(json!({
        "model": ready.id,
        "embeddings": vectors,
        "total_duration": t0.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": n_tokens,
    })))
}

#[derive(Deserialize, Debug)]
struct OllamaEmbeddings {
    model: String,
    prompt: String,
    keep_alive: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /api/embeddings` (Ollama's older route: one prompt, one vector)
pub async fn ollama_legacy(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: OllamaEmbeddings = parse_json(
        &read_body(body, &state.opts)
            .await
            .map_err(ApiError::ollama)?,
    )
    .map_err(ApiError::ollama)?;
    refuse_rest(&req.rest)?;
    let keep_alive = crate::ollama::parse_keep_alive(&req.keep_alive).map_err(ApiError::ollama)?;
    let ready = state
        .model(&req.model, keep_alive)
        .await
        .map_err(ApiError::ollama)?;
    let (mut vectors, _) = embed(&state, &ready, Input::Text(req.prompt), true, None)
        .await
        .map_err(ApiError::ollama)?;
    Ok(Json(json!({"embedding": vectors.remove(0)})))
}

/// Ollama's `options` ask for generation settings, which an embedding does not use, and
/// any other field is one Hearth does not implement: refused by name.
fn refuse_rest(rest: &Map<String, Value>) -> Result<(), ApiError> {
    match rest.keys().next() {
        Some(name) => Err(ApiError::bad_request(format!("{name} is not supported"))
            .param(name.as_str())
            .ollama()),
        None => Ok(()),
    }
}

/// `POST /v1/rerank`, `/rerank`: reranking needs a cross-encoder (a BERT with a
/// classification head, pooling `rank`), which Hearth does not run yet.
pub async fn rerank() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "reranking is not supported yet: it needs a cross-encoder model, which Hearth does \
         not run; embed the query and documents with /v1/embeddings and compare them",
    )
}
