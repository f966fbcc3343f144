//! The `cuma-run` command line (the binary is a thin wrapper around [`run`]), as a module so
//! that tests and other tools can drive it with their own input and output streams.
//!
//!   cuma-run --bundle B --profile "country=Thailand,age=55-64" --prompt "What matters in life?"
//!   cuma-run --bundle B --profile "country=Germany" --question "Is divorce justifiable?" --option Yes --option No
//!   cuma-run --bundle B --jsonl < requests.jsonl > results.jsonl

use crate::generate::Timings;
use crate::{
    Backend, Bundle, Device, EngineOptions, GenerateOptions, GenerateRequest, Profile, QuantCompute, RoutingTrace,
    Session, SessionOptions,
};
use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use cuma_model::device::DeviceRequest;
use cuma_model::sampling::SamplingConfig;
use cuma_model::text::Message;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// ONNX Runtime (CPU, or CUDA with --device cuda).
    Ort,
    /// tract: pure Rust, CPU only.
    Tract,
}

/// Where a bundle runs: the flags `cuma-run` and `cuma-serve` share.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    #[arg(long, value_enum, default_value = "ort")]
    backend: BackendArg,
    /// cpu, cuda or cuda:N (CUDA needs --backend ort and a build with feature `cuda`); auto is
    /// the CPU.
    #[arg(long, default_value = "cpu")]
    device: DeviceRequest,
    /// Intra-op threads for ONNX Runtime, 1 to 1024 (default: its own choice).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=crate::engine::MAX_THREADS as i64))]
    threads: Option<u16>,
    /// ONNX Runtime, `--quant` bundles: quantize activations to int8 inside the fused 4-/8-bit
    /// products (faster at batch 1, less exact; the default keeps them float32, which
    /// reproduces the float bundle).
    #[arg(long)]
    int8_activations: bool,
}

impl EngineArgs {
    /// The engine these flags ask for; tract on CUDA is refused.
    pub fn options(&self) -> Result<EngineOptions> {
        let backend = match self.backend {
            BackendArg::Ort => Backend::Ort {
                device: device(self.device),
            },
            BackendArg::Tract if matches!(self.device, DeviceRequest::Cuda(_)) => bail!(
                "tract runs on the CPU only; use --backend ort for --device {}",
                self.device
            ),
            BackendArg::Tract => Backend::Tract,
        };
        if self.int8_activations && matches!(backend, Backend::Tract) {
            bail!("--int8-activations is an ONNX Runtime option (--backend ort)");
        }
        Ok(EngineOptions {
            backend,
            threads: self.threads.map(usize::from),
            quant_compute: if self.int8_activations {
                QuantCompute::Int8
            } else {
                QuantCompute::F32
            },
        })
    }
}

/// Serve an exported cuma bundle: answer a chat prompt or a multiple-choice question the way a
/// person with the given profile would, with the routing decisions on request.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "A request is one of --prompt, --question (with --option ...), or --jsonl. \
In --jsonl mode each stdin line is an object such as\n  {\"id\": 1, \"profile\": {\"country\": \"Chile\"}, \"prompt\": \"...\"}\n  \
{\"id\": 2, \"profile\": \"country=Japan\", \"question\": \"...\", \"options\": [\"Yes\", \"No\"]}\nand each stdout line is its result or its error; bad lines do not stop the batch."
)]
pub struct Args {
    /// The bundle directory written by `cuma export --onnx`.
    #[arg(long)]
    bundle: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// The profile as key=value pairs, e.g. "country=Thailand,age=55-64,religion=Buddhist".
    #[arg(long, conflicts_with = "profile_json")]
    profile: Option<String>,
    /// The profile as a JSON object, or @file holding one.
    #[arg(long)]
    profile_json: Option<String>,
    /// Refuse profile attributes the bundle does not know (default: warn and ignore them).
    #[arg(long)]
    strict: bool,
    /// A chat message to answer (the reply is streamed).
    #[arg(long, conflicts_with_all = ["question", "jsonl"])]
    prompt: Option<String>,
    /// A multiple-choice question (give its options with --option); prints the distribution.
    #[arg(long, requires = "option", conflicts_with = "jsonl")]
    question: Option<String>,
    /// One option of --question, in order (repeat).
    #[arg(long = "option")]
    option: Vec<String>,
    /// Batch mode: one JSON request per stdin line, one JSON result per stdout line.
    #[arg(long)]
    jsonl: bool,
    /// Most new tokens per reply.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the reply contains this text (repeat for several).
    #[arg(long)]
    stop: Vec<String>,
    /// Show which experts each token was routed to.
    #[arg(long)]
    trace_routing: bool,
    /// Print encoder, prefill and per-token decode times to stderr.
    #[arg(long)]
    timings: bool,
}

fn device(request: DeviceRequest) -> Device {
    match request {
        DeviceRequest::Auto | DeviceRequest::Cpu => Device::Cpu,
        DeviceRequest::Cuda(i) => Device::Cuda(i32::from(i)),
    }
}

fn profile(args: &Args) -> Result<Profile> {
    Ok(match (&args.profile, &args.profile_json) {
        (Some(text), _) => Profile::parse(text)?,
        (None, Some(json)) => {
            let text = match json.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("--profile-json {json}"))?,
                None => json.clone(),
            };
            Profile::from_json(&text)?
        }
        (None, None) => Profile::new(),
    })
}

fn generate_options(args: &Args) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampling: SamplingConfig {
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            seed: args.seed,
        },
        stop: args.stop.clone(),
        trace_routing: args.trace_routing,
        logprobs: false,
    }
}

/// A short human summary of a trace: each expert's share of all (router, token) selections.
fn routing_summary(trace: &RoutingTrace, experts: usize) -> String {
    let counts = trace.expert_counts(experts);
    let mut totals = vec![0usize; experts];
    for router in &counts {
        for (e, c) in router.iter().enumerate() {
            totals[e] += c;
        }
    }
    let all: usize = totals.iter().sum::<usize>().max(1);
    let shares: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(e, &c)| format!("e{e} {:.0}%", 100.0 * c as f64 / all as f64))
        .collect();
    format!(
        "routing over {} tokens x {} routers: {}",
        trace.tokens.len(),
        trace.routers.len(),
        shares.join(", ")
    )
}

fn print_timings(t: &Timings, prompt_tokens: Option<usize>, new_tokens: usize) {
    let prompt = prompt_tokens.map_or(String::new(), |n| format!(" ({n} prompt tokens)"));
    let decode = t.mean_decode_seconds();
    if new_tokens == 0 {
        eprintln!(
            "timings: encoder {:.1} ms, prefill {:.1} ms{prompt}",
            1e3 * t.encoder_seconds,
            1e3 * t.prefill_seconds
        );
        return;
    }
    eprintln!(
        "timings: encoder {:.1} ms, prefill {:.1} ms{prompt}, decode {:.1} ms/token ({:.1} tokens/s) over {new_tokens} tokens",
        1e3 * t.encoder_seconds,
        1e3 * t.prefill_seconds,
        1e3 * decode,
        if decode > 0.0 { 1.0 / decode } else { 0.0 }
    );
}

fn flush_warnings(session: &mut Session) {
    for w in session.take_warnings() {
        eprintln!("warning: {w}");
    }
}

fn run_prompt(session: &mut Session, args: &Args, prompt: &str, out: &mut dyn Write) -> Result<()> {
    let request = GenerateRequest {
        profile: profile(args)?,
        messages: vec![Message::new("user", prompt)],
    };
    let replies = session.generate(&[request], &generate_options(args), |t| {
        let _ = out.write_all(t.text.as_bytes());
        let _ = out.flush();
    })?;
    writeln!(out)?;
    flush_warnings(session);
    let reply = &replies[0];
    if let Some(trace) = &reply.routing {
        eprintln!(
            "{}",
            routing_summary(
                trace,
                session.bundle().manifest.adapter.as_ref().map_or(0, |a| a.experts)
            )
        );
    }
    if args.timings {
        print_timings(&reply.timings, Some(reply.prompt_tokens), reply.token_ids.len());
    }
    Ok(())
}

fn run_question(session: &mut Session, args: &Args, question: &str, out: &mut dyn Write) -> Result<()> {
    let answer = session.choice_distribution(&profile(args)?, question, &args.option, args.trace_routing)?;
    flush_warnings(session);
    for (i, (opt, p)) in args.option.iter().zip(&answer.probabilities).enumerate() {
        let bar = "#".repeat((p * 40.0).round() as usize);
        writeln!(out, "{}. {opt:<32} {p:.3} {bar}", cuma_model::text::choice::letter(i))?;
    }
    if let Some(trace) = &answer.routing {
        eprintln!(
            "{}",
            routing_summary(
                trace,
                session.bundle().manifest.adapter.as_ref().map_or(0, |a| a.experts)
            )
        );
    }
    if args.timings {
        let t = Timings {
            encoder_seconds: answer.encoder_seconds,
            prefill_seconds: answer.prefill_seconds,
            decode_seconds: Vec::new(),
        };
        print_timings(&t, None, 0);
    }
    Ok(())
}

/// One JSONL request -> its result object.
fn serve_line(session: &mut Session, args: &Args, line: &str) -> Result<serde_json::Value> {
    let req: serde_json::Value = serde_json::from_str(line).context("not a JSON object")?;
    let profile = match req.get("profile") {
        None | Some(serde_json::Value::Null) => Profile::new(),
        Some(serde_json::Value::String(text)) => Profile::parse(text)?,
        Some(v) => Profile::from_json_value(v)?,
    };
    let mut result = serde_json::json!({});
    if let Some(question) = req.get("question").and_then(|q| q.as_str()) {
        let options: Vec<String> = match req.get("options") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|o| o.as_str().map(str::to_string).context("options must be strings"))
                .collect::<Result<_>>()?,
            _ => bail!("a question needs \"options\": [..]"),
        };
        let answer = session.choice_distribution(&profile, question, &options, args.trace_routing)?;
        result["probabilities"] = serde_json::json!(answer.probabilities);
        if let Some(trace) = answer.routing {
            result["routing"] = serde_json::to_value(trace)?;
        }
    } else {
        let messages: Vec<Message> = match (req.get("prompt").and_then(|p| p.as_str()), req.get("messages")) {
            (Some(p), _) => vec![Message::new("user", p)],
            (None, Some(m)) => {
                serde_json::from_value(m.clone()).context("\"messages\" must be [{\"role\", \"content\"}, ...]")?
            }
            (None, None) => bail!("a request needs \"prompt\", \"messages\" or \"question\""),
        };
        let mut options = generate_options(args);
        match req.get("max_tokens") {
            None | Some(serde_json::Value::Null) => {}
            Some(v) => {
                options.max_new_tokens = v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .with_context(|| format!("\"max_tokens\" must be a whole number >= 0, got {v}"))?
            }
        }
        let reply = session
            .generate(&[GenerateRequest { profile, messages }], &options, |_| {})?
            .remove(0);
        result = serde_json::to_value(&reply)?;
    }
    let warnings = session.take_warnings();
    if !warnings.is_empty() {
        result["warnings"] = serde_json::json!(warnings);
    }
    Ok(result)
}

fn run_jsonl(session: &mut Session, args: &Args, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    for (n, raw) in input.split(b'\n').enumerate() {
        let raw = raw.context("reading stdin")?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let id = serde_json::Value::from(n + 1);
        let line = match String::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"line": id, "error": format!("invalid UTF-8: {e}")})
                )?;
                continue;
            }
        };
        let request_id = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("id").cloned());
        let mut result = match serve_line(session, args, &line) {
            Ok(r) => r,
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        result["line"] = id;
        if let Some(rid) = request_id {
            result["id"] = rid;
        }
        writeln!(out, "{result}")?;
        out.flush()?;
    }
    Ok(())
}

/// Runs the command line `args` with `input` as stdin and `out` as stdout (messages, warnings
/// and timings go to stderr).
pub fn run(args: Args, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<()> {
    if args.prompt.is_none() && args.question.is_none() && !args.jsonl {
        bail!("nothing to do: give --prompt, --question with --option, or --jsonl (see --help)");
    }
    let engine = args.engine.options()?;
    let backend = engine.backend;
    let bundle = Bundle::open(&args.bundle).with_context(|| format!("opening bundle {}", args.bundle.display()))?;
    let options = SessionOptions {
        engine,
        strict_profiles: args.strict,
    };
    let mut session =
        Session::new(bundle, options).with_context(|| format!("loading {} on {backend}", args.bundle.display()))?;
    if args.jsonl {
        run_jsonl(&mut session, &args, input, out)
    } else if let Some(q) = &args.question {
        run_question(&mut session, &args, q, out)
    } else if let Some(p) = &args.prompt {
        run_prompt(&mut session, &args, p, out)
    } else {
        Ok(())
    }
}
