//! Serving latency of the plain backbone and of CuMA on every backend (tch eager, ONNX Runtime
//! CPU, tract): encoder latency for one profile, prefill of a 128-token prompt, and one decode
//! step at batch 1 and batch 8 after a 128-token context.
//!
//! Plain and CuMA are measured alternately on each backend (plain prefill, CuMA prefill, plain
//! decode, CuMA decode, ...), so each ratio comes from neighbouring measurements.
//!
//! Needs the bundles that `scripts/bench.sh` prepares (it runs this bench and prints the table):
//! `CUMA_BENCH_DIR` holds `plain/` (the bare SmolLM2 bundle) and `cuma/` (a CuMA run with E 8,
//! k 2, r 8 on q,v, and its `bundle/`). Without it the bench skips with a message.

use criterion::{criterion_group, criterion_main, Criterion};
use cuma::eval::run::Evaluator;
use cuma::models::backbone::{Backbone, StepInput};
use cuma::tch_ops::TchOps;
use cuma_model::arch::KvPair;
use cuma_runtime::{Backend, Bundle, Device as OrtDevice, EngineOptions, HostTensor, Profile, Session, SessionOptions};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

const CONTEXT: usize = 128;
const PROFILE: &str = "country=Thailand,age=55-64,gender=Female,religion=Buddhist";

/// A deterministic 128-token prompt of ordinary vocabulary ids.
fn prompt_ids() -> Vec<i64> {
    (0..CONTEXT as i64).map(|i| 1000 + (i * 7919) % 20000).collect()
}

fn bench_dir() -> Option<PathBuf> {
    std::env::var_os("CUMA_BENCH_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("plain/manifest.json").is_file())
}

fn threads() -> usize {
    std::env::var("CUMA_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
}

fn session(bundle: &Path, backend: Backend) -> Session {
    let engine = EngineOptions {
        backend,
        threads: Some(threads()),
        ..Default::default()
    };
    Session::new(
        Bundle::open(bundle).expect("bundle"),
        SessionOptions {
            engine,
            strict_profiles: false,
        },
    )
    .expect("session")
}

type Work<'a> = Box<dyn FnMut() + 'a>;

/// One model ("plain" or "cuma") on one backend, ready to be measured.
struct Subject<'a> {
    model: &'static str,
    /// Embedding one profile (only where the model reads a profile vector).
    encode: Option<Work<'a>>,
    /// Prefill of the 128-token prompt.
    prefill: Work<'a>,
    /// One decode step after the 128-token context, at batch 1 and batch 8.
    decode: Vec<(usize, Work<'a>)>,
}

/// Measures every subject of `backend`, alternating between them measurement by measurement, so
/// that the plain / CuMA ratios come from neighbouring samples on a noisy machine.
fn measure(c: &mut Criterion, backend: &str, subjects: &mut [Subject<'_>]) {
    for s in subjects.iter_mut() {
        if let Some(encode) = s.encode.as_mut() {
            c.bench_function(&format!("encoder/{}/{backend}", s.model), |b| b.iter(&mut *encode));
        }
    }
    for s in subjects.iter_mut() {
        c.bench_function(&format!("serve/{}/{backend}/prefill128", s.model), |b| {
            b.iter(&mut s.prefill)
        });
    }
    for batch in [1usize, 8] {
        for s in subjects.iter_mut() {
            if let Some((_, step)) = s.decode.iter_mut().find(|(n, _)| *n == batch) {
                c.bench_function(&format!("serve/{}/{backend}/decode/{batch}", s.model), |b| {
                    b.iter(&mut *step)
                });
            }
        }
    }
}

/// A bundle served by cuma-runtime on `backend`.
fn runtime_subject<'a>(model: &'static str, bundle: &Path, backend: Backend) -> Subject<'a> {
    let s = Rc::new(RefCell::new(session(bundle, backend)));
    let profile = Profile::parse(PROFILE).expect("profile");
    let reads_profile = s.borrow().reads_profile_vector();
    let vector = reads_profile.then(|| s.borrow_mut().encode_profile(&profile).expect("vector"));
    let encode: Option<Work<'a>> = vector.as_ref().map(|_| {
        let s = Rc::clone(&s);
        Box::new(move || {
            // A fresh session cache each time: the encoder graph really runs.
            let mut s = s.borrow_mut();
            s.clear_profile_cache();
            s.encode_profile(&profile).expect("vector");
        }) as Work<'a>
    });
    let ids = prompt_ids();
    let prefill: Work<'a> = {
        let (s, ids, vector) = (Rc::clone(&s), ids.clone(), vector.clone());
        Box::new(move || {
            s.borrow_mut()
                .step(std::slice::from_ref(&ids), &vec![1; CONTEXT], vector.as_deref(), None)
                .expect("prefill");
        })
    };
    let decode = [1usize, 8]
        .into_iter()
        .map(|batch| {
            let rows: Vec<Vec<i64>> = vec![ids.clone(); batch];
            let demo: Option<Vec<f32>> = vector.as_ref().map(|v| v.repeat(batch));
            let past: Vec<HostTensor> = s
                .borrow_mut()
                .step(&rows, &vec![1; batch * CONTEXT], demo.as_deref(), None)
                .expect("context")
                .presents;
            let (next, mask) = (vec![vec![42i64]; batch], vec![1i64; batch * (CONTEXT + 1)]);
            let s = Rc::clone(&s);
            let step: Work<'a> = Box::new(move || {
                s.borrow_mut()
                    .step(&next, &mask, demo.as_deref(), Some(&past))
                    .expect("decode");
            });
            (batch, step)
        })
        .collect();
    Subject {
        model,
        encode,
        prefill,
        decode,
    }
}

/// tch eager: the same measurements on the model a bundle came from.
fn tch_subject<'a>(
    model_name: &'static str,
    model: &'a Backbone,
    encode: Option<Work<'a>>,
    profile_vector: Option<Tensor>,
) -> Subject<'a> {
    let run = move |ids: &Tensor, mask: &Tensor, past: Option<&[KvPair<Tensor>]>, profile: Option<&Tensor>| {
        let _g = tch::no_grad_guard();
        model
            .run(
                &mut TchOps::new(Device::Cpu),
                &StepInput {
                    ids,
                    attention_mask: mask,
                    past,
                    profile,
                },
            )
            .expect("tch step")
    };
    let ids = Tensor::from_slice(&prompt_ids()).view([1, -1]);
    let prefill: Work<'a> = {
        let (ids, mask, profile) = (
            ids.shallow_clone(),
            Tensor::ones([1, CONTEXT as i64], (Kind::Int64, Device::Cpu)),
            profile_vector.as_ref().map(Tensor::shallow_clone),
        );
        Box::new(move || {
            run(&ids, &mask, None, profile.as_ref());
        })
    };
    let decode = [1i64, 8]
        .into_iter()
        .map(|batch| {
            let rows = ids.repeat([batch, 1]);
            let profile = profile_vector.as_ref().map(|p| p.repeat([batch, 1]));
            let past = run(
                &rows,
                &Tensor::ones([batch, CONTEXT as i64], (Kind::Int64, Device::Cpu)),
                None,
                profile.as_ref(),
            )
            .presents;
            let next = Tensor::full([batch, 1], 42, (Kind::Int64, Device::Cpu));
            let mask = Tensor::ones([batch, CONTEXT as i64 + 1], (Kind::Int64, Device::Cpu));
            let step: Work<'a> = Box::new(move || {
                run(&next, &mask, Some(&past), profile.as_ref());
            });
            (batch as usize, step)
        })
        .collect();
    Subject {
        model: model_name,
        encode,
        prefill,
        decode,
    }
}

fn serving(c: &mut Criterion) {
    let Some(dir) = bench_dir() else {
        eprintln!("CUMA_BENCH_DIR is not set to a prepared directory; run scripts/bench.sh");
        return;
    };
    let (plain_bundle, cuma_bundle) = (dir.join("plain"), dir.join("cuma/bundle"));
    for (name, backend) in [
        ("ort", Backend::Ort { device: OrtDevice::Cpu }),
        ("tract", Backend::Tract),
    ] {
        let mut subjects = [
            runtime_subject("plain", &plain_bundle, backend),
            runtime_subject("cuma", &cuma_bundle, backend),
        ];
        measure(c, name, &mut subjects);
    }
    tch::set_num_threads(threads() as i32);
    let e = Evaluator::from_checkpoint(&dir.join("cuma/checkpoint"), Device::Cpu).expect("CuMA checkpoint");
    let text = Profile::parse(PROFILE)
        .expect("profile")
        .render(&Bundle::open(&cuma_bundle).expect("bundle").manifest.profile)
        .expect("text");
    let vector = e.encoder.embed(&[&text]).expect("embed");
    let backbone = cuma::train::checkpoint::load(&dir.join("cuma/checkpoint"))
        .expect("checkpoint")
        .manifest
        .backbone
        .path;
    let plain = Backbone::load(&backbone, Device::Cpu).expect("plain backbone");
    let encoder = &e.encoder;
    let encode: Work<'_> = Box::new(move || {
        let _g = tch::no_grad_guard();
        let _ = std::hint::black_box(encoder.embed(&[&text]).expect("embed"));
    });
    let mut subjects = [
        tch_subject("plain", &plain, None, None),
        tch_subject("cuma", &e.model, Some(encode), Some(vector)),
    ];
    measure(c, "tch", &mut subjects);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    targets = serving
}
criterion_main!(benches);
