//! How closely a candidate bundle (or engine) reproduces a reference on survey items: next-token
//! top-1 agreement at the answer position, the total variation between the two answer
//! distributions, and the share of (router, prompt token) pairs routed to the same expert set.
//! This is how a quantized bundle is judged against its float original (docs/quantization.md).
//!
//!   cargo run --release -p cuma-runtime --features cli --example agreement -- \
//!       --reference runs/q/f32 --candidate runs/q/int4 --items runs/wvs/test.jsonl --limit 200
//!   ... --candidate-engine ort-int8   (int8 activations in the fused 4-bit products)

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use cuma_runtime::model::items::{parse_row, ChoiceItem};
use cuma_runtime::model::serve::softmax;
use cuma_runtime::{
    Backend, Bundle, Device, EngineOptions, Profile, QuantCompute, RoutingTrace, Session, SessionOptions,
};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineArg {
    Ort,
    Tract,
    /// ONNX Runtime with int8 activations in its fused quantized products.
    #[value(name = "ort-int8")]
    OrtInt8,
}

/// Agreement of a candidate bundle with a reference on multiple-choice items.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    reference: PathBuf,
    #[arg(long, value_enum, default_value = "ort")]
    reference_engine: EngineArg,
    #[arg(long)]
    candidate: PathBuf,
    #[arg(long, value_enum, default_value = "ort")]
    candidate_engine: EngineArg,
    /// Items JSONL (`cuma data convert` / `split` rows).
    #[arg(long)]
    items: PathBuf,
    /// Only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also write each item's prompt ids, option-letter ids and the reference's readings here
    /// (JSONL), for engines outside cuma-runtime (scripts/llama_agreement.py).
    #[arg(long)]
    dump: Option<PathBuf>,
}

fn session(dir: &PathBuf, engine: EngineArg, threads: usize) -> Result<Session> {
    let ort = Backend::Ort { device: Device::Cpu };
    let (backend, quant_compute) = match engine {
        EngineArg::Ort => (ort, QuantCompute::F32),
        EngineArg::OrtInt8 => (ort, QuantCompute::Int8),
        EngineArg::Tract => (Backend::Tract, QuantCompute::F32),
    };
    let options = SessionOptions {
        engine: EngineOptions {
            backend,
            threads: Some(threads),
            quant_compute,
        },
        strict_profiles: false,
    };
    Session::new(Bundle::open(dir)?, options).with_context(|| format!("loading {}", dir.display()))
}

/// One session's reading of one item: the full next-token logits at the answer position, the
/// option distribution (softmax over the option letters' logits) and the prompt's routing.
struct Reading {
    ids: Vec<u32>,
    letters: Vec<u32>,
    top1: usize,
    options: Vec<f64>,
    routing: Option<RoutingTrace>,
}

fn read(session: &mut Session, item: &ChoiceItem) -> Result<Reading> {
    let profile = Profile::from_json_value(&serde_json::to_value(&item.profile)?)?;
    let ids = session.choice_prompt_ids(&profile, &item.question, &item.options)?;
    let demographic = if session.reads_profile_vector() {
        Some(session.encode_profile(&profile)?)
    } else {
        None
    };
    let (logits, routing) = session.next_token_logits(&ids, demographic.as_deref(), true)?;
    let top1 = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .context("empty logits")?;
    let letters = session.bundle().manifest.choice.letter_ids[..item.options.len()].to_vec();
    // The option distribution as `Session::choice_distribution` computes it.
    let picked: Vec<f64> = letters.iter().map(|&l| f64::from(logits[l as usize])).collect();
    Ok(Reading {
        ids,
        letters,
        top1,
        options: softmax(&picked),
        routing,
    })
}

/// (same, all) (router, token) pairs: the same set of experts chosen, in any order.
fn routing_agreement(a: &RoutingTrace, b: &RoutingTrace) -> Result<(usize, usize)> {
    if a.tokens.len() != b.tokens.len() || a.routers != b.routers {
        bail!("the two bundles route different prompts or routers");
    }
    let (mut same, mut all) = (0, 0);
    for (x, y) in a.tokens.iter().zip(&b.tokens) {
        for (ex, ey) in x.experts.iter().zip(&y.experts) {
            let (mut ex, mut ey) = (ex.clone(), ey.clone());
            ex.sort_unstable();
            ey.sort_unstable();
            same += usize::from(ex == ey);
            all += 1;
        }
    }
    Ok((same, all))
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut reference = session(&a.reference, a.reference_engine, a.threads)?;
    let mut candidate = session(&a.candidate, a.candidate_engine, a.threads)?;
    let file = std::fs::File::open(&a.items).with_context(|| format!("opening {}", a.items.display()))?;
    let mut dump = match &a.dump {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let (mut items, mut top1, mut tv_sum, mut tv_max, mut same, mut pairs) = (0, 0, 0.0f64, 0.0f64, 0, 0);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        if a.limit.is_some_and(|l| items >= l) {
            break;
        }
        let line = line?;
        let Some(item) = parse_row::<ChoiceItem>(line.as_bytes(), ChoiceItem::validate)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", a.items.display(), n + 1))?
        else {
            continue;
        };
        let r = read(&mut reference, &item)?;
        let c = read(&mut candidate, &item)?;
        if let Some(out) = &mut dump {
            let row = serde_json::json!({"id": item.id, "ids": r.ids, "letters": r.letters, "top1": r.top1, "options": r.options});
            writeln!(out, "{row}")?;
        }
        items += 1;
        top1 += usize::from(r.top1 == c.top1);
        let tv = 0.5
            * r.options
                .iter()
                .zip(&c.options)
                .map(|(p, q)| (p - q).abs())
                .sum::<f64>();
        tv_sum += tv;
        tv_max = tv_max.max(tv);
        if let (Some(x), Some(y)) = (&r.routing, &c.routing) {
            let (s, p) = routing_agreement(x, y)?;
            same += s;
            pairs += p;
        }
    }
    if items == 0 {
        bail!("{} holds no items", a.items.display());
    }
    let share = |x: usize, n: usize| if n == 0 { f64::NAN } else { x as f64 / n as f64 };
    let routing = if pairs == 0 {
        "no routers".to_string()
    } else {
        format!(
            "routing identical on {same} of {pairs} (router, token) pairs ({:.6})",
            share(same, pairs)
        )
    };
    // Written, not printed: a closed pipe (`| head -1`) is an error to report, not a panic.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{items} items: next-token top-1 agreement {:.4}, answer TV mean {:.2e} (max {:.2e}), {routing}",
        share(top1, items),
        tv_sum / items as f64,
        tv_max,
    )?;
    writeln!(
        out,
        "{}",
        serde_json::json!({"items": items, "top1": share(top1, items), "tv_mean": tv_sum / items as f64,
            "tv_max": tv_max, "routing_same": share(same, pairs), "routing_pairs": pairs})
    )?;
    Ok(())
}
