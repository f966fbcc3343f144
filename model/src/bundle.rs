//! The bundle contract: `manifest.json` of a directory written by `cuma export --onnx` and read
//! by `cuma-runtime` (or any other runtime). Shared here so writer and reader cannot drift.
//!
//! A bundle holds `model.onnx` (decoder + adapters), optionally `encoder.onnx`, tokenizer files
//! and this manifest; every other file is listed in [`Manifest::files`] with its SHA-256.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest format this build writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One graph input or output: its name, element type and shape, where a dimension is either a
/// number, a symbol (`batch`, `seq`, `past_seq`) or a sum of symbols (`past_seq+seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoSpec {
    pub name: String,
    /// `float32` or `int64`.
    pub dtype: String,
    pub shape: Vec<String>,
}

impl IoSpec {
    pub fn new(name: &str, dtype: &str, shape: &[&str]) -> Self {
        Self { name: name.into(), dtype: dtype.into(), shape: shape.iter().map(|s| s.to_string()).collect() }
    }
}

/// One graph file and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSpec {
    pub file: String,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
}

/// The decoder backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneSpec {
    /// `llama`, `qwen2` or `qwen3`.
    pub family: String,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub tokenizer: String,
    pub chat_template: Option<String>,
    /// Token ids that end an assistant turn.
    pub end_of_turn: Vec<u32>,
    pub bos_token: Option<String>,
    /// The end-of-sequence token text, for chat templates that print it.
    #[serde(default)]
    pub eos_token: Option<String>,
}

/// The demographic encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// `bert`, or a decoder family (`qwen3`, ...) used as an embedding model.
    pub family: String,
    /// D, the profile vector's size.
    pub dim: usize,
    /// `mean`, `cls` or `last-token`.
    pub pooling: String,
    pub normalize: bool,
    /// Longest profile text in tokens (longer texts are truncated).
    pub max_tokens: usize,
    pub tokenizer: String,
}

/// The adapters recorded into the decoder graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSpec {
    pub method: String,
    pub experts: usize,
    pub top_k: usize,
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub gate: String,
    pub router_layout: String,
    /// Router labels in the order of `routing_experts`' first axis.
    pub routers: Vec<String>,
    /// D seen by the routers (0: token-only routers, no `demographic` input).
    pub demographic_dim: usize,
    /// The update was folded into the backbone's weights (`--merge`, plain LoRA only): the graph
    /// has no adapter nodes.
    #[serde(default)]
    pub merged: bool,
}

/// How a profile becomes text, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSpec {
    /// `wvb` (`You are a person from {country}, age group: {age}, ...`) or `prism`.
    pub style: String,
    /// Attribute order in the rendered text; attributes outside it follow alphabetically.
    pub order: Vec<String>,
    /// Whether the rendered profile is the system prompt (else [`ProfileSpec::neutral_system`]).
    pub in_prompt: bool,
    pub neutral_system: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub producer: String,
    /// `f32` or `f16` (storage; graphs compute in f32).
    pub dtype: String,
    pub opset: i64,
    pub ir_version: i64,
    pub backbone: BackboneSpec,
    pub encoder: Option<EncoderSpec>,
    pub adapter: Option<AdapterSpec>,
    pub profile: ProfileSpec,
    /// `model` and (when present) `encoder`.
    pub graphs: BTreeMap<String, GraphSpec>,
    /// Every other file of the bundle -> its SHA-256 (hex).
    pub files: BTreeMap<String, String>,
}
