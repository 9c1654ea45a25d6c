//! Ollama's model routes that read, make or fetch models without running one:
//! `/api/show` (from the GGUF header: nothing is loaded), `/api/create` (a created model's
//! manifest, `modelfile.rs`) and `/api/pull` (through the binary's puller).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_gguf::GgufFile;
use hearth_model::ModelConfig;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::unbounded_channel;

use crate::error::ApiError;
use crate::generate::channel_body;
use crate::modelfile::{self, Manifest, Modelfile, MANIFEST_SUFFIX};
use crate::state::{AppState, ModelInfo, PullEvent};
use crate::util::{parse_json, read_body, rfc3339};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg).ollama()
}

fn internal(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg).ollama()
}

/// The first field a request gave that the route does not implement, as a 400.
fn refuse(rest: &Map<String, Value>, route: &str, takes: &str) -> Result<(), ApiError> {
    match rest.iter().find(|(_, v)| !v.is_null()) {
        Some((k, _)) => Err(bad(format!(
            "{k} is not supported by Hearth's {route} (it takes {takes})"
        ))
        .param(k.as_str())),
        None => Ok(()),
    }
}

pub fn details(i: &ModelInfo) -> Value {
    let parent = match &i.recipe {
        Some(_) => i
            .path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        None => String::new(),
    };
    json!({
        "parent_model": parent,
        "format": "gguf",
        "family": i.family,
        "families": [i.family],
        "parameter_size": i.parameter_size(),
        "quantization_level": i.quantization,
    })
}

#[derive(Deserialize)]
struct ShowRequest {
    model: Option<String>,
    name: Option<String>,
    /// Ollama's token lists in `model_info`; Hearth lists none, so only `false` is taken.
    verbose: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /api/show`: the model's details, metadata, template, parameters and capabilities,
/// read from its GGUF header (the model is not loaded).
pub async fn show(State(state): State<Arc<AppState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: ShowRequest = parse_json(&bytes).map_err(ApiError::ollama)?;
    refuse(&req.rest, "/api/show", "model and verbose")?;
    if req.verbose == Some(true) {
        return Err(
            bad("verbose is not supported: Hearth's /api/show lists no token arrays")
                .param("verbose"),
        );
    }
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| bad("missing field `model`"))?;
    let info = state.info(&name).map_err(ApiError::ollama)?;
    let i = info.clone();
    let (model_info, file_template) = tokio::task::spawn_blocking(move || {
        let file = GgufFile::open(i.path()).map_err(|e| e.to_string())?;
        let c = ModelConfig::from_gguf(&file).map_err(|e| e.to_string())?;
        let arch = &c.arch;
        let mut m = json!({
            "general.architecture": arch,
            "general.parameter_count": i.n_params,
            format!("{arch}.context_length"): c.n_ctx_train,
            format!("{arch}.embedding_length"): c.n_embd,
            format!("{arch}.block_count"): c.n_layer,
            format!("{arch}.feed_forward_length"): c.n_ff,
            format!("{arch}.attention.head_count"): c.n_head,
            format!("{arch}.attention.head_count_kv"): c.n_head_kv,
            format!("{arch}.rope.freq_base"): c.rope_freq_base,
            "tokenizer.ggml.model": file.get_str("tokenizer.ggml.model").unwrap_or_default(),
            "tokenizer.ggml.vocab_size": c.n_vocab,
        });
        if let Some(name) = file.get_str("general.name") {
            m["general.name"] = json!(name);
        }
        if let Some(p) = c.pooling {
            m[format!("{arch}.pooling_type")] = json!(p.name());
        }
        let template = file
            .get_str("tokenizer.chat_template")
            .unwrap_or_default()
            .to_string();
        Ok::<_, String>((m, template))
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| internal(format!("cannot read the file of '{}': {e}", info.id)))?;
    let recipe = info.recipe.as_deref();
    let template = recipe
        .and_then(|m| m.template.clone())
        .unwrap_or(file_template);
    let modelfile = match recipe {
        Some(m) => m.modelfile(info.file()),
        None => format!("# Served by Hearth\nFROM {}\n", info.path().display()),
    };
    let mut v = json!({
        "license": "",
        "modelfile": modelfile,
        "parameters": recipe.map(Manifest::parameters_text).unwrap_or_default(),
        "template": template,
        "details": details(&info),
        "model_info": model_info,
        "capabilities": info.capabilities,
        "modified_at": rfc3339(info.modified),
    });
    if let Some(s) = recipe.and_then(|m| m.system.as_ref()) {
        v["system"] = json!(s);
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(alias = "name")]
    model: String,
    from: Option<String>,
    system: Option<String>,
    template: Option<String>,
    parameters: Option<Map<String, Value>>,
    /// The older API's Modelfile text, instead of `from`, `system`, `template` and
    /// `parameters`.
    modelfile: Option<String>,
    stream: Option<bool>,
    /// `license`, `messages`, `files`, `adapters`, `quantize`, ...: refused by name.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /api/create`: a model made of a served model (`from`) and request defaults
/// (`parameters`, `system`, `template`), stored as `NAME.hearth.json` in the models
/// directory and served from now on. Creating a name again replaces its manifest; a name
/// that is a GGUF file is a 409.
pub async fn create(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: CreateRequest = parse_json(&bytes).map_err(ApiError::ollama)?;
    refuse(
        &req.rest,
        "/api/create",
        "model, from, system, template, parameters and stream",
    )?;
    let name = req
        .model
        .strip_suffix(":latest")
        .unwrap_or(&req.model)
        .to_string();
    modelfile::check_name(&name).map_err(|e| bad(e.0).param("model"))?;
    let mut mf = match &req.modelfile {
        Some(text) => {
            if req.from.is_some() {
                return Err(bad("give either modelfile or from, not both").param("from"));
            }
            Modelfile::parse(text).map_err(|e| bad(e.0).param("modelfile"))?
        }
        None => Modelfile::default(),
    };
    if req.from.is_some() {
        mf.from = req.from.clone();
    }
    if req.system.is_some() {
        mf.system = req.system.clone();
    }
    if req.template.is_some() {
        mf.template = req.template.clone();
    }
    for (k, v) in req.parameters.iter().flatten() {
        let v = modelfile::check_parameter(k, v).map_err(|e| bad(e.0).param("parameters"))?;
        mf.parameters.insert(k.clone(), v);
    }
    let Some(from) = mf.from.clone() else {
        return Err(bad("missing field `from`: name the model to build on").param("from"));
    };
    let Some(dir) = state.opts.models_dir.clone() else {
        return Err(bad(
            "this server has no models directory to create models in",
        ));
    };
    let base = state
        .info(&from)
        .map_err(|e| ApiError::ollama(e.param("from")))?;
    // A name in use: a created model is replaced, anything else is kept.
    let existing = state.info(&name).ok();
    if let Some(e) = &existing {
        if e.recipe.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("model '{name}' already exists and is a GGUF file; pick another name"),
            )
            .param("model")
            .ollama());
        }
    }
    let path = dir.join(format!("{name}{MANIFEST_SUFFIX}"));
    let (b, d) = (base.clone(), dir.clone());
    let manifest =
        tokio::task::spawn_blocking(move || Manifest::new(&mf, b.path(), b.recipe.as_deref(), &d))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| bad(e.0))?;
    if existing.is_some() {
        state.remove(&name).map_err(ApiError::ollama)?;
    }
    let written = manifest.write(&path);
    // Served again (or for the first time) with what is on disk.
    let added = state.add(&name, path);
    written.map_err(|e| internal(e.0))?;
    added.map_err(ApiError::ollama)?;
    let lines = [
        json!({"status": format!("using {}", base.path().display())}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    Ok(progress_reply(&lines, req.stream.unwrap_or(true)))
}

/// Status lines as Ollama sends them: NDJSON when streaming, else the last one.
fn progress_reply(lines: &[Value], stream: bool) -> Response {
    if !stream {
        return Json(lines.last().cloned().unwrap_or(json!({}))).into_response();
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    ([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response()
}

#[derive(Deserialize)]
struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    insecure: bool,
    stream: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// `POST /api/pull`: downloads a model (a known name, `hf.co/OWNER/REPO[:QUANT]` or a
/// GGUF's URL) with the binary's puller into the models directory, streaming Ollama's
/// progress lines, and serves it at once: under its file's name (what `hearth serve`
/// calls it after a restart) and under the name it was pulled as.
pub async fn pull(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, &state.opts)
        .await
        .map_err(ApiError::ollama)?;
    let req: PullRequest = parse_json(&bytes).map_err(ApiError::ollama)?;
    refuse(&req.rest, "/api/pull", "model, insecure and stream")?;
    if req.insecure {
        return Err(bad(
            "insecure: true is not supported: Hearth always verifies TLS certificates (http:// addresses need no such flag)",
        )
        .param("insecure"));
    }
    let Some(puller) = state.opts.puller.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server cannot pull models: it was started without a downloader (`hearth serve` has one; pull with `hearth pull` instead)",
        )
        .ollama());
    };
    let name = req.model.clone();
    let (tx, mut rx) = unbounded_channel::<Value>();
    let events = tx.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _ = events.send(json!({"status": "pulling manifest"}));
        let sink = events.clone();
        (puller.0)(
            &name,
            Arc::new(move |ev| {
                let _ = sink.send(event_json(ev));
            }),
        )
    });
    let st = state.clone();
    let requested = req.model.clone();
    // The pull's end: `Ok(final line)` or `Err(status, message)`.
    let finish = async move {
        let result = job
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let pulled = result.map_err(|e| {
            let status = if e.not_found {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, e.message)
        })?;
        if !st.serves(&pulled.name) {
            st.add(&pulled.name, pulled.path.clone())
                .map_err(|e| (e.status, e.message))?;
        }
        st.add_alias(&requested, &pulled.name);
        tracing::info!(model = %pulled.name, path = %pulled.path.display(), "pulled");
        Ok::<_, (StatusCode, String)>(json!({"status": "success"}))
    };
    drop(tx);
    if !req.stream.unwrap_or(true) {
        return match finish.await {
            Ok(v) => Ok(Json(v).into_response()),
            Err((status, msg)) => Err(ApiError::new(status, msg).ollama()),
        };
    }
    let (btx, brx) = unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let line = |v: &Value| Bytes::from(format!("{v}\n"));
        let forward = async {
            while let Some(v) = rx.recv().await {
                let _ = btx.send(line(&v));
            }
        };
        let (_, end) = tokio::join!(forward, finish);
        let last = match end {
            Ok(v) => v,
            Err((_, msg)) => json!({"error": msg}),
        };
        let _ = btx.send(line(&last));
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        channel_body(brx),
    )
        .into_response())
}

fn event_json(ev: PullEvent) -> Value {
    match ev {
        PullEvent::Downloading {
            file,
            digest,
            total,
            completed,
        } => json!({"status": format!("downloading {file}"), "digest": digest,
                    "total": total, "completed": completed}),
        PullEvent::Verifying => json!({"status": "verifying sha256 digest"}),
        PullEvent::Status(s) => json!({"status": s}),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::state::{PullFailure, PullSink, Pulled, Puller, ServerOptions};

    fn opts(puller: Option<Puller>) -> ServerOptions {
        ServerOptions {
            model_path: PathBuf::from("/nonexistent/default.gguf"),
            model_id: "default".into(),
            other_models: Vec::new(),
            keep_alive: None,
            max_loaded: 1,
            models_dir: None,
            memory_budget: None,
            host: "127.0.0.1".into(),
            port: 0,
            n_threads: 1,
            max_seqs: 1,
            n_ctx: 0,
            n_blocks: 0,
            kv_memory_mib: 1,
            kv_type: hearth_model::KvType::F16,
            token_budget: 1,
            max_waiting: 1,
            api_key: None,
            max_body_bytes: 1 << 20,
            cors_origins: Vec::new(),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_connections: 1,
            prefix_caching: false,
            spec: None,
            draft_model_path: None,
            pooling: None,
            puller,
        }
    }

    /// A puller that reports a two-step download of `fake.gguf`, or fails for `missing`.
    fn fake_puller() -> Puller {
        Puller(Arc::new(|name: &str, sink: PullSink| {
            if name == "missing" {
                return Err(PullFailure {
                    not_found: true,
                    message: "hf.co/x/missing was not found (404 Not Found)".into(),
                });
            }
            for completed in [5, 10] {
                sink(PullEvent::Downloading {
                    file: "fake.gguf".into(),
                    digest: "sha256:ab".into(),
                    total: 10,
                    completed,
                });
            }
            sink(PullEvent::Verifying);
            Ok(Pulled {
                name: "fake".into(),
                path: PathBuf::from("/nonexistent/fake.gguf"),
            })
        }))
    }

    async fn call(
        state: &Arc<AppState>,
        body: Value,
    ) -> Result<(StatusCode, Vec<Value>), ApiError> {
        let resp = pull(State(state.clone()), Body::from(body.to_string())).await?;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let lines = std::str::from_utf8(&bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Ok((status, lines))
    }

    #[tokio::test]
    async fn pull_streams_ollama_progress_and_serves_the_model() {
        let state = Arc::new(AppState::new(opts(Some(fake_puller()))));
        let (status, lines) = call(&state, json!({"model": "hf.co/x/fake:Q4_0"}))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            lines,
            vec![
                json!({"status": "pulling manifest"}),
                json!({"status": "downloading fake.gguf", "digest": "sha256:ab", "total": 10, "completed": 5}),
                json!({"status": "downloading fake.gguf", "digest": "sha256:ab", "total": 10, "completed": 10}),
                json!({"status": "verifying sha256 digest"}),
                json!({"status": "success"}),
            ]
        );
        // Served by its name and by the name it was pulled as.
        assert!(state.serves("fake") && state.serves("hf.co/x/fake:Q4_0"));
        let (_, lines) = call(&state, json!({"model": "x", "stream": false}))
            .await
            .unwrap();
        assert_eq!(lines, vec![json!({"status": "success"})]);
    }

    #[tokio::test]
    async fn pull_failures_and_unknown_fields_are_errors_naming_them() {
        let state = Arc::new(AppState::new(opts(Some(fake_puller()))));
        let (status, lines) = call(&state, json!({"model": "missing"})).await.unwrap();
        assert_eq!(status, StatusCode::OK); // the stream had begun
        assert_eq!(
            lines.last().unwrap()["error"],
            "hf.co/x/missing was not found (404 Not Found)"
        );
        let e = call(&state, json!({"model": "missing", "stream": false}))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = call(&state, json!({"model": "x", "insecure": true}))
            .await
            .unwrap_err();
        assert!(e.status == StatusCode::BAD_REQUEST && e.message.contains("insecure"));
        let e = call(&state, json!({"model": "x", "username": "u"}))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("username is not supported"),
            "{}",
            e.message
        );
        let bare = Arc::new(AppState::new(opts(None)));
        let e = call(&bare, json!({"model": "x"})).await.unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert!(e.message.contains("cannot pull"), "{}", e.message);
    }

    #[tokio::test]
    async fn create_refuses_the_fields_it_does_not_implement() {
        let state = Arc::new(AppState::new(opts(None)));
        for (field, value) in [
            ("license", json!("MIT")),
            ("messages", json!([])),
            ("files", json!({})),
            ("adapters", json!({})),
            ("quantize", json!("q4_0")),
        ] {
            let mut body = json!({"model": "x", "from": "default"});
            body[field] = value;
            let e = create(State(state.clone()), Body::from(body.to_string()))
                .await
                .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                e.message.starts_with(&format!("{field} is not supported")),
                "{}",
                e.message
            );
        }
        let body = json!({"model": "x", "from": "default", "parameters": {"mirostat": 1}});
        let e = create(State(state.clone()), Body::from(body.to_string()))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("unknown parameter 'mirostat'"),
            "{}",
            e.message
        );
    }
}
