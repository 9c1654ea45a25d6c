//! Embeddings: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed` and its older
//! `POST /api/embeddings`; and reranking, `POST /v1/rerank` (llama-server's, Jina's,
//! Cohere's and TEI's shapes) with a cross-encoder. Texts are tokenized off the async threads and
//! embedded or scored by the engine ([`hearth_engine::Engine::embed`]), batched with
//! whatever else is running.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use hearth_engine::EmbedRequest;
use hearth_model::{ModelError, Pooling};
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
    let rx = ready.engine.embed(EmbedRequest {
        inputs,
        pooling,
        n_first: Vec::new(),
    })?;
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
        Some(Pooling::Rank) => Err(ApiError::bad_request(format!(
            "model '{}' is a reranker (pooling rank): it scores documents against a query \
             at /v1/rerank, and does not embed",
            ready.id
        ))
        .param("model")),
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

// ----------------------------------------------------------------------------
// Reranking: `POST /v1/rerank` and `/rerank`, in llama-server's shape, which is Jina's and
// Cohere's (`model`, `query`, `documents`, `top_n`, `return_documents`; `results` of
// `index` and `relevance_score`, best first).

/// Documents in one rerank request at most (Cohere's recommended limit).
pub const MAX_DOCUMENTS: usize = 1000;

/// A document: a string, or (Cohere v1, Jina) an object with its `text`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Document {
    Text(String),
    Object(Map<String, Value>),
}

#[derive(Deserialize, Debug)]
struct RerankRequest {
    /// The server's default model when absent (llama-server and TEI serve one).
    model: Option<String>,
    query: Value,
    /// llama-server's, Jina's and Cohere's documents.
    documents: Option<Vec<Document>>,
    /// Text Embeddings Inference's name for them; with it the answer is TEI's (a bare
    /// list of `index`, `score` and, with `return_text`, `text`).
    texts: Option<Vec<String>>,
    /// TEI: each result also carries its text.
    #[serde(default)]
    return_text: bool,
    /// Only the best `top_n` results (all when absent).
    top_n: Option<i64>,
    /// Each result also carries its document (`{"text": ...}`).
    #[serde(default)]
    return_documents: bool,
    /// Cut a pair longer than the model's context (longest part first) instead of
    /// refusing it.
    #[serde(default)]
    truncate: bool,
    /// The classifier's raw logits (llama-server's scores) instead of their sigmoid.
    #[serde(default)]
    raw_scores: bool,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /v1/rerank`, `/rerank`: scores each document against the query with a
/// cross-encoder (a model with pooling `rank`, as `hearth convert` writes a
/// `BertForSequenceClassification`), best first.
///
/// `relevance_score` is the sigmoid of the model's logit, in [0, 1], as Cohere's and
/// Jina's APIs and sentence-transformers' `CrossEncoder` give it for a one-label model
/// (clients threshold on it); `raw_scores: true` returns the logit itself, as
/// llama-server does. The order is the same either way. With `texts` instead of
/// `documents` the request and answer are Text Embeddings Inference's: `return_text`, and
/// a bare list of `index` and `score`. Without `model`, the server's default model.
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: RerankRequest = parse_json(&read_body(body, &state.opts).await?)?;
    if let Some(name) = req.rest.keys().next() {
        return Err(ApiError::bad_request(format!("{name} is not supported")).param(name.as_str()));
    }
    let query = match &req.query {
        Value::String(q) if !q.is_empty() => q.clone(),
        Value::String(_) => return Err(ApiError::bad_request("query is empty").param("query")),
        _ => return Err(ApiError::bad_request("query must be a string").param("query")),
    };
    let tei = req.texts.is_some();
    let documents = match (req.documents, req.texts) {
        (Some(d), None) => d,
        (None, Some(t)) => t.into_iter().map(Document::Text).collect(),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give the documents as documents or as texts (TEI's name), not both",
            )
            .param("texts"))
        }
        (None, None) => {
            return Err(ApiError::bad_request("documents (or texts) is required").param("documents"))
        }
    };
    if req.return_text && !tei {
        return Err(ApiError::bad_request(
            "return_text goes with texts (TEI's shape); with documents, use return_documents",
        )
        .param("return_text"));
    }
    if req.return_documents && tei {
        return Err(ApiError::bad_request(
            "return_documents goes with documents; with texts (TEI's shape), use return_text",
        )
        .param("return_documents"));
    }
    let n_docs = documents.len();
    if n_docs == 0 || n_docs > MAX_DOCUMENTS {
        return Err(ApiError::bad_request(format!(
            "documents must hold 1 to {MAX_DOCUMENTS} documents (got {n_docs})"
        ))
        .param("documents"));
    }
    let top_n = match req.top_n {
        None => n_docs,
        Some(n) if n >= 1 => (n as u64).min(n_docs as u64) as usize,
        Some(n) => {
            return Err(
                ApiError::bad_request(format!("top_n must be at least 1 (got {n})")).param("top_n"),
            )
        }
    };
    let mut texts = Vec::with_capacity(n_docs);
    for (i, d) in documents.into_iter().enumerate() {
        match d {
            Document::Text(t) => texts.push(t),
            Document::Object(mut m) => {
                let text = match m.remove("text") {
                    Some(Value::String(t)) => t,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "documents[{i}] must be a string or an object with a string 'text'"
                        ))
                        .param(format!("documents[{i}].text")))
                    }
                };
                if let Some(k) = m.keys().next() {
                    return Err(ApiError::bad_request(format!(
                        "documents[{i}].{k} is not supported (a document is its text)"
                    ))
                    .param(format!("documents[{i}].{k}")));
                }
                texts.push(text);
            }
        }
    }
    let ready = match &req.model {
        Some(name) => state.model(name, None).await?,
        None => state.default_model().await?,
    };
    let can_rerank = matches!(
        state.opts.pooling.or(ready.model.config.pooling),
        Some(Pooling::Rank)
    ) && ready.model.can_rerank();
    if !can_rerank {
        return Err(ApiError::bad_request(format!(
            "model '{}' is not a reranker: reranking needs a cross-encoder (pooling rank, \
             such as a BertForSequenceClassification converted by hearth convert)",
            ready.id
        ))
        .param("model"));
    }
    // An encoder's engine context is its trained one (`state::plan`).
    let n_ctx = ready.engine.config.n_ctx;
    let truncate = req.truncate;
    let texts = Arc::new(texts);
    let docs = texts.clone();
    let pairs = generate::blocking(&ready, move |ready| {
        let model = &ready.model;
        let q = model.tokenizer.encode(&query, false, false);
        docs.iter()
            .enumerate()
            .map(|(i, d)| {
                let d = model.tokenizer.encode(d, false, false);
                model
                    .rerank_input(&q, &d, n_ctx, truncate)
                    .map_err(|e| match e {
                        ModelError::ContextOverflow { needed, .. } => {
                            ApiError::bad_request(format!(
                                "documents[{i}] with the query is {needed} tokens, more than \
                                 the model's context of {n_ctx}; shorten it, or set \
                                 truncate: true"
                            ))
                            .param(format!("documents[{i}]"))
                            .code("context_length_exceeded")
                        }
                        other => ApiError::bad_request(other.to_string()).param("model"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let n_tokens: usize = pairs.iter().map(|p| p.0.len()).sum();
    let (inputs, n_first) = pairs.into_iter().unzip();
    let rx = ready.engine.embed(EmbedRequest {
        inputs,
        pooling: Pooling::Rank,
        n_first,
    })?;
    let scores = rx
        .await
        .map_err(|_| ApiError::from(hearth_engine::EngineError::Stopped))??;
    let mut ranked: Vec<(usize, f32)> = scores.iter().map(|s| s[0]).enumerate().collect();
    // Best first; equal scores keep the documents' order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(top_n);
    let results: Vec<Value> = ranked
        .into_iter()
        .map(|(index, logit)| {
            let score = if req.raw_scores {
                logit as f64
            } else {
                1.0 / (1.0 + (-(logit as f64)).exp())
            };
            if tei {
                let mut r = json!({"index": index, "score": score});
                if req.return_text {
                    r["text"] = json!(texts[index]);
                }
                return r;
            }
            let mut r = json!({"index": index, "relevance_score": score});
            if req.return_documents {
                r["document"] = json!({"text": texts[index]});
            }
            r
        })
        .collect();
    if tei {
        return Ok(Json(Value::Array(results)));
    }
    Ok(Json(json!({
        "id": crate::util::new_id("rerank"),
        "object": "list",
        "model": ready.id,
        "results": results,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    })))
}
