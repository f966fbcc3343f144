//! `cuma-serve` against real clients on a tiny CuMA bundle (loopback only): replies equal the
//! library's for the same request served alone, streaming, many profiles per survey request,
//! a bounded load test with disconnects, and hostile requests that must each get a 4xx error
//! body while the server keeps serving. The `openai` Python client test is at the end.

mod common;

use common::http::{post_json, request, send, Response};
use common::{arg as s, scratch, small_survey, tiny, train_and_export, Scratch};
use cuma_runtime::model::text::Message;
use cuma_runtime::server::api::Limits;
use cuma_runtime::server::scheduler::SchedulerOptions;
use cuma_runtime::server::{spawn, ServerHandle, ServerOptions};
use cuma_runtime::{
    Backend, Bundle, EngineOptions, GenerateOptions, GenerateRequest, Profile, Session, SessionOptions,
};
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const BACKEND: Backend = Backend::Tract;

/// A tiny CuMA bundle (Llama + BERT encoder, two steps of training), made once per test binary.
fn bundle() -> &'static PathBuf {
    static BUNDLE: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    &BUNDLE
        .get_or_init(|| {
            let dir = scratch("serve");
            let items = small_survey(&dir, 2);
            let bundle = train_and_export(
                &items,
                &dir.join("run"),
                &[
                    "--model",
                    &s(&tiny("llama")),
                    "--encoder",
                    &s(&tiny("bert")),
                    "--steps",
                    "2",
                    "--batch-size",
                    "4",
                ],
            );
            (dir, bundle)
        })
        .1
}

fn options(bundle: &Path) -> ServerOptions {
    ServerOptions {
        bundle: bundle.to_path_buf(),
        session: SessionOptions {
            engine: EngineOptions {
                backend: BACKEND,
                threads: Some(1),
                ..Default::default()
            },
            strict_profiles: false,
        },
        scheduler: SchedulerOptions {
            max_batch: 16,
            prefill_chunk: 256,
            timeout: Duration::from_secs(120),
        },
        limits: Limits {
            max_tokens_cap: 64,
            max_profiles: 8,
            max_options: 26,
        },
        max_queue: 512,
        max_body_bytes: 1 << 20,
        model_name: "tiny-cuma".into(),
    }
}

fn start(options: ServerOptions) -> ServerHandle {
    spawn(options, "127.0.0.1:0".parse().expect("addr")).expect("server starts")
}

fn session(bundle: &Path) -> Session {
    let engine = EngineOptions {
        backend: BACKEND,
        threads: Some(1),
        ..Default::default()
    };
    Session::new(
        Bundle::open(bundle).expect("bundle"),
        SessionOptions {
            engine,
            strict_profiles: false,
        },
    )
    .expect("session")
}

fn chat_body(country: &str, text: &str, max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": "tiny-cuma",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": stream},
        "profile": {"country": country},
    })
}

/// The greedy reply the library gives this request alone.
fn alone(session: &mut Session, country: &str, text: &str, max_tokens: usize) -> String {
    let request = GenerateRequest {
        profile: Profile::new().with("country", country),
        messages: vec![Message::new("user", text)],
    };
    let options = GenerateOptions {
        max_new_tokens: max_tokens,
        ..Default::default()
    };
    let mut out = session.generate(&[request], &options, |_| {}).expect("alone");
    out.remove(0).text
}

/// The content of a streamed reply, checking the chunk sequence: a role chunk first, a finish
/// chunk, the usage chunk when asked for, then `[DONE]`.
fn streamed_text(r: &Response, usage: bool) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish_at = chunks
        .iter()
        .position(|c| !c["choices"][0]["finish_reason"].is_null())
        .expect("a finish chunk");
    if usage {
        assert_eq!(finish_at + 2, chunks.len(), "usage chunk after the finish chunk");
        assert!(chunks[finish_at + 1]["usage"]["completion_tokens"].is_u64());
    }
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Two routing traces (as JSON) with the same tokens and experts, and gates within 1e-6 (the
/// JSON round trip of an f32 may print it differently).
fn same_trace(a: &Value, b: &Value) -> bool {
    let tokens = |t: &Value| t["tokens"].as_array().cloned().unwrap_or_default();
    let (ta, tb) = (tokens(a), tokens(b));
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            let gates = |v: &Value| -> Vec<f64> {
                v["gates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g.as_array().cloned().unwrap_or_default())
                    .filter_map(|g| g.as_f64())
                    .collect()
            };
            let (ga, gb) = (gates(x), gates(y));
            x["token"] == y["token"]
                && x["experts"] == y["experts"]
                && ga.len() == gb.len()
                && ga.iter().zip(&gb).all(|(p, q)| (p - q).abs() < 1e-6)
        })
}

#[test]
fn chat_choice_models_health_and_metrics_match_the_library() {
    let bundle = bundle();
    let server = start(options(bundle));
    let addr = server.addr;
    let mut lib = session(bundle);

    assert_eq!(request(addr, "GET", "/health", b"").status, 200);
    let models = request(addr, "GET", "/v1/models", b"").json();
    assert_eq!(models["data"][0]["id"], "tiny-cuma");

    // Greedy chat: the same text as the library alone, streamed or not.
    for (country, text) in [("Country A1", "Hello there, how are you?"), ("Country B2", "Hi")] {
        let want = alone(&mut lib, country, text, 12);
        let r = post_json(addr, "/v1/chat/completions", &chat_body(country, text, 12, false));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], want.as_str(), "{country}");
        let usage = &body["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0))
        );
        let r = post_json(addr, "/v1/chat/completions", &chat_body(country, text, 12, true));
        assert_eq!(streamed_text(&r, true), want, "{country}: streamed");
    }

    // Routing traces: the server's equal the library's, and the profile changes them.
    let traced = |country: &str| {
        let mut body = chat_body(country, "Hello", 3, false);
        body["cuma"] = json!({"trace_routing": true});
        let r = post_json(addr, "/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["cuma"]["routing"].clone()
    };
    let lib_trace = |lib: &mut Session, country: &str| {
        let request = GenerateRequest {
            profile: Profile::new().with("country", country),
            messages: vec![Message::new("user", "Hello")],
        };
        let options = GenerateOptions {
            max_new_tokens: 3,
            trace_routing: true,
            ..Default::default()
        };
        let g = lib.generate(&[request], &options, |_| {}).expect("trace").remove(0);
        serde_json::to_value(g.routing.expect("trace")).expect("json")
    };
    let (a, b) = (traced("Country A1"), traced("Country B1"));
    assert!(a["tokens"].as_array().is_some_and(|t| !t.is_empty()), "{a}");
    assert!(
        same_trace(&a, &lib_trace(&mut lib, "Country A1")),
        "server vs library trace"
    );
    assert!(
        same_trace(&b, &lib_trace(&mut lib, "Country B1")),
        "server vs library trace"
    );
    assert!(!same_trace(&a, &b), "two profiles route the same prompt differently");

    // Survey simulation: one request, many profiles, the library's distributions.
    let options = vec!["Yes".to_string(), "No".to_string()];
    let r = post_json(
        addr,
        "/v1/choice",
        &json!({"profiles": [{"country": "Country A1"}, {"country": "Country B2"}],
                "question": "Do you agree?", "options": options}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].as_array().cloned().expect("results");
    assert_eq!(results.len(), 2);
    for (result, country) in results.iter().zip(["Country A1", "Country B2"]) {
        let want = lib
            .choice_distribution(
                &Profile::new().with("country", country),
                "Do you agree?",
                &options,
                false,
            )
            .expect("library")
            .probabilities;
        let got: Vec<f64> = serde_json::from_value(result["probabilities"].clone()).expect("probabilities");
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-9, "{country}: {got:?} vs {want:?}");
        }
    }

    // An unknown attribute is dropped with a warning (header and body).
    let mut body = chat_body("Country A1", "Hi", 2, false);
    body["profile"]["favourite_colour"] = json!("blue");
    let r = post_json(addr, "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("x-cuma-warning")
            .is_some_and(|w| w.contains("favourite_colour")),
        "{:?}",
        r.headers
    );
    assert!(r.json()["cuma"]["warnings"][0]
        .as_str()
        .is_some_and(|w| w.contains("favourite_colour")));

    let metrics = request(addr, "GET", "/metrics", b"").text();
    assert!(
        metrics.contains("cuma_requests_total{endpoint=\"chat\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("cuma_time_to_first_token_seconds_count"), "{metrics}");
    assert!(!metrics.contains("cuma_generated_tokens_total 0\n"), "{metrics}");
    server.stop().expect("stops");
}

#[test]
fn hostile_requests_get_4xx_error_bodies_and_the_server_keeps_serving() {
    let bundle = bundle();
    let server = start(options(bundle));
    let addr = server.addr;
    let user = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    let long_prompt = "word ".repeat(5000);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed JSON", b"{\"messages\": [".to_vec(), 400),
        ("wrong types", br#"{"messages": "hello"}"#.to_vec(), 400),
        ("empty messages", br#"{"messages": []}"#.to_vec(), 400),
        (
            "invalid UTF-8",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            400,
        ),
        ("unknown field", user(json!({"logit_bias": {}})), 400),
        ("max_tokens 0", user(json!({"max_tokens": 0})), 400),
        ("max_tokens huge", user(json!({"max_tokens": 1u64 << 40})), 400),
        ("n = 3", user(json!({"n": 3})), 400),
        ("bad profile", user(json!({"profile": "country"})), 400),
        ("bad profile text", user(json!({"profile_text": "country"})), 400),
        (
            "over-long prompt",
            json!({"messages": [{"role": "user", "content": long_prompt}]})
                .to_string()
                .into_bytes(),
            400,
        ),
        ("10 MB body", vec![b' '; 10 << 20], 413),
    ];
    for (what, body, status) in &cases {
        let r = request(addr, "POST", "/v1/chat/completions", body);
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        let error = &r.json()["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {error}"
        );
        assert!(error["type"].is_string(), "{what}: {error}");
        // The server still answers.
        let ok = post_json(addr, "/v1/chat/completions", &chat_body("Country A1", "Hi", 2, false));
        assert_eq!(ok.status, 200, "after {what}: {}", ok.text());
    }
    let over = request(addr, "POST", "/v1/chat/completions", &cases[10].1).json();
    assert_eq!(over["error"]["code"], "context_length_exceeded");
    assert_eq!(request(addr, "GET", "/v1/nothing", b"").status, 404);
    assert_eq!(request(addr, "GET", "/v1/chat/completions", b"").status, 405);
    let bad_choice = post_json(addr, "/v1/choice", &json!({"question": "Q?", "options": []}));
    assert_eq!(bad_choice.status, 400);
    assert_eq!(bad_choice.json()["error"]["param"], "options");
    server.stop().expect("stops");

    // A full queue answers 429 with Retry-After.
    let mut full = options(bundle);
    full.max_queue = 0;
    let server = start(full);
    let r = post_json(
        server.addr,
        "/v1/chat/completions",
        &chat_body("Country A1", "Hi", 2, false),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "queue_full");
}

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn load_test_with_mixed_profiles_streams_and_disconnects() {
    const CLIENTS: usize = 32;
    const PER_CLIENT: usize = 8;
    const MAX_TOKENS: usize = 8;
    let bundle = bundle();
    let server = start(options(bundle));
    let addr: SocketAddr = server.addr;
    let countries = ["Country A1", "Country A2", "Country B1", "Country B2"];
    let prompts = ["Hello", "What matters most in life?", "Tell me about your family."];
    // What every (profile, prompt) gets served alone.
    let mut lib = session(bundle);
    let mut want = std::collections::HashMap::new();
    for c in countries {
        for p in prompts {
            want.insert((c, p), alone(&mut lib, c, p, MAX_TOKENS));
        }
    }
    let want = std::sync::Arc::new(want);
    // Warm the server once, then measure memory around the load.
    assert_eq!(
        post_json(
            addr,
            "/v1/chat/completions",
            &chat_body(countries[0], prompts[0], MAX_TOKENS, false)
        )
        .status,
        200
    );
    let before = rss_bytes();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let want = want.clone();
            std::thread::spawn(move || {
                let mut served = Vec::new();
                for k in 0..PER_CLIENT {
                    let (c, p) = (countries[(client + k) % 4], prompts[(client * 7 + k) % 3]);
                    let stream = (client + k) % 2 == 0;
                    let r = post_json(addr, "/v1/chat/completions", &chat_body(c, p, MAX_TOKENS, stream));
                    let text = if stream {
                        streamed_text(&r, true)
                    } else {
                        assert_eq!(r.status, 200, "{}", r.text());
                        r.json()["choices"][0]["message"]["content"]
                            .as_str()
                            .expect("content")
                            .to_string()
                    };
                    assert_eq!(
                        &text,
                        &want[&(c, p)],
                        "client {client} request {k} ({c}, {p}, stream {stream})"
                    );
                    served.push((client, k));
                }
                served
            })
        })
        .collect();
    // Meanwhile, clients that leave mid-stream.
    for _ in 0..16 {
        let mut s = send(
            addr,
            "POST",
            "/v1/chat/completions",
            chat_body("Country A1", "Tell me about your family.", 60, true)
                .to_string()
                .as_bytes(),
        );
        let mut first = [0u8; 64];
        let _ = s.read(&mut first);
        drop(s);
    }
    let mut served = std::collections::BTreeSet::new();
    for w in workers {
        for id in w.join().expect("a client failed") {
            assert!(served.insert(id), "request {id:?} answered twice");
        }
    }
    assert_eq!(served.len(), CLIENTS * PER_CLIENT, "every request answered once");
    // The abandoned streams freed their slots: the batch drains and a new request is served.
    let r = post_json(
        addr,
        "/v1/chat/completions",
        &chat_body(countries[1], prompts[1], MAX_TOKENS, false),
    );
    assert_eq!(r.status, 200);
    let m = server.metrics();
    assert!(m.requests_with("chat", 200) as usize >= CLIENTS * PER_CLIENT + 2);
    // The requests were batched together, not served one by one.
    let peak = m.peak_running.load(std::sync::atomic::Ordering::Relaxed);
    println!("load test: at most {peak} sequences in one batch");
    assert!(peak >= 8, "at most {peak} sequences were ever batched together");
    if let (Some(b), Some(a)) = (before, rss_bytes()) {
        let grown = a.saturating_sub(b) as f64 / (1 << 20) as f64;
        println!(
            "load test: {} requests, RSS {:.0} -> {:.0} MiB",
            served.len(),
            b as f64 / 1048576.0,
            a as f64 / 1048576.0
        );
        assert!(grown < 256.0, "memory grew by {grown:.0} MiB over the load test");
    }
    server.stop().expect("stops after draining");
}

fn python() -> PathBuf {
    let venv = std::env::var_os("CUMA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin/python")
}

#[test]
fn the_openai_python_client_chats_streams_and_surveys() {
    let bundle = bundle();
    let server = start(options(bundle));
    let dir = scratch("serve_openai_client");
    let out = dir.join("out.json");
    let (country, prompt) = ("Country A2", "What matters most in life?");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/serve/openai_client.py");
    let run = std::process::Command::new(python())
        .arg(&script)
        .arg(format!("http://{}", server.addr))
        .args([country, prompt, "10"])
        .arg(&out)
        .output()
        .expect("python runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("output")).expect("json");
    let want = alone(&mut session(bundle), country, prompt, 10);
    assert_eq!(got["text"], want.as_str(), "{got}");
    assert_eq!(got["streamed"], want.as_str(), "{got}");
    assert_eq!(got["stream_finish"].as_array().map(Vec::len), Some(1), "{got}");
    assert_eq!(got["stream_usage"][0], got["usage"]["completion_tokens"], "{got}");
    assert!(got["routing_tokens"].as_u64().is_some_and(|n| n > 0), "{got}");
    let results = got["choice"]["results"].as_array().expect("choice results");
    assert_eq!(results.len(), 2);
    for r in results {
        let p: Vec<f64> = serde_json::from_value(r["probabilities"].clone()).expect("probabilities");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{r}");
    }
    assert_eq!(got["refused"]["status"], 400, "{got}");
    assert_eq!(got["models"], json!(["tiny-cuma"]));
}

#[test]
fn deadlines_answer_504_and_shutdown_finishes_in_flight_replies() {
    let bundle = bundle();
    let mut late = options(bundle);
    late.scheduler.timeout = Duration::from_nanos(1);
    let server = start(late);
    let r = post_json(
        server.addr,
        "/v1/chat/completions",
        &chat_body("Country A1", "Hi", 8, false),
    );
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "timeout");
    server.stop().expect("stops");

    // A stream in flight when the server is told to stop still ends with its finish chunk.
    let mut long = options(bundle);
    long.limits.max_tokens_cap = 200;
    let server = start(long);
    let body = chat_body("Country B1", "Tell me about your family.", 200, true);
    let mut s = send(server.addr, "POST", "/v1/chat/completions", body.to_string().as_bytes());
    let mut raw = vec![0u8; 256];
    let n = s.read(&mut raw).expect("first bytes");
    raw.truncate(n);
    let (asked, stopping) = std::sync::mpsc::channel();
    let stopper = std::thread::spawn(move || {
        let _ = asked.send(std::time::Instant::now());
        server.stop()
    });
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let ended = std::time::Instant::now();
    raw.extend(rest);
    stopper.join().expect("stop thread").expect("stops");
    let stop_asked = stopping.recv().expect("stop time");
    assert!(
        stop_asked < ended,
        "the reply was still streaming when the server was told to stop"
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("\"finish_reason\":\"length\"") || text.contains("\"finish_reason\":\"stop\""),
        "{text}"
    );
    assert!(text.contains("data: [DONE]"), "{text}");
}

/// `cuma eval --win-rate --judge http` pointed at cuma-serve. The judge's request (model,
/// temperature 0, the rubric as system message, the case as user message) is one the server
/// takes; on the tiny model (256 positions) the rubric alone overflows the context, which the
/// server must say in its error body, so the same body is also sent by hand.
#[test]
fn the_http_judge_of_cuma_eval_talks_to_cuma_serve() {
    use cuma::eval::judge::{judge_prompt, Case, HttpJudge, Judge, JudgeError, RUBRIC};
    let bundle = bundle();
    let server = start(options(bundle));
    let context = [Message::new("user", "What matters most?")];
    let case = Case {
        profile_text: "country: Country A1",
        context: &context,
        reply: "Family.",
        other: "Work.",
        reference: None,
    };
    let body = |system: &str, user: &str| {
        json!({"model": "tiny-cuma", "temperature": 0.0,
               "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
    };
    let full = post_json(
        server.addr,
        "/v1/chat/completions",
        &body(RUBRIC, &judge_prompt(&case, case.reply, case.other)),
    );
    let mut judge = HttpJudge::new(
        &format!("http://{}/v1", server.addr),
        "tiny-cuma",
        None,
        Duration::from_secs(60),
    );
    match (full.status, judge.judge(&case, case.reply, case.other)) {
        (200, Ok(_) | Err(JudgeError::NoVerdict(_))) => {}
        (400, Err(JudgeError::Request(e))) => {
            assert!(e.contains("400"), "{e}");
            assert_eq!(
                full.json()["error"]["code"],
                "context_length_exceeded",
                "{}",
                full.text()
            );
            // The same shape with a short rubric is served.
            let short = post_json(server.addr, "/v1/chat/completions", &body("Judge briefly.", "A or B?"));
            assert_eq!(short.status, 200, "{}", short.text());
        }
        (status, outcome) => panic!(
            "the judge and cuma-serve disagree: {status} {} / {outcome:?}",
            full.text()
        ),
    }
}
