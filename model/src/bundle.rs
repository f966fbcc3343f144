//! The bundle contract: `manifest.json` of a directory written by `cuma export --onnx` and read
//! by `cuma-runtime` (or any other runtime). Shared here so writer and reader cannot drift.
//!
//! A bundle holds `model.onnx` (decoder + adapters), optionally `encoder.onnx`, tokenizer files
//! and this manifest; every other file is listed in [`Manifest::files`] with its SHA-256.

use crate::config::{DecoderFamily, GateMode, Method, RouterLayout, Target};
use crate::layers::Pooling;
use crate::text::choice::ChoiceWording;
use crate::text::profile::ProfileWording;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest format this build writes and reads. Version 1 (strings where version 2 has
/// enums) is refused with an error that says to export the bundle again.
pub const BUNDLE_FORMAT_VERSION: u32 = 2;
/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The names of the graphs' inputs and outputs, for writer and reader alike.
pub mod io {
    /// `[batch, seq]` int64 token ids (both graphs).
    pub const INPUT_IDS: &str = "input_ids";
    /// `[batch, past_seq+seq]` (decoder) or `[batch, seq]` (encoder) int64 0/1.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// `[batch, D]` float32 profile vectors (decoder, when the routers read them, or the
    /// profile-terms graph).
    pub const DEMOGRAPHIC: &str = "demographic";
    /// `[batch, 1, P]` float32: every router's profile term `W_d d + b`, concatenated in router
    /// order (output of the profile-terms graph; decoder input in place of `demographic`).
    pub const PROFILE_TERMS: &str = "profile_terms";
    /// `[batch, seq, vocab]` float32.
    pub const LOGITS: &str = "logits";
    /// `[routers, batch, seq, k]` int64 experts, strongest first.
    pub const ROUTING_EXPERTS: &str = "routing_experts";
    /// `[routers, batch, seq, k]` float32 gates of those experts.
    pub const ROUTING_GATES: &str = "routing_gates";
    /// `[batch, D]` float32 (encoder).
    pub const EMBEDDING: &str = "embedding";

    /// `past.{layer}.key` / `past.{layer}.value`: `[batch, kv_heads, past_seq, head_dim]`.
    pub fn past(layer: usize, part: KvPart) -> String {
        format!("past.{layer}.{}", part.name())
    }

    /// `present.{layer}.key` / `present.{layer}.value`: `[batch, kv_heads, past_seq+seq, head_dim]`.
    pub fn present(layer: usize, part: KvPart) -> String {
        format!("present.{layer}.{}", part.name())
    }

    /// The two halves of a layer's cache.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KvPart {
        Key,
        Value,
    }

    impl KvPart {
        pub const BOTH: [KvPart; 2] = [KvPart::Key, KvPart::Value];

        pub fn name(self) -> &'static str {
            match self {
                KvPart::Key => "key",
                KvPart::Value => "value",
            }
        }
    }
}

/// One graph input or output: its name, element type and shape, where a dimension is either a
/// number, a symbol (`batch`, `seq`, `past_seq`) or a sum of symbols (`past_seq+seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IoSpec {
    pub name: String,
    pub dtype: ElementType,
    pub shape: Vec<String>,
}

/// A graph input's or output's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ElementType {
    Float32,
    Int64,
}

/// How the bundle stores weights (graphs compute in f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StorageDtype {
    F32,
    F16,
}

/// Block quantization of the decoder's projection and lm-head weights (`cuma export --quant`):
/// each such weight `[in, out]` is a blocked `DequantizeLinear` (`axis` 0, `block_size` here)
/// feeding a `MatMul`, which needs opset 21. Routers, experts and norms stay in
/// [`Manifest::dtype`]; so does the embedding table unless its blocks are exact 8-bit ones in an
/// 8-bit bundle (then a `[vocab, in]` copy of them is gathered and dequantized per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuantSpec {
    /// 4 or 8: the width float weights were rounded to. Blocks the source held exactly keep
    /// their width where it is no wider (Q4_0 / Q4_1 projections stay 4-bit in an 8-bit bundle);
    /// a 4-bit bundle keeps a tensor the source held at 8 bits (a Q8_0 lm-head) in
    /// [`Manifest::dtype`]. Each tensor's own type says which.
    pub bits: u32,
    /// Consecutive input rows sharing one scale (and zero point).
    pub block_size: usize,
}

/// The opset a bundle with [`QuantSpec`] declares, and the highest a float bundle may.
pub const QUANT_OPSET: i64 = 21;

/// The profile encoder's architecture: BERT, or a decoder family used as an embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum EncoderFamily {
    Bert,
    Llama,
    Qwen2,
    Qwen3,
}

impl From<DecoderFamily> for EncoderFamily {
    fn from(f: DecoderFamily) -> Self {
        match f {
            DecoderFamily::Llama => Self::Llama,
            DecoderFamily::Qwen2 => Self::Qwen2,
            DecoderFamily::Qwen3 => Self::Qwen3,
        }
    }
}

impl IoSpec {
    pub fn new(name: &str, dtype: ElementType, shape: &[&str]) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape: shape.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One graph file and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GraphSpec {
    pub file: String,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
}

/// The decoder backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BackboneSpec {
    pub family: DecoderFamily,
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
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EncoderSpec {
    pub family: EncoderFamily,
    /// D, the profile vector's size.
    pub dim: usize,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Longest profile text in tokens (longer texts are truncated).
    pub max_tokens: usize,
    pub tokenizer: String,
}

/// The adapters recorded into the decoder graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AdapterSpec {
    pub method: Method,
    pub experts: usize,
    pub top_k: usize,
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<Target>,
    pub gate: GateMode,
    pub router_layout: RouterLayout,
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
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProfileSpec {
    /// How a profile becomes text, as data (training's `wvb` or `prism` style spelled out).
    pub wording: ProfileWording,
    /// Attribute order in the rendered text; attributes outside it follow alphabetically.
    pub order: Vec<String>,
    /// Whether the rendered profile is the system prompt (else [`ProfileSpec::neutral_system`]).
    pub in_prompt: bool,
    pub neutral_system: String,
}

/// The multiple-choice turn: its wording and the token id of each option letter in this
/// bundle's tokenizer (option probabilities are the softmax over those ids' logits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpec {
    pub wording: ChoiceWording,
    pub letter_ids: Vec<u32>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Manifest {
    pub format_version: u32,
    pub producer: String,
    pub dtype: StorageDtype,
    /// Absent: every weight is stored per `dtype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<QuantSpec>,
    pub opset: i64,
    pub ir_version: i64,
    pub backbone: BackboneSpec,
    pub encoder: Option<EncoderSpec>,
    pub adapter: Option<AdapterSpec>,
    pub profile: ProfileSpec,
    pub choice: ChoiceSpec,
    /// `model` and (when present) `encoder` and `profile_terms`.
    pub graphs: BTreeMap<String, GraphSpec>,
    /// Every other file of the bundle -> its SHA-256 (hex).
    pub files: BTreeMap<String, String>,
}

/// The JSON Schema of `manifest.json` (draft 2020-12), generated from these types; committed as
/// `docs/manifest.schema.json` and checked against the types by a test.
#[cfg(feature = "schema")]
pub fn manifest_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Manifest);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// Largest sizes a manifest may state: beyond any real model, low enough that no count from a
/// hostile file sizes an impossible allocation.
const MAX_LAYERS: usize = 1 << 10;
const MAX_HEADS: usize = 1 << 10;
const MAX_HEAD_DIM: usize = 1 << 10;
const MAX_HIDDEN: usize = 1 << 18;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 24;
const MAX_EXPERTS: usize = 1 << 10;
const MAX_RANK: usize = 1 << 12;
const MAX_PROFILE_DIM: usize = 1 << 16;

fn within(field: &str, v: usize, max: usize) -> Result<(), String> {
    if v == 0 || v > max {
        return Err(format!("`{field}` is {v}; it must be 1 to {max}"));
    }
    Ok(())
}

impl GraphSpec {
    fn input(&self, name: &str) -> Option<&IoSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    fn output(&self, name: &str) -> Option<&IoSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// The last dimension of `spec`, when it is a number.
fn last_dim(spec: &IoSpec) -> Option<usize> {
    spec.shape.last().and_then(|d| d.parse().ok())
}

/// How the routers of `adapter.demographic_dim` > 0 receive the profile: either the decoder's
/// `demographic` input of that size, or its `profile_terms` input `[batch, 1, P]` together with
/// a `profile_terms` graph from `demographic` `[batch, D]` to `profile_terms` of the same P.
/// Routers that read no profile (D = 0) have neither.
fn validate_profile_input(
    dim: usize,
    demographic: Option<&IoSpec>,
    terms_input: Option<&IoSpec>,
    terms_graph: Option<&GraphSpec>,
) -> Result<(), String> {
    match (demographic, terms_input, terms_graph) {
        (None, None, None) if dim == 0 => Ok(()),
        (Some(d), None, None) if dim > 0 && dim <= MAX_PROFILE_DIM && last_dim(d) == Some(dim) => Ok(()),
        (None, Some(input), Some(graph)) if dim > 0 && dim <= MAX_PROFILE_DIM => {
            let graph_input = graph.input(io::DEMOGRAPHIC).and_then(last_dim);
            if graph.inputs.len() != 1 || graph_input != Some(dim) {
                return Err(format!(
                    "graph `profile_terms` must take only `demographic` of `adapter.demographic_dim` ({dim}) values"
                ));
            }
            let width = last_dim(input).filter(|&p| p > 0 && p <= MAX_PROFILE_DIM * 8);
            let given = graph.output(io::PROFILE_TERMS).and_then(last_dim);
            match width {
                Some(p) if given == Some(p) && input.shape.len() == 3 => Ok(()),
                _ => Err(format!(
                    "graph `model`'s `profile_terms` input ({:?}) and graph `profile_terms`' output ({given:?} values) disagree",
                    input.shape
                )),
            }
        }
        (None, Some(_), None) => {
            Err("graph `model` takes `profile_terms`, but there is no `profile_terms` graph".into())
        }
        (Some(_), Some(_), _) => Err("graph `model` takes both `demographic` and `profile_terms`".into()),
        (_, None, Some(_)) => {
            Err("there is a `profile_terms` graph, but graph `model` has no `profile_terms` input".into())
        }
        _ => Err(format!(
            "`adapter.demographic_dim` is {dim}, which the graph's `demographic` input does not match"
        )),
    }
}

impl Manifest {
    /// Checks the metadata against itself and against the graphs' signatures, so that no stated
    /// size is out of range and what the runtime allocates from it matches the graphs: the
    /// decoder takes `past.{l}.key/value` for exactly `backbone.layers` layers, a `demographic`
    /// input of `adapter.demographic_dim` (or `profile_terms` with its graph) exactly when the
    /// routers read the profile, and gives
    /// `routing_experts` `[routers, batch, seq, top_k]` exactly when there are routers; the
    /// encoder's `embedding` has `encoder.dim` values. The error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(q) = &self.quant {
            if q.bits != 4 && q.bits != 8 {
                return Err(format!("`quant.bits` is {}; bundles hold 4- or 8-bit weights", q.bits));
            }
            if !q.block_size.is_power_of_two() || !(16..=256).contains(&q.block_size) {
                return Err(format!(
                    "`quant.block_size` is {}; expected a power of two from 16 to 256",
                    q.block_size
                ));
            }
            if self.opset < QUANT_OPSET {
                return Err(format!(
                    "`opset` is {} but quantized weights need opset {QUANT_OPSET}",
                    self.opset
                ));
            }
        }
        let b = &self.backbone;
        within("backbone.layers", b.layers, MAX_LAYERS)?;
        within("backbone.heads", b.heads, MAX_HEADS)?;
        within("backbone.kv_heads", b.kv_heads, MAX_HEADS)?;
        within("backbone.head_dim", b.head_dim, MAX_HEAD_DIM)?;
        within("backbone.hidden", b.hidden, MAX_HIDDEN)?;
        within("backbone.vocab", b.vocab, MAX_VOCAB)?;
        within("backbone.max_positions", b.max_positions, MAX_POSITIONS)?;
        if let Some(id) = b.end_of_turn.iter().find(|&&id| id as usize >= b.vocab) {
            return Err(format!(
                "`backbone.end_of_turn` holds {id}, outside the vocabulary of {}",
                b.vocab
            ));
        }
        let c = &self.choice;
        if c.letter_ids.len() != c.wording.letters.len() || c.letter_ids.is_empty() {
            return Err(format!(
                "`choice.letter_ids` has {} ids for {} letters",
                c.letter_ids.len(),
                c.wording.letters.len()
            ));
        }
        if let Some(id) = c.letter_ids.iter().find(|&&id| id as usize >= b.vocab) {
            return Err(format!(
                "`choice.letter_ids` holds {id}, outside the vocabulary of {}",
                b.vocab
            ));
        }
        let model = self.graphs.get("model").ok_or("no `model` graph")?;
        for name in [io::INPUT_IDS, io::ATTENTION_MASK] {
            model
                .input(name)
                .ok_or_else(|| format!("graph `model` has no input `{name}`"))?;
        }
        let past = model.inputs.iter().filter(|i| i.name.starts_with("past.")).count();
        let all_layers = (0..b.layers).all(|l| {
            io::KvPart::BOTH
                .iter()
                .all(|&part| model.input(&io::past(l, part)).is_some())
        });
        if past != 2 * b.layers || !all_layers {
            return Err(format!(
                "`backbone.layers` is {}, but graph `model` takes the KV cache of {} layers",
                b.layers,
                past / 2
            ));
        }
        if model.output(io::LOGITS).and_then(last_dim) != Some(b.vocab) {
            return Err(format!(
                "graph `model` gives no `logits` of `backbone.vocab` ({}) values",
                b.vocab
            ));
        }
        let demographic = model.input(io::DEMOGRAPHIC);
        let terms_input = model.input(io::PROFILE_TERMS);
        let terms_graph = self.graphs.get("profile_terms");
        let routing = model.output(io::ROUTING_EXPERTS);
        match &self.adapter {
            None if demographic.is_some() || terms_input.is_some() || terms_graph.is_some() || routing.is_some() => {
                return Err("graph `model` has routers or a profile input, but the manifest has no `adapter`".into())
            }
            None => {}
            Some(a) => {
                if matches!(a.method, Method::Full | Method::Ptuning) {
                    return Err(format!(
                        "`adapter.method` is {:?}, which a bundle cannot hold",
                        a.method
                    ));
                }
                within("adapter.experts", a.experts, MAX_EXPERTS)?;
                within("adapter.top_k", a.top_k, a.experts)?;
                within("adapter.rank", a.rank, MAX_RANK)?;
                if a.routers.len() > MAX_LAYERS * 8 {
                    return Err(format!("`adapter.routers` lists {} routers", a.routers.len()));
                }
                validate_profile_input(a.demographic_dim, demographic, terms_input, terms_graph)?;
                match routing {
                    None if a.routers.is_empty() => {}
                    Some(r)
                        if !a.routers.is_empty()
                            && r.shape.first().and_then(|n| n.parse().ok()) == Some(a.routers.len())
                            && last_dim(r) == Some(a.top_k) => {}
                    _ => {
                        return Err(format!(
                        "`adapter.routers` ({}) and `adapter.top_k` ({}) do not match the graph's `routing_experts`",
                        a.routers.len(),
                        a.top_k
                    ))
                    }
                }
            }
        }
        match (&self.encoder, self.graphs.get("encoder")) {
            (None, None) => {}
            (Some(e), Some(g)) => {
                within("encoder.dim", e.dim, MAX_PROFILE_DIM)?;
                within("encoder.max_tokens", e.max_tokens, MAX_POSITIONS)?;
                if g.output(io::EMBEDDING).and_then(last_dim) != Some(e.dim) {
                    return Err(format!(
                        "`encoder.dim` is {}, but graph `encoder` gives no `embedding` of that size",
                        e.dim
                    ));
                }
            }
            (Some(_), None) => return Err("the manifest describes an `encoder` but there is no `encoder` graph".into()),
            (None, Some(_)) => return Err("there is an `encoder` graph but no `encoder` in the manifest".into()),
        }
        let extra: Vec<&String> = self
            .graphs
            .keys()
            .filter(|k| !matches!(k.as_str(), "model" | "encoder" | "profile_terms"))
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "unknown graphs {extra:?} (a bundle has `model` and optionally `encoder` and `profile_terms`)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, shape: &[&str]) -> IoSpec {
        IoSpec::new(name, ElementType::Float32, shape)
    }

    fn terms_graph(d: &str, p: &str) -> GraphSpec {
        GraphSpec {
            file: "profile_terms.onnx".into(),
            inputs: vec![spec(io::DEMOGRAPHIC, &["batch", d])],
            outputs: vec![spec(io::PROFILE_TERMS, &["batch", "1", p])],
        }
    }

    #[test]
    fn the_profile_reaches_the_routers_one_way_exactly() {
        let demographic = spec(io::DEMOGRAPHIC, &["batch", "384"]);
        let terms = spec(io::PROFILE_TERMS, &["batch", "1", "15360"]);
        let graph = terms_graph("384", "15360");
        assert_eq!(validate_profile_input(0, None, None, None), Ok(()));
        assert_eq!(validate_profile_input(384, Some(&demographic), None, None), Ok(()));
        assert_eq!(validate_profile_input(384, None, Some(&terms), Some(&graph)), Ok(()));
        // Wrong sizes, missing halves and both inputs at once are refused, each with a reason.
        for (dim, d, t, g) in [
            (0, Some(&demographic), None, None),
            (256, Some(&demographic), None, None),
            (384, None, None, None),
            (384, None, Some(&terms), None),
            (384, None, None, Some(&graph)),
            (384, Some(&demographic), Some(&terms), Some(&graph)),
            (256, None, Some(&terms), Some(&graph)),
            (0, None, Some(&terms), Some(&graph)),
        ] {
            assert!(validate_profile_input(dim, d, t, g).is_err(), "{dim} {d:?} {t:?} {g:?}");
        }
        let narrower = terms_graph("384", "256");
        let err = validate_profile_input(384, None, Some(&terms), Some(&narrower)).expect_err("widths differ");
        assert!(err.contains("disagree"), "{err}");
    }
}
