//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `fixtures/tiny/<name>`.
pub fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny").join(name)
}

/// A fresh, empty scratch directory under the target dir, unique per test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Copies the tiny fixture `name` (a directory) into a scratch directory and returns the copy.
pub fn copy_tiny(name: &str, test: &str) -> PathBuf {
    let dst = scratch(test).join(name);
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
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("int") as u32).collect()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("float") as f32).collect()
}

/// The device integration tests run on: `CUMA_TEST_DEVICE` (cpu, cuda, cuda:N), default cpu.
pub fn device() -> tch::Device {
    let flag = std::env::var("CUMA_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    cuma::device::parse_device(&flag).unwrap_or_else(|e| panic!("CUMA_TEST_DEVICE: {e}"))
}
