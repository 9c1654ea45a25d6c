//! API errors: one type for every handler, rendered in the OpenAI shape
//! (`{"error": {"message", "type", "param", "code"}}`) or the Ollama shape
//! (`{"error": "..."}`) or Anthropic's (`{"type": "error", "error": {"type", "message"}}`)
//! depending on the route family.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_engine::EngineError;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Ollama,
    Anthropic,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// OpenAI's machine-readable code (`model_not_found`, `context_length_exceeded`).
    pub code: Option<&'static str>,
    pub dialect: Dialect,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            dialect: Dialect::OpenAi,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// Names `param` as the field at fault of a 400 that names none.
    pub fn param_if_unset(mut self, param: Option<&'static str>) -> ApiError {
        if self.status == StatusCode::BAD_REQUEST && self.param.is_none() {
            self.param = param.map(str::to_string);
        }
        self
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn ollama(mut self) -> ApiError {
        self.dialect = Dialect::Ollama;
        self
    }

    pub fn anthropic(mut self) -> ApiError {
        self.dialect = Dialect::Anthropic;
        self
    }

    pub fn unknown_model(name: &str, served: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("model '{name}' not found; this server serves '{served}'"),
        )
        .param("model")
        .code("model_not_found")
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "server_overloaded",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match &e {
            EngineError::Overloaded(_) | EngineError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let err = ApiError::new(status, e.to_string());
        match e {
            EngineError::PromptTooLong { .. } => err.code("context_length_exceeded"),
            _ => err,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }}),
            Dialect::Ollama => json!({"error": self.message}),
            Dialect::Anthropic => json!({"type": "error", "error": {
                "type": match self.status {
                    StatusCode::UNAUTHORIZED => "authentication_error",
                    StatusCode::NOT_FOUND => "not_found_error",
                    StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
                    StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
                    StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
                    s if s.is_server_error() => "api_error",
                    _ => "invalid_request_error",
                },
                "message": self.message,
            }}),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            // Overloaded or still loading: worth retrying soon.
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
