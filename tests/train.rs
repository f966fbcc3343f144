//! The SFT loop end to end on tiny fixtures: the loss on a fixed batch falls, checkpoints
//! round-trip, and a resumed run follows exactly the loss curve of an uninterrupted one. Nothing
//! here compares with numbers recorded on another machine: training's last bits depend on the
//! CPU's kernels (the cross-runtime snapshots use seeded adapters for that reason).

mod common;

use common::{scratch, tch_device, tiny};
use cuma::data::{jsonl, ChoiceItem};
use cuma::train::checkpoint;
use cuma::train::config::TrainConfig;
use cuma::train::sft::{SftRun, CHECKPOINT_DIR};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// libtorch's random generator (dropout, initialisation) is process-global: runs in parallel
/// test threads would draw from it in interleaved order, so these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn data(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = Vec::new();
    for r in 0..12 {
        let (country, answer) = if r % 2 == 0 { ("Sweden", 0) } else { ("Nigeria", 1) };
        items.push(ChoiceItem {
            id: format!("{r}/Q1"),
            respondent: r.to_string(),
            question_id: "Q1".into(),
            profile: [
                ("country".to_string(), country.to_string()),
                ("age".to_string(), format!("{}", 20 + r)),
            ]
            .into_iter()
            .collect(),
            question: "Is religion important in your life?".into(),
            options: vec!["Yes".into(), "No".into()],
            answer,
            scale: None,
            groups: Default::default(),
        });
    }
    let p = dir.join("train.jsonl");
    jsonl::write(&p, &items).expect("write data");
    p
}

fn config(dir: &std::path::Path, out: &str) -> TrainConfig {
    let mut c = TrainConfig {
        backbone: Some(tiny("llama")),
        encoder: Some(tiny("bert")),
        data: Some(data(dir)),
        out: dir.join(out),
        lr: 5e-3,
        warmup_steps: 2,
        steps: 6,
        batch_size: 4,
        checkpoint_every: 100,
        device: "cpu".into(),
        ..TrainConfig::default()
    };
    c.method.experts = 4;
    c.method.rank = 4;
    c.method.alpha = 8.0;
    c
}

#[test]
fn training_lowers_the_loss_on_a_fixed_batch() {
    let _turn = serial();
    let dir = scratch("falls");
    let never = AtomicBool::new(false);
    let mut c = config(&dir, "run");
    // The whole data set in every batch, so each step sees the same items.
    c.batch_size = 12;
    c.steps = 16;
    c.lr = 2e-2;
    let losses: Vec<f64> = SftRun::prepare(c, false, false)
        .expect("prepare")
        .train(false, &never)
        .expect("train")
        .iter()
        .map(|m| m.loss)
        .collect();
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!("fixed-batch loss: {losses:.3?}");
    assert!(
        last < 0.5 * first,
        "loss should at least halve on a fixed batch: {losses:?}"
    );
}

/// The largest relative difference allowed between a device's SFT losses and the CPU's, step by
/// step, with f32 products on both: kernels differ in summation order (1e-6 relative per
/// matrix product), and four optimiser steps compound it.
const DEVICE_LOSS_TOLERANCE: f64 = 1e-4;

/// SFT steps on `CUMA_TEST_DEVICE` follow the CPU's loss curve: adapters start from the same
/// values on every device and dropout is off. On a CPU-only machine both runs are CPU runs and
/// must agree exactly; `scripts/gpu_check.sh` runs this with `cuda`.
#[test]
fn sft_losses_on_the_test_device_follow_the_cpu() {
    let _turn = serial();
    let dir = scratch("device_losses");
    let never = AtomicBool::new(false);
    let device = tch_device();
    let losses = |device: &str, out: &str| -> Vec<f64> {
        let mut c = config(&dir, out);
        c.device = device.into();
        c.steps = 4;
        c.method.dropout = 0.0;
        c.bf16_on_cuda = false;
        SftRun::prepare(c, false, false)
            .expect("prepare")
            .train(false, &never)
            .expect("train")
            .iter()
            .map(|m| m.loss)
            .collect()
    };
    let cpu = losses("cpu", "cpu");
    let name = cuma::device::device_name(device);
    let there = losses(&name, "device");
    println!("SFT losses: cpu {cpu:.6?}, {name} {there:.6?}");
    assert_eq!(cpu.len(), there.len());
    for (step, (a, b)) in cpu.iter().zip(&there).enumerate() {
        let tolerance = if device.is_cuda() {
            DEVICE_LOSS_TOLERANCE * a.abs().max(1.0)
        } else {
            0.0
        };
        assert!(
            (a - b).abs() <= tolerance,
            "step {}: cpu loss {a}, {name} loss {b}",
            step + 1
        );
    }
}

#[test]
fn resume_follows_the_uninterrupted_loss_curve_exactly() {
    let _turn = serial();
    let dir = scratch("resume");
    let never = AtomicBool::new(false);
    let mut straight = SftRun::prepare(config(&dir, "straight"), false, false).expect("prepare");
    let full: Vec<f64> = straight
        .train(false, &never)
        .expect("train")
        .iter()
        .map(|m| m.loss)
        .collect();

    let mut first = SftRun::prepare(config(&dir, "paused"), false, false).expect("prepare");
    let mut resumed: Vec<f64> = first
        .train_until(3, false, &never)
        .expect("first half")
        .iter()
        .map(|m| m.loss)
        .collect();
    drop(first);
    let mut second = SftRun::prepare(config(&dir, "paused"), true, false).expect("resume");
    assert_eq!(second.state.step, 3);
    resumed.extend(second.train(false, &never).expect("second half").iter().map(|m| m.loss));

    assert_eq!(full.len(), 6);
    assert_eq!(resumed, full, "resumed loss curve differs");
    let a = checkpoint::load(&dir.join("straight").join(CHECKPOINT_DIR)).expect("load");
    let b = checkpoint::load(&dir.join("paused").join(CHECKPOINT_DIR)).expect("load");
    assert_eq!(a.manifest.state, b.manifest.state);
    for ((na, ta), (nb, tb)) in a.adapters.iter().zip(&b.adapters) {
        assert_eq!(na, nb);
        assert_eq!((ta - tb).abs().max().double_value(&[]), 0.0, "{na} differs");
    }
}

#[test]
fn stop_request_saves_a_checkpoint_that_resumes() {
    let _turn = serial();
    let dir = scratch("stop");
    let stop = AtomicBool::new(true);
    let mut run = SftRun::prepare(config(&dir, "run"), false, false).expect("prepare");
    let done = run.train(false, &stop).expect("train");
    assert_eq!(done.len(), 1, "stops after the step in flight");
    let ck = checkpoint::load(&dir.join("run").join(CHECKPOINT_DIR)).expect("checkpoint after stop");
    assert_eq!(ck.manifest.state.step, 1);
    assert_eq!(ck.manifest.backbone.architecture, "llama");
    assert_eq!(ck.manifest.backbone.sha256.len(), 64);
}

#[test]
fn resuming_on_another_backbone_is_refused() {
    let _turn = serial();
    let dir = scratch("wrong_base");
    let never = AtomicBool::new(false);
    let mut run = SftRun::prepare(config(&dir, "run"), false, false).expect("prepare");
    run.train_until(1, false, &never).expect("one step");
    let mut other = config(&dir, "run");
    other.backbone = Some(tiny("qwen2"));
    let err = SftRun::prepare(other, true, false).err().expect("refused").to_string();
    assert!(err.contains("SHA-256"), "{err}");
}

#[test]
fn two_identical_runs_agree() {
    let _turn = serial();
    let dir = scratch("twice");
    let never = AtomicBool::new(false);
    let a: Vec<f64> = SftRun::prepare(config(&dir, "a"), false, false)
        .expect("prepare")
        .train(false, &never)
        .expect("train")
        .iter()
        .map(|m| m.loss)
        .collect();
    let b: Vec<f64> = SftRun::prepare(config(&dir, "b"), false, false)
        .expect("prepare")
        .train(false, &never)
        .expect("train")
        .iter()
        .map(|m| m.loss)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn every_available_method_and_ablation_trains() {
    use cuma_model::config::{GateMode, Method, RouterLayout};
    let _turn = serial();
    let dir = scratch("methods");
    let never = AtomicBool::new(false);
    type Tweak = Box<dyn Fn(&mut TrainConfig)>;
    let variants: Vec<(&str, Tweak)> = vec![
        ("cuma", Box::new(|_| {})),
        ("lora", Box::new(|c| c.method.method = Method::Lora)),
        ("dora", Box::new(|c| c.method.method = Method::Dora)),
        ("full", Box::new(|c| c.method.method = Method::Full)),
        ("ptuning", Box::new(|c| c.method.method = Method::Ptuning)),
        ("hydralora", Box::new(|c| c.method.method = Method::Hydralora)),
        ("mixlora", Box::new(|c| c.method.method = Method::Mixlora)),
        ("soft", Box::new(|c| c.method.gate = GateMode::Soft)),
        ("double-softmax", Box::new(|c| c.method.gate = GateMode::DoubleSoftmax)),
        (
            "shared-qkv",
            Box::new(|c| {
                c.method.router_layout = RouterLayout::SharedQkv;
                c.method.targets = cuma_model::config::method::ALL_TARGETS.into_iter().collect();
            }),
        ),
        ("no-demographics", Box::new(|c| c.method.profile_in_router = false)),
        ("no-balance", Box::new(|c| c.method.balance = false)),
        ("no-profile-prompt", Box::new(|c| c.method.profile_in_prompt = false)),
        ("bf16-matmul", Box::new(|c| c.force_bf16 = true)),
    ];
    for (name, tweak) in variants {
        let mut c = config(&dir, name);
        c.steps = 2;
        tweak(&mut c);
        let mut run = SftRun::prepare(c, false, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = run.train(false, &never).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            m.iter().all(|s| s.loss.is_finite() && s.grad_norm > 0.0),
            "{name}: {m:?}"
        );
    }
}

#[test]
fn full_fine_tuning_moves_the_backbone_and_resumes() {
    use cuma_model::config::Method;
    let _turn = serial();
    let dir = scratch("full");
    let never = AtomicBool::new(false);
    let mut c = config(&dir, "run");
    c.method.method = Method::Full;
    c.steps = 2;
    let mut run = SftRun::prepare(c.clone(), false, false).expect("prepare");
    let n = run.store.numel();
    assert_eq!(
        n,
        run.model.config().parameter_count(),
        "every backbone parameter trains"
    );
    run.train_until(1, false, &never).expect("step");
    let resumed = SftRun::prepare(c, true, false).expect("resume");
    assert_eq!(resumed.state.step, 1);
    let a = &run.store.tensors["model.layers.0.mlp.up_proj.weight"];
    let b = &resumed.store.tensors["model.layers.0.mlp.up_proj.weight"];
    assert_eq!(
        (a - b).abs().max().double_value(&[]),
        0.0,
        "resumed weights are the trained ones"
    );
}

#[test]
fn corrupt_checkpoint_files_are_named_errors() {
    let _turn = serial();
    let dir = scratch("corrupt_ck");
    let never = AtomicBool::new(false);
    let mut run = SftRun::prepare(config(&dir, "run"), false, false).expect("prepare");
    run.train_until(1, false, &never).expect("one step");
    let ck = dir.join("run").join(CHECKPOINT_DIR);
    std::fs::write(ck.join("optimizer.safetensors"), b"garbage").expect("corrupt");
    let err = SftRun::prepare(config(&dir, "run"), true, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("optimizer.safetensors"), "{err}");
    std::fs::write(ck.join("cuma.json"), b"{").expect("corrupt");
    let err = SftRun::prepare(config(&dir, "run"), true, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("cuma.json") && err.contains("invalid JSON"), "{err}");
}

#[test]
fn resume_drops_metrics_logged_after_the_checkpoint() {
    let _turn = serial();
    let dir = scratch("metrics_cut");
    let never = AtomicBool::new(false);
    let c = config(&dir, "run");
    let mut run = SftRun::prepare(c.clone(), false, false).expect("prepare");
    run.train_until(3, false, &never).expect("three steps, checkpoint at 3");
    drop(run);
    // A kill after steps 4 and 5 were logged but before their checkpoint, mid-way through a line.
    let metrics = dir.join("run").join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).expect("metrics");
    text.push_str("{\"step\":4,\"loss\":1.0}\n{\"step\":5,\"loss\":1.0}\n{\"st");
    std::fs::write(&metrics, text).expect("write");
    SftRun::prepare(c, true, false)
        .expect("resume")
        .train(false, &never)
        .expect("train");
    let steps: Vec<u64> = std::fs::read_to_string(&metrics)
        .expect("metrics")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["step"]
                .as_u64()
                .expect("step")
        })
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<u64>>(), "every step once, in order");
}

/// An SFT run of a few steps in `dir/sft`, then the DPO configuration that starts from it (the
/// same items, paired by `cuma data pairs`' rule: the other option is the rejected one).
fn sft_then_dpo(dir: &std::path::Path, out: &str) -> TrainConfig {
    let never = AtomicBool::new(false);
    let sft_dir = dir.join("sft");
    if !sft_dir.join(CHECKPOINT_DIR).is_dir() {
        let mut run = SftRun::prepare(config(dir, "sft"), false, false).expect("sft");
        run.train_until(3, false, &never).expect("sft steps");
    }
    let mut c = config(dir, out);
    c.stage = cuma::train::config::Stage::Dpo;
    c.init = Some(sft_dir);
    c.batch_size = 12;
    c.steps = 8;
    c.lr = 2e-2;
    c
}

#[test]
fn dpo_starts_at_ln2_and_raises_the_margin_and_accuracy_on_its_pairs() {
    let _turn = serial();
    let dir = scratch("dpo_learns");
    let never = AtomicBool::new(false);
    let mut run = SftRun::prepare(sft_then_dpo(&dir, "dpo"), false, false).expect("prepare dpo");
    assert_eq!(run.pairs.len(), 12);
    assert!(run.examples.is_empty());
    let before = run.pair_metrics().expect("pairs before");
    assert_eq!(
        before.rewards.margin, 0.0,
        "the policy starts as the reference: {before:?}"
    );
    let history = run.train(false, &never).expect("dpo");
    let first = history[0].dpo.clone().expect("dpo metrics");
    assert!(
        (history[0].loss - std::f64::consts::LN_2).abs() < 1e-5,
        "first loss {}",
        history[0].loss
    );
    assert_eq!(first.accuracy, 0.0);
    let after = run.pair_metrics().expect("pairs after");
    println!(
        "before {before:?}\nafter {after:?}\nlosses {:?}",
        history.iter().map(|m| m.loss).collect::<Vec<_>>()
    );
    assert!(after.rewards.margin > 0.05, "{after:?}");
    assert!(after.rewards.accuracy >= 0.75, "{after:?}");
    assert!(after.logp_margin > before.logp_margin, "{before:?} -> {after:?}");
    assert!(history.last().expect("steps").loss < 0.9 * std::f64::consts::LN_2);
}

#[test]
fn dpo_resume_follows_the_uninterrupted_run_exactly() {
    let _turn = serial();
    let dir = scratch("dpo_resume");
    let never = AtomicBool::new(false);
    let mut straight = SftRun::prepare(sft_then_dpo(&dir, "straight"), false, false).expect("prepare");
    let full: Vec<_> = straight
        .train(false, &never)
        .expect("train")
        .into_iter()
        .map(|m| (m.loss, m.dpo))
        .collect();
    let mut first = SftRun::prepare(sft_then_dpo(&dir, "paused"), false, false).expect("prepare");
    let mut resumed: Vec<_> = first
        .train_until(4, false, &never)
        .expect("half")
        .into_iter()
        .map(|m| (m.loss, m.dpo))
        .collect();
    drop(first);
    let mut second = SftRun::prepare(sft_then_dpo(&dir, "paused"), true, false).expect("resume");
    assert_eq!(second.state.step, 4);
    resumed.extend(
        second
            .train(false, &never)
            .expect("rest")
            .into_iter()
            .map(|m| (m.loss, m.dpo)),
    );
    assert_eq!(resumed, full);
}

#[test]
fn dpo_refuses_an_init_from_another_backbone_and_a_missing_one() {
    let _turn = serial();
    let dir = scratch("dpo_refuse");
    let mut c = sft_then_dpo(&dir, "dpo");
    c.backbone = Some(tiny("qwen2"));
    let err = SftRun::prepare(c, false, false).err().expect("refused").to_string();
    assert!(err.contains("another backbone"), "{err}");
    let mut c = sft_then_dpo(&dir, "dpo");
    c.init = Some(dir.join("nothing-here"));
    let err = SftRun::prepare(c, false, false).err().expect("refused").to_string();
    assert!(err.contains("nothing-here") && err.contains("SFT checkpoint"), "{err}");
    let mut c = sft_then_dpo(&dir, "dpo");
    c.init = None;
    let err = SftRun::prepare(c, false, false).err().expect("refused").to_string();
    assert!(err.contains("--init"), "{err}");
}

#[test]
fn dpo_against_the_base_model_measures_what_sft_moved() {
    let _turn = serial();
    let dir = scratch("dpo_base");
    let sft = {
        let c = sft_then_dpo(&dir, "unused");
        c.init.clone().expect("init")
    };
    // The SFT checkpoint measured against the bare backbone: SFT moved its letters apart.
    let pairs = dir.join("train.jsonl");
    let mut measured = SftRun::for_pairs(&sft, &pairs, &dir.join("eval"), "cpu", false).expect("for pairs");
    let m = measured.pair_metrics().expect("metrics");
    assert_eq!(m.reference, cuma::train::dpo::ReferenceModel::Base);
    assert_eq!(m.pairs, 12);
    assert_ne!(m.rewards.margin, 0.0, "{m:?}");
    // A DPO run with reference = base starts away from ln 2 (the SFT adapters are not the base).
    let mut c = sft_then_dpo(&dir, "dpo");
    c.reference = cuma::train::dpo::ReferenceModel::Base;
    c.steps = 1;
    let never = AtomicBool::new(false);
    let first = SftRun::prepare(c, false, false)
        .expect("prepare")
        .train(false, &never)
        .expect("one step");
    assert!(
        (first[0].loss - std::f64::consts::LN_2).abs() > 1e-4,
        "{}",
        first[0].loss
    );
}

#[test]
fn dpo_on_data_without_pairs_says_so_and_malformed_pairs_are_skipped() {
    let _turn = serial();
    let dir = scratch("dpo_no_pairs");
    let mut c = sft_then_dpo(&dir, "dpo");
    let chat = dir.join("chat.jsonl");
    let line = |id: &str, extra: &str| {
        format!(
            r#"{{"id":"{id}","profile":{{"country":"Chile"}},"messages":[{{"role":"user","content":"Hi"}},{{"role":"assistant","content":"Hello"}}]{extra}}}"#
        )
    };
    std::fs::write(&chat, format!("{}\n{}\n", line("a", ""), line("b", ""))).expect("write");
    c.data = Some(chat.clone());
    let err = SftRun::prepare(c.clone(), false, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("2 chat items have no `rejected` reply"), "{err}");
    // Two good pairs and three broken ones (same reply, blank rejected, not JSON).
    std::fs::write(
        &chat,
        format!(
            "{}\n{}\n{}\n{}\n{{oops\n",
            line("a", r#","rejected":"Go away""#),
            line("b", r#","rejected":"Hello""#),
            line("c", r#","rejected":"  ""#),
            line("d", r#","rejected":"No.""#),
        ),
    )
    .expect("write");
    let run = SftRun::prepare(c, false, false).expect("the good pairs train");
    assert_eq!(run.pairs.len(), 2);
}

#[test]
fn router_replay_forces_the_recorded_experts_with_live_gates() {
    use cuma::models::backbone::StepInput;
    use cuma::models::inputs::pad_batch;
    use cuma::tch_ops::TchOps;
    use cuma_model::serve::padding::Side;
    let _turn = serial();
    let dir = scratch("replay");
    let mut run = SftRun::prepare(config(&dir, "run"), false, false).expect("prepare");
    // A few steps, so that the experts' B matrices are no longer zero and routing matters.
    run.train_until(3, false, &AtomicBool::new(false)).expect("train");
    run.optimizer.zero_grad();
    let rows: Vec<Vec<u32>> = run.examples[..3].iter().map(|e| e.ids.clone()).collect();
    let (ids, mask) = pad_batch(&rows, 0, Side::Right, tch::Device::Cpu).expect("pad");
    let profile = run.profiles.narrow(0, 0, 1).repeat([3, 1]);
    let input = StepInput {
        ids: &ids,
        attention_mask: &mask,
        past: None,
        profile: Some(&profile),
    };
    let forward = |replay: Option<Vec<tch::Tensor>>| {
        let mut o = TchOps::new(tch::Device::Cpu);
        run.model.run_hidden_replaying(&mut o, &input, replay).expect("forward")
    };
    let free = forward(None);
    assert!(!free.routing.is_empty());
    // Replaying the free choice changes nothing.
    let same = forward(Some(free.routing.iter().map(|r| r.experts.shallow_clone()).collect()));
    for (a, b) in free.routing.iter().zip(&same.routing) {
        assert!(a.experts.equal(&b.experts) && a.gates.equal(&b.gates));
    }
    assert!(free.hidden.equal(&same.hidden));
    // Replaying another choice: those experts, gates = softmax of the live logits over them.
    let experts = run.config.method.experts as i64;
    let other: Vec<tch::Tensor> = free
        .routing
        .iter()
        .map(|r| (&r.experts + 1).remainder(experts))
        .collect();
    let forced = forward(Some(other.iter().map(|t| t.shallow_clone()).collect()));
    for (r, want) in forced.routing.iter().zip(&other) {
        assert!(r.experts.equal(want), "the replayed experts are used");
        // (Scores of this forward: later layers see the outputs of the replayed earlier ones.)
        let expected = r.scores.gather(-1, want, false).softmax(-1, tch::Kind::Float);
        let diff = (&r.topk_gates - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "gates from the live router: {diff}");
    }
    assert!(
        !forced.hidden.allclose(&free.hidden, 1e-6, 1e-6, false),
        "another routing, another output"
    );
    // Gradients still reach the routers through the replayed gates.
    let mut o = TchOps::new(tch::Device::Cpu);
    let out = run
        .model
        .run_hidden_replaying(&mut o, &input, Some(other))
        .expect("forward");
    out.hidden.square().sum(tch::Kind::Float).backward();
    let router_grads: f64 = run
        .store
        .tensors
        .iter()
        .filter(|(n, _)| n.contains("router"))
        .map(|(_, t)| t.grad().abs().sum(tch::Kind::Float).double_value(&[]))
        .sum();
    assert!(router_grads > 0.0, "no gradient reached the routers");
    // A replay for the wrong number of routers is an error, not a panic.
    let mut o = TchOps::new(tch::Device::Cpu);
    let short = Some(free.routing[..1].iter().map(|r| r.experts.shallow_clone()).collect());
    assert!(run.model.run_hidden_replaying(&mut o, &input, short).is_err());
}

/// GRPO from an SFT run that learned to answer with a letter but not which one: its data
/// answer A or B regardless of country. GRPO then trains on [`data`] (Sweden answers A, Nigeria
/// B) with the choice reward, G = 8 completions of one token (the letter: the SFT run put no loss on
/// the end-of-turn token, so what follows the letter is noise).
fn sft_then_grpo(dir: &std::path::Path, out: &str) -> TrainConfig {
    let never = AtomicBool::new(false);
    let sft_dir = dir.join("sft-letters");
    if !sft_dir.join(CHECKPOINT_DIR).is_dir() {
        let mut items: Vec<ChoiceItem> = jsonl::read::<ChoiceItem>(&data(dir), ChoiceItem::validate)
            .expect("data")
            .rows;
        for (i, item) in items.iter_mut().enumerate() {
            item.answer = usize::from(i % 4 >= 2);
        }
        let mixed = dir.join("letters.jsonl");
        jsonl::write(&mixed, &items).expect("write");
        let mut c = config(dir, "sft-letters");
        c.data = Some(mixed);
        c.batch_size = 12;
        c.steps = 60;
        c.lr = 2e-2;
        SftRun::prepare(c, false, false)
            .expect("sft")
            .train(false, &never)
            .expect("sft steps");
    }
    let mut c = config(dir, out);
    c.stage = cuma::train::config::Stage::Grpo;
    c.init = Some(sft_dir);
    c.batch_size = 12;
    c.steps = 16;
    c.lr = 2e-2;
    c.grpo.group_size = 8;
    c.grpo.max_completion = 1;
    c
}

#[test]
fn grpo_raises_the_choice_reward_and_replay_reproduces_the_sampler() {
    let _turn = serial();
    let dir = scratch("grpo_learns");
    let never = AtomicBool::new(false);
    let mut run = SftRun::prepare(sft_then_grpo(&dir, "grpo"), false, false).expect("prepare grpo");
    assert_eq!(run.prompts.len(), 12);
    let history = run.train(false, &never).expect("grpo");
    let g: Vec<_> = history.iter().map(|m| m.grpo.clone().expect("grpo metrics")).collect();
    let rewards: Vec<f64> = g.iter().map(|m| m.reward_mean).collect();
    println!("rewards {rewards:.3?}");
    println!(
        "disagreement {:?}",
        g.iter().map(|m| m.routing_disagreement).collect::<Vec<_>>()
    );
    println!(
        "kl {:?} clip {:?}",
        g.iter().map(|m| m.kl).collect::<Vec<_>>(),
        g.iter().map(|m| m.clip_fraction).collect::<Vec<_>>()
    );
    let early = (rewards[0] + rewards[1] + rewards[2]) / 3.0;
    let late = (rewards[13] + rewards[14] + rewards[15]) / 3.0;
    assert!(late > early + 0.2, "reward {early:.3} -> {late:.3}: {rewards:?}");
    for m in &g {
        assert_eq!(
            m.routing_disagreement, 0.0,
            "with replay the training forward routes as the sampler did"
        );
    }
}
#[test]
fn the_http_judge_retries_maps_swapped_positions_back_and_counts_failures() {
    let ctx = [cuma_model::text::Message::new("user", "How should I spend Sunday?")];
    let case = cuma::eval::judge::Case {
        profile_text: "You are a person from Chile.",
        context: &ctx,
        reply: "With family at Mass.",
        other: "Working overtime.",
        reference: None,
    };
    // Request 1 fails with 500 and is retried; 2 says B; 3 gives no verdict; 4 says A.
    let (url, bodies) = common::judge_stub::start(vec![
        (500, "oops"),
        (200, "Verdict: B"),
        (200, "no idea"),
        (200, "Verdict: A"),
    ]);
    let mut judge = cuma::eval::judge::HttpJudge::new(&url, "stub-judge", None, std::time::Duration::from_secs(10));
    // Find seeds for which the reply is shown first, then second.
    let first_seed = (0..64)
        .find(|s| cuma::sampling::Rng::new(*s).next_u64() % 2 == 0)
        .expect("seed");
    let second_seed = (0..64)
        .find(|s| cuma::sampling::Rng::new(*s).next_u64() % 2 == 1)
        .expect("seed");
    let (o, _) = cuma::eval::judge::judge_case(&mut judge, &case, &mut cuma::sampling::Rng::new(first_seed), 1);
    assert_eq!(
        o,
        cuma::eval::judge::Outcome::Loss,
        "shown first, the judge preferred B"
    );
    let (o, why) = cuma::eval::judge::judge_case(&mut judge, &case, &mut cuma::sampling::Rng::new(second_seed), 0);
    assert_eq!(o, cuma::eval::judge::Outcome::Failed, "no verdict and no retries left");
    assert!(why.expect("reason").contains("no idea"));
    let (o, _) = cuma::eval::judge::judge_case(&mut judge, &case, &mut cuma::sampling::Rng::new(second_seed), 0);
    assert_eq!(
        o,
        cuma::eval::judge::Outcome::Loss,
        "shown second, the judge preferred A (the other reply)"
    );
    let sent: Vec<String> = bodies.try_iter().collect();
    assert_eq!(sent.len(), 4);
    let first: serde_json::Value = serde_json::from_str(&sent[1]).expect("json body");
    assert_eq!(first["model"], "stub-judge");
    let user = first["messages"][1]["content"].as_str().expect("user message");
    assert!(
        user.contains("from Chile") && user.contains("Reply A:\nWith family at Mass."),
        "{user}"
    );
    let last: serde_json::Value = serde_json::from_str(&sent[3]).expect("json body");
    assert!(last["messages"][1]["content"]
        .as_str()
        .expect("user")
        .contains("Reply A:\nWorking overtime."));
    // An endpoint that is not there: a failure, not a panic.
    let mut gone =
        cuma::eval::judge::HttpJudge::new("http://127.0.0.1:9", "m", None, std::time::Duration::from_secs(2));
    assert_eq!(
        cuma::eval::judge::judge_case(&mut gone, &case, &mut cuma::sampling::Rng::new(0), 1).0,
        cuma::eval::judge::Outcome::Failed
    );
}

#[test]
fn replay_makes_the_training_forward_route_as_the_sampler_even_after_the_routers_moved() {
    use cuma::models::backbone::StepInput;
    use cuma::models::inputs::pad_batch;
    use cuma::serve::{generate, FinishReason, GenerateOptions};
    use cuma::tch_ops::TchOps;
    use cuma_model::serve::padding::Side;
    let _turn = serial();
    let dir = scratch("grpo_replay");
    let run = SftRun::prepare(sft_then_grpo(&dir, "grpo"), false, false).expect("prepare");
    let prompts: Vec<Vec<u32>> = run.prompts[..4].iter().map(|p| p.ids.clone()).collect();
    let rows: Vec<i64> = run.prompts[..4].iter().map(|p| p.profile as i64).collect();
    let profiles = run.profiles.index_select(0, &tch::Tensor::from_slice(&rows));
    let options = GenerateOptions {
        max_new_tokens: 4,
        sampling: cuma::sampling::SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 3,
        },
        stop: Vec::new(),
        trace_routing: true,
        logprobs: true,
    };
    let gens = generate(&run.model, &prompts, Some(&profiles), &options, |_| {}).expect("sample");
    let seqs: Vec<Vec<u32>> = gens
        .iter()
        .zip(&prompts)
        .map(|(g, p)| {
            let mut ids = p.clone();
            ids.extend(&g.token_ids);
            if g.finish_reason == FinishReason::EndOfTurn {
                ids.extend(g.end_token);
            }
            assert_eq!(g.logprobs.len(), ids.len() - p.len(), "one log-prob per sampled token");
            ids
        })
        .collect();
    let traces: Vec<&cuma_model::serve::routing::RoutingTrace> =
        gens.iter().map(|g| g.routing.as_ref().expect("trace")).collect();
    let width = seqs.iter().map(Vec::len).max().expect("rows");
    let (ids, mask) = pad_batch(&seqs, 0, Side::Right, tch::Device::Cpu).expect("pad");
    let input = StepInput {
        ids: &ids,
        attention_mask: &mask,
        past: None,
        profile: Some(&profiles),
    };
    // Compares a forward's choices with the sampler's: (differing, compared) (router, position) pairs.
    let compare = |routing: &[cuma_model::adapters::Routing<tch::Tensor>]| {
        let (mut differ, mut total) = (0, 0);
        for (r, routed) in routing.iter().enumerate() {
            let k = routed.experts.size()[2] as usize;
            let flat: Vec<i64> = Vec::try_from(routed.experts.contiguous().view([-1])).expect("experts");
            for (i, trace) in traces.iter().enumerate() {
                for (p, token) in trace.tokens.iter().enumerate() {
                    let at = (i * width + p) * k;
                    let want: Vec<i64> = token.experts[r].iter().map(|&e| i64::from(e)).collect();
                    differ += usize::from(flat[at..at + k] != want[..]);
                    total += 1;
                }
            }
        }
        (differ, total)
    };
    let forward = |replay: bool| {
        let replay =
            replay.then(|| cuma::train::grpo_step::replay_tensors(&traces, width, tch::Device::Cpu).expect("replay"));
        run.model
            .run_hidden_replaying(&mut TchOps::new(tch::Device::Cpu), &input, replay)
            .expect("forward")
            .routing
    };
    let (differ, total) = compare(&forward(true));
    assert!(
        total > 100 && differ == 0,
        "replayed: {differ} of {total} choices differ"
    );
    let (free_differ, _) = compare(&forward(false));
    println!("same weights, no replay: {free_differ} of {total} choices differ");
    // Move the routers (as an update between sampling and training would): a free forward now
    // routes differently, a replayed one still as the sampler did.
    tch::no_grad(|| {
        for (name, t) in &run.store.tensors {
            if name.contains("router") {
                let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.5));
            }
        }
    });
    let (moved, _) = compare(&forward(false));
    assert!(moved > 0, "moved routers should change some choices");
    println!("moved routers, no replay: {moved} of {total} choices differ");
    assert_eq!(compare(&forward(true)).0, 0, "replay holds the sampler's choices");
}

#[test]
fn grpo_without_replay_measures_the_disagreement_and_resumes_exactly() {
    let _turn = serial();
    let dir = scratch("grpo_resume");
    let never = AtomicBool::new(false);
    let small = |out: &str| {
        let mut c = sft_then_grpo(&dir, out);
        c.batch_size = 4;
        c.steps = 4;
        c.grpo.group_size = 4;
        c.grpo.router_replay = false;
        c.grpo.kl_beta = 0.05;
        c
    };
    let mut straight = SftRun::prepare(small("straight"), false, false).expect("prepare");
    let full: Vec<_> = straight
        .train(false, &never)
        .expect("train")
        .into_iter()
        .map(|m| (m.loss, m.grpo))
        .collect();
    for (_, g) in &full {
        let g = g.as_ref().expect("grpo metrics");
        assert!(
            (0.0..=1.0).contains(&g.routing_disagreement) && g.kl.is_finite() && g.kl >= 0.0,
            "{g:?}"
        );
    }
    println!(
        "disagreement without replay: {:?}",
        full.iter()
            .map(|(_, g)| g.as_ref().map(|g| g.routing_disagreement))
            .collect::<Vec<_>>()
    );
    let mut first = SftRun::prepare(small("paused"), false, false).expect("prepare");
    let mut resumed: Vec<_> = first
        .train_until(2, false, &never)
        .expect("half")
        .into_iter()
        .map(|m| (m.loss, m.grpo))
        .collect();
    drop(first);
    let mut second = SftRun::prepare(small("paused"), true, false).expect("resume");
    resumed.extend(
        second
            .train(false, &never)
            .expect("rest")
            .into_iter()
            .map(|m| (m.loss, m.grpo)),
    );
    assert_eq!(
        resumed, full,
        "a resumed GRPO run samples and trains exactly as an uninterrupted one"
    );
}

#[test]
fn grpo_with_a_judge_reward_through_a_local_server() {
    let _turn = serial();
    let dir = scratch("grpo_judge");
    let never = AtomicBool::new(false);
    // 2 prompts x 4 completions: seven verdicts "A" and one failed request (no retries).
    let mut answers = vec![(200u16, "Verdict: A"); 8];
    answers[5] = (500, "down");
    let (url, bodies) = common::judge_stub::start(answers);
    let mut c = sft_then_grpo(&dir, "grpo");
    c.batch_size = 2;
    c.steps = 1;
    c.grpo.group_size = 4;
    c.grpo.max_completion = 3;
    c.grpo.reward = cuma::train::grpo::RewardKind::Judge;
    c.grpo.judge_url = Some(url);
    c.grpo.judge_retries = 0;
    let mut run = SftRun::prepare(c, false, false).expect("prepare");
    let m = run
        .train(false, &never)
        .expect("one step")
        .remove(0)
        .grpo
        .expect("grpo metrics");
    assert_eq!(m.unrewarded, 1, "the failed judgement gives no reward: {m:?}");
    // Always "A": a win when the sample was shown first, a loss when second.
    assert!(m.reward_mean > 0.0 && m.reward_mean < 1.0, "{m:?}");
    let sent: Vec<String> = bodies.try_iter().collect();
    assert_eq!(sent.len(), 8);
    let body: serde_json::Value = serde_json::from_str(&sent[0]).expect("json");
    let user = body["messages"][1]["content"].as_str().expect("user message");
    assert!(
        user.contains("You are a person from") && user.contains("Reply B:"),
        "{user}"
    );
}
