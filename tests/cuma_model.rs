//! CuMA attached to a real (tiny) decoder through the one model definition: a fresh model equals
//! its backbone exactly, training moves only adapters and routers, and routing on the profile
//! separates two groups that answer the same question oppositely, where a dense D = 0 adapter
//! collapses to the mean.

mod common;

use common::tiny;
use cuma::models::backbone::{Backbone, StepInput};
use cuma::models::ProfileEncoder;
use cuma::tch_ops::TchOps;
use cuma::tokenizer::chat::{render, Message};
use cuma::train::optim::{AdamW, AdamWConfig};
use cuma::trainables::TchTrainables;
use cuma_model::adapters::{balance_loss, DecoderAdapters};
use cuma_model::config::{Method, MethodConfig};
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

/// Adapter initialisation draws from libtorch's process-global generator; tests take turns so
/// each sees the sequence its seed promises.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn attach(model: &mut Backbone, cfg: &MethodConfig, dim: usize, seed: i64) -> TchTrainables {
    tch::manual_seed(seed);
    // (callers hold SERIAL)
    let mut store = TchTrainables::default();
    let adapters =
        DecoderAdapters::init(&mut TchOps::new(CPU), &mut store, &model.decoder, cfg, dim).expect("adapters");
    model.decoder.adapters = Some(adapters);
    store
}

fn ids_tensor(rows: &[Vec<u32>]) -> Tensor {
    let flat: Vec<i64> = rows.iter().flatten().map(|&x| i64::from(x)).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

#[test]
fn fresh_cuma_equals_the_backbone_exactly() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Backbone::load(&tiny("llama"), CPU).expect("loads");
    let ids = ids_tensor(&[vec![3, 17, 42, 99, 7, 8]]);
    let mask = Tensor::ones([1, 6], (Kind::Int64, CPU));
    let _guard = tch::no_grad_guard();
    let (plain, _) = model.step(&ids, &mask, None).expect("plain");
    let cfg = MethodConfig {
        targets: cuma_model::config::method::ALL_TARGETS.into_iter().collect(),
        ..MethodConfig::default()
    };
    attach(&mut model, &cfg, 16, 1);
    let profile = Tensor::randn([1, 16], (Kind::Float, CPU));
    let out = model
        .run(
            &mut TchOps::new(CPU),
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile: Some(&profile),
            },
        )
        .expect("cuma");
    assert_eq!((out.logits - plain).abs().max().double_value(&[]), 0.0);
    // One router per adapted module and layer (7 targets x 2 layers), each choosing k = 2.
    assert_eq!(out.routing.len(), 14);
    assert_eq!(out.routing[0].experts.size(), vec![1, 6, 2]);
}

#[test]
fn fresh_dora_equals_the_backbone_and_trains() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Backbone::load(&tiny("qwen2"), CPU).expect("loads");
    let ids = ids_tensor(&[vec![3, 17, 42, 99]]);
    let mask = Tensor::ones([1, 4], (Kind::Int64, CPU));
    let (plain, _) = tch::no_grad(|| model.step(&ids, &mask, None)).expect("plain");
    let cfg = MethodConfig {
        method: Method::Dora,
        experts: 1,
        top_k: 1,
        dropout: 0.0,
        ..MethodConfig::default()
    };
    let store = attach(&mut model, &cfg, 0, 4);
    assert!(store.tensors.keys().any(|k| k.ends_with("q_proj.dora_magnitude")));
    let out = model
        .run(
            &mut TchOps::new(CPU),
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile: None,
            },
        )
        .expect("dora");
    let diff = (&out.logits - &plain).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "fresh DoRA differs from the backbone by {diff}");
    out.logits.mean(Kind::Float).backward();
    let m = &store.tensors["model.layers.0.self_attn.q_proj.dora_magnitude"];
    assert!(
        m.grad().defined() && m.grad().abs().max().double_value(&[]) > 0.0,
        "the magnitude gets a gradient"
    );
}

#[test]
fn a_training_step_moves_adapters_and_never_the_backbone() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Backbone::load(&tiny("qwen2"), CPU).expect("loads");
    let ids = ids_tensor(&[vec![5, 6, 7, 8, 9]]);
    let mask = Tensor::ones([1, 5], (Kind::Int64, CPU));
    let (before, _) = tch::no_grad(|| model.step(&ids, &mask, None)).expect("plain");
    let store = attach(&mut model, &MethodConfig::default(), 8, 2);
    let profile = Tensor::randn([1, 8], (Kind::Float, CPU));
    let params: Vec<Tensor> = store.tensors.values().map(Tensor::shallow_clone).collect();
    let snapshot: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
    let mut opt = AdamW::new(
        params.iter().map(Tensor::shallow_clone).collect(),
        AdamWConfig::default(),
    )
    .expect("optimiser");
    let mut o = TchOps::training(CPU, false);
    let out = model
        .run(
            &mut o,
            &StepInput {
                ids: &ids,
                attention_mask: &mask,
                past: None,
                profile: Some(&profile),
            },
        )
        .expect("forward");
    let loss = out
        .logits
        .log_softmax(-1, Kind::Float)
        .select(2, 11)
        .mean(Kind::Float)
        .neg();
    loss.backward();
    opt.update(1e-2).expect("step");
    let moved = params
        .iter()
        .zip(&snapshot)
        .filter(|(p, s)| (*p - *s).abs().max().double_value(&[]) > 0.0)
        .count();
    assert!(moved > 0, "no adapter moved");
    model.decoder.adapters = None;
    let (after, _) = tch::no_grad(|| model.step(&ids, &mask, None)).expect("plain again");
    assert_eq!(
        (after - before).abs().max().double_value(&[]),
        0.0,
        "the backbone changed"
    );
}

/// Two groups answer the same question with opposite letters; the profile is kept out of the
/// prompt, so only a router that sees it can tell them apart.
/// Returns, per group, the probability of "A" among the two letters after training.
fn train_two_groups(cfg: &MethodConfig, steps: usize) -> [f64; 2] {
    let mut model = Backbone::load(&tiny("llama"), CPU).expect("loads");
    let encoder = ProfileEncoder::load(&tiny("bert"), CPU).expect("encoder");
    let profiles = encoder
        .embed(&[
            "You are a person from Sweden, age group: 25-34.",
            "You are a person from Nigeria, age group: 55-64.",
        ])
        .expect("profiles");
    let messages = [
        Message::new(
            "system",
            "You are a helpful assistant that answers survey questions honestly.",
        ),
        Message::new(
            "user",
            "Is religion very important in your life? A. Yes B. No You can only choose one option.",
        ),
    ];
    let prompt = model
        .tokenizer
        .encode(&render(&model.tokenizer, &messages).expect("template"), false)
        .expect("ids");
    let letters: Vec<i64> = ["A", "B"]
        .iter()
        .map(|l| i64::from(model.tokenizer.encode(l, false).expect("letter")[0]))
        .collect();
    let answers = Tensor::from_slice(&letters); // group 0 -> A, group 1 -> B
    let store = attach(&mut model, cfg, encoder.dim, 7);
    let mut opt = AdamW::new(
        store.tensors.values().map(Tensor::shallow_clone).collect(),
        AdamWConfig::default(),
    )
    .expect("optimiser");
    let ids = ids_tensor(&[prompt.clone(), prompt.clone()]);
    let n = prompt.len() as i64;
    let mask = Tensor::ones([2, n], (Kind::Int64, CPU));
    let input = StepInput {
        ids: &ids,
        attention_mask: &mask,
        past: None,
        profile: Some(&profiles),
    };
    let token_mask = Tensor::ones([2, n, 1], (Kind::Float, CPU));
    for _ in 0..steps {
        opt.zero_grad();
        let mut o = TchOps::training(CPU, false);
        let out = model.run(&mut o, &input).expect("forward");
        let last = out.logits.select(1, n - 1); // [2, vocab]: the answer position
        let mut loss = last.cross_entropy_for_logits(&answers);
        for r in &out.routing {
            let b = balance_loss(&mut o, &r.gates, &r.selected, &token_mask, cfg.experts, cfg.top_k).expect("balance");
            loss += b.mean(Kind::Float) * cfg.balance_lambda;
        }
        loss.backward();
        opt.clip_grad_norm(1.0).expect("clip");
        opt.update(1e-2).expect("update");
    }
    let _guard = tch::no_grad_guard();
    let out = model.run(&mut TchOps::new(CPU), &input).expect("eval");
    let last = out.logits.select(1, n - 1).index_select(1, &answers); // [2, 2]: logits of A, B
    let p_a = last.softmax(-1, Kind::Float).select(1, 0);
    [p_a.double_value(&[0]), p_a.double_value(&[1])]
}

#[test]
fn routing_on_the_profile_beats_mean_collapse() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cuma = MethodConfig {
        experts: 4,
        top_k: 2,
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..MethodConfig::default()
    };
    let dense = MethodConfig {
        method: Method::Lora,
        experts: 1,
        top_k: 1,
        ..cuma.clone()
    };
    let untrained = train_two_groups(&dense, 0);
    let [cuma_a0, cuma_a1] = train_two_groups(&cuma, 40);
    let [dense_a0, dense_a1] = train_two_groups(&dense, 40);
    println!("P(A) group 0 / group 1: untrained {untrained:.3?}, CuMA {cuma_a0:.3} / {cuma_a1:.3}, dense LoRA {dense_a0:.3} / {dense_a1:.3}");
    // CuMA tells the groups apart: group 0 answers A, group 1 answers B.
    assert!(
        cuma_a0 > 0.5 && cuma_a1 < 0.5,
        "CuMA should answer both groups correctly"
    );
    // The profile-blind adapter sees identical inputs, so it can only learn the pooled mix of
    // the two answers: it moves to about 50 / 50 for both (mean collapse), from wherever the
    // backbone started.
    assert!(
        (dense_a0 - dense_a1).abs() < 1e-6,
        "identical inputs, different outputs: {dense_a0} vs {dense_a1}"
    );
    // Measured 0.589 after 40 steps, from 0.086 untrained.
    assert!(
        (dense_a0 - 0.5).abs() < 0.15,
        "the dense adapter should sit near the pooled mix, got P(A) = {dense_a0}"
    );
}
