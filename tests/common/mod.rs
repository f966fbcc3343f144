//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod http;
pub mod judge_stub;
pub mod seeded;
pub mod ties;

use std::path::{Path, PathBuf};

/// The repository: `CUMA_REPO` when set (a test binary run away from its build tree, as
/// `scripts/gpu_check.sh` runs them on the GPU machine), else where cargo built it.
pub fn repo() -> PathBuf {
    std::env::var_os("CUMA_REPO").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The `cuma` binary: `CUMA_BIN` when set (see [`repo`]), else the one cargo built.
pub fn cuma_bin() -> PathBuf {
    std::env::var_os("CUMA_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cuma")), PathBuf::from)
}

/// `fixtures/tiny/<name>`.
pub fn tiny(name: &str) -> PathBuf {
    repo().join("fixtures/tiny").join(name)
}

/// A fresh, empty directory under the target dir (or `CUMA_TEST_TMPDIR`), unique per test, left
/// in place afterwards.
fn fresh_dir(test: &str) -> PathBuf {
    let root =
        std::env::var_os("CUMA_TEST_TMPDIR").map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = root.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A fresh, empty scratch directory under the target dir, unique per test.  It is deleted when
/// the test passes (trained runs and exported bundles of real models are hundreds of megabytes)
/// and kept when the test panics, for a look at what went wrong.
pub fn scratch(test: &str) -> Scratch {
    Scratch(fresh_dir(test))
}

/// See [`scratch`].
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Copies the tiny fixture `name` (a directory) into a scratch directory and returns the copy.
pub fn copy_tiny(name: &str, test: &str) -> PathBuf {
    let dst = fresh_dir(test).join(name);
    copy_dir(&tiny(name), &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read fixture dir") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny("reference.json")).expect("tiny reference.json");
    serde_json::from_str(&text).expect("parses")
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

/// The device integration tests run on: `CUMA_TEST_DEVICE` (cpu, cuda, cuda:N), default cpu.
/// The logits of batch row 0's last position (`logits`: `[b, s, vocab]`) as host f32 values.
pub fn last_logits(logits: &tch::Tensor) -> Result<Vec<f32>, tch::TchError> {
    let row = logits
        .f_select(0, 0)?
        .f_select(0, -1)?
        .f_to_kind(tch::Kind::Float)?
        .f_to_device(tch::Device::Cpu)?;
    Vec::<f32>::try_from(&row)
}

pub fn device() -> tch::Device {
    let flag = std::env::var("CUMA_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    cuma::device::parse_device(&flag).unwrap_or_else(|e| panic!("CUMA_TEST_DEVICE: {e}"))
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.to_str().expect("utf8 path").to_string()
}

/// Runs the `cuma` binary with `args`; its stdout, or a panic with its stderr when it fails.
pub fn cuma(args: &[&str]) -> String {
    let out = std::process::Command::new(cuma_bin())
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "cuma {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// Runs the `cuma` binary with `args`, which must fail; its stderr.
pub fn cuma_err(args: &[&str]) -> String {
    let out = std::process::Command::new(cuma_bin())
        .args(args)
        .output()
        .expect("runs");
    assert!(!out.status.success(), "cuma {} should fail", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into()
}

/// The training budget of the tiny-model tests: enough steps to move the adapters off zero.
pub const TINY_BUDGET: [&str; 8] = [
    "--steps",
    "3",
    "--batch-size",
    "4",
    "--lr",
    "5e-2",
    "--warmup-steps",
    "1",
];

/// `cuma data synth` into `dir/synth`: two clusters of `countries` countries each, one question,
/// one respondent per profile. Returns the items file.
pub fn small_survey(dir: &Path, countries: usize) -> PathBuf {
    let out = dir.join("synth");
    let countries = countries.to_string();
    cuma(&[
        "data",
        "synth",
        "--out-dir",
        &arg(&out),
        "--clusters",
        "2",
        "--countries-per-cluster",
        &countries,
        "--questions",
        "1",
        "--respondents-per-profile",
        "1",
    ]);
    out.join("items.jsonl")
}

/// `cuma train --data <data> --out <run> --device cpu <args>`, then `cuma export --onnx` of the
/// run into `run/bundle`. Returns the bundle directory.
pub fn train_and_export(data: &Path, run: &Path, args: &[&str]) -> PathBuf {
    train(data, run, args);
    export(run)
}

/// `cuma train --data <data> --out <run> --device cpu <args>`.
fn train(data: &Path, run: &Path, args: &[&str]) {
    let (data, run) = (arg(data), arg(run));
    let mut train = vec!["train", "--data", &data, "--out", &run, "--device", "cpu"];
    train.extend_from_slice(args);
    cuma(&train);
}

/// `cuma export --onnx <run> --out <run>/bundle`; the bundle directory.
fn export(run: &Path) -> PathBuf {
    let bundle = run.join("bundle");
    cuma(&["export", "--onnx", &arg(run), "--out", &arg(&bundle)]);
    bundle
}

/// The arguments that make `cuma train` write a checkpoint after one step, for tests that
/// replace its adapters anyway ([`seeded_bundle`]).
pub const ONE_STEP: [&str; 6] = ["--steps", "1", "--batch-size", "1", "--warmup-steps", "1"];

/// A run of `cuma train <args>` (the method, backbone, encoder and targets) whose adapters and
/// routers are then replaced by [`seeded::seed_adapters`] with `seed`, exported to
/// `run/bundle`. Its weights are the same bits on every CPU, whatever training did there.
/// Returns the bundle directory.
pub fn seeded_bundle(data: &Path, run: &Path, args: &[&str], seed: u64) -> PathBuf {
    train(data, run, &[args, &ONE_STEP[..]].concat());
    seeded::seed_adapters(run, seed);
    export(run)
}

/// The device the libtorch side of a test runs on: `CUMA_TEST_DEVICE` (`cpu`, `cuda`, `cuda:N`),
/// the CPU when unset. `scripts/gpu_check.sh` runs the parity tests with `cuda`; the bundle
/// runtimes stay on the CPU, so every comparison is then libtorch-CUDA against CPU, and the
/// snapshots (recorded on CPUs) pin the CUDA results too.
pub fn tch_device() -> tch::Device {
    match std::env::var("CUMA_TEST_DEVICE") {
        Ok(name) => cuma::device::parse_device(&name).expect("CUMA_TEST_DEVICE names a device"),
        Err(_) => tch::Device::Cpu,
    }
}
