//! From API requests to engine requests and back: the shared plumbing of the OpenAI and
//! Ollama handlers (prompt building, limits, fan-in of `n` choices, collection, and
//! streaming bodies).

use std::convert::Infallible;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use hearth_engine::{Constraint, EngineError, Event, Grammar, Request, Summary, TokenLogprob};
use hearth_model::ChatMessage;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::reasoning;
use crate::state::Ready;

/// A chat's prompt.
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    /// For a model that thinks: `Some(in_prompt)`, where `in_prompt` says the template
    /// opened the thinking block, so the output starts inside it.
    pub thinking: Option<bool>,
}

/// Runs `f` on the ready model off the async threads: template rendering, tokenization
/// and grammar compilation are CPU work that must not stall other requests (`/health`).
pub async fn blocking<T: Send + 'static>(
    ready: &Arc<Ready>,
    f: impl FnOnce(&Ready) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let r = ready.clone();
    tokio::task::spawn_blocking(move || f(&r))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// How a chat prompt ends: vLLM's and llama-server's `add_generation_prompt` and
/// `continue_final_message`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ending {
    /// A final assistant message is continued; otherwise the assistant's turn is opened.
    #[default]
    Auto,
    /// The assistant's turn is opened, after a final assistant message too.
    NewTurn,
    /// The final message, which must be the assistant's, is continued.
    Continue,
    /// The conversation as it is, with no turn opened.
    Raw,
}

impl Ending {
    /// From the two request fields; both true contradict each other.
    pub fn from_fields(
        add_generation_prompt: Option<bool>,
        continue_final_message: Option<bool>,
    ) -> Result<Ending, ApiError> {
        Ok(match (add_generation_prompt, continue_final_message) {
            (Some(true), Some(true)) => {
                return Err(ApiError::bad_request(
                    "add_generation_prompt and continue_final_message cannot both be true",
                )
                .param("continue_final_message"))
            }
            (_, Some(true)) => Ending::Continue,
            (Some(false), _) => Ending::Raw,
            (Some(true), _) | (None, Some(false)) => Ending::NewTurn,
            (None, None) => Ending::Auto,
        })
    }
}

/// A chat's prompt: the model's template applied to `messages` (ending as `ending` says,
/// `tools` in the template's variable and `kwargs` as further variables), or the plain
/// concatenation for a model without a template.
pub async fn chat_prompt(
    ready: &Arc<Ready>,
    messages: Vec<ChatMessage>,
    tools: Option<Value>,
    kwargs: serde_json::Map<String, Value>,
    ending: Ending,
) -> Result<ChatPrompt, ApiError> {
    blocking(ready, move |ready| {
        let model = &ready.model;
        let template = model.chat_template.as_ref();
        // A continued final assistant message is a prefill: its text opens the answer,
        // which the model continues (by default, as llama.cpp and Ollama do).
        let last_is_answer = matches!(messages.split_last(),
            Some((last, rest)) if last.role == "assistant" && last.tool_calls.is_empty() && !rest.is_empty());
        if ending == Ending::Continue && !last_is_answer {
            return Err(ApiError::bad_request(
                "continue_final_message needs a final assistant message (without tool calls) \
                 after at least one other message",
            )
            .param("continue_final_message"));
        }
        let (history, prefill) = match (ending, messages.split_last()) {
            (Ending::Auto | Ending::Continue, Some((last, rest))) if last_is_answer => {
                (rest, last.content.as_str())
            }
            _ => (&messages[..], ""),
        };
        let open_turn = ending != Ending::Raw;
        let text = match template {
            Some(t) => {
                t.render_with(history, open_turn, tools.as_ref(), Some(&kwargs))
                    .map_err(|e| {
                        ApiError::bad_request(format!("cannot apply the chat template: {e}"))
                    })?
                    + prefill
            }
            None => {
                let opening = if open_turn { "assistant: " } else { "" };
                history
                    .iter()
                    .map(|m| format!("{}: {}\n", m.role, m.content))
                    .collect::<String>()
                    + opening
                    + prefill
            }
        };
        let in_prompt = text.trim_end().ends_with(reasoning::OPEN);
        let thinking = (reasoning::supported(template)
            && (in_prompt || !reasoning::disabled(&kwargs)))
        .then_some(in_prompt);
        Ok(ChatPrompt {
            ids: model.tokenizer.encode(&text, true, true),
            thinking,
        })
    })
    .await
}

/// Compiles an output grammar off the async threads (a first compile builds the
/// vocabulary's token trie); a grammar the engine refuses is a 400 naming `param`.
pub async fn compile(
    ready: &Arc<Ready>,
    grammar: Grammar,
    param: &'static str,
) -> Result<Constraint, ApiError> {
    blocking(ready, move |ready| {
        ready
            .engine
            .compile(&grammar)
            .map_err(|e| ApiError::bad_request(format!("invalid {param}: {e}")).param(param))
    })
    .await
}

/// The output grammar a request asks for, from whichever one of its fields names one:
/// `(field, grammar)`. More than one is an error.
pub fn one_grammar(
    fields: Vec<(&'static str, Option<Grammar>)>,
) -> Result<Option<(&'static str, Grammar)>, ApiError> {
    let mut given = fields.into_iter().filter_map(|(n, g)| g.map(|g| (n, g)));
    let first = given.next();
    if let (Some((a, _)), Some((b, _))) = (&first, given.next()) {
        return Err(ApiError::bad_request(format!(
            "{a} and {b} both constrain the output; give one"
        ))
        .param(b));
    }
    Ok(first)
}

/// Tokens of a raw text prompt (special tokens in the text are honoured), off the async
/// threads.
pub async fn text_prompt(ready: &Arc<Ready>, text: String) -> Result<Vec<u32>, ApiError> {
    blocking(ready, move |ready| {
        Ok(ready.model.tokenizer.encode(&text, true, true))
    })
    .await
}

/// Checks the prompt against the context and resolves `max_tokens` (None = the rest of
/// the context). `n_ctx` is the request's context (at most the server's); `param` and
/// `prompt_param` are the request fields named in errors.
pub fn resolve_max_tokens(
    prompt_len: usize,
    max_tokens: Option<i64>,
    n_ctx: usize,
    param: &'static str,
    prompt_param: &'static str,
) -> Result<usize, ApiError> {
    if prompt_len == 0 {
        return Err(ApiError::from(EngineError::EmptyPrompt).param(prompt_param));
    }
    if prompt_len >= n_ctx {
        return Err(ApiError::from(EngineError::PromptTooLong {
            prompt: prompt_len,
            n_ctx,
        })
        .param(prompt_param));
    }
    let room = n_ctx - prompt_len;
    match max_tokens {
        None => Ok(room),
        Some(m) if m < 1 => Err(ApiError::bad_request(format!("{param} must be at least 1 (got {m})")).param(param)),
        Some(m) if m as u64 > room as u64 => Err(ApiError::bad_request(format!(
            "{param} is {m}, but the context holds {n_ctx} tokens and the prompt takes {prompt_len}: at most {room} can be generated"
        ))
        .param(param)),
        Some(m) => Ok(m as usize),
    }
}

/// Submits one request per choice (seeds offset per choice so that sampled choices
/// differ) and merges their events, tagged with the choice index. Dropping the receiver
/// cancels them all.
pub fn submit(
    ready: &Ready,
    req: Request,
    n: usize,
) -> Result<UnboundedReceiver<(usize, Event)>, ApiError> {
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut r = req.clone();
        if let Some(seed) = r.sampling.seed.as_mut() {
            *seed = seed.wrapping_add(i as u64);
        }
        streams.push(ready.engine.submit(r)?);
    }
    let (tx, rx) = unbounded_channel();
    for (i, mut s) in streams.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = s.recv().await {
                if tx.send((i, ev)).is_err() {
                    return; // the client went away: dropping `s` cancels the sequence
                }
            }
        });
    }
    Ok(rx)
}

/// One finished choice.
#[derive(Debug, Default)]
pub struct Choice {
    pub text: String,
    /// Per generated token: its id, the text it released, its log-probabilities.
    pub tokens: Vec<(u32, String, Option<TokenLogprob>)>,
    pub summary: Option<Summary>,
}

/// Waits for every choice to finish.
pub async fn collect(
    mut rx: UnboundedReceiver<(usize, Event)>,
    n: usize,
) -> Result<Vec<Choice>, ApiError> {
    let mut out: Vec<Choice> = (0..n).map(|_| Choice::default()).collect();
    let mut done = 0;
    while done < n {
        let Some((i, ev)) = rx.recv().await else {
            return Err(EngineError::Stopped.into());
        };
        let c = &mut out[i];
        match ev {
            Event::Token { id, text, logprob } => {
                c.text.push_str(&text);
                c.tokens.push((id, text, logprob));
            }
            Event::Done { text, summary } => {
                c.text.push_str(&text);
                c.summary = Some(summary);
                done += 1;
            }
            Event::Error(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// A streaming response body fed by a channel of already formatted chunks.
pub fn channel_body(rx: UnboundedReceiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

/// A server-sent-events response fed by a channel of already formatted events.
pub fn sse_body(rx: UnboundedReceiver<Bytes>) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        channel_body(rx),
    )
        .into_response()
}

/// The printable piece of a token, for logprob listings.
pub fn token_piece(ready: &Ready, id: u32) -> (String, Vec<u8>) {
    let bytes = ready.model.tokenizer.token_to_piece(id, true).to_vec();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// Logs a finished generation (one line per choice).
pub fn log_summary(route: &str, id: &str, s: &Summary) {
    let t = &s.timings;
    tracing::info!(
        route,
        id,
        prompt_tokens = s.prompt_tokens,
        completion_tokens = s.completion_tokens,
        finish = s.finish_reason.as_str(),
        queue_ms = s.queue_duration.as_secs_f64() * 1e3,
        ttft_ms = t.time_to_first_token.as_secs_f64() * 1e3,
        gen_tps = t.eval_tokens_per_second(),
        "generation finished"
    );
}
