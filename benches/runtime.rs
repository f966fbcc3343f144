//! Serving latency of the plain backbone and of CuMA on every backend (tch eager, ONNX Runtime
//! CPU, tract): encoder latency for one profile, prefill of a 128-token prompt, and one decode
//! step at batch 1 and batch 8 after a 128-token context.
//!
//! Needs the bundles that `scripts/bench.sh` prepares (it runs this bench and prints the table):
//! `CUMA_BENCH_DIR` holds `plain/` (the bare SmolLM2 bundle) and `cuma/` (a CuMA run with E 8,
//! k 2, r 8 on q,v, and its `bundle/`). Without it the bench skips with a message.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuma::eval::run::Evaluator;
use cuma::models::backbone::{Backbone, StepInput};
use cuma::tch_ops::TchOps;
use cuma_model::arch::KvPair;
use cuma_runtime::{Backend, Bundle, Device as OrtDevice, EngineOptions, HostTensor, Profile, Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

const CONTEXT: usize = 128;
const PROFILE: &str = "country=Thailand,age=55-64,gender=Female,religion=Buddhist";

/// A deterministic 128-token prompt of ordinary vocabulary ids.
fn prompt_ids() -> Vec<i64> {
    (0..CONTEXT as i64).map(|i| 1000 + (i * 7919) % 20000).collect()
}

fn bench_dir() -> Option<PathBuf> {
    std::env::var_os("CUMA_BENCH_DIR").map(PathBuf::from).filter(|d| d.join("plain/manifest.json").is_file())
}

fn threads() -> usize {
    std::env::var("CUMA_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2)
}

fn session(bundle: &Path, backend: Backend) -> Session {
    let engine = EngineOptions { backend, threads: Some(threads()) };
    Session::new(Bundle::open(bundle).expect("bundle"), SessionOptions { engine, strict_profiles: false }).expect("session")
}

/// Runtime: prefill, and one decode step at `batch` after the 128-token context.
fn bench_runtime(c: &mut Criterion, label: &str, bundle: &Path) {
    for (name, backend) in [("ort", Backend::Ort { device: OrtDevice::Cpu }), ("tract", Backend::Tract)] {
        let mut s = session(bundle, backend);
        let id = format!("{label}/{name}");
        let profile = Profile::parse(PROFILE).expect("profile");
        let vector = s.reads_profile_vector().then(|| s.encode_profile(&profile).expect("vector"));
        if vector.is_some() {
            c.bench_function(&format!("encoder/{id}"), |b| {
                b.iter(|| {
                    // A fresh session cache each time: the encoder graph really runs.
                    s.clear_profile_cache();
                    s.encode_profile(&profile).expect("vector")
                })
            });
        }
        let ids = prompt_ids();
        let mut group = c.benchmark_group(format!("serve/{id}"));
        group.bench_function("prefill128", |b| b.iter(|| s.step(&[ids.clone()], &vec![1; CONTEXT], vector.as_deref(), None).expect("prefill")));
        for batch in [1usize, 8] {
            let rows: Vec<Vec<i64>> = vec![ids.clone(); batch];
            let demo: Option<Vec<f32>> = vector.as_ref().map(|v| v.repeat(batch));
            let past: Vec<HostTensor> = s.step(&rows, &vec![1; batch * CONTEXT], demo.as_deref(), None).expect("context").presents;
            let next: Vec<Vec<i64>> = vec![vec![42]; batch];
            let mask = vec![1; batch * (CONTEXT + 1)];
            group.bench_with_input(BenchmarkId::new("decode", batch), &batch, |b, _| b.iter(|| s.step(&next, &mask, demo.as_deref(), Some(&past)).expect("decode")));
        }
        group.finish();
    }
}

/// tch eager: the same measurements on the model the bundle came from.
fn bench_tch(c: &mut Criterion, label: &str, model: &Backbone, profile_vector: Option<&Tensor>) {
    let _g = tch::no_grad_guard();
    tch::set_num_threads(threads() as i32);
    let ids = Tensor::from_slice(&prompt_ids()).view([1, -1]);
    let run = |ids: &Tensor, mask: &Tensor, past: Option<&[KvPair<Tensor>]>, profile: Option<&Tensor>| {
        model.run(&mut TchOps::new(Device::Cpu), &StepInput { ids, attention_mask: mask, past, profile }).expect("tch step")
    };
    let mut group = c.benchmark_group(format!("serve/{label}/tch"));
    let mask = Tensor::ones([1, CONTEXT as i64], (Kind::Int64, Device::Cpu));
    group.bench_function("prefill128", |b| b.iter(|| run(&ids, &mask, None, profile_vector)));
    for batch in [1i64, 8] {
        let rows = ids.repeat([batch, 1]);
        let profile = profile_vector.map(|p| p.repeat([batch, 1]));
        let past = run(&rows, &Tensor::ones([batch, CONTEXT as i64], (Kind::Int64, Device::Cpu)), None, profile.as_ref()).presents;
        let next = Tensor::full([batch, 1], 42, (Kind::Int64, Device::Cpu));
        let mask = Tensor::ones([batch, CONTEXT as i64 + 1], (Kind::Int64, Device::Cpu));
        group.bench_with_input(BenchmarkId::new("decode", batch), &batch, |b, _| b.iter(|| run(&next, &mask, Some(&past), profile.as_ref())));
    }
    group.finish();
}

fn serving(c: &mut Criterion) {
    let Some(dir) = bench_dir() else {
        eprintln!("CUMA_BENCH_DIR is not set to a prepared directory; run scripts/bench.sh");
        return;
    };
    bench_runtime(c, "plain", &dir.join("plain"));
    bench_runtime(c, "cuma", &dir.join("cuma/bundle"));
    let e = Evaluator::from_checkpoint(&dir.join("cuma/checkpoint"), Device::Cpu).expect("CuMA checkpoint");
    let text = Profile::parse(PROFILE).expect("profile").render(&Bundle::open(dir.join("cuma/bundle")).expect("bundle").manifest.profile).expect("text");
    c.bench_function("encoder/cuma/tch", |b| b.iter(|| e.encoder.embed(&[&text]).expect("embed")));
    let vector = e.encoder.embed(&[&text]).expect("embed");
    bench_tch(c, "cuma", &e.model, Some(&vector));
    let backbone = cuma::train::checkpoint::load(&dir.join("cuma/checkpoint")).expect("checkpoint").manifest.backbone.path;
    let plain = Backbone::load(&backbone, Device::Cpu).expect("plain backbone");
    bench_tch(c, "plain", &plain, None);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    targets = serving
}
criterion_main!(benches);
