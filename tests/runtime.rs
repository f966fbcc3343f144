//! Cross-runtime agreement: a bundle served by `cuma-runtime` on ONNX Runtime (CPU) and on tract
//! makes the same decisions as the tch model it was exported from - the same prompt tokens, the
//! same experts for every router and token, the same top-5 next tokens and the same 16-token
//! greedy generation (through each runtime's KV cache), with last-position logits within 1e-4
//! (tiny fixtures) or 1e-3 (SmolLM2). Between the three on one machine all of it is exact.
//!
//! tch's observations are also pinned as insta snapshots under `fixtures/snapshots`, so a change
//! in any of the three shows up in review. They pin inference on fixed weights: the adapters are
//! seeded (`common::seeded`), never the result of training on the machine at hand, and a
//! recorded ranking may differ from the live one only at near-ties (`common::ties`).

mod common;

use common::ties::{compare_ranking, near_tie, Ranking, Tally};
use common::{arg as s, cuma, scratch, seeded_bundle, small_survey, tch_device, tiny, train_and_export};
use cuma::eval::run::Evaluator;
use cuma::models::backbone::{Backbone, StepInput, StepOutput};
use cuma::serve::generate;
use cuma::tch_ops::TchOps;
use cuma::tokenizer::chat::{render, Message};
use cuma_runtime::generate::Timings;
use cuma_runtime::{
    Backend, Bundle, Device as OrtDevice, EngineOptions, GenerateOptions, GenerateRequest, Profile, Session,
    SessionOptions,
};
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

const GREEDY_TOKENS: usize = 16;

/// What one stack decided for one prompt.
#[derive(Debug, Clone)]
struct Observation {
    prompt: Vec<u32>,
    top5: Vec<u32>,
    /// token -> router -> the top-k experts.
    routing: Vec<Vec<Vec<u32>>>,
    greedy: Vec<u32>,
    last_logits: Vec<f32>,
    /// token -> router -> the score of every expert (what the top-k ranks); tch only.
    scores: Vec<Vec<Vec<f32>>>,
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

fn parse_ids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .map(|x| x.parse().expect("snapshot ids are integers"))
        .collect()
}

impl Observation {
    fn snapshot(&self) -> Snapshot {
        let routing = self
            .routing
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| t.iter().map(|experts| ids(experts)).collect::<Vec<_>>().join("|"))
            .collect();
        Snapshot {
            prompt: ids(&self.prompt),
            top5: ids(&self.top5),
            greedy: ids(&self.greedy),
            routing,
        }
    }
}

fn top5(logits: &[f32]) -> Vec<u32> {
    common::ties::live_order(logits)
        .into_iter()
        .take(5)
        .map(|i| i as u32)
        .collect()
}

/// One tch forward over `prompt` (no KV cache).
fn tch_forward(model: &Backbone, prompt: &[u32], profile: Option<&Tensor>) -> StepOutput {
    let _g = tch::no_grad_guard();
    let ids = Tensor::from_slice(&prompt.iter().map(|&i| i64::from(i)).collect::<Vec<_>>())
        .view([1, -1])
        .to_device(model.device);
    let mask = Tensor::ones([1, prompt.len() as i64], (Kind::Int64, model.device));
    model
        .run(
            &mut TchOps::new(model.device),
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile,
            },
        )
        .expect("tch forward")
}

/// `[1, seq, n]` -> one row of `n` values per position.
fn rows_f32(t: &Tensor, seq: usize) -> Vec<Vec<f32>> {
    let flat: Vec<f32> = Vec::try_from(t.contiguous().view([-1])).expect("f32 values");
    let n = flat.len() / seq;
    flat.chunks(n).map(<[f32]>::to_vec).collect()
}

/// tch: one forward over the prompt, then greedy generation with tch's own KV cache.
fn tch_observe(model: &Backbone, prompt: &[u32], profile: Option<&Tensor>) -> Observation {
    let out = tch_forward(model, prompt, profile);
    let n = prompt.len();
    let last: Vec<f32> = Vec::try_from(out.logits.select(1, n as i64 - 1).view([-1])).expect("logits");
    let per_router: Vec<Vec<i64>> = out
        .routing
        .iter()
        .map(|r| Vec::try_from(r.experts.contiguous().view([-1])).expect("experts"))
        .collect();
    let k = per_router.first().map_or(0, |e| e.len() / n);
    let routing = (0..n)
        .map(|t| {
            per_router
                .iter()
                .map(|e| e[t * k..(t + 1) * k].iter().map(|&x| x as u32).collect())
                .collect()
        })
        .collect();
    let per_router_scores: Vec<Vec<Vec<f32>>> = out.routing.iter().map(|r| rows_f32(&r.scores, n)).collect();
    let scores = (0..n)
        .map(|t| per_router_scores.iter().map(|r| r[t].clone()).collect())
        .collect();
    let options = GenerateOptions {
        max_new_tokens: GREEDY_TOKENS,
        ..Default::default()
    };
    let g = generate(model, &[prompt.to_vec()], profile, &options, |_| {})
        .expect("tch generate")
        .remove(0);
    Observation {
        prompt: prompt.to_vec(),
        top5: top5(&last),
        routing,
        greedy: g.token_ids,
        last_logits: last,
        scores,
    }
}

/// cuma-runtime: the same, through a session's public API.
fn runtime_observe(session: &mut Session, prompt: &[u32], demographic: Option<&[f32]>) -> Observation {
    let (last, trace) = session
        .next_token_logits(prompt, demographic, true)
        .expect("runtime forward");
    let routing = trace
        .map(|t| t.tokens.into_iter().map(|tok| tok.experts).collect())
        .unwrap_or_else(|| vec![Vec::new(); prompt.len()]);
    let options = GenerateOptions {
        max_new_tokens: GREEDY_TOKENS,
        ..Default::default()
    };
    let g = session
        .generate_ids(&[prompt.to_vec()], demographic, &options, Timings::default(), |_| {})
        .expect("runtime generate");
    Observation {
        prompt: prompt.to_vec(),
        top5: top5(&last),
        routing,
        greedy: g[0].token_ids.clone(),
        last_logits: last,
        scores: Vec::new(),
    }
}

fn backends() -> [(&'static str, Backend); 2] {
    [
        ("ort-cpu", Backend::Ort { device: OrtDevice::Cpu }),
        ("tract", Backend::Tract),
    ]
}

fn session(bundle: &Path, backend: Backend) -> Session {
    let opened = Bundle::open(bundle).expect("bundle opens");
    Session::new(
        opened,
        SessionOptions {
            engine: EngineOptions {
                backend,
                threads: Some(2),
                ..Default::default()
            },
            strict_profiles: true,
        },
    )
    .expect("session")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let norm = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>().sqrt();
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Checks every backend against tch's observation of `messages` for `profile`, and tch's
/// observation against its snapshot. Returns the largest logit difference seen.
fn compare(
    label: &str,
    bundle: &Path,
    model: &Backbone,
    encoder: Option<&cuma::models::encoder::ProfileEncoder>,
    profile: &Profile,
    messages: &[Message],
    tolerance: f32,
) -> f32 {
    let case = Case {
        label,
        bundle,
        model,
        encoder,
        profile,
        messages,
        tolerance,
    };
    let (worst, want, vector) = compare_on(&backends(), &case);
    check_snapshot(label, model, vector.as_ref(), &want);
    worst
}

/// What [`compare`] checks: a bundle against the tch model it was exported from, on one prompt.
struct Case<'a> {
    label: &'a str,
    bundle: &'a Path,
    model: &'a Backbone,
    encoder: Option<&'a cuma::models::encoder::ProfileEncoder>,
    profile: &'a Profile,
    messages: &'a [Message],
    tolerance: f32,
}

/// [`compare`] on `backends` only, without the snapshot: the worst logit difference, tch's
/// observation and the profile vector it used.
fn compare_on(backends: &[(&str, Backend)], case: &Case<'_>) -> (f32, Observation, Option<Tensor>) {
    let label = case.label;
    let mut worst = 0.0f32;
    let mut reference: Option<(Observation, Option<Tensor>)> = None;
    for &(name, backend) in backends {
        let mut session = session(case.bundle, backend);
        let prompt = session.prompt_ids(case.profile, case.messages).expect("runtime prompt");
        let demographic = session
            .reads_profile_vector()
            .then(|| session.encode_profile(case.profile).expect("profile vector"));
        let (want, _) = reference.get_or_insert_with(|| {
            // tch builds its prompt from the same messages with its own tokenizer and template.
            let mut all = vec![session.system_message(case.profile).expect("system")];
            all.extend(case.messages.iter().cloned());
            let tch_prompt = case
                .model
                .tokenizer
                .encode(&render(&case.model.tokenizer, &all).expect("template"), false)
                .expect("tokens");
            assert_eq!(
                tch_prompt, prompt,
                "{label}: tch and cuma-runtime tokenise the chat prompt differently"
            );
            let vector = case.encoder.filter(|_| demographic.is_some()).map(|e| {
                e.embed(&[&case.profile.render(&session.bundle().manifest.profile).expect("text")])
                    .expect("tch profile")
            });
            if let (Some(v), Some(d)) = (&vector, &demographic) {
                let t: Vec<f32> = Vec::try_from(v.view([-1])).expect("vector");
                let cos = cosine(&t, d);
                assert!(cos >= 0.99999, "{label}: profile vector cosine {cos}");
            }
            (tch_observe(case.model, &prompt, vector.as_ref()), vector)
        });
        let got = runtime_observe(&mut session, &prompt, demographic.as_deref());
        let diff = max_diff(&want.last_logits, &got.last_logits);
        assert!(
            diff <= case.tolerance,
            "{label} on {name}: last-position logits differ by {diff}"
        );
        assert_eq!(got.top5, want.top5, "{label} on {name}: top-5 next tokens");
        let routing = routing_against(&want.scores, &got.routing);
        assert!(
            routing.is_some_and(|t| t.differ == 0),
            "{label} on {name}: routing experts per router and token differ from tch's ({routing:?})"
        );
        println!(
            "{label} on {name}: routing against tch: {}",
            routing.unwrap_or_default()
        );
        assert_eq!(
            got.greedy, want.greedy,
            "{label} on {name}: {GREEDY_TOKENS}-token greedy generation"
        );
        worst = worst.max(diff);
    }
    let (want, vector) = reference.expect("observed");
    (worst, want, vector)
}

/// Every (token, router) choice of experts in `routing` judged against tch's `scores` (token ->
/// router -> expert): tch's own choice, or another only at a near-tie. `None` when the shapes
/// differ.
fn routing_against(scores: &[Vec<Vec<f32>>], routing: &[Vec<Vec<u32>>]) -> Option<Tally> {
    let mut tally = Tally::default();
    if scores.len() != routing.len() {
        return None;
    }
    for (token_scores, token_routing) in scores.iter().zip(routing) {
        if token_scores.len() != token_routing.len() {
            return None;
        }
        for (s, experts) in token_scores.iter().zip(token_routing) {
            tally.add(compare_ranking(experts, s));
        }
    }
    Some(tally)
}

/// Pins tch's observation `live` to the committed snapshot `label`: the prompt tokens exactly;
/// the top-5 tokens, every (token, router) choice of experts and every greedy token up to
/// near-ties (`common::ties`). A recorded greedy continuation that leaves the live one must be
/// greedy under the live model, teacher-forced, at every step. Anything else - and recording
/// (`INSTA_UPDATE=always`, or no snapshot yet) - goes to insta, which fails with the difference
/// and writes `.snap.new`, or records.
fn check_snapshot(label: &str, model: &Backbone, profile: Option<&Tensor>, live: &Observation) {
    let recording = std::env::var("INSTA_UPDATE").as_deref() == Ok("always");
    if let (false, Some(pinned)) = (recording, read_snapshot(label)) {
        if let Some((tokens, routing)) = match_up_to_ties(model, profile, live, &pinned) {
            println!("{label}: matches its snapshot; tokens: {tokens}; routing: {routing}");
            return;
        }
    }
    insta::with_settings!({ snapshot_path => "../fixtures/snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(label, live.snapshot());
    });
}

/// The verdicts (token rankings, routing rankings) when `pinned` matches `live` up to
/// near-ties; `None` when it does not.
fn match_up_to_ties(
    model: &Backbone,
    profile: Option<&Tensor>,
    live: &Observation,
    pinned: &Snapshot,
) -> Option<(Tally, Tally)> {
    if parse_ids(&pinned.prompt) != live.prompt {
        return None;
    }
    let mut tokens = Tally::default();
    tokens.add(compare_ranking(&parse_ids(&pinned.top5), &live.last_logits));
    let recorded: Vec<Vec<Vec<u32>>> = pinned
        .routing
        .iter()
        .map(|line| line.split('|').map(parse_ids).collect())
        .collect();
    let routed: Vec<Vec<Vec<f32>>> = live.scores.iter().filter(|t| !t.is_empty()).cloned().collect();
    let routing = routing_against(&routed, &recorded)?;
    let greedy = parse_ids(&pinned.greedy);
    if greedy == live.greedy {
        (0..greedy.len()).for_each(|_| tokens.add(Ranking::Exact));
    } else if !greedy.is_empty() {
        let mut forced = live.prompt.clone();
        forced.extend_from_slice(&greedy[..greedy.len() - 1]);
        let out = tch_forward(model, &forced, profile);
        let logits = rows_f32(&out.logits, forced.len());
        for (i, &token) in greedy.iter().enumerate() {
            tokens.add(compare_ranking(&[token], &logits[live.prompt.len() - 1 + i]));
        }
    }
    (tokens.differ == 0 && routing.differ == 0).then_some((tokens, routing))
}

/// The committed snapshot `label`, if there is one.
fn read_snapshot(label: &str) -> Option<Snapshot> {
    let path = common::repo().join("fixtures/snapshots").join(format!("{label}.snap"));
    let text = std::fs::read_to_string(path).ok()?;
    // insta's file: a `---` header block, then the JSON.
    let json = text.splitn(3, "---\n").nth(2)?;
    serde_json::from_str(json).ok()
}

#[test]
fn near_ties_accept_either_order_and_nothing_else() {
    assert!(near_tie(0.5, 0.50009) && !near_tie(0.5, 0.5002));
    // Relative above 1: 1.5e-3 at a logit of 15.
    assert!(near_tie(15.0, 15.0014) && !near_tie(15.0, 15.002));
    let gates = [0.1, 0.30004, 0.3, 0.05];
    assert_eq!(compare_ranking(&[1, 2], &gates), Ranking::Exact);
    assert_eq!(compare_ranking(&[2, 1], &gates), Ranking::NearTie);
    assert_eq!(compare_ranking(&[1, 0], &gates), Ranking::Differs);
    assert_eq!(compare_ranking(&[1, 1], &gates), Ranking::Differs, "an expert twice");
    assert_eq!(compare_ranking(&[7], &gates), Ranking::Differs, "out of range");
    // The k-th against the (k+1)-th: a near-tie at the edge of the top-k counts as well.
    assert_eq!(compare_ranking(&[1], &[0.2, 0.2, 0.1]), Ranking::NearTie);
    let mut t = Tally::default();
    [Ranking::Exact, Ranking::NearTie, Ranking::Exact]
        .into_iter()
        .for_each(|r| t.add(r));
    assert_eq!((t.exact, t.near_ties, t.differ, t.total()), (2, 1, 0, 3));
}

#[test]
fn seeded_generator_is_splitmix64() {
    // splitmix64's published first output for state 0: the seeded adapters are these bits.
    assert_eq!(cuma_model::sampling::Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    let mut g = cuma_model::sampling::Rng::new(1);
    assert!((0..1000)
        .map(|_| common::seeded::symmetric(&mut g))
        .all(|v| (-1.0..1.0).contains(&v)));
}

fn question() -> Vec<Message> {
    vec![Message::new(
        "user",
        "How important is family in your life? A. Very important B. Not important You can only choose one option.",
    )]
}

#[test]
fn bare_backbones_agree_across_tch_ort_and_tract() {
    for family in ["llama", "qwen2", "qwen3"] {
        let dir = scratch(&format!("runtime_bare_{family}"));
        let bundle = dir.join("bundle");
        cuma(&["export", "--onnx", &s(&tiny(family)), "--out", &s(&bundle)]);
        let model = Backbone::load(&tiny(family), tch_device()).expect("loads");
        let diff = compare(
            &format!("bare-{family}"),
            &bundle,
            &model,
            None,
            &Profile::new().with("country", "Chile"),
            &question(),
            1e-4,
        );
        println!("bare {family}: max |logit diff| {diff:.2e}");
    }
}

#[test]
fn seeded_cuma_in_every_gate_mode_agrees_across_runtimes() {
    let dir = scratch("runtime_cuma");
    let items = small_survey(&dir, 2);
    let (llama, bert) = (s(&tiny("llama")), s(&tiny("bert")));
    for gate in ["topk-softmax", "double-softmax", "soft"] {
        let run = dir.join(gate);
        let bundle = seeded_bundle(
            &items,
            &run,
            &[
                "--model",
                &llama,
                "--encoder",
                &bert,
                "--gate",
                gate,
                "--targets",
                "q-proj,v-proj,up-proj",
            ],
            3,
        );
        let e = Evaluator::from_checkpoint(&run.join("checkpoint"), tch_device()).expect("checkpoint");
        for (i, profile) in ["country=Country A1,age=18-34", "country=Country B2,age=55+"]
            .iter()
            .enumerate()
        {
            let profile = Profile::parse(profile).expect("profile");
            let diff = compare(
                &format!("cuma-{gate}-profile{i}"),
                &bundle,
                &e.model,
                Some(&e.encoder),
                &profile,
                &question(),
                1e-4,
            );
            println!("CuMA {gate} profile {i}: max |logit diff| {diff:.2e}");
        }
    }
}

#[test]
fn smollm2_minilm_cuma_on_wvs_agrees_across_runtimes() {
    let dir = scratch("runtime_smollm2");
    let wvs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7");
    let items = dir.join("data/items.jsonl");
    if wvs.join("codebook.json").is_file() {
        cuma(&[
            "data",
            "convert",
            "--wvs",
            &s(&wvs),
            "--questions",
            "Q6",
            "--out",
            &s(&items),
        ]);
    } else {
        eprintln!("no WVS data at {}; training on synthetic survey data", wvs.display());
        cuma(&["data", "synth", "--out-dir", &s(&dir.join("data"))]);
    }
    let run = dir.join("run");
    let bundle = seeded_bundle(&items, &run, &[], 0);
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), tch_device()).expect("checkpoint");
    for (label, profile) in [
        (
            "smollm2-cuma-thailand",
            "country=Thailand,age=55-64,gender=Female,religion=Buddhist",
        ),
        (
            "smollm2-cuma-germany",
            "country=Germany,age=25-34,gender=Male,religion=No religion",
        ),
    ] {
        let messages = [Message::new("user", "How important is religion in your life? A. Very important B. Rather important C. Not very important D. Not at all important You can only choose one option.")];
        let diff = compare(
            label,
            &bundle,
            &e.model,
            Some(&e.encoder),
            &Profile::parse(profile).expect("profile"),
            &messages,
            1e-3,
        );
        println!("{label}: max |logit diff| {diff:.2e}");
    }
}

/// `cuma-run` (driven through `cuma_runtime::cli`) on `input`; stdout or the error text.
fn cuma_run(args: &[&str], input: &[u8]) -> Result<String, String> {
    use clap::Parser;
    let parsed = cuma_runtime::cli::Args::try_parse_from(std::iter::once("cuma-run").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    cuma_runtime::cli::run(parsed, &mut std::io::Cursor::new(input.to_vec()), &mut out)
        .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf8 output"))
}

#[test]
fn cuma_run_serves_and_reports_bad_input_without_panicking() {
    let dir = scratch("runtime_cli");
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
    let b = s(&bundle);
    for backend in ["ort", "tract"] {
        // A question: one line per option with its probability; the probabilities sum to 1.
        let out = cuma_run(
            &[
                "--bundle",
                &b,
                "--backend",
                backend,
                "--profile",
                "country=Country A1",
                "--question",
                "Do you agree?",
                "--option",
                "Yes",
                "--option",
                "No",
            ],
            b"",
        )
        .expect("question");
        let probs: Vec<f64> = out
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .nth(2)
                    .expect("probability column")
                    .parse()
                    .expect("number")
            })
            .collect();
        assert_eq!(probs.len(), 2, "{out}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{out}");
        // A streamed chat reply.
        let reply = cuma_run(
            &[
                "--bundle",
                &b,
                "--backend",
                backend,
                "--profile",
                "country=Country B2",
                "--prompt",
                "Hello",
                "--max-tokens",
                "4",
                "--trace-routing",
            ],
            b"",
        )
        .expect("prompt");
        assert!(reply.ends_with('\n'), "{reply:?}");
    }
    // A batch of requests with different profiles gives each the reply it gets alone.
    let tch_encoder = cuma::models::ProfileEncoder::load(&tiny("bert"), tch_device()).expect("tch encoder");
    for backend in [Backend::Tract, Backend::Ort { device: OrtDevice::Cpu }] {
        let mut session = session(&bundle, backend);
        let request = |country: &str, text: &str| GenerateRequest {
            profile: Profile::new().with("country", country),
            messages: vec![Message::new("user", text)],
        };
        let requests = [
            request("Country A1", "Hello there, how are you today?"),
            request("Country B2", "Hi"),
        ];
        let options = GenerateOptions {
            max_new_tokens: 6,
            trace_routing: true,
            ..Default::default()
        };
        let mut streamed = [String::new(), String::new()];
        let together = session
            .generate(&requests, &options, |t| streamed[t.request].push_str(t.text))
            .expect("batch");
        for (i, r) in requests.iter().enumerate() {
            let alone = session
                .generate(std::slice::from_ref(r), &options, |_| {})
                .expect("alone");
            assert_eq!(
                together[i].token_ids, alone[0].token_ids,
                "{backend}: request {i} in a batch"
            );
            assert_eq!(streamed[i], together[i].text, "{backend}: streamed text of request {i}");
            let trace = together[i].routing.as_ref().expect("trace");
            // Every prompt token and every generated token fed back (the last one is not, unless
            // the model ended its turn after it).
            let fed = match together[i].finish_reason {
                cuma_runtime::FinishReason::EndOfTurn => together[i].token_ids.len(),
                _ => together[i].token_ids.len().saturating_sub(1),
            };
            assert_eq!(
                trace.tokens.len(),
                together[i].prompt_tokens + fed,
                "{backend}: one trace entry per processed token"
            );
        }
        // A stop sequence that spans the last two tokens of the first reply: from the last whole
        // character of the first five tokens' text to the first character of the sixth's.
        // Generation stops there, the text is cut before it, and its first half, decoded a step
        // earlier, was never streamed.
        let full = &together[0].text;
        let shorter = GenerateOptions {
            max_new_tokens: options.max_new_tokens - 1,
            ..options.clone()
        };
        let head = session
            .generate(&requests[..1], &shorter, |_| {})
            .expect("one token fewer")
            .remove(0)
            .text;
        assert!(
            head.len() < full.len() && full.starts_with(&head),
            "{backend}: {head:?} should be a proper prefix of {full:?}"
        );
        let from = head
            .trim_end_matches('\u{FFFD}')
            .char_indices()
            .last()
            .expect("a whole character in the first five tokens")
            .0;
        let to = head.len() + full[head.len()..].chars().next().map_or(0, char::len_utf8);
        let stop = full[from..to].to_string();
        let options = GenerateOptions {
            stop: vec![stop.clone()],
            ..options.clone()
        };
        let mut streamed = String::new();
        let stopped = session
            .generate(&requests[..1], &options, |t| streamed.push_str(t.text))
            .expect("with a stop sequence");
        let want = &full[..full.find(&stop).expect("stop is in the reply")];
        assert_eq!(
            (stopped[0].text.as_str(), stopped[0].finish_reason),
            (want, cuma_runtime::FinishReason::Stop),
            "{backend}: stop {stop:?}"
        );
        assert_eq!(streamed, want, "{backend}: streamed text with stop {stop:?}");
        // A profile text over the encoder's 128 tokens is cut as training's encoder cuts it:
        // the runtime's vector is tch's for the same text.
        let long_profile = Profile::new().with("country", &"Country A1 ".repeat(200));
        let text = long_profile.render(&session.bundle().manifest.profile).expect("text");
        let got = session.encode_profile(&long_profile).expect("a long profile embeds");
        let want: Vec<f32> =
            Vec::try_from(tch_encoder.embed(&[&text]).expect("tch embeds").view([-1])).expect("vector");
        let cos = cosine(&got, &want);
        assert!(cos >= 0.99999, "{backend}: long-profile vector cosine {cos}");
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
    let out = cuma_run(
        &["--bundle", &b, "--backend", "tract", "--jsonl", "--trace-routing"],
        &input,
    )
    .expect("batch runs to the end");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0]["id"], "q");
    assert_eq!(
        lines[0]["probabilities"].as_array().map(Vec::len),
        Some(2),
        "{}",
        lines[0]
    );
    assert!(
        lines[0]["routing"]["tokens"].as_array().is_some_and(|t| !t.is_empty()),
        "routing trace in {}",
        lines[0]
    );
    for (i, needle) in [
        (1, "JSON"),
        (2, "UTF-8"),
        (3, "at least one option"),
        (4, "needs"),
        (5, "context"),
    ] {
        let err = lines[i]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("line {} should be an error: {}", i + 1, lines[i]));
        assert!(err.contains(needle), "line {}: {err}", i + 1);
        assert_eq!(lines[i]["line"], i + 1);
    }
    assert_eq!(lines[6]["id"], 7);
    assert!(lines[6]["text"].is_string(), "{}", lines[6]);
    assert!(
        lines[6]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("shoe_size")),
        "{}",
        lines[6]
    );
    // --strict refuses the unknown attribute instead.
    let err = cuma_run(
        &[
            "--bundle",
            &b,
            "--backend",
            "tract",
            "--strict",
            "--profile",
            "country=X,shoe_size=42",
            "--question",
            "Agree?",
            "--option",
            "Yes",
            "--option",
            "No",
        ],
        b"",
    )
    .expect_err("strict");
    assert!(err.contains("shoe_size"), "{err}");
    // Nothing to do, a CUDA device on tract, an empty profile pair.
    assert!(cuma_run(&["--bundle", &b], b"")
        .expect_err("no request")
        .contains("nothing to do"));
    assert!(cuma_run(
        &[
            "--bundle",
            &b,
            "--backend",
            "tract",
            "--device",
            "cuda",
            "--prompt",
            "x"
        ],
        b""
    )
    .expect_err("tract on cuda")
    .contains("CPU only"));
    assert!(
        cuma_run(&["--bundle", &b, "--profile", "country", "--prompt", "x"], b"")
            .expect_err("bad profile")
            .contains("key=value")
    );
}

#[test]
fn damaged_bundles_are_refused_with_the_file_named() {
    let dir = scratch("runtime_damaged");
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &s(&tiny("llama")), "--out", &s(&bundle)]);
    let copy = |name: &str| bundle_variant(&bundle, &dir.join(name), &|_, _| {});
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
    std::fs::write(
        future.join("manifest.json"),
        manifest.replacen("\"format_version\": 2", "\"format_version\": 99", 1),
    )
    .expect("write");
    let err = Bundle::open(&future).expect_err("version").to_string();
    assert!(err.contains("format version 99"), "{err}");
    // A version-1 bundle (strings where version 2 has enums) is refused with what to do.
    std::fs::write(
        future.join("manifest.json"),
        manifest.replacen("\"format_version\": 2", "\"format_version\": 1", 1),
    )
    .expect("write");
    let err = Bundle::open(&future).expect_err("version 1").to_string();
    assert!(
        err.contains("format version 1 is older") && err.contains("export the bundle again"),
        "{err}"
    );
    let err = Bundle::open(dir.join("nowhere")).expect_err("no dir").to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

/// `cuma export --quant`: the tiny GGUF's projections are Q4_0, Q4_1 and Q8_0 blocks, which a
/// quantized bundle carries exactly, so a seeded CuMA on it, served by ONNX Runtime through its
/// fused `MatMulNBits` kernel, decides what tch decides on the dequantized GGUF: the same
/// experts per router and token, top-5 tokens and greedy generation. tract cannot read such a
/// bundle and says so.
#[test]
fn quantized_bundles_carry_gguf_blocks_exactly_and_tract_refuses_them() {
    let dir = scratch("runtime_quant");
    let items = small_survey(&dir, 1);
    let run = dir.join("run");
    seeded_bundle(
        &items,
        &run,
        &[
            "--model",
            &s(&tiny("llama-q.gguf")),
            "--encoder",
            &s(&tiny("bert")),
            "--method",
            "cuma",
        ],
        11,
    );
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), tch_device()).expect("checkpoint");
    let profile = Profile::new().with("country", "Country A1");
    let ort = [("ort-cpu", Backend::Ort { device: OrtDevice::Cpu })];
    for (quant, bits) in [("int4", 4), ("int8", 8)] {
        let bundle = dir.join(quant);
        cuma(&["export", "--onnx", &s(&run), "--out", &s(&bundle), "--quant", quant]);
        let manifest = &Bundle::open(&bundle).expect("opens").manifest;
        assert_eq!(manifest.quant.map(|q| (q.bits, q.block_size)), Some((bits, 32)));
        assert_eq!(manifest.opset, 21);
        let label = format!("cuma-llama-q-{quant}");
        let case = Case {
            label: &label,
            bundle: &bundle,
            model: &e.model,
            encoder: Some(&e.encoder),
            profile: &profile,
            messages: &question(),
            tolerance: 1e-4,
        };
        let (diff, _, _) = compare_on(&ort, &case);
        println!("{label} on ort-cpu: max |logit diff| {diff:.2e}");
        let refused = Session::new(
            Bundle::open(&bundle).expect("opens"),
            SessionOptions {
                engine: EngineOptions {
                    backend: Backend::Tract,
                    ..Default::default()
                },
                strict_profiles: false,
            },
        )
        .err()
        .expect("tract refuses a quantized bundle")
        .to_string();
        assert!(
            refused.contains("tract cannot") && refused.contains("without --quant"),
            "{refused}"
        );
    }
}

#[test]
fn baseline_adapters_agree_across_runtimes() {
    let dir = scratch("runtime_baselines");
    let items = small_survey(&dir, 2);
    let (qwen2, bert) = (s(&tiny("qwen2")), s(&tiny("bert")));
    for method in ["lora", "dora", "hydralora", "mixlora"] {
        let run = dir.join(method);
        let bundle = seeded_bundle(
            &items,
            &run,
            &["--model", &qwen2, "--encoder", &bert, "--method", method],
            5,
        );
        let e = Evaluator::from_checkpoint(&run.join("checkpoint"), tch_device()).expect("checkpoint");
        let diff = compare(
            &format!("{method}-qwen2"),
            &bundle,
            &e.model,
            Some(&e.encoder),
            &Profile::new().with("country", "Country A1"),
            &question(),
            1e-4,
        );
        println!("{method}: max |logit diff| {diff:.2e}");
    }
}

#[test]
fn decoder_profile_encoder_exports_and_agrees_across_runtimes() {
    // A Qwen3-Embedding-style encoder (the tiny Qwen3 with last-token pooling) under CuMA.
    let dir = scratch("runtime_decoder_encoder");
    let items = small_survey(&dir, 2);
    let run = dir.join("run");
    let bundle = seeded_bundle(
        &items,
        &run,
        &["--model", &s(&tiny("llama")), "--encoder", &s(&tiny("qwen3"))],
        4,
    );
    let manifest = Bundle::open(&bundle).expect("bundle").manifest;
    let encoder = manifest.encoder.as_ref().expect("encoder in the manifest");
    assert_eq!(
        (encoder.family, encoder.pooling),
        (
            cuma_model::bundle::EncoderFamily::Qwen3,
            cuma_model::layers::Pooling::LastToken
        )
    );
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), tch_device()).expect("checkpoint");
    let diff = compare(
        "cuma-qwen3-encoder",
        &bundle,
        &e.model,
        Some(&e.encoder),
        &Profile::parse("country=Country B1,age=35-44").expect("profile"),
        &question(),
        1e-4,
    );
    println!("CuMA with a decoder encoder: max |logit diff| {diff:.2e}");
}

#[test]
fn weights_in_an_external_data_file_load_on_every_runtime() {
    // The 2 GB protobuf limit is forced down to 0 bytes, so every weight goes external.
    let dir = scratch("runtime_external_data");
    let bundle = dir.join("bundle");
    cuma(&[
        "export",
        "--onnx",
        &s(&tiny("qwen3")),
        "--out",
        &s(&bundle),
        "--external-data-above",
        "0",
    ]);
    let manifest = Bundle::open(&bundle).expect("bundle").manifest;
    assert!(
        manifest.files.contains_key("model.onnx.data"),
        "files: {:?}",
        manifest.files.keys()
    );
    let graph = std::fs::metadata(bundle.join("model.onnx")).expect("graph").len();
    let data = std::fs::metadata(bundle.join("model.onnx.data")).expect("data").len();
    assert!(
        data > 10 * graph,
        "weights should live in the data file: graph {graph} B, data {data} B"
    );
    let model = Backbone::load(&tiny("qwen3"), tch_device()).expect("loads");
    compare(
        "bare-qwen3",
        &bundle,
        &model,
        None,
        &Profile::new().with("country", "Chile"),
        &question(),
        1e-4,
    );
}

/// A named pipe outside a bundle that tells whether anything opened it: a helper thread keeps
/// trying a non-blocking open for writing, which succeeds only while a reader has the pipe open
/// (and then lets that reader go on, at end of file). Trusts no code path of the runtime.
struct Sentinel {
    path: std::path::PathBuf,
    opened: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Sentinel {
    fn new(path: std::path::PathBuf) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", path.display());
        let (opened, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (o, s, p) = (opened.clone(), stop.clone(), path.clone());
        const O_NONBLOCK: i32 = 0o4000; // Linux
        let watcher = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&p)
                    .is_ok()
                {
                    o.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        Self {
            path,
            opened,
            stop,
            watcher: Some(watcher),
        }
    }

    /// Whether anything opened the pipe so far (after a moment for the watcher to see it).
    fn was_opened(&self) -> bool {
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// A copy of `bundle` in `to` whose manifest `edit` changed (it may change the copied files too).
fn bundle_variant(bundle: &Path, to: &Path, edit: &dyn Fn(&Path, &mut serde_json::Value)) -> std::path::PathBuf {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(bundle).expect("bundle") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).expect("manifest")).expect("json");
    edit(to, &mut m);
    std::fs::write(
        to.join("manifest.json"),
        serde_json::to_string_pretty(&m).expect("json"),
    )
    .expect("write");
    to.to_path_buf()
}

#[test]
fn manifest_metadata_that_contradicts_itself_or_the_graphs_is_refused() {
    let dir = scratch("runtime_manifest_checks");
    let items = small_survey(&dir, 1);
    let bundle = seeded_bundle(
        &items,
        &dir.join("run"),
        &["--model", &s(&tiny("llama")), "--encoder", &s(&tiny("bert"))],
        9,
    );
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 12] = [
        ("top_k 0", |m| m["adapter"]["top_k"] = 0.into(), "adapter.top_k"),
        (
            "top_k above experts",
            |m| m["adapter"]["top_k"] = 9.into(),
            "adapter.top_k",
        ),
        ("experts 0", |m| m["adapter"]["experts"] = 0.into(), "adapter.experts"),
        (
            "experts 1e12",
            |m| m["adapter"]["experts"] = 1_000_000_000_000u64.into(),
            "adapter.experts",
        ),
        (
            "no routers",
            |m| m["adapter"]["routers"] = serde_json::json!([]),
            "adapter.routers",
        ),
        (
            "unknown method",
            |m| m["adapter"]["method"] = "magic".into(),
            "adapter.method",
        ),
        (
            "unknown pooling",
            |m| m["encoder"]["pooling"] = "max".into(),
            "encoder.pooling",
        ),
        ("unknown dtype", |m| m["dtype"] = "int3".into(), "dtype"),
        ("unknown key", |m| m["backbone"]["shoe_size"] = 42.into(), "shoe_size"),
        ("layers 3", |m| m["backbone"]["layers"] = 3.into(), "backbone.layers"),
        (
            "layers 1e9",
            |m| m["backbone"]["layers"] = 1_000_000_000u64.into(),
            "backbone.layers",
        ),
        (
            "layers 2^64-1",
            |m| m["backbone"]["layers"] = u64::MAX.into(),
            "backbone.layers",
        ),
    ];
    for (i, (what, edit, needle)) in cases.into_iter().enumerate() {
        let variant = bundle_variant(&bundle, &dir.join(format!("case{i}")), &|_, m| edit(m));
        let err = Bundle::open(&variant).expect_err(what).to_string();
        assert!(err.contains(needle), "{what}: {err}");
    }
    Bundle::open(&bundle).expect("the untouched bundle opens");
}

#[test]
fn a_hostile_manifest_cannot_reach_outside_its_bundle() {
    let dir = scratch("runtime_hostile");
    let bundle = dir.join("bundle");
    cuma(&[
        "export",
        "--onnx",
        &s(&tiny("llama")),
        "--out",
        &s(&bundle),
        "--external-data-above",
        "0",
    ]);
    // `../sentinel.fif` has the length of `model.onnx.data`, so the graph's bytes can be patched.
    let sentinel = Sentinel::new(dir.join("sentinel.fif"));
    let outside = sentinel.path.to_str().expect("utf8").to_string();
    let variant =
        |name: &str, edit: &dyn Fn(&Path, &mut serde_json::Value)| bundle_variant(&bundle, &dir.join(name), edit);
    let sha = |p: &Path| cuma::train::checkpoint::hash_files(&[p.to_path_buf()]).expect("hash");
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "dotdot",
            variant("dotdot", &|_, m| m["files"]["../sentinel.fif"] = "0".repeat(64).into()),
            "plain relative name",
        ),
        (
            "absolute",
            variant("absolute", &|_, m| m["files"][outside.as_str()] = "0".repeat(64).into()),
            "plain relative name",
        ),
        (
            "unlisted tokenizer",
            variant("unlisted", &|_, m| {
                m["backbone"]["tokenizer"] = "../sentinel.fif".into()
            }),
            "not listed",
        ),
        (
            "symlinked tokenizer",
            variant("symlink", &|to, _| {
                std::fs::remove_file(to.join("tokenizer.json")).expect("rm");
                std::os::unix::fs::symlink(&outside, to.join("tokenizer.json")).expect("symlink");
            }),
            "symbolic link",
        ),
        (
            "external data outside",
            variant("external", &|to, m| {
                let graph = std::fs::read(to.join("model.onnx")).expect("graph");
                let (from, into) = (b"model.onnx.data".as_slice(), b"../sentinel.fif".as_slice());
                let mut patched = Vec::with_capacity(graph.len());
                let mut i = 0;
                while i < graph.len() {
                    if graph[i..].starts_with(from) {
                        patched.extend_from_slice(into);
                        i += from.len();
                    } else {
                        patched.push(graph[i]);
                        i += 1;
                    }
                }
                assert_ne!(patched, graph, "the graph names its data file");
                std::fs::write(to.join("model.onnx"), &patched).expect("write");
                m["files"]["model.onnx"] = sha(&to.join("model.onnx")).into();
            }),
            "external data",
        ),
    ];
    for (what, bundle, needle) in &cases {
        let opened = Bundle::open(bundle).and_then(|b| {
            Session::new(
                b,
                SessionOptions {
                    engine: EngineOptions {
                        backend: Backend::Tract,
                        threads: Some(1),
                        ..Default::default()
                    },
                    strict_profiles: false,
                },
            )
        });
        let err = opened
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("{what}: the bundle was served"));
        assert!(
            !sentinel.was_opened(),
            "{what}: a file outside the bundle was opened ({err})"
        );
        assert!(err.contains(needle), "{what}: {err}");
    }
    // External data cut short is refused before an engine reads past its end.
    let truncated = variant("truncated", &|to, m| {
        let data = to.join("model.onnx.data");
        let bytes = std::fs::read(&data).expect("data");
        std::fs::write(&data, &bytes[..bytes.len() - 100]).expect("truncate");
        m["files"]["model.onnx.data"] = sha(&data).into();
    });
    let err = Bundle::open(&truncated).expect_err("truncated data").to_string();
    assert!(err.contains("truncated"), "{err}");
    // The untouched bundle still opens and serves.
    Session::new(
        Bundle::open(&bundle).expect("bundle"),
        SessionOptions {
            engine: EngineOptions {
                backend: Backend::Tract,
                threads: Some(1),
                ..Default::default()
            },
            strict_profiles: false,
        },
    )
    .expect("serves");
}

#[test]
fn out_of_range_sampling_threads_and_request_values_are_refused() {
    let dir = scratch("runtime_bad_values");
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &s(&tiny("llama")), "--out", &s(&bundle)]);
    let b = s(&bundle);
    let cases: [(&[&str], &str); 6] = [
        (&["--temperature", "nan"], "temperature"),
        (&["--temperature=-1"], "temperature"),
        (&["--top-p", "0"], "top_p"),
        (&["--stop", ""], "empty stop sequence"),
        (&["--threads", "1000000"], "--threads"),
        (&["--threads", "0"], "--threads"),
    ];
    for (flags, needle) in cases {
        let mut args = vec![
            "--bundle",
            b.as_str(),
            "--backend",
            "ort",
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
        ];
        args.extend_from_slice(flags);
        let err = cuma_run(&args, b"").expect_err(&format!("{flags:?} should be refused"));
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    // The library checks thread counts too, for embedders that bypass the CLI.
    let huge = SessionOptions {
        engine: EngineOptions {
            backend: Backend::Ort { device: OrtDevice::Cpu },
            threads: Some(1_000_000),
            ..Default::default()
        },
        strict_profiles: false,
    };
    let err = Session::new(Bundle::open(&bundle).expect("bundle"), huge)
        .err()
        .expect("a million threads")
        .to_string();
    assert!(err.contains("threads"), "{err}");
    // In JSONL, a max_tokens of the wrong type or sign is an error for that line, not ignored.
    let input = b"{\"prompt\": \"Hi\", \"max_tokens\": -1}\n{\"prompt\": \"Hi\", \"max_tokens\": \"5\"}\n{\"prompt\": \"Hi\", \"max_tokens\": 1.5}\n{\"prompt\": \"Hi\", \"max_tokens\": 2}\n";
    let out = cuma_run(&["--bundle", &b, "--backend", "tract", "--jsonl"], input).expect("batch runs to the end");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    for line in &lines[..3] {
        assert!(
            line["error"].as_str().is_some_and(|e| e.contains("max_tokens")),
            "{line}"
        );
    }
    assert!(lines[3]["text"].is_string(), "{}", lines[3]);
}

#[test]
fn a_tokenizer_with_ids_past_the_vocabulary_is_an_error_not_a_panic() {
    let dir = scratch("runtime_tokenizer_ids");
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &s(&tiny("llama")), "--out", &s(&bundle)]);
    // The letter "A" (an option letter, and in every option list) moved to id 100000.
    let broken = bundle_variant(&bundle, &dir.join("broken"), &|to, m| {
        let path = to.join("tokenizer.json");
        let mut tok: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("tokenizer")).expect("json");
        let vocab = tok["model"]["vocab"].as_object_mut().expect("a BPE vocabulary");
        assert!(vocab.contains_key("A"), "the tiny vocabulary has the letter A");
        vocab.insert("A".into(), 100_000.into());
        std::fs::write(&path, tok.to_string()).expect("write");
        m["files"]["tokenizer.json"] = cuma::train::checkpoint::hash_files(&[path]).expect("hash").into();
    });
    // The session refuses it at load: the tokenizer no longer agrees with the manifest's letter ids.
    for backend in backends().map(|(_, b)| b) {
        let options = SessionOptions {
            engine: EngineOptions {
                backend,
                threads: Some(2),
                ..Default::default()
            },
            strict_profiles: true,
        };
        let err = match Session::new(Bundle::open(&broken).expect("bundle opens"), options) {
            Ok(_) => panic!("{backend}: a session on a broken tokenizer"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("100000") && err.contains("vocabulary"), "{backend}: {err}");
    }
}
