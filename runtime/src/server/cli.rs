//! The `cuma-serve` command line: flags -> [`ServerOptions`], then serve until SIGTERM or Ctrl-C
//! (in-flight requests finish first).

use super::api::Limits;
use super::scheduler::SchedulerOptions;
use super::ServerOptions;
use crate::cli::EngineArgs;
use crate::SessionOptions;
use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Serve an exported cuma bundle over HTTP with OpenAI's chat-completions API (plus the user's
/// profile in the request body) and a survey endpoint, batching requests with different profiles
/// together.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Endpoints: POST /v1/chat/completions, POST /v1/choice, GET /v1/models, GET /health, GET /metrics.\n\
Example:\n  curl localhost:8080/v1/chat/completions -d '{\"messages\": [{\"role\": \"user\", \"content\": \"What matters in life?\"}], \
\"profile\": {\"country\": \"Thailand\"}, \"max_tokens\": 32}'"
)]
pub struct Args {
    /// The bundle directory written by `cuma export --onnx`.
    #[arg(long)]
    bundle: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most sequences decoded together.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_batch: u16,
    /// Most requests waiting for a slot; beyond it, 429 with Retry-After.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Largest max_tokens a request may ask for (and the default when it gives none).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens_cap: u32,
    /// Seconds a request may take from arrival to its last token (504 beyond).
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
    /// Most prompt tokens prefilled per step, so newcomers hold running replies back by at most
    /// this much.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    prefill_chunk: u32,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 2 << 20)]
    max_body_bytes: usize,
    /// Refuse profile attributes the bundle does not know (default: drop them with a warning).
    #[arg(long)]
    strict_profiles: bool,
    /// The model id responses carry (default: the bundle directory's name).
    #[arg(long)]
    model_name: Option<String>,
}

impl Args {
    /// The server configuration these flags describe.
    pub fn options(&self) -> Result<ServerOptions> {
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout > 0.0,
            "--timeout must be a positive number of seconds"
        );
        let model_name = self.model_name.clone().unwrap_or_else(|| {
            self.bundle
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "cuma".into())
        });
        Ok(ServerOptions {
            bundle: self.bundle.clone(),
            session: SessionOptions {
                engine: self.engine.options()?,
                strict_profiles: self.strict_profiles,
            },
            scheduler: SchedulerOptions {
                max_batch: usize::from(self.max_batch),
                prefill_chunk: self.prefill_chunk as usize,
                timeout: Duration::from_secs_f64(self.timeout),
            },
            limits: Limits {
                max_tokens_cap: self.max_tokens_cap as usize,
                max_profiles: 1024,
                max_options: 26,
            },
            max_queue: self.max_queue,
            max_body_bytes: self.max_body_bytes,
            model_name,
        })
    }
}

/// Serves until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> Result<()> {
    let options = args.options()?;
    let addr = format!("{}:{}", args.host, args.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "cuma-serve: loading {} on {}; listening on http://{addr}",
            options.bundle.display(),
            options.session.engine.backend
        );
        let metrics = std::sync::Arc::new(super::metrics::Metrics::default());
        let (loaded, is_loaded) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(Ok(())) = is_loaded.recv() {
                eprintln!("cuma-serve: ready");
            }
        });
        super::serve(listener, options, metrics, Some(loaded), shutdown_signal())
            .await
            .context("serving")?;
        eprintln!("cuma-serve: stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    eprintln!("cuma-serve: shutting down; finishing in-flight requests");
}
