//! What routing costs at serving time: the plain backbone's bundle against CuMA bundles, each
//! bundle on its own session, measured in alternating rounds (plain, then each CuMA bundle, then
//! the next round) so that every ratio compares neighbouring measurements on a noisy machine.
//! Per round: the first token of a 128-token prompt (prefill, profile vector and terms cached
//! as a served request finds them after its first), and one decode step after that context at
//! batch 1 and 8 (the mean of `--steps` calls). Prints each CuMA bundle's time over plain's:
//! the median of the rounds and their range.
//!
//!   cargo run --release -p cuma-runtime --features cli --example routing_overhead -- \
//!       --plain runs/bench/plain --cuma runs/bench/cuma/bundle --cuma runs/bench/cuma-vector \
//!       --backend ort --rounds 5

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use cuma_runtime::{Backend, Bundle, Device, EngineOptions, HostTensor, Profile, Session, SessionOptions};
use std::path::PathBuf;
use std::time::Instant;

const CONTEXT: usize = 128;
const PROFILE: &str = "country=Thailand,age=55-64,gender=Female,religion=Buddhist";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Ort,
    Tract,
}

/// Routing overhead: CuMA bundles against the plain bundle, alternated.
#[derive(Debug, Parser)]
struct Args {
    /// The bare backbone's bundle.
    #[arg(long)]
    plain: PathBuf,
    /// CuMA bundles to compare with it (repeat the flag).
    #[arg(long, required = true)]
    cuma: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "ort")]
    backend: BackendArg,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Decode calls averaged per round and batch size.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Prefill calls averaged per round.
    #[arg(long, default_value_t = 3)]
    prefills: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// One bundle, with its inputs ready: the profile vector (when its routers read one) and the
/// 128-token context of each batch size.
struct Subject {
    label: String,
    session: Session,
    vector: Option<Vec<f32>>,
    contexts: Vec<(usize, Vec<HostTensor>)>,
}

/// A deterministic 128-token prompt of ordinary vocabulary ids (as benches/runtime.rs uses).
fn prompt() -> Vec<i64> {
    (0..CONTEXT as i64).map(|i| 1000 + (i * 7919) % 20000).collect()
}

const BATCHES: [usize; 2] = [1, 8];

impl Subject {
    fn open(dir: &PathBuf, backend: Backend, threads: usize) -> Result<Self> {
        let engine = EngineOptions {
            backend,
            threads: Some(threads),
            ..Default::default()
        };
        let bundle = Bundle::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        let mut session = Session::new(
            bundle,
            SessionOptions {
                engine,
                strict_profiles: false,
            },
        )?;
        let vector = if session.reads_profile_vector() {
            Some(session.encode_profile(&Profile::parse(PROFILE)?)?)
        } else {
            None
        };
        let mut subject = Self {
            label: dir.display().to_string(),
            session,
            vector,
            contexts: Vec::new(),
        };
        for batch in BATCHES {
            let rows = vec![prompt(); batch];
            let profiles = subject.profiles(batch);
            let past = subject
                .session
                .step(&rows, &vec![1; batch * CONTEXT], profiles.as_deref(), None)?
                .presents;
            subject.contexts.push((batch, past));
        }
        Ok(subject)
    }

    fn profiles(&self, batch: usize) -> Option<Vec<f32>> {
        self.vector.as_ref().map(|v| v.repeat(batch))
    }

    /// Seconds per prefill of the 128-token prompt, over `n` calls.
    fn prefill(&mut self, n: usize) -> Result<f64> {
        let (ids, profiles) = (prompt(), self.profiles(1));
        let start = Instant::now();
        for _ in 0..n {
            self.session
                .step(std::slice::from_ref(&ids), &vec![1; CONTEXT], profiles.as_deref(), None)?;
        }
        Ok(start.elapsed().as_secs_f64() / n as f64)
    }

    /// Seconds per decode step at `batch` after the context, over `n` calls.
    fn decode(&mut self, batch: usize, n: usize) -> Result<f64> {
        let profiles = self.profiles(batch);
        let (next, mask) = (vec![vec![42i64]; batch], vec![1i64; batch * (CONTEXT + 1)]);
        let past = self
            .contexts
            .iter()
            .find(|(b, _)| *b == batch)
            .map(|(_, p)| p.clone())
            .context("no context for this batch size")?;
        let start = Instant::now();
        for _ in 0..n {
            self.session.step(&next, &mask, profiles.as_deref(), Some(&past))?;
        }
        Ok(start.elapsed().as_secs_f64() / n as f64)
    }
}

/// Median and range of `xs`.
fn summary(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (median, xs[0], xs[n - 1])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let backend = match args.backend {
        BackendArg::Ort => Backend::Ort { device: Device::Cpu },
        BackendArg::Tract => Backend::Tract,
    };
    let mut subjects = vec![Subject::open(&args.plain, backend, args.threads)?];
    for dir in &args.cuma {
        subjects.push(Subject::open(dir, backend, args.threads)?);
    }
    // times[what][subject][round]
    let whats = ["first token (prefill 128)", "decode b1", "decode b8"];
    let mut times = vec![vec![Vec::new(); subjects.len()]; whats.len()];
    for round in 0..args.rounds {
        for (i, s) in subjects.iter_mut().enumerate() {
            times[0][i].push(s.prefill(args.prefills)?);
        }
        for (w, batch) in BATCHES.into_iter().enumerate() {
            for (i, s) in subjects.iter_mut().enumerate() {
                times[w + 1][i].push(s.decode(batch, args.steps)?);
            }
        }
        eprintln!("round {} of {} done", round + 1, args.rounds);
    }
    println!(
        "backend {:?}, {} threads, {} rounds",
        args.backend, args.threads, args.rounds
    );
    for (w, what) in whats.iter().enumerate() {
        let (plain, _, _) = summary(&mut times[w][0].clone());
        println!("{what}: plain {:.2} ms (median)", plain * 1e3);
        for (i, s) in subjects.iter().enumerate().skip(1) {
            let mut ratios: Vec<f64> = times[w][i].iter().zip(&times[w][0]).map(|(c, p)| c / p).collect();
            let (own, _, _) = summary(&mut times[w][i].clone());
            let (median, low, high) = summary(&mut ratios);
            println!(
                "  {}: {:.2} ms, {median:.3}x plain (rounds {low:.3} to {high:.3})",
                s.label,
                own * 1e3
            );
        }
    }
    Ok(())
}
