//! The bodies of cuma's fuzz targets, one function per loader, each taking arbitrary bytes and
//! required never to panic, hang or exhaust memory. `fuzz_targets/*.rs` hand them to libFuzzer
//! (`scripts/fuzz.sh`); `tests/regressions.rs` replays every input that ever failed, in the normal
//! test suite, without libFuzzer.

use cuma_model::config::{HfConfig, ModelConfig};
use cuma_model::items::{parse_row, Item};
use cuma_model::text::chat::SpecialTokens;
use cuma_model::text::profile::{Profile as Attributes, ProfileStyle, DEFAULT_ORDER};
use cuma_model::text::Message;
use cuma_model::weight_files::{gguf, safetensors as st, Bytes};
use cuma_runtime::Profile;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A target's body: arbitrary bytes in, nothing out (it must only return).
pub type Target = fn(&[u8]);

/// The targets, by name (as `cargo fuzz run <name>` knows them).
pub const TARGETS: [(&str, Target); 8] = [
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("config_json", config_json),
    ("bundle_manifest", bundle_manifest),
    ("onnx_external_data", onnx_external_data),
    ("jsonl_items", jsonl_items),
    ("profile", profile),
    ("chat_template", chat_template),
];

/// GGUF bytes -> header, tensor directory, every tensor decoded, metadata -> model config.
pub fn gguf(data: &[u8]) {
    let Ok((file, weights)) = gguf::from_bytes(Path::new("fuzz.gguf"), Bytes::Owned(data.to_vec())) else {
        return;
    };
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    for name in &names {
        let _ = weights.read_f32(name);
    }
    let _ = weights.dominant_dtype();
    if let Ok(hf) = gguf::hf_config(&file, &weights) {
        if let Ok(ModelConfig::Decoder(config)) = ModelConfig::try_from(&hf) {
            let _ = config.parameter_count();
            let _ = config.rope_inv_freq();
        }
    }
}

/// safetensors bytes -> header, tensor table, every tensor decoded.
pub fn safetensors(data: &[u8]) {
    let Ok(weights) = st::from_bytes(Path::new("fuzz.safetensors"), Bytes::Owned(data.to_vec()), &["bert."]) else {
        return;
    };
    let names: Vec<String> = weights.names().map(str::to_string).collect();
    for name in &names {
        let _ = weights.read_f32(name);
    }
}

/// `config.json` text -> Hugging Face fields -> validated model config -> derived sizes.
pub fn config_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(hf) = HfConfig::from_json(text) else { return };
    match ModelConfig::try_from(&hf) {
        Ok(ModelConfig::Decoder(config)) => {
            let _ = config.parameter_count();
            let _ = config.rope_inv_freq();
        }
        Ok(ModelConfig::Bert(config)) => {
            let _ = config.parameter_count();
        }
        Err(_) => {}
    }
}

/// The scratch folder: `bundle/` with an empty `model.onnx` and `encoder.onnx` (valid, empty
/// ONNX protobufs), `tokenizer.json` = `{}`, `sub/`, and `escape.json` -> `../outside.json`.
pub fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("cuma-fuzz-bundle-{}", std::process::id()));
        let bundle = root.join("bundle");
        std::fs::create_dir_all(bundle.join("sub")).expect("scratch folder");
        std::fs::write(root.join("outside.json"), "{}").expect("outside file");
        for (name, text) in [("model.onnx", ""), ("encoder.onnx", ""), ("tokenizer.json", "{}")] {
            std::fs::write(bundle.join(name), text).expect("bundle file");
        }
        let link = bundle.join("escape.json");
        if !link.exists() {
            std::os::unix::fs::symlink("../outside.json", &link).expect("symlink");
        }
        bundle
    })
}

/// `manifest.json` bytes -> `Bundle::open` on a scratch bundle folder. Beside the folder lies an
/// outside file, and inside it a symlink to that file and a sub-folder, so that a manifest that
/// escapes the bundle, follows a link, or names a non-file is exercised, not only bad JSON.
pub fn bundle_manifest(data: &[u8]) {
    let dir = scratch();
    if std::fs::write(dir.join("manifest.json"), data).is_ok() {
        let _ = cuma_runtime::Bundle::open(dir);
    }
}

/// ONNX protobuf bytes -> the external-data references the runtime checks before an engine loads.
pub fn onnx_external_data(data: &[u8]) {
    let _ = cuma_runtime::external_data::external_refs(data);
}

/// Canonical JSONL items: every line parsed, validated, and turned into its prompt.
pub fn jsonl_items(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        match parse_row::<Item>(line, Item::validate) {
            Ok(Some(Item::Choice(item))) => {
                let _ = item.user_prompt();
                let _ = item.answer_letter();
            }
            Ok(Some(Item::Chat(item))) => {
                let _ = item.split_reply();
            }
            Ok(None) | Err(_) => {}
        }
    }
}

/// Profiles from `key=value` text and from JSON, rendered in both styles.
pub fn profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for parsed in [Profile::parse(text), Profile::from_json(text)] {
        let Ok(profile) = parsed else { continue };
        let attributes: Attributes = profile.attributes().clone();
        for style in [ProfileStyle::Wvb, ProfileStyle::Prism] {
            let _ = cuma_model::text::profile::render(&attributes, &DEFAULT_ORDER, style);
        }
    }
}

/// Chat templates (from a GGUF or a manifest) rendered under the fuel and output limits. Input:
/// the template, then optionally a NUL byte and the messages as `role:content` lines.
pub fn chat_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, rest) = text.split_once('\0').unwrap_or((text, "user:Hello\nassistant:Hi"));
    let messages: Vec<Message> = rest
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(role, content)| Message {
            role: role.into(),
            content: content.into(),
        })
        .collect();
    let special = SpecialTokens {
        bos: Some("<s>"),
        eos: Some("</s>"),
    };
    let _ = cuma_model::text::chat::render(template, &messages, &special);
}
