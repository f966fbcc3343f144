//! Bad input never panics: each case gives an error that names the file, the tensor or the value
//! at fault.

mod common;

use common::{copy_tiny, scratch, tiny};
use cuma::models::{Backbone, ProfileEncoder};
use cuma::serve::{generate, FinishReason, GenerateOptions};
use tch::Device;

fn load_err(path: &std::path::Path) -> String {
    match Backbone::load(path, Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = copy_tiny("llama", "truncated_safetensors");
    let file = dir.join("model.safetensors");
    let len = std::fs::metadata(&file).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors file"),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors_header_is_named() {
    let dir = copy_tiny("llama", "corrupt_safetensors");
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[8..24].copy_from_slice(b"this is not json");
    std::fs::write(&file, bytes).expect("write");
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );
}

#[test]
fn gguf_with_unknown_version_is_rejected() {
    let dir = scratch("gguf_version");
    let path = dir.join("bad.gguf");
    let mut bytes = std::fs::read(tiny("llama-q.gguf")).expect("read");
    bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, bytes).expect("write");
    let err = load_err(&path);
    assert!(
        err.contains("bad.gguf") && err.contains("unsupported GGUF version 99"),
        "{err}"
    );
}

#[test]
fn truncated_gguf_is_named() {
    let dir = scratch("gguf_truncated");
    let path = dir.join("short.gguf");
    let bytes = std::fs::read(tiny("llama-q.gguf")).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).expect("write");
    let err = load_err(&path);
    assert!(
        err.contains("short.gguf") && err.contains("runs past the end of the file"),
        "{err}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = copy_tiny("llama", "unsupported_arch");
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(&cfg, text).expect("write");
    let err = load_err(&dir);
    assert!(
        err.contains("config.json") && err.contains("unsupported architecture `gpt_neox`"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_is_named() {
    let dir = copy_tiny("llama", "missing_tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).expect("rm");
    let err = load_err(&dir);
    assert!(err.contains("tokenizer.json") && err.contains("missing"), "{err}");
}

#[test]
fn tensor_of_the_wrong_shape_is_named_with_its_file() {
    let dir = copy_tiny("llama", "wrong_shape");
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(&cfg, text).expect("write");
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors")
            && err.contains("model.layers.0.mlp.gate_proj.weight")
            && err.contains("[128, 64]")
            && err.contains("[96, 64]"),
        "{err}"
    );
}

#[test]
fn missing_model_path_is_named() {
    let err = load_err(std::path::Path::new("/nonexistent/model"));
    assert!(
        err.contains("/nonexistent/model") && err.contains("no such file"),
        "{err}"
    );
}

#[test]
fn encoder_given_a_directory_without_weights_is_named() {
    let dir = copy_tiny("bert", "encoder_no_weights");
    std::fs::remove_file(dir.join("model.safetensors")).expect("rm");
    let err = ProfileEncoder::load(&dir, Device::Cpu)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
}

#[test]
fn over_long_prompt_is_an_error() {
    // The serving core's context rule: a prompt must leave room for one new token; the budget is
    // cut to what the context leaves.
    let model = Backbone::load(&tiny("llama"), Device::Cpu).expect("loads");
    let opts = GenerateOptions {
        max_new_tokens: 10,
        ..Default::default()
    };
    let err = generate(&model, &[vec![5u32; 256]], None, &opts, |_| {})
        .expect_err("too long")
        .to_string();
    assert!(err.contains("256 tokens") && err.contains("context is 256"), "{err}");
    let g = generate(&model, &[vec![5u32; 250]], None, &opts, |_| {})
        .expect("fits with a shorter budget")
        .remove(0);
    assert!(g.token_ids.len() <= 6, "{} tokens past the context", g.token_ids.len());
    if g.finish_reason == FinishReason::Length {
        assert_eq!(g.token_ids.len(), 6);
    }
}

#[test]
fn a_nan_weight_is_refused_at_load_with_the_tensor_named() {
    let dir = copy_tiny("llama", "nan_weight");
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).expect("read");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).expect("header");
    let (name, info) = header
        .as_object()
        .expect("object")
        .iter()
        .find(|(k, _)| k.ends_with("mlp.up_proj.weight"))
        .expect("an up projection");
    // The first value of that tensor becomes a NaN of its dtype.
    let nan: &[u8] = match info["dtype"].as_str().expect("dtype") {
        "F32" => &[0x00, 0x00, 0xC0, 0x7F],
        "F16" => &[0x00, 0x7E],
        "BF16" => &[0xC0, 0x7F],
        other => panic!("unexpected dtype {other}"),
    };
    let at = 8 + header_len + info["data_offsets"][0].as_u64().expect("offset") as usize;
    bytes[at..at + nan.len()].copy_from_slice(nan);
    std::fs::write(&file, bytes).expect("write");
    let err = load_err(&dir);
    assert!(
        err.contains(name.as_str()) && err.contains("NaN") && err.contains("finite"),
        "{err}"
    );
}
