//! `cuma train`: settings from file, preset and flags; `--dry-run` parameter accounting; the SFT
//! or DPO loop with Ctrl-C saving a checkpoint.

use crate::cli::{set, TrainArgs};
use anyhow::Context;
use cuma::models::source::ModelSource;
use cuma::train::config::{Stage, TrainConfig};
use cuma::train::sft::SftRun;
use cuma_model::adapters::DecoderAdapters;
use cuma_model::config::ModelConfig;
use cuma_model::{ParamCounter, ShapeOps};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// File, then preset, then flags.
pub fn resolve(a: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut c = match &a.config {
        Some(p) => TrainConfig::from_toml(p).with_context(|| format!("reading {}", p.display()))?,
        None => TrainConfig::default(),
    };
    if let Some(p) = a.preset {
        c.apply_preset(p);
    }
    set(&mut c.stage, &a.stage);
    if c.stage == Stage::Dpo && a.config.is_none() && a.preset.is_none() {
        c.lr = cuma::train::dpo::DPO_LR;
    }
    if c.stage != Stage::Sft && a.method.any_given() {
        eprintln!(
            "warning: --stage dpo / grpo take the method and its settings from --init; the method flags are ignored"
        );
    }
    a.method.apply(&mut c.method);
    if a.init.is_some() {
        c.init = a.init.clone();
    }
    set(&mut c.reference, &a.reference);
    set(&mut c.dpo.beta, &a.beta);
    set(&mut c.dpo.label_smoothing, &a.label_smoothing);
    set(&mut c.dpo.balance_lambda, &a.dpo_balance);
    let g = &mut c.grpo;
    set(&mut g.group_size, &a.group_size);
    set(&mut g.temperature, &a.temperature);
    set(&mut g.top_p, &a.top_p);
    set(&mut g.max_completion, &a.max_completion);
    set(&mut g.epsilon, &a.epsilon);
    set(&mut g.kl_beta, &a.kl_beta);
    set(&mut g.reward, &a.reward);
    set(&mut g.target, &a.reward_target);
    set(&mut g.group_by, &a.group_by);
    set(&mut g.balance_lambda, &a.grpo_balance);
    if let Some(r) = a.router_replay {
        g.router_replay = r == crate::cli::Switch::On;
    }
    if a.judge_url.is_some() {
        g.judge_url = a.judge_url.clone();
    }
    set(&mut g.judge_model, &a.judge_model);
    set(&mut c.lr, &a.lr);
    set(&mut c.steps, &a.steps);
    set(&mut c.batch_size, &a.batch_size);
    set(&mut c.grad_accum, &a.grad_accum);
    set(&mut c.warmup_steps, &a.warmup_steps);
    set(&mut c.seed, &a.seed);
    set(&mut c.checkpoint_every, &a.checkpoint_every);
    set(&mut c.snapshot_every, &a.snapshot_every);
    set(&mut c.length_buckets, &a.length_buckets);
    set(&mut c.max_items, &a.max_items);
    set(&mut c.device, &a.device);
    if a.bf16 {
        c.force_bf16 = true;
    }
    if a.data.is_some() {
        c.data = a.data.clone();
    }
    if let Some(o) = &a.out {
        c.out = o.clone();
    }
    if a.model.is_some() {
        c.backbone = a.model.clone();
    }
    if a.encoder.is_some() {
        c.encoder = a.encoder.clone();
    }
    c.validate()?;
    Ok(c)
}

fn dry_run(c: &TrainConfig) -> anyhow::Result<()> {
    let method = c.method.effective();
    let backbone = cuma::defaults::backbone(c.backbone.as_deref())?;
    let encoder = cuma::defaults::encoder(c.encoder.as_deref())?;
    let ModelConfig::Decoder(dc) = ModelSource::open(&backbone)?.config else {
        anyhow::bail!("{} is not a decoder", backbone.display())
    };
    let dim = match ModelSource::open(&encoder)?.config {
        ModelConfig::Bert(b) => b.hidden_size,
        ModelConfig::Decoder(d) => d.hidden_size,
    };
    let mut counter = ParamCounter::default();
    let shapes = cuma_model::arch::Decoder::load(&mut ShapeOps, &mut cuma_model::ShapeWeights, &dc)?;
    let backbone_params = dc.parameter_count();
    let profile_dim = if method.method == cuma_model::config::Method::Full {
        counter.total = backbone_params;
        0
    } else if method.method == cuma_model::config::Method::Ptuning {
        cuma_model::adapters::Prefix::init(&mut ShapeOps, &mut counter, &dc, method.prefix_tokens)?;
        0
    } else {
        DecoderAdapters::init(&mut ShapeOps, &mut counter, &shapes, &method, dim)?.profile_dim
    };
    println!(
        "backbone:   {} ({}), {:.1} M parameters (frozen)",
        backbone.display(),
        dc.family.model_type(),
        backbone_params as f64 / 1e6
    );
    println!(
        "method:     {:?}, E {} k {} r {} alpha {} on {:?}, gate {:?}, router input D = {}",
        method.method,
        method.experts,
        method.top_k,
        method.rank,
        method.alpha,
        method.targets,
        method.gate,
        profile_dim
    );
    println!(
        "trainable:  {} parameters = {:.3} % of the backbone",
        counter.total,
        100.0 * counter.total as f64 / backbone_params as f64
    );
    Ok(())
}

/// `--dump-batches`: one JSON line per micro-batch, in training order.
fn dump_batches(run: &mut SftRun, path: &std::path::Path) -> anyhow::Result<()> {
    let accum = run.config.grad_accum;
    let first_step = run.state.step;
    let lines: Vec<serde_json::Value> = run
        .planned_batches()?
        .iter()
        .enumerate()
        .map(|(i, batch)| {
            let rows: Vec<_> = batch
                .iter()
                .map(|e| serde_json::json!({"ids": e.ids, "targets_from": e.targets_from, "profile": e.profile}))
                .collect();
            serde_json::json!({"step": first_step + i / accum + 1, "micro": i % accum, "rows": rows})
        })
        .collect();
    cuma::data::jsonl::write(path, &lines)?;
    eprintln!(
        "wrote {} micro-batches to {}; profile vectors: {}",
        lines.len(),
        path.display(),
        run.config.out.join("profiles.safetensors").display()
    );
    Ok(())
}

pub fn run(a: &TrainArgs) -> anyhow::Result<()> {
    let c = resolve(a)?;
    if a.dry_run {
        return dry_run(&c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit now)");
    })?;
    let existing = c.out.join(cuma::train::sft::CHECKPOINT_DIR);
    if !a.resume && !a.force && existing.join(cuma::train::checkpoint::MANIFEST_FILE).is_file() {
        // Only `cuma.json` is read for the message: the tensors stay on disk.
        let step = std::fs::read_to_string(existing.join(cuma::train::checkpoint::MANIFEST_FILE))
            .ok()
            .and_then(|text| serde_json::from_str::<cuma::train::checkpoint::CheckpointManifest>(&text).ok())
            .map(|m| format!(" at step {}", m.state.step))
            .unwrap_or_default();
        anyhow::bail!(
            "{} already holds a checkpoint{step}; pass --resume to continue it or --force to start over",
            c.out.display()
        );
    }
    let mut run = SftRun::prepare(c, a.resume, true)?;
    if let Some(path) = &a.dump_batches {
        return dump_batches(&mut run, path);
    }
    let start = if run.state.step > 0 {
        format!("resuming at step {}", run.state.step)
    } else {
        "starting at step 0".to_string()
    };
    let units = match run.config.stage {
        Stage::Sft => format!("{} examples", run.examples.len()),
        Stage::Dpo => format!(
            "{} pairs (reference: {:?}; {} chat items without `rejected` skipped)",
            run.pairs.len(),
            run.config.reference,
            run.not_pairs
        ),
        Stage::Grpo => format!(
            "{} prompts x {} completions (reward {:?}, router replay {}; {} items the reward cannot score or too long skipped)",
            run.prompts.len(),
            run.config.grpo.group_size,
            run.config.grpo.reward,
            if run.config.grpo.router_replay { "on" } else { "off" },
            run.not_pairs
        ),
    };
    eprintln!(
        "{units} ({} too long), {} profiles, {} trainable parameters; {start}",
        run.too_long,
        run.profiles.size()[0],
        run.store.numel()
    );
    let history = run.train(true, &stop)?;
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        let secs: f64 = history.iter().map(|m| m.seconds).sum();
        let toks: usize = history.iter().map(|m| m.tokens).sum();
        eprintln!(
            "steps {}..{}: loss {:.4} -> {:.4}; {:.2} steps/s, {:.0} tokens/s; checkpoint in {}",
            first.step,
            last.step,
            first.loss,
            last.loss,
            history.len() as f64 / secs.max(1e-9),
            toks as f64 / secs.max(1e-9),
            run.config.out.join(cuma::train::sft::CHECKPOINT_DIR).display()
        );
    }
    Ok(())
}
