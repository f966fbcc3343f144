//! Cross-runtime agreement: a bundle served by `cuma-runtime` on ONNX Runtime (CPU) and on tract
//! makes the same decisions as the tch model it was exported from - the same prompt tokens, the
//! same experts for every router and token, the same top-5 next tokens and the same 16-token
//! greedy generation (through each runtime's KV cache), with last-position logits within 1e-4
//! (tiny fixtures) or 1e-3 (SmolLM2). tch's observations are also pinned as insta snapshots under
//! `fixtures/snapshots`, so a change in any of the three shows up in review.

mod common;

use common::{arg as s, cuma, scratch, small_survey, tiny, train_and_export, TINY_BUDGET};
use cuma::eval::run::Evaluator;
use cuma::generate::{generate, GenerateOptions as TchGenerate};
use cuma::models::backbone::{Backbone, StepInput};
use cuma::tch_ops::TchOps;
use cuma::tokenizer::chat::{render, Message};
use cuma_runtime::generate::Timings;
use cuma_runtime::{Backend, Bundle, Device as OrtDevice, EngineOptions, GenerateOptions, GenerateRequest, Profile, Session, SessionOptions};
use serde::Serialize;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;
const GREEDY_TOKENS: usize = 16;

/// What one stack decided for one prompt.
#[derive(Debug, Clone, PartialEq)]
struct Observation {
    prompt: Vec<u32>,
    top5: Vec<u32>,
    /// token -> router -> the top-k experts.
    routing: Vec<Vec<Vec<u32>>>,
    greedy: Vec<u32>,
    last_logits: Vec<f32>,
}

/// The snapshot form of an observation: one line per token, routers separated by `|`.
#[derive(Serialize, serde::Deserialize)]
struct Snapshot {
    prompt: String,
    top5: String,
    greedy: String,
    routing: Vec<String>,
}

fn ids(xs: &[u32]) -> String {
    xs.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

impl Observation {
    fn snapshot(&self) -> Snapshot {
        let routing = self.routing.iter().filter(|t| !t.is_empty()).map(|t| t.iter().map(|experts| ids(experts)).collect::<Vec<_>>().join("|")).collect();
        Snapshot { prompt: ids(&self.prompt), top5: ids(&self.top5), greedy: ids(&self.greedy), routing }
    }
}

fn top5(logits: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.truncate(5);
    order
}

/// tch: one forward over the prompt, then greedy generation with tch's own KV cache.
fn tch_observe(model: &Backbone, prompt: &[u32], profile: Option<&Tensor>) -> Observation {
    let _g = tch::no_grad_guard();
    let ids = Tensor::from_slice(&prompt.iter().map(|&i| i64::from(i)).collect::<Vec<_>>()).view([1, -1]);
    let mask = Tensor::ones([1, prompt.len() as i64], (Kind::Int64, CPU));
    let out = model.run(&mut TchOps::new(CPU), &StepInput { ids: &ids, attention_mask: &mask, past: None, profile }).expect("tch forward");
    let last: Vec<f32> = Vec::try_from(out.logits.select(1, prompt.len() as i64 - 1).view([-1])).expect("logits");
    let per_router: Vec<Vec<i64>> = out.routing.iter().map(|r| Vec::try_from(r.experts.contiguous().view([-1])).expect("experts")).collect();
    let k = per_router.first().map_or(0, |e| e.len() / prompt.len());
    let routing = (0..prompt.len()).map(|t| per_router.iter().map(|e| e[t * k..(t + 1) * k].iter().map(|&x| x as u32).collect()).collect()).collect();
    let g = generate(model, prompt, profile, TchGenerate { max_new_tokens: GREEDY_TOKENS, sampling: Default::default() }, |_| {}).expect("tch generate");
    Observation { prompt: prompt.to_vec(), top5: top5(&last), routing, greedy: g.tokens, last_logits: last }
}

/// cuma-runtime: the same, through a session's public API.
fn runtime_observe(session: &mut Session, prompt: &[u32], demographic: Option<&[f32]>) -> Observation {
    let (last, trace) = session.next_token_logits(prompt, demographic, true).expect("runtime forward");
    let routing = trace.map(|t| t.tokens.into_iter().map(|tok| tok.experts).collect()).unwrap_or_else(|| vec![Vec::new(); prompt.len()]);
    let options = GenerateOptions { max_new_tokens: GREEDY_TOKENS, ..Default::default() };
    let g = session.generate_ids(&[prompt.to_vec()], demographic, &options, Timings::default(), |_| {}).expect("runtime generate");
    Observation { prompt: prompt.to_vec(), top5: top5(&last), routing, greedy: g[0].token_ids.clone(), last_logits: last }
}

fn backends() -> [(&'static str, Backend); 2] {
    [("ort-cpu", Backend::Ort { device: OrtDevice::Cpu }), ("tract", Backend::Tract)]
}

fn session(bundle: &Path, backend: Backend) -> Session {
    let opened = Bundle::open(bundle).expect("bundle opens");
    Session::new(opened, SessionOptions { engine: EngineOptions { backend, threads: Some(2) }, strict_profiles: true }).expect("session")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Checks every backend against tch's observation of `messages` for `profile`, and snapshots
/// tch's. Returns the largest logit difference seen.
fn compare(label: &str, bundle: &Path, model: &Backbone, encoder: Option<&cuma::models::encoder::ProfileEncoder>, profile: &Profile, messages: &[Message], tolerance: f32) -> f32 {
    compare_pinned(label, bundle, model, encoder, profile, messages, tolerance, Pin::Exact)
}

/// How tch's observation must match its committed snapshot.
#[derive(Clone, Copy)]
enum Pin {
    /// Identical in every field.
    Exact,
    /// Prompt, top-5 and greedy tokens identical; at most this fraction of the (token, router)
    /// routing decisions may differ. For models trained inside the test: Adam's first steps move
    /// every weight by about the learning rate times the sign of its gradient, so last-bit
    /// differences between CPUs (AVX2 vs AVX-512 kernels) can flip a gradient's sign and, with it,
    /// a near-tied routing decision. The live comparison between tch, ort and tract stays exact.
    Routing(f64),
}

/// [`compare`], with tch's snapshot pinned as `pin` says.
#[allow(clippy::too_many_arguments)]
fn compare_pinned(label: &str, bundle: &Path, model: &Backbone, encoder: Option<&cuma::models::encoder::ProfileEncoder>, profile: &Profile, messages: &[Message], tolerance: f32, pin: Pin) -> f32 {
    let mut worst = 0.0f32;
    let mut reference: Option<Observation> = None;
    for (name, backend) in backends() {
        let mut session = session(bundle, backend);
        let prompt = session.prompt_ids(profile, messages).expect("runtime prompt");
        let demographic = session.reads_profile_vector().then(|| session.encode_profile(profile).expect("profile vector"));
        let want = reference.get_or_insert_with(|| {
            // tch builds its prompt from the same messages with its own tokenizer and template.
            let mut all = vec![session.system_message(profile).expect("system")];
            all.extend(messages.iter().cloned());
            let tch_prompt = model.tokenizer.encode(&render(&model.tokenizer, &all).expect("template"), false).expect("tokens");
            assert_eq!(tch_prompt, prompt, "{label}: tch and cuma-runtime tokenise the chat prompt differently");
            let vector = encoder.filter(|_| demographic.is_some()).map(|e| e.embed(&[&profile.render(&session.bundle().manifest.profile).expect("text")]).expect("tch profile"));
            if let (Some(v), Some(d)) = (&vector, &demographic) {
                let t: Vec<f32> = Vec::try_from(v.view([-1])).expect("vector");
                let cos = t.iter().zip(d).map(|(a, b)| a * b).sum::<f32>() / (t.iter().map(|a| a * a).sum::<f32>().sqrt() * d.iter().map(|a| a * a).sum::<f32>().sqrt());
                assert!(cos >= 0.99999, "{label}: profile vector cosine {cos}");
            }
            tch_observe(model, &prompt, vector.as_ref())
        });
        let got = runtime_observe(&mut session, &prompt, demographic.as_deref());
        let diff = max_diff(&want.last_logits, &got.last_logits);
        assert!(diff <= tolerance, "{label} on {name}: last-position logits differ by {diff}");
        assert_eq!(got.top5, want.top5, "{label} on {name}: top-5 next tokens");
        assert_eq!(got.routing, want.routing, "{label} on {name}: routing experts per router and token");
        assert_eq!(got.greedy, want.greedy, "{label} on {name}: {GREEDY_TOKENS}-token greedy generation");
        worst = worst.max(diff);
    }
    let want = reference.expect("observed");
    let snapshot = want.snapshot();
    if let Pin::Routing(fraction) = pin {
        if let Some(pinned) = read_snapshot(label) {
            let (differ, total) = routing_differences(&pinned.routing, &snapshot.routing);
            let same_tokens = (&pinned.prompt, &pinned.top5, &pinned.greedy) == (&snapshot.prompt, &snapshot.top5, &snapshot.greedy);
            println!("{label}: {differ} of {total} routing decisions differ from the snapshot");
            if same_tokens && total > 0 && (differ as f64) <= fraction * total as f64 && std::env::var("INSTA_UPDATE").as_deref() != Ok("always") {
                return worst;
            }
        }
    }
    // Exact, or outside the tolerance: insta reports the difference (and writes `.snap.new`).
    insta::with_settings!({ snapshot_path => "../fixtures/snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(label, snapshot);
    });
    worst
}

/// The committed snapshot `label`, if there is one.
fn read_snapshot(label: &str) -> Option<Snapshot> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/snapshots").join(format!("{label}.snap"));
    let text = std::fs::read_to_string(path).ok()?;
    // insta's file: a `---` header block, then the JSON.
    let json = text.splitn(3, "---\n").nth(2)?;
    serde_json::from_str(json).ok()
}

/// (differing, total) (token, router) decisions between two routing snapshots; tokens or
/// routers present in only one count as differing.
fn routing_differences(a: &[String], b: &[String]) -> (usize, usize) {
    let (mut differ, mut total) = (0, 0);
    for i in 0..a.len().max(b.len()) {
        let split = |v: &[String]| v.get(i).map(|t| t.split('|').map(str::to_string).collect::<Vec<_>>()).unwrap_or_default();
        let (x, y) = (split(a), split(b));
        for j in 0..x.len().max(y.len()) {
            total += 1;
            differ += usize::from(x.get(j) != y.get(j));
        }
    }
    (differ, total)
}

#[test]
fn routing_differences_count_each_router_decision() {
    let a = ["0 1|2 3".to_string(), "4 5|6 7".to_string()];
    let b = ["0 1|3 2".to_string(), "4 5".to_string()];
    assert_eq!(routing_differences(&a, &a), (0, 4));
    assert_eq!(routing_differences(&a, &b), (2, 4));
    assert_eq!(routing_differences(&a, &b[..1]), (3, 4));
}

fn question() -> Vec<Message> {
    vec![Message::new("user", "How important is family in your life? A. Very important B. Not important You can only choose one option.")]
}

#[test]
fn bare_backbones_agree_across_tch_ort_and_tract() {
    for family in ["llama", "qwen2", "qwen3"] {
        let dir = scratch(&format!("runtime_bare_{family}"));
        let bundle = dir.join("bundle");
        cuma(&["export", "--onnx", &s(&tiny(family)), "--out", &s(&bundle)]);
        let model = Backbone::load(&tiny(family), CPU).expect("loads");
        let diff = compare(&format!("bare-{family}"), &bundle, &model, None, &Profile::new().with("country", "Chile"), &question(), 1e-4);
        println!("bare {family}: max |logit diff| {diff:.2e}");
    }
}

#[test]
fn trained_cuma_in_every_gate_mode_agrees_across_runtimes() {
    let dir = scratch("runtime_cuma");
    let items = small_survey(&dir, 2);
    let (llama, bert) = (s(&tiny("llama")), s(&tiny("bert")));
    for gate in ["topk-softmax", "double-softmax", "soft"] {
        let run = dir.join(gate);
        let args = [&["--model", &llama, "--encoder", &bert, "--gate", gate, "--targets", "q-proj,v-proj,up-proj", "--seed", "3"], &TINY_BUDGET[..]].concat();
        let bundle = train_and_export(&items, &run, &args);
        let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
        for (i, profile) in ["country=Country A1,age=18-34", "country=Country B2,age=55+"].iter().enumerate() {
            let profile = Profile::parse(profile).expect("profile");
            let diff = compare(&format!("cuma-{gate}-profile{i}"), &bundle, &e.model, Some(&e.encoder), &profile, &question(), 1e-4);
            println!("CuMA {gate} profile {i}: max |logit diff| {diff:.2e}");
        }
    }
}

#[test]
fn smollm2_minilm_cuma_trained_on_wvs_agrees_across_runtimes() {
    let dir = scratch("runtime_smollm2");
    let wvs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7");
    let items = dir.join("data/items.jsonl");
    if wvs.join("codebook.json").is_file() {
        cuma(&["data", "convert", "--wvs", &s(&wvs), "--questions", "Q6", "--out", &s(&items)]);
    } else {
        eprintln!("no WVS data at {}; training on synthetic survey data", wvs.display());
        cuma(&["data", "synth", "--out-dir", &s(&dir.join("data"))]);
    }
    let run = dir.join("run");
    let bundle = train_and_export(&items, &run, &["--steps", "2", "--batch-size", "2", "--lr", "1e-2", "--warmup-steps", "1", "--seed", "0"]);
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
    for (label, profile) in [("smollm2-cuma-thailand", "country=Thailand,age=55-64,gender=Female,religion=Buddhist"), ("smollm2-cuma-germany", "country=Germany,age=25-34,gender=Male,religion=No religion")] {
        let messages = [Message::new("user", "How important is religion in your life? A. Very important B. Rather important C. Not very important D. Not at all important You can only choose one option.")];
        let diff = compare_pinned(label, &bundle, &e.model, Some(&e.encoder), &Profile::parse(profile).expect("profile"), &messages, 1e-3, Pin::Routing(5e-3));
        println!("{label}: max |logit diff| {diff:.2e}");
    }
}

/// `cuma-run` (driven through `cuma_runtime::cli`) on `input`; stdout or the error text.
fn cuma_run(args: &[&str], input: &[u8]) -> Result<String, String> {
    use clap::Parser;
    let parsed = cuma_runtime::cli::Args::try_parse_from(std::iter::once("cuma-run").chain(args.iter().copied())).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    cuma_runtime::cli::run(parsed, &mut std::io::Cursor::new(input.to_vec()), &mut out).map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf8 output"))
}

#[test]
fn cuma_run_serves_and_reports_bad_input_without_panicking() {
    let dir = scratch("runtime_cli");
    let items = small_survey(&dir, 2);
    let bundle = train_and_export(&items, &dir.join("run"), &["--model", &s(&tiny("llama")), "--encoder", &s(&tiny("bert")), "--steps", "2", "--batch-size", "4"]);
    let b = s(&bundle);
    for backend in ["ort", "tract"] {
        // A question: one line per option with its probability; the probabilities sum to 1.
        let out = cuma_run(&["--bundle", &b, "--backend", backend, "--profile", "country=Country A1", "--question", "Do you agree?", "--option", "Yes", "--option", "No"], b"").expect("question");
        let probs: Vec<f64> = out.lines().map(|l| l.split_whitespace().nth(2).expect("probability column").parse().expect("number")).collect();
        assert_eq!(probs.len(), 2, "{out}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{out}");
        // A streamed chat reply.
        let reply = cuma_run(&["--bundle", &b, "--backend", backend, "--profile", "country=Country B2", "--prompt", "Hello", "--max-tokens", "4", "--trace-routing"], b"").expect("prompt");
        assert!(reply.ends_with('\n'), "{reply:?}");
    }
    // A batch of requests with different profiles gives each the reply it gets alone.
    for backend in [Backend::Tract, Backend::Ort { device: OrtDevice::Cpu }] {
        let mut session = session(&bundle, backend);
        let request = |country: &str, text: &str| GenerateRequest { profile: Profile::new().with("country", country), messages: vec![Message::new("user", text)] };
        let requests = [request("Country A1", "Hello there, how are you today?"), request("Country B2", "Hi")];
        let options = GenerateOptions { max_new_tokens: 6, trace_routing: true, ..Default::default() };
        let mut streamed = [String::new(), String::new()];
        let together = session.generate(&requests, &options, |t| streamed[t.request].push_str(t.text)).expect("batch");
        for (i, r) in requests.iter().enumerate() {
            let alone = session.generate(std::slice::from_ref(r), &options, |_| {}).expect("alone");
            assert_eq!(together[i].token_ids, alone[0].token_ids, "{backend}: request {i} in a batch");
            assert_eq!(streamed[i], together[i].text, "{backend}: streamed text of request {i}");
            let trace = together[i].routing.as_ref().expect("trace");
            // Every prompt token and every generated token fed back (the last one is not, unless
            // the model ended its turn after it).
            let fed = match together[i].finish_reason {
                cuma_runtime::FinishReason::EndOfTurn => together[i].token_ids.len(),
                _ => together[i].token_ids.len().saturating_sub(1),
            };
            assert_eq!(trace.tokens.len(), together[i].prompt_tokens + fed, "{backend}: one trace entry per processed token");
        }
        // A stop sequence that spans the last two tokens of the first reply: from the last whole
        // character of the first five tokens' text to the first character of the sixth's.
        // Generation stops there, the text is cut before it, and its first half, decoded a step
        // earlier, was never streamed.
        let full = &together[0].text;
        let shorter = GenerateOptions { max_new_tokens: options.max_new_tokens - 1, ..options.clone() };
        let head = session.generate(&requests[..1], &shorter, |_| {}).expect("one token fewer").remove(0).text;
        assert!(head.len() < full.len() && full.starts_with(&head), "{backend}: {head:?} should be a proper prefix of {full:?}");
        let from = head.trim_end_matches('\u{FFFD}').char_indices().last().expect("a whole character in the first five tokens").0;
        let to = head.len() + full[head.len()..].chars().next().map_or(0, char::len_utf8);
        let stop = full[from..to].to_string();
        let options = GenerateOptions { stop: vec![stop.clone()], ..options.clone() };
        let mut streamed = String::new();
        let stopped = session.generate(&requests[..1], &options, |t| streamed.push_str(t.text)).expect("with a stop sequence");
        let want = &full[..full.find(&stop).expect("stop is in the reply")];
        assert_eq!((stopped[0].text.as_str(), stopped[0].finish_reason), (want, cuma_runtime::FinishReason::Stop), "{backend}: stop {stop:?}");
        assert_eq!(streamed, want, "{backend}: streamed text with stop {stop:?}");
    }
    // Batch mode keeps going past bad lines: invalid JSON, invalid UTF-8, no options, unknown
    // request kind, and an over-long prompt each get an error line; good lines get results.
    let long = "why ".repeat(2000);
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\": \"q\", \"profile\": \"country=Country A1\", \"question\": \"Agree?\", \"options\": [\"Yes\", \"No\"]}\n");
    input.extend_from_slice(b"{not json\n");
    input.extend_from_slice(b"{\"prompt\": \"caf\xe9\"}\n");
    input.extend_from_slice(b"{\"question\": \"Agree?\", \"options\": []}\n");
    input.extend_from_slice(b"{\"hello\": 1}\n");
    input.extend_from_slice(format!("{{\"prompt\": \"{long}\"}}\n").as_bytes());
    input.extend_from_slice(b"{\"id\": 7, \"profile\": {\"country\": \"Country B2\", \"shoe_size\": \"42\"}, \"prompt\": \"Hi\", \"max_tokens\": 3}\n");
    let out = cuma_run(&["--bundle", &b, "--backend", "tract", "--jsonl", "--trace-routing"], &input).expect("batch runs to the end");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("each output line is JSON")).collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0]["id"], "q");
    assert_eq!(lines[0]["probabilities"].as_array().map(Vec::len), Some(2), "{}", lines[0]);
    assert!(lines[0]["routing"]["tokens"].as_array().is_some_and(|t| !t.is_empty()), "routing trace in {}", lines[0]);
    for (i, needle) in [(1, "JSON"), (2, "UTF-8"), (3, "at least one option"), (4, "needs"), (5, "context")] {
        let err = lines[i]["error"].as_str().unwrap_or_else(|| panic!("line {} should be an error: {}", i + 1, lines[i]));
        assert!(err.contains(needle), "line {}: {err}", i + 1);
        assert_eq!(lines[i]["line"], i + 1);
    }
    assert_eq!(lines[6]["id"], 7);
    assert!(lines[6]["text"].is_string(), "{}", lines[6]);
    assert!(lines[6]["warnings"][0].as_str().is_some_and(|w| w.contains("shoe_size")), "{}", lines[6]);
    // --strict refuses the unknown attribute instead.
    let err = cuma_run(&["--bundle", &b, "--backend", "tract", "--strict", "--profile", "country=X,shoe_size=42", "--question", "Agree?", "--option", "Yes", "--option", "No"], b"").expect_err("strict");
    assert!(err.contains("shoe_size"), "{err}");
    // Nothing to do, a CUDA device on tract, an empty profile pair.
    assert!(cuma_run(&["--bundle", &b], b"").expect_err("no request").contains("nothing to do"));
    assert!(cuma_run(&["--bundle", &b, "--backend", "tract", "--device", "cuda", "--prompt", "x"], b"").expect_err("tract on cuda").contains("CPU only"));
    assert!(cuma_run(&["--bundle", &b, "--profile", "country", "--prompt", "x"], b"").expect_err("bad profile").contains("key=value"));
}

#[test]
fn damaged_bundles_are_refused_with_the_file_named() {
    let dir = scratch("runtime_damaged");
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &s(&tiny("llama")), "--out", &s(&bundle)]);
    let copy = |name: &str| {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).expect("mkdir");
        for e in std::fs::read_dir(&bundle).expect("bundle") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
        to
    };
    let altered = copy("altered");
    let mut bytes = std::fs::read(altered.join("tokenizer.json")).expect("read");
    bytes.push(b' ');
    std::fs::write(altered.join("tokenizer.json"), bytes).expect("write");
    let err = Bundle::open(&altered).expect_err("altered").to_string();
    assert!(err.contains("tokenizer.json") && err.contains("SHA-256"), "{err}");
    let missing = copy("missing");
    std::fs::remove_file(missing.join("model.onnx")).expect("rm");
    let err = Bundle::open(&missing).expect_err("missing").to_string();
    assert!(err.contains("model.onnx") && err.contains("missing"), "{err}");
    let future = copy("future");
    let manifest = std::fs::read_to_string(future.join("manifest.json")).expect("manifest");
    std::fs::write(future.join("manifest.json"), manifest.replacen("\"format_version\": 1", "\"format_version\": 99", 1)).expect("write");
    let err = Bundle::open(&future).expect_err("version").to_string();
    assert!(err.contains("format version 99"), "{err}");
    let err = Bundle::open(dir.join("nowhere")).expect_err("no dir").to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn baseline_adapters_agree_across_runtimes() {
    let dir = scratch("runtime_baselines");
    let items = small_survey(&dir, 2);
    let (qwen2, bert) = (s(&tiny("qwen2")), s(&tiny("bert")));
    for method in ["lora", "dora", "hydralora", "mixlora"] {
        let run = dir.join(method);
        let bundle = train_and_export(&items, &run, &[&["--model", &qwen2, "--encoder", &bert, "--method", method, "--seed", "5"], &TINY_BUDGET[..]].concat());
        let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
        let diff = compare(&format!("{method}-qwen2"), &bundle, &e.model, Some(&e.encoder), &Profile::new().with("country", "Country A1"), &question(), 1e-4);
        println!("{method}: max |logit diff| {diff:.2e}");
    }
}

#[test]
fn decoder_profile_encoder_exports_and_agrees_across_runtimes() {
    // A Qwen3-Embedding-style encoder (the tiny Qwen3 with last-token pooling) under CuMA.
    let dir = scratch("runtime_decoder_encoder");
    let items = small_survey(&dir, 2);
    let run = dir.join("run");
    let bundle = train_and_export(&items, &run, &[&["--model", &s(&tiny("llama")), "--encoder", &s(&tiny("qwen3")), "--seed", "4"], &TINY_BUDGET[..]].concat());
    let manifest = Bundle::open(&bundle).expect("bundle").manifest;
    let encoder = manifest.encoder.as_ref().expect("encoder in the manifest");
    assert_eq!((encoder.family.as_str(), encoder.pooling.as_str()), ("qwen3", "last-token"));
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
    let diff = compare("cuma-qwen3-encoder", &bundle, &e.model, Some(&e.encoder), &Profile::parse("country=Country B1,age=35-44").expect("profile"), &question(), 1e-4);
    println!("CuMA with a decoder encoder: max |logit diff| {diff:.2e}");
}

#[test]
fn weights_in_an_external_data_file_load_on_every_runtime() {
    // The 2 GB protobuf limit is forced down to 0 bytes, so every weight goes external.
    let dir = scratch("runtime_external_data");
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &s(&tiny("qwen3")), "--out", &s(&bundle), "--external-data-above", "0"]);
    let manifest = Bundle::open(&bundle).expect("bundle").manifest;
    assert!(manifest.files.contains_key("model.onnx.data"), "files: {:?}", manifest.files.keys());
    let graph = std::fs::metadata(bundle.join("model.onnx")).expect("graph").len();
    let data = std::fs::metadata(bundle.join("model.onnx.data")).expect("data").len();
    assert!(data > 10 * graph, "weights should live in the data file: graph {graph} B, data {data} B");
    let model = Backbone::load(&tiny("qwen3"), CPU).expect("loads");
    compare("bare-qwen3", &bundle, &model, None, &Profile::new().with("country", "Chile"), &question(), 1e-4);
}
