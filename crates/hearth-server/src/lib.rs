//! `hearth serve`: the OpenAI- and Ollama-compatible HTTP server. The HTTP layer (axum on
//! a small tokio runtime) only parses, validates and formats; all sequence and KV state
//! lives in the engine thread (`hearth_engine::Engine`), reached through channels.

mod anthropic;
mod embeddings;
mod error;
mod generate;
pub mod listen;
mod llamacpp;
pub mod modelfile;
mod ollama;
mod ollama_models;
mod openai;
mod reasoning;
mod responses;
mod state;
pub mod tools;
mod ui;
mod util;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub use error::ApiError;
pub use ollama::parse_keep_alive;
pub use state::{AppState, PullEvent, PullFailure, PullSink, Pulled, Puller, ServerOptions};

/// Reported as `system_fingerprint` in OpenAI responses.
pub(crate) const FINGERPRINT: &str = concat!("hearth-", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Load(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Every route.
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{id}", get(openai::model))
        // As llama-server: the OpenAI routes without their prefix too.
        .route("/chat/completions", post(openai::chat_completions))
        .route("/completions", post(openai::completions))
        .route("/models", get(openai::models))
        .route("/models/{id}", get(openai::model))
        .route("/v1/responses", post(responses::create))
        .route("/responses", post(responses::create))
        .route("/v1/messages", post(anthropic::messages_route))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/embeddings", post(embeddings::openai))
        .route("/v1/rerank", post(embeddings::rerank))
        .route("/rerank", post(embeddings::rerank))
        .route("/api/embed", post(embeddings::ollama))
        .route("/api/embeddings", post(embeddings::ollama_legacy))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama_models::show))
        .route("/api/create", post(ollama_models::create))
        .route("/api/pull", post(ollama_models::pull))
        .route("/api/ps", get(ollama::ps))
        .route("/api/delete", axum::routing::delete(ollama::delete))
        .route("/api/copy", post(ollama::copy))
        .route("/api/version", get(ollama::version))
        .route("/", get(root).head(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/completion", post(llamacpp::completion))
        .route("/infill", post(llamacpp::infill))
        .route("/props", get(llamacpp::props))
        .route("/apply-template", post(llamacpp::apply_template))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(log_request));
    // Outermost: preflights are answered before authentication. Without origins there
    // is no CORS layer at all, so browsers keep other origins out.
    let app = match cors(&state.opts.cors_origins) {
        Some(c) => app.layer(c),
        None => app,
    };
    app.with_state(state)
}

/// CORS for the configured origins, if any.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| header::HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any)
            .expose_headers(Any),
    )
}

/// Binds, loads the model (answering 503 on `/health` meanwhile; "listening" is printed
/// only once it is ready, so a load failure never follows it), and serves until
/// SIGINT/SIGTERM. On a signal it stops accepting, lets running streams finish for up to
/// `drain` and then cancels what is left.
pub async fn run(opts: ServerOptions, drain: Duration) -> Result<(), ServerError> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr()?;
    eprintln!(
        "hearth: loading '{}' on http://{local} (GET /health answers 503 until it has loaded)",
        opts.model_id
    );
    let state = Arc::new(AppState::new(opts));

    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits = listen::Limits {
        read_timeout: state.opts.read_timeout,
        write_timeout: state.opts.write_timeout,
        max_connections: state.opts.max_connections,
    };
    let server = tokio::spawn(listen::serve(listener, app, stop_rx, limits));

    match state.load_default().await {
        Ok(r) => eprintln!(
            "hearth: model '{}' ready in {:.2} s; listening on http://{local}",
            r.id,
            r.load_duration.as_secs_f64()
        ),
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(ServerError::Load(e));
        }
    }
    // Models idle past their keep-alive are unloaded.
    let reaper = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            reaper.reap();
        }
    });

    shutdown_signal().await;
    eprintln!(
        "hearth: shutting down: no new connections; waiting up to {} s for running requests",
        drain.as_secs()
    );
    let _ = stop_tx.send(true);
    let mut server = server;
    tokio::select! {
        _ = &mut server => {}
        _ = tokio::time::sleep(drain) => eprintln!("hearth: cancelling the requests still running"),
        _ = shutdown_signal() => eprintln!("hearth: second signal: cancelling the requests still running"),
    }
    state.shutdown();
    // Let the cut streams send their error events and close (bounded: a client that does
    // not read must not hold the exit).
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `Authorization: Bearer KEY` (the scheme in any case, or Anthropic's `x-api-key: KEY`)
/// on every route but `/health` and `/` when an API key is set; the key is compared in
/// constant time. `/` stays open because a browser cannot send the key when it opens the
/// chat page; the page holds no data and sends the key on every API call it makes.
async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.opts.api_key {
        if !matches!(req.uri().path(), "/health" | "/") {
            let headers = req.headers();
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, k)| k.trim());
            // Anthropic's clients send the key as `x-api-key`.
            let given = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
            if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
                let e = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid or missing API key (send Authorization: Bearer <key>)",
                );
                let mut resp = dialect(e, req.uri().path()).into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return resp;
            }
        }
    }
    next.run(req).await
}

/// A `Content-Length` above `--max-body` is refused at once, before the body is read.
async fn body_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.opts.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {limit}-byte limit"),
        );
        return dialect(e, req.uri().path()).into_response();
    }
    next.run(req).await
}

/// Whether `a` equals `b`, in time that depends on their lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// `e` in the error shape of the route family of `path` (Ollama's under `/api/`,
/// Anthropic's under `/v1/messages`).
fn dialect(e: ApiError, path: &str) -> ApiError {
    if path.starts_with("/api/") {
        e.ollama()
    } else if path.starts_with("/v1/messages") {
        e.anthropic()
    } else {
        e
    }
}

/// One structured log line per request (streaming responses: until the headers).
async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if path != "/health" && path != "/metrics" {
        tracing::info!(%method, path, status = resp.status().as_u16(), ms, "request");
    }
    resp
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    let e = ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    );
    dialect(e, uri.path())
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    );
    dialect(e, uri.path())
}

/// `GET /`: the web chat page for a browser (`Accept: text/html`), "Hearth is running"
/// for anything else (`ui.rs`).
async fn root(headers: header::HeaderMap) -> Response {
    ui::root(headers).await
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    // Every loaded model's series, labelled by model.
    let loaded = state.loaded();
    let engines: Vec<(&str, &hearth_engine::metrics::Metrics)> = loaded
        .iter()
        .map(|(r, _)| (r.id.as_str(), &*r.engine.metrics))
        .collect();
    let mut text = hearth_engine::metrics::Metrics::render_models(&engines);
    text.push_str(&format!(
        "# HELP hearth_uptime_seconds Seconds since the server started.\n# TYPE hearth_uptime_seconds gauge\nhearth_uptime_seconds {}\n",
        state.started.elapsed().as_secs_f64()
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(Deserialize)]
struct TokenizeRequest {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

async fn tokenize(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: TokenizeRequest = util::parse_json(&util::read_body(body, &state.opts).await?)?;
    let ready = state.default_model().await?;
    let tokens = generate::blocking(&ready, move |ready| {
        let ids = ready
            .model
            .tokenizer
            .encode(&req.content, req.add_special, true);
        Ok(if req.with_pieces {
            ids.iter()
                .map(|&id| json!({"id": id, "piece": generate::token_piece(ready, id).0}))
                .collect::<Vec<serde_json::Value>>()
        } else {
            ids.iter().map(|&id| json!(id)).collect()
        })
    })
    .await?;
    Ok(Json(json!({"tokens": tokens})).into_response())
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<u32>,
}

async fn detokenize(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let req: DetokenizeRequest = util::parse_json(&util::read_body(body, &state.opts).await?)?;
    let ready = state.default_model().await?;
    let n_vocab = ready.model.config.n_vocab;
    if let Some(&t) = req.tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::bad_request(format!(
            "token id {t} is outside the vocabulary ({n_vocab})"
        ))
        .param("tokens"));
    }
    Ok(Json(json!({"content": ready.model.tokenizer.decode(&req.tokens, false)})).into_response())
}
