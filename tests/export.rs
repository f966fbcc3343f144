//! ONNX export against the tch model: the exported graph passes `onnx.checker` (full check), runs
//! in Python onnxruntime, and matches tch's logits (<= 1e-4 on the tiny fixtures), routing
//! decisions (identical, but where tch's scores are a near-tie: `common::ties`) and a greedy generation through the KV cache - for every backbone family, for a bare
//! backbone and for trained CuMA adapters in every gate mode.

mod common;

use common::ties::{compare_ranking, Tally};
use common::{arg as s, cuma, cuma_err, scratch, small_survey, tiny, train_and_export, TINY_BUDGET};
use cuma::eval::run::Evaluator;
use cuma::models::backbone::{Backbone, StepInput};
use cuma::tch_ops::TchOps;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn python() -> PathBuf {
    let venv = std::env::var_os("CUMA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin/python")
}

/// The bare tiny `family` backbone's logits for `ids` (adapters must move them, or a comparison
/// of adapted models proves nothing).
fn bare_logits(family: &str, ids: &Tensor, mask: &Tensor) -> Tensor {
    let model = Backbone::load(&tiny(family), CPU).expect("bare");
    tch::no_grad(|| model.step(ids, mask, None)).expect("bare").0
}

/// Runs `fixtures/onnx/{script}` as `script TARGET REQUEST.json OUT.json` on `request` (files
/// named after `tag` in `dir`) and returns its JSON output.
fn python_json(script: &str, target: &Path, request: &Value, dir: &Path, tag: &str) -> Value {
    let (req, out) = (
        dir.join(format!("{tag}-request.json")),
        dir.join(format!("{tag}-out.json")),
    );
    std::fs::write(&req, request.to_string()).expect("request");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx").join(script);
    let run = Command::new(python())
        .arg(&script)
        .arg(target)
        .arg(&req)
        .arg(&out)
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).expect("python output")).expect("json")
}

/// Runs `model` in onnxruntime on `request` (see fixtures/onnx/run_ort.py).
fn ort(model: &Path, request: &Value, dir: &Path) -> Value {
    let v = python_json("run_ort.py", model, request, dir, "ort");
    assert_eq!(v["checker"], "ok", "onnx.checker.check_model(full_check=True) failed");
    v
}

/// onnxruntime's `routing_experts` (`[routers, b, s, k]`) judged against tch's routing: every
/// (router, token) choice must be tch's, or differ from it only at a near-tie of tch's scores.
fn routing_verdicts(routing: &[cuma_model::adapters::Routing<Tensor>], got: &Value) -> Tally {
    let got: Vec<u32> = got["routing_experts"]
        .as_array()
        .expect("routing")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect();
    let mut tally = Tally::default();
    let mut offset = 0;
    for r in routing {
        let (k, e) = (
            r.experts.size().last().copied().unwrap_or(0) as usize,
            r.scores.size().last().copied().unwrap_or(0) as usize,
        );
        let scores = to_vec(&r.scores);
        for row in scores.chunks(e) {
            let choice = got
                .get(offset..offset + k)
                .expect("onnxruntime gives as many routing decisions as tch");
            tally.add(compare_ranking(choice, row));
            offset += k;
        }
    }
    assert_eq!(offset, got.len(), "routing sizes differ");
    tally
}

/// A JSON array of token ids.
fn token_ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_i64().expect("id"))
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.to_kind(Kind::Float).contiguous().view([-1])).expect("floats")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "different numbers of values");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const IDS: [[i64; 6]; 2] = [[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]];
const MASK: [[i64; 6]; 2] = [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]];

fn tch_inputs() -> (Tensor, Tensor) {
    let flat = |x: &[[i64; 6]; 2]| Tensor::from_slice(&x.concat()).view([2, 6]);
    (flat(&IDS), flat(&MASK))
}

/// Greedy ids from tch, recomputing the whole sequence each step (no cache).
fn tch_greedy(model: &Backbone, prompt: &[i64], n: usize, profile: Option<&Tensor>) -> Vec<i64> {
    let _g = tch::no_grad_guard();
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = Tensor::from_slice(&ids).view([1, -1]);
        let mask = Tensor::ones([1, ids.len() as i64], (Kind::Int64, CPU));
        let r = model
            .run(
                &mut TchOps::new(CPU),
                &StepInput {
                    ids: &t,
                    attention_mask: &mask,
                    past: None,
                    profile,
                },
            )
            .expect("forward");
        let next = r
            .logits
            .select(1, ids.len() as i64 - 1)
            .argmax(-1, false)
            .int64_value(&[0]);
        ids.push(next);
        out.push(next);
    }
    out
}

#[test]
fn bare_backbones_of_every_family_match_tch() {
    for family in ["llama", "qwen2", "qwen3"] {
        let dir = scratch(&format!("export_bare_{family}"));
        let bundle = dir.join("bundle");
        cuma(&[
            "export",
            "--onnx",
            tiny(family).to_str().expect("utf8"),
            "--out",
            bundle.to_str().expect("utf8"),
            "--force",
        ]);
        let model = Backbone::load(&tiny(family), CPU).expect("loads");
        let (ids, mask) = tch_inputs();
        let (logits, _) = tch::no_grad(|| model.step(&ids, &mask, None)).expect("tch");
        let got = ort(
            &bundle.join("model.onnx"),
            &json!({"input_ids": IDS, "attention_mask": MASK}),
            &dir,
        );
        let diff = max_diff(&to_vec(&logits), &floats(&got["logits"]));
        assert!(diff <= 1e-4, "{family}: logits differ by {diff}");
        let greedy = ort(
            &bundle.join("model.onnx"),
            &json!({"input_ids": [[5, 6, 7, 8]], "attention_mask": [[1, 1, 1, 1]], "greedy": 8}),
            &dir,
        );
        let want = tch_greedy(&model, &[5, 6, 7, 8], 8, None);
        let got: Vec<i64> = token_ids(&greedy["greedy"]);
        assert_eq!(got, want, "{family}: greedy generation through the KV cache");
    }
}

/// `--quant int4|int8` of the tiny GGUF (Q4_0, Q4_1 and Q8_0 projections): the graph passes
/// `onnx.checker`, ONNX Runtime fuses every blocked `DequantizeLinear` + `MatMul` into
/// `MatMulNBits`, and with float32 activations the logits and greedy tokens are tch's on the
/// dequantized GGUF (the blocks are carried exactly).
#[test]
fn quantized_exports_carry_gguf_blocks_exactly_and_fuse_into_matmul_nbits() {
    let gguf = tiny("llama-q.gguf");
    let model = Backbone::load(&gguf, CPU).expect("loads");
    let (ids, mask) = tch_inputs();
    let (logits, _) = tch::no_grad(|| model.step(&ids, &mask, None)).expect("tch");
    let want_greedy = tch_greedy(&model, &[5, 6, 7, 8], 8, None);
    for quant in ["int4", "int8"] {
        let dir = scratch(&format!("export_quant_{quant}"));
        let bundle = dir.join("bundle");
        cuma(&["export", "--onnx", &s(&gguf), "--out", &s(&bundle), "--quant", quant]);
        let got = ort(
            &bundle.join("model.onnx"),
            &json!({"input_ids": IDS, "attention_mask": MASK, "accuracy_level": "0", "optimized_ops": true}),
            &dir,
        );
        let fused = &got["optimized_ops"];
        assert!(
            fused["MatMulNBits"].as_u64().unwrap_or(0) > 0,
            "{quant}: nothing fused: {fused}"
        );
        assert!(
            fused["DequantizeLinear"].is_null(),
            "{quant}: unfused DequantizeLinear left: {fused}"
        );
        let diff = max_diff(&to_vec(&logits), &floats(&got["logits"]));
        assert!(diff <= 1e-4, "{quant}: logits differ by {diff}");
        let greedy = ort(
            &bundle.join("model.onnx"),
            &json!({"input_ids": [[5, 6, 7, 8]], "attention_mask": [[1, 1, 1, 1]], "greedy": 8, "accuracy_level": "0"}),
            &dir,
        );
        let got_greedy: Vec<i64> = token_ids(&greedy["greedy"]);
        assert_eq!(
            got_greedy, want_greedy,
            "{quant}: greedy generation through the KV cache"
        );
        println!("{quant}: {fused}; max |logit diff| {diff:.2e}");
    }
}

#[test]
fn trained_cuma_in_every_gate_mode_matches_tch_logits_and_routing() {
    let dir = scratch("export_cuma");
    let items = small_survey(&dir, 2);
    let (llama, bert) = (s(&tiny("llama")), s(&tiny("bert")));
    for gate in ["topk-softmax", "double-softmax", "soft"] {
        let run = dir.join(gate);
        let args = [
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
            &TINY_BUDGET[..],
        ]
        .concat();
        let bundle = train_and_export(&items, &run, &args);
        if gate == "topk-softmax" {
            cuma(&[
                "export",
                "--onnx",
                &s(&run),
                "--out",
                &s(&bundle),
                "--force",
                "--no-profile-terms",
            ]);
        }
        let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
        let profiles = e
            .encoder
            .embed(&["You are a person from Country A1.", "You are a person from Country B2."])
            .expect("profiles");
        let (ids, mask) = tch_inputs();
        let out = tch::no_grad(|| {
            e.model.run(
                &mut TchOps::new(CPU),
                &StepInput {
                    ids: &ids,
                    attention_mask: &mask,
                    past: None,
                    profile: Some(&profiles),
                },
            )
        })
        .expect("tch");
        let demographic: Vec<Vec<f32>> = (0..2).map(|r| to_vec(&profiles.get(r))).collect();
        let got = ort(
            &bundle.join("model.onnx"),
            &json!({"input_ids": IDS, "attention_mask": MASK, "demographic": demographic}),
            &dir,
        );
        let diff = max_diff(&to_vec(&out.logits), &floats(&got["logits"]));
        assert!(diff <= 1e-4, "{gate}: logits differ by {diff}");
        let routing = routing_verdicts(&out.routing, &got);
        assert_eq!(routing.differ, 0, "{gate}: routing {routing}");
        println!("{gate}: routing {routing}");
        // The encoder graph gives the same profile vectors (cosine >= 0.99999, as tch's).
        let texts = [
            "You are a person from Country A1.",
            "You are a person from Country B2, age group: 18-34.",
        ];
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| e.encoder.tokenizer.encode(t, true).expect("tokens"))
            .collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let enc_ids: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| (0..width).map(|i| r.get(i).map_or(0, |&x| i64::from(x))).collect())
            .collect();
        let enc_masks: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| (0..width).map(|i| i64::from(i < r.len())).collect())
            .collect();
        let enc = ort(
            &bundle.join("encoder.onnx"),
            &json!({"encoder": true, "input_ids": enc_ids, "attention_mask": enc_masks}),
            &dir,
        );
        let want = e.encoder.embed(&texts).expect("tch embeddings");
        let embedded = floats(&enc["embedding"]);
        for (r, row) in embedded.chunks(e.encoder.dim).enumerate() {
            let w = to_vec(&want.get(r as i64));
            let dot: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
            let norms = row.iter().map(|a| a * a).sum::<f32>().sqrt() * w.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!(dot / norms >= 0.99999, "{gate}: encoder cosine {}", dot / norms);
        }
        // The manifest describes what was written, with correct checksums.
        let manifest: cuma_model::bundle::Manifest =
            serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).expect("manifest"))
                .expect("manifest parses");
        assert_eq!(
            manifest.adapter.as_ref().map(|a| a.routers.len() as u64),
            got["routing_shape"][0].as_u64()
        );
        for (file, sha) in &manifest.files {
            assert_eq!(
                &cuma::train::checkpoint::hash_files(&[bundle.join(file)]).expect("hash"),
                sha,
                "{file}"
            );
        }
        // By default the routers' profile terms are a graph of their own, which run_ort.py
        // ran above; the first gate mode is exported with the terms inside the decoder.
        let model_reads = |name: &str| manifest.graphs["model"].inputs.iter().any(|i| i.name == name);
        if gate == "topk-softmax" {
            assert!(model_reads("demographic") && !model_reads("profile_terms"));
            assert!(!manifest.graphs.contains_key("profile_terms"));
        } else {
            assert!(model_reads("profile_terms") && !model_reads("demographic"));
            let routers = manifest.adapter.as_ref().map_or(0, |a| a.routers.len());
            assert_eq!(got["profile_terms_shape"], json!([2, 1, routers * 256]));
        }
        // Adapters must matter, or the comparison proves nothing.
        let bare = bare_logits("llama", &ids, &mask);
        assert!(
            max_diff(&to_vec(&bare), &to_vec(&out.logits)) > 1e-3,
            "{gate}: the trained adapters changed nothing"
        );
    }
}

#[test]
fn smollm2_cuma_bundle_matches_tch() {
    let dir = scratch("export_smollm2");
    let items = small_survey(&dir, 1);
    let run = dir.join("run");
    let bundle = train_and_export(
        &items,
        &run,
        &[
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-2",
            "--warmup-steps",
            "1",
        ],
    );
    let e = Evaluator::from_checkpoint(&run.join("checkpoint"), CPU).expect("checkpoint");
    let profiles = e
        .encoder
        .embed(&[
            "You are a person from Thailand, age group: 55-64.",
            "You are a person from Germany, age group: 25-34.",
        ])
        .expect("profiles");
    let prompt: Vec<i64> = e
        .model
        .tokenizer
        .encode("What matters most in a good life?", false)
        .expect("ids")
        .into_iter()
        .map(i64::from)
        .collect();
    let n = prompt.len();
    let padded: Vec<i64> = std::iter::repeat_n(0, 2)
        .chain(prompt[..n - 2].iter().copied())
        .collect();
    let ids = vec![padded, prompt.clone()];
    let masks: Vec<Vec<i64>> = vec![(0..n).map(|i| i64::from(i >= 2)).collect(), vec![1; n]];
    let ids_t = Tensor::from_slice(&ids.concat()).view([2, n as i64]);
    let mask_t = Tensor::from_slice(&masks.concat()).view([2, n as i64]);
    let out = tch::no_grad(|| {
        e.model.run(
            &mut TchOps::new(CPU),
            &StepInput {
                ids: &ids_t,
                attention_mask: &mask_t,
                past: None,
                profile: Some(&profiles),
            },
        )
    })
    .expect("tch");
    let demographic: Vec<Vec<f32>> = (0..2).map(|r| to_vec(&profiles.get(r))).collect();
    let got = ort(
        &bundle.join("model.onnx"),
        &json!({"input_ids": ids, "attention_mask": masks, "demographic": demographic}),
        &dir,
    );
    let diff = max_diff(&to_vec(&out.logits), &floats(&got["logits"]));
    assert!(diff <= 1e-3, "SmolLM2 logits differ by {diff}");
    let routing = routing_verdicts(&out.routing, &got);
    assert_eq!(routing.differ, 0, "routing {routing}");
    // 32 greedy tokens through the KV cache, for the first profile.
    let one = profiles.get(0).unsqueeze(0);
    let want = tch_greedy(&e.model, &prompt, 32, Some(&one));
    let greedy = ort(
        &bundle.join("model.onnx"),
        &json!({"input_ids": [prompt], "attention_mask": [vec![1; n]], "demographic": [demographic[0]], "greedy": 32}),
        &dir,
    );
    let got_ids: Vec<i64> = token_ids(&greedy["greedy"]);
    assert_eq!(got_ids, want, "greedy generation through the KV cache");
    println!("SmolLM2 + CuMA: max |logit diff| {diff:.2e}, routing {routing}");
}

#[test]
fn export_refuses_bad_targets_and_mismatched_backbones() {
    let dir = scratch("export_bad");
    let llama = s(&tiny("llama"));
    // A directory that is not a bundle is never written into.
    let other = dir.join("photos");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::write(other.join("cat.jpg"), b"not a bundle").expect("file");
    let err = cuma_err(&["export", "--onnx", &llama, "--out", &s(&other)]);
    assert!(err.contains("is not a cuma bundle"), "{err}");
    // An existing bundle needs --force.
    let bundle = dir.join("bundle");
    cuma(&["export", "--onnx", &llama, "--out", &s(&bundle), "--force"]);
    let err = cuma_err(&["export", "--onnx", &llama, "--out", &s(&bundle)]);
    assert!(err.contains("--force"), "{err}");
    // A checkpoint exported onto another backbone than it was trained on.
    let items = small_survey(&dir, 1);
    let run = dir.join("run");
    cuma(&[
        "train",
        "--model",
        &llama,
        "--encoder",
        &s(&tiny("bert")),
        "--data",
        &s(&items),
        "--out",
        &s(&run),
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]);
    let err = cuma_err(&[
        "export",
        "--onnx",
        &s(&run),
        "--model",
        &s(&tiny("qwen2")),
        "--out",
        &s(&dir.join("b2")),
    ]);
    assert!(err.contains("SHA-256"), "{err}");
    // Something that is no model at all.
    let err = cuma_err(&["export", "--onnx", &s(&items), "--out", &s(&dir.join("b3"))]);
    assert!(err.contains("items.jsonl"), "{err}");
}

#[test]
fn merged_lora_matches_the_unmerged_model() {
    let dir = scratch("export_merge");
    let items = s(&small_survey(&dir, 1));
    let (qwen2, bert) = (s(&tiny("qwen2")), s(&tiny("bert")));
    let common = [
        &[
            "--model",
            &qwen2,
            "--encoder",
            &bert,
            "--data",
            &items,
            "--device",
            "cpu",
        ],
        &TINY_BUDGET[..],
    ]
    .concat();
    let lora = dir.join("lora");
    let lora_s = s(&lora);
    cuma(
        &[
            &[
                "train",
                "--method",
                "lora",
                "--targets",
                "q-proj,v-proj,down-proj",
                "--out",
                &lora_s,
            ],
            &common[..],
        ]
        .concat(),
    );
    let bundle = lora.join("merged");
    cuma(&["export", "--onnx", &lora_s, "--merge", "--out", &s(&bundle)]);
    let e = Evaluator::from_checkpoint(&lora.join("checkpoint"), CPU).expect("checkpoint");
    let (ids, mask) = tch_inputs();
    let out = tch::no_grad(|| {
        e.model.run(
            &mut TchOps::new(CPU),
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile: None,
            },
        )
    })
    .expect("tch");
    let got = ort(
        &bundle.join("model.onnx"),
        &json!({"input_ids": IDS, "attention_mask": MASK}),
        &dir,
    );
    let diff = max_diff(&to_vec(&out.logits), &floats(&got["logits"]));
    assert!(diff <= 1e-4, "merged LoRA differs from the adapter model by {diff}");
    assert!(got.get("routing_experts").is_none());
    let manifest: cuma_model::bundle::Manifest =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).expect("manifest"))
            .expect("parses");
    assert!(manifest
        .adapter
        .as_ref()
        .is_some_and(|a| a.merged && a.routers.is_empty()));
    let bare = bare_logits("qwen2", &ids, &mask);
    assert!(
        max_diff(&to_vec(&bare), &to_vec(&out.logits)) > 1e-3,
        "the trained LoRA changed nothing"
    );
    // A mixture cannot be folded into one weight.
    let cuma_run = dir.join("cuma");
    let cuma_s = s(&cuma_run);
    cuma(&[&["train", "--out", &cuma_s], &common[..]].concat());
    let err = cuma_err(&["export", "--onnx", &cuma_s, "--merge", "--out", &s(&dir.join("nope"))]);
    assert!(err.contains("--merge folds a single plain LoRA"), "{err}");
}

#[test]
fn export_never_writes_through_a_link_in_its_output_folder() {
    let dir = scratch("export_symlink");
    let bundle = dir.join("bundle");
    let llama = s(&tiny("llama"));
    cuma(&["export", "--onnx", &llama, "--out", &s(&bundle)]);
    // Links planted where the next export writes its files, pointing at files elsewhere.
    let mut victims = Vec::new();
    for name in ["tokenizer.json", "model.onnx", "manifest.json"] {
        let victim = dir.join(format!("victim-{name}"));
        std::fs::write(&victim, "precious").expect("victim");
        std::fs::remove_file(bundle.join(name)).expect("rm");
        std::os::unix::fs::symlink(&victim, bundle.join(name)).expect("symlink");
        victims.push((name, victim));
    }
    cuma(&["export", "--onnx", &llama, "--out", &s(&bundle), "--force"]);
    for (name, victim) in victims {
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious",
            "{name}: export wrote through the link"
        );
        assert!(
            std::fs::symlink_metadata(bundle.join(name)).expect("written").is_file(),
            "{name} is a regular file again"
        );
    }
    cuma_runtime::Bundle::open(&bundle).expect("the new bundle opens");
}

/// The README's bundle contract, followed by an independent Python client
/// (`fixtures/onnx/contract_client.py`: onnxruntime, tokenizers, jinja2, jsonschema; no cuma
/// code), gives cuma-runtime's answers: the manifest validates against the committed schema,
/// the profile text, the prompt's token ids, the option probabilities and a greedy reply agree.
#[test]
fn an_independent_python_client_reproduces_cuma_from_the_contract() {
    use cuma_runtime::{Backend, Bundle, Device as OrtDevice, EngineOptions, GenerateOptions, Profile, Session};
    let dir = scratch("export_contract_client");
    let items = small_survey(&dir, 2);
    let bundle = common::seeded_bundle(
        &items,
        &dir.join("run"),
        &["--model", &s(&tiny("llama")), "--encoder", &s(&tiny("bert"))],
        5,
    );
    let options = vec!["Yes".to_string(), "No".to_string(), "It depends".to_string()];
    let question = "  Is it justifiable to cheat on taxes? ";
    let chat = "What matters most in a good life?";
    let mut session = Session::new(
        Bundle::open(&bundle).expect("bundle"),
        cuma_runtime::SessionOptions {
            engine: EngineOptions {
                backend: Backend::Ort { device: OrtDevice::Cpu },
                threads: Some(1),
                ..Default::default()
            },
            strict_profiles: false,
        },
    )
    .expect("session");
    let profiles = [
        json!({"country": "Thailand", "age": "55-64", "religion": "Buddhist", "marital": "Married"}),
        json!({"age": "25-34", "gender": "Female", "country": "  "}),
        json!({}),
    ];
    for (i, profile_json) in profiles.iter().enumerate() {
        let request =
            json!({"profile": profile_json, "question": question, "options": options, "chat": chat, "max_tokens": 12});
        let py = python_json("contract_client.py", &bundle, &request, &dir, &format!("contract-{i}"));
        assert_eq!(
            py["schema"], "ok",
            "the manifest does not validate against docs/manifest.schema.json"
        );
        assert_eq!(
            py["profile_input"], "profile_terms",
            "the client ran the profile-terms graph"
        );

        let profile = Profile::from_json(&profile_json.to_string()).expect("profile");
        let spec = session.bundle().manifest.profile.clone();
        assert_eq!(py["profile_text"], profile.render(&spec).expect("text"), "profile {i}");
        let turn = cuma_model::serve::prompt::choice_messages(
            &session.bundle().manifest.choice.wording.clone(),
            &session.system_message(&profile).expect("system").content,
            &[],
            question,
            &options,
        );
        let ids = session.prompt_ids(&profile, &turn).expect("ids");
        assert_eq!(py["choice_ids"], json!(ids), "profile {i}: prompt token ids");
        let cuma = session
            .choice_distribution(&profile, question, &options, false)
            .expect("distribution");
        let theirs: Vec<f64> = serde_json::from_value(py["probabilities"].clone()).expect("probabilities");
        let diff = cuma
            .probabilities
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-5, "profile {i}: {:?} vs {theirs:?}", cuma.probabilities);
        let request = cuma_runtime::GenerateRequest {
            profile: profile.clone(),
            messages: vec![cuma_model::text::Message::new("user", chat)],
        };
        let greedy = GenerateOptions {
            max_new_tokens: 12,
            ..Default::default()
        };
        let reply = session
            .generate(&[request], &greedy, |_| {})
            .expect("generate")
            .remove(0);
        assert_eq!(py["greedy"], json!(reply.token_ids), "profile {i}: greedy ids");
        assert_eq!(py["text"], reply.text, "profile {i}: reply text");
        println!(
            "profile {i}: {:?} -> {:?}, {} greedy tokens agree",
            py["profile_text"],
            cuma.probabilities,
            reply.token_ids.len()
        );
    }
}
