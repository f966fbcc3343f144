//! `cuma bench train` / `cuma bench decode`: speed at a model's shape with random weights.

use crate::cli::{BenchCommand, BenchDecodeArgs, BenchTrainArgs};
use anyhow::Context;
use cuma::bench::{DecodeBench, TrainBench};
use cuma_model::config::MethodConfig;
use serde::Serialize;

pub fn run(c: &BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Train(a) => train(a),
        BenchCommand::Decode(a) => decode(a),
    }
}

fn method(args: &crate::cli::MethodArgs) -> anyhow::Result<MethodConfig> {
    let mut m = MethodConfig::default();
    args.apply(&mut m);
    m.validate()?;
    Ok(m)
}

/// Prints `report` as JSON to `path`, when given.
fn write_json(report: &impl Serialize, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn train(a: &BenchTrainArgs) -> anyhow::Result<()> {
    let device = cuma::device::parse_device(&a.device)?;
    let scratch = std::env::temp_dir().join(format!("cuma-bench-{}", std::process::id()));
    let bench = TrainBench {
        shape: a.shape,
        method: method(&a.method)?,
        device,
        batch: a.batch,
        seq: a.seq,
        warmup_steps: a.warmup,
        timed_steps: a.steps,
        profile_dim: a.profile_dim,
        seed: a.seed,
        bf16: !a.f32 && device.is_cuda(),
        peak_tflops: a.peak_tflops,
        out: a.out.clone().unwrap_or_else(|| scratch.clone()),
    };
    let result = bench.run();
    if a.out.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let r = result?;
    let mfu = r.mfu.map_or(String::new(), |m| format!(", MFU {:.1} %", 100.0 * m));
    println!(
        "{:?} {:?} r{} E{} on {}: {:.0} tokens/s{mfu}; loss {:.4} -> {:.4}",
        r.shape,
        r.method.method,
        r.method.rank,
        r.method.experts,
        r.device,
        r.tokens_per_second,
        r.losses.first().copied().unwrap_or(f64::NAN),
        r.losses.last().copied().unwrap_or(f64::NAN),
    );
    write_json(&r, a.json.as_deref())
}

fn decode(a: &BenchDecodeArgs) -> anyhow::Result<()> {
    let bench = DecodeBench {
        shape: a.shape,
        method: if a.plain { None } else { Some(method(&a.method)?) },
        device: cuma::device::parse_device(&a.device)?,
        batch: a.batch,
        prompt_tokens: a.prompt_tokens,
        new_tokens: a.new_tokens,
        profile_dim: a.profile_dim,
        seed: a.seed,
        peak_bandwidth: a.peak_bandwidth,
    };
    let r = bench.run()?;
    let bound = r
        .bandwidth_bound_tokens_per_second
        .map_or(String::new(), |b| format!(" (bandwidth bound {b:.1})"));
    println!(
        "{:?} {} batch {} on {}: first token {:.1} ms, {:.1} steps/s{bound}",
        r.shape,
        r.method
            .as_ref()
            .map_or("plain".to_string(), |m| format!("{:?}", m.method)),
        r.batch,
        r.device,
        r.first_token_ms,
        r.tokens_per_second,
    );
    write_json(&r, a.json.as_deref())
}
