//! OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with the HTTP
//! status that says whose fault it was. Every refusal the server makes goes through [`ApiError`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, as a path (`messages[1].content`).
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, `queue_full`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: a request the server cannot serve as written.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    /// Names the field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// 404 for a path the server does not have.
    pub fn not_found(path: &str) -> Self {
        Self::invalid(format!("no such endpoint: {path}"))
            .status(StatusCode::NOT_FOUND)
            .code("unknown_url")
    }

    /// 429: the queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("the server's queue is full ({capacity} requests waiting); retry shortly"),
            kind: "rate_limit_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    /// 503: the bundle is still loading, or the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("unavailable"),
        }
    }

    /// 504: the request ran past its deadline.
    pub fn timeout(seconds: f64) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!("the request ran past the server's deadline of {seconds} s"),
            kind: "server_error",
            param: None,
            code: Some("timeout"),
        }
    }

    /// 500: the model failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }

    /// A runtime error about a request (bad input, profile, prompt length) or the model.
    pub fn from_runtime(e: &crate::RuntimeError) -> Self {
        use crate::RuntimeError as E;
        match e {
            E::Input(m) if m.contains("context") => Self::invalid(m.clone()).code("context_length_exceeded"),
            E::Input(m) => Self::invalid(m.clone()),
            E::Profile(m) => Self::invalid(format!("profile: {m}")).param("profile"),
            other => Self::internal(other.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
