//! `cuma-serve` (feature `server`): an OpenAI-compatible HTTP server over one bundle, on axum and
//! tokio. Requests with different profiles share one continuously batched decode
//! ([`cuma_model::serve::batching`]) run by the [`scheduler`] thread, which owns the session.
//!
//! Endpoints:
//! - `POST /v1/chat/completions`: OpenAI's chat completions (`messages`, `max_tokens` /
//!   `max_completion_tokens`, `temperature`, `top_p`, `seed`, `stop`, `n` = 1, `stream` with
//!   `stream_options.include_usage`), plus `profile` (an object of attributes) or `profile_text`
//!   (`key=value,...`), and `cuma: {"trace_routing": true}` for the routing trace in the response;
//! - `POST /v1/choice`: `profile` or `profiles` (many: survey simulation), `question`, `options` ->
//!   one answer distribution per profile;
//! - `GET /v1/models`, `GET /health` (503 until the bundle is loaded), `GET /metrics`
//!   (Prometheus text).
//!
//! Every refusal is an OpenAI-style error body with a 4xx status ([`error::ApiError`]); a full
//! queue answers 429 with `Retry-After`. Unknown profile attributes are dropped with a warning in
//! the response (`cuma.warnings`, and the `x-cuma-warning` header), or refused with
//! `strict_profiles`.

pub mod api;
pub mod cli;
pub mod error;
pub mod metrics;
pub mod scheduler;

use crate::{Bundle, Session, SessionOptions};
use api::{Limits, ResponseMeta};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use metrics::Metrics;
use scheduler::{ChatEvent, ChoiceAnswer, Job, SchedulerOptions};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Everything the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bundle: PathBuf,
    pub session: SessionOptions,
    pub scheduler: SchedulerOptions,
    pub limits: Limits,
    /// Most requests waiting for a batch slot before new ones get 429.
    pub max_queue: usize,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// The model id `/v1/models` lists and responses carry.
    pub model_name: String,
}

/// Shared by every handler.
struct AppState {
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    options: ServerOptions,
    requests: AtomicU64,
}

impl AppState {
    /// Hands a job to the scheduler, if the server is ready and the queue has room.
    fn submit(&self, job: Job) -> Result<(), ApiError> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the bundle is still loading"));
        }
        let depth = self.metrics.queue_depth.fetch_add(1, Ordering::AcqRel);
        if depth >= self.options.max_queue as u64 {
            self.metrics.queue_depth.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::queue_full(self.options.max_queue));
        }
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.as_ref().map(|j| j.send(job).is_ok()))
            .unwrap_or(false);
        if !sent {
            self.metrics.queue_depth.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    fn meta(&self) -> ResponseMeta {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        ResponseMeta {
            id: format!("chatcmpl-{n:016x}"),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            model: self.options.model_name.clone(),
        }
    }
}

type Shared = Arc<AppState>;

/// A running server: where it listens, and how to stop it.
pub struct ServerHandle {
    pub addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    metrics: Arc<Metrics>,
}

impl ServerHandle {
    /// Stops accepting, drains in-flight requests, and waits for the server to end.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }

    /// The server's metrics (the same numbers `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Loads the bundle and serves it on `addr` from a thread of its own (tests and embedders);
/// returns once the bundle is loaded and the server is ready.
pub fn spawn(options: ServerOptions, addr: std::net::SocketAddr) -> Result<ServerHandle, crate::RuntimeError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|reason| crate::RuntimeError::Io {
        path: addr.to_string(),
        reason,
    })?;
    let addr = listener.local_addr().map_err(|reason| crate::RuntimeError::Io {
        path: addr.to_string(),
        reason,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|reason| crate::RuntimeError::Io {
            path: addr.to_string(),
            reason,
        })?;
    let (shutdown, stop) = oneshot::channel::<()>();
    let (loaded, is_loaded) = std_mpsc::channel();
    let metrics = Arc::new(Metrics::default());
    let thread_metrics = metrics.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            serve(listener, options, thread_metrics, Some(loaded), async {
                let _ = stop.await;
            })
            .await
        })
    });
    match is_loaded.recv() {
        Ok(Ok(())) => Ok(ServerHandle {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            metrics,
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let outcome = thread.join();
            Err(crate::RuntimeError::Unsupported(format!(
                "the server stopped while loading: {:?}",
                outcome.map(|r| r.err())
            )))
        }
    }
}

/// Serves `options.bundle` on `listener` until `shutdown` resolves, then drains in-flight
/// requests. The bundle loads after the listener is up (`/health` says 503 meanwhile); a bundle
/// that fails to load ends the server with the error (and reports it on `loaded`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: ServerOptions,
    metrics: Arc<Metrics>,
    loaded: Option<std_mpsc::Sender<Result<(), crate::RuntimeError>>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (jobs, receiver) = std_mpsc::channel();
    let state = Arc::new(AppState {
        jobs: Mutex::new(Some(jobs)),
        ready: AtomicBool::new(false),
        metrics: metrics.clone(),
        options: options.clone(),
        requests: AtomicU64::new(0),
    });
    let app = router(state.clone(), options.max_body_bytes);
    let (load_done, load_result) = oneshot::channel();
    let scheduler = std::thread::spawn(move || {
        let session = Bundle::open(&options.bundle).and_then(|b| Session::new(b, options.session));
        match session {
            Ok(session) => {
                let _ = load_done.send(Ok(()));
                scheduler::run(session, receiver, options.scheduler, metrics);
            }
            Err(e) => {
                let _ = load_done.send(Err(e));
            }
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let ready_state = state.clone();
    let wait_loaded = async move {
        match load_result.await {
            Ok(Ok(())) => {
                ready_state.ready.store(true, Ordering::Release);
                if let Some(l) = loaded {
                    let _ = l.send(Ok(()));
                }
                std::future::pending::<std::io::Result<()>>().await
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                if let Some(l) = loaded {
                    let _ = l.send(Err(e));
                }
                Err(std::io::Error::other(message))
            }
            Err(_) => Err(std::io::Error::other("the scheduler stopped while loading")),
        }
    };
    let outcome = tokio::select! {
        r = server => r,
        r = wait_loaded => r,
    };
    // No new jobs: the scheduler finishes the batch and ends.
    if let Ok(mut jobs) = state.jobs.lock() {
        jobs.take();
    }
    drop(state);
    let _ = tokio::task::spawn_blocking(move || scheduler.join()).await;
    outcome
}

fn router(state: Shared, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/choice", post(choice))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(|uri: Uri| async move { ApiError::not_found(uri.path()) })
        .method_not_allowed_fallback(|| async {
            ApiError::invalid("method not allowed on this endpoint").status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The body bytes, or the error body for a body too large or unreadable.
fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|r| {
        let status = r.status();
        let e = ApiError::invalid(format!("cannot read the body: {}", r.body_text())).status(status);
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.code("body_too_large")
        } else {
            e
        }
    })
}

fn warning_header(response: &mut Response, warnings: &[String]) {
    if let Some(w) = warnings.first() {
        let text: String = w.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect();
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().insert("x-cuma-warning", v);
        }
    }
}

async fn chat(State(state): State<Shared>, bytes: Result<Bytes, BytesRejection>) -> Response {
    let outcome = chat_inner(&state, bytes).await;
    let response = outcome.unwrap_or_else(IntoResponse::into_response);
    state.metrics.request("chat", response.status().as_u16());
    response
}

async fn chat_inner(state: &Shared, bytes: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let bytes = body(bytes)?;
    let meta = state.meta();
    let seed = state.requests.load(Ordering::Relaxed);
    let request = api::chat_request(&bytes, &state.options.limits, seed)?;
    let (stream, include_usage) = (request.stream, request.include_usage);
    let (events, mut heard) = mpsc::unbounded_channel();
    state.submit(Job::Chat {
        request: Box::new(request),
        events,
        arrived: Instant::now(),
    })?;
    let warnings = match heard.recv().await {
        Some(ChatEvent::Started { warnings, .. }) => warnings,
        Some(ChatEvent::Failed(e)) => return Err(e),
        _ => return Err(ApiError::internal("the scheduler dropped the request")),
    };
    if !stream {
        let mut generation = None;
        while let Some(event) = heard.recv().await {
            match event {
                ChatEvent::Done(g) => {
                    generation = Some(g);
                    break;
                }
                ChatEvent::Failed(e) => return Err(e),
                ChatEvent::Token(_) | ChatEvent::Started { .. } => {}
            }
        }
        let g = generation.ok_or_else(|| ApiError::internal("the scheduler dropped the request"))?;
        let mut response = Json(api::completion(&meta, &g, &warnings)).into_response();
        warning_header(&mut response, &warnings);
        return Ok(response);
    }
    // The stream: a role chunk, content chunks, a finish chunk (with the routing and warnings),
    // an optional usage chunk, then [DONE]. Dropping it (the client left) closes the channel,
    // which the scheduler notices at its next step.
    let first = api::chunk(&meta, json!({"role": "assistant", "content": ""}), None);
    let stream = chat_stream(meta, heard, include_usage, warnings.clone(), first);
    let mut response = Sse::new(stream).into_response();
    warning_header(&mut response, &warnings);
    Ok(response)
}

/// The SSE events of one streamed chat reply.
fn chat_stream(
    meta: ResponseMeta,
    heard: mpsc::UnboundedReceiver<ChatEvent>,
    include_usage: bool,
    warnings: Vec<String>,
    first: serde_json::Value,
) -> impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    enum Phase {
        First,
        Body,
        Ending(Vec<SseEvent>),
    }
    let data = |v: &serde_json::Value| SseEvent::default().data(v.to_string());
    // Shared, not copied, by the per-token futures.
    let (meta, warnings) = (Arc::new(meta), Arc::new(warnings));
    futures_util::stream::unfold((Phase::First, heard, first), move |(phase, mut heard, first)| {
        let meta = meta.clone();
        let warnings = warnings.clone();
        async move {
            match phase {
                Phase::First => {
                    let e = data(&first);
                    Some((Ok(e), (Phase::Body, heard, first)))
                }
                Phase::Body => match heard.recv().await {
                    Some(ChatEvent::Token(text)) => {
                        let e = data(&api::chunk(&meta, json!({"content": text}), None));
                        Some((Ok(e), (Phase::Body, heard, first)))
                    }
                    Some(ChatEvent::Done(g)) => {
                        let mut last = api::chunk(&meta, json!({}), Some(api::finish_reason(g.finish_reason)));
                        let full = api::completion(&meta, &g, &warnings);
                        if let Some(cuma) = full.get("cuma") {
                            last["cuma"] = cuma.clone();
                        }
                        let mut rest = Vec::new();
                        if include_usage {
                            rest.push(data(&api::usage_chunk(&meta, &g)));
                        }
                        rest.push(SseEvent::default().data("[DONE]"));
                        rest.reverse();
                        Some((Ok(data(&last)), (Phase::Ending(rest), heard, first)))
                    }
                    Some(ChatEvent::Failed(e)) => {
                        let rest = vec![SseEvent::default().data("[DONE]")];
                        Some((Ok(data(&e.body())), (Phase::Ending(rest), heard, first)))
                    }
                    Some(ChatEvent::Started { .. }) => {
                        Some((Ok(SseEvent::default().comment("")), (Phase::Body, heard, first)))
                    }
                    None => {
                        let e = ApiError::internal("the scheduler dropped the request");
                        let rest = vec![SseEvent::default().data("[DONE]")];
                        Some((Ok(data(&e.body())), (Phase::Ending(rest), heard, first)))
                    }
                },
                Phase::Ending(mut rest) => rest.pop().map(|e| (Ok(e), (Phase::Ending(rest), heard, first))),
            }
        }
    })
}

async fn choice(State(state): State<Shared>, bytes: Result<Bytes, BytesRejection>) -> Response {
    let outcome = choice_inner(&state, bytes).await;
    let response = outcome.unwrap_or_else(IntoResponse::into_response);
    state.metrics.request("choice", response.status().as_u16());
    response
}

async fn choice_inner(state: &Shared, bytes: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let bytes = body(bytes)?;
    let request = api::choice_request(&bytes, &state.options.limits)?;
    let (question, options) = (request.question.clone(), request.options.clone());
    let (reply, answer) = oneshot::channel();
    state.submit(Job::Choice { request, reply })?;
    let ChoiceAnswer { results, warnings } = answer
        .await
        .map_err(|_| ApiError::internal("the scheduler dropped the request"))??;
    let results: Vec<serde_json::Value> = results
        .into_iter()
        .map(|(profile, d)| {
            let mut r = json!({"profile": profile.attributes(), "probabilities": d.probabilities});
            if let Some(trace) = d.routing {
                r["routing"] = json!(trace);
            }
            r
        })
        .collect();
    let mut body = json!({
        "object": "choice.distributions",
        "model": state.options.model_name,
        "question": question,
        "options": options,
        "results": results,
    });
    if !warnings.is_empty() {
        body["cuma"] = json!({"warnings": warnings});
    }
    let mut response = Json(body).into_response();
    warning_header(&mut response, &warnings);
    Ok(response)
}

async fn models(State(state): State<Shared>) -> Response {
    state.metrics.request("models", 200);
    Json(json!({"object": "list", "data": [{
        "id": state.options.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "cuma",
    }]}))
    .into_response()
}

async fn health(State(state): State<Shared>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(json!({"status": "ok"})).into_response()
    } else {
        ApiError::unavailable("the bundle is still loading").into_response()
    }
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
