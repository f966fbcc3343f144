//! The decoder graph (`model.onnx`): a `cuma-model` decoder (with its adapters, when given)
//! recorded through [`GraphBuilder`], plus the input preparation every backend does before the
//! model proper: positions that skip left padding, and the causal + padding additive mask.
//! One graph serves prefill (past length 0) and decode.

use crate::graph::{GraphBuilder, StoreAs, Value};
use crate::io::{io, value_info, ElementType, IoSpec, KvPart};
use crate::proto::{data_type, TensorProto};
use cuma_model::adapters::DecoderAdapters;
use cuma_model::arch::{Decoder, DecoderCtx, KvPair};
use cuma_model::config::{DecoderConfig, MethodConfig};
use cuma_model::layers::AttentionMask;
use cuma_model::{Ops, Result, Trainables, Weights};

/// Large negative additive mask value (the same as the tch path's).
pub(crate) const MASKED: f32 = -1e9;

/// The symbolic length of the attention mask and the present keys: past plus new tokens,
/// written as an expression so that shape-inferring backends see it is a sum.
pub const TOTAL_SEQ: &str = "past_seq+seq";

/// The adapters to record with the backbone.
pub struct AdapterSpec<'a, T: Trainables<GraphBuilder>> {
    pub method: &'a MethodConfig,
    pub tensors: &'a mut T,
    /// The profile encoder's output size (D), ignored for methods whose routers do not see it.
    pub encoder_dim: usize,
}

/// A recorded decoder graph and its interface.
pub struct DecoderGraph {
    pub graph: crate::proto::GraphProto,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// Router labels in the order of `routing_experts`' first axis (empty without routers).
    pub routers: Vec<String>,
    /// D, when the graph takes a `demographic` input.
    pub demographic_dim: Option<usize>,
}

/// A 0-D int64 `Constant`.
pub(crate) fn scalar_i64(g: &mut GraphBuilder, v: i64) -> Value {
    let t = crate::graph::i64_tensor("", &[], &[v]);
    g.node(
        "Constant",
        &[],
        vec![GraphBuilder::attr_tensor(
            "value",
            TensorProto {
                name: String::new(),
                ..t
            },
        )],
    )
}

/// A 0-D float32 `Constant`.
pub(crate) fn scalar_f32(g: &mut GraphBuilder, v: f32) -> Value {
    let t = crate::graph::f32_tensor("", &[], &[v]);
    g.node("Constant", &[], vec![GraphBuilder::attr_tensor("value", t)])
}

/// `0, 1, ..., t-1` (int64 `[t]`) for `x` int64 `[b, t]`: a running sum over ones shaped like
/// one row of `x` instead of a `Range` over shape values, so backends with symbolic shapes
/// (tract) can follow the length.
pub(crate) fn indices_along(g: &mut GraphBuilder, x: &Value) -> Value {
    let (zero, one) = (scalar_i64(g, 0), scalar_i64(g, 1));
    let first_row = g.node("Gather", &[x, &zero], vec![GraphBuilder::attr_int("axis", 0)]);
    let nothing = g.node("Mul", &[&first_row, &zero], Vec::new());
    let ones = g.node("Add", &[&nothing, &one], Vec::new());
    let counted = g.node("CumSum", &[&ones, &zero], Vec::new());
    g.node("Sub", &[&counted, &one], Vec::new())
}

/// The past length (0-D int64) read off `past_key` `[b, kv, past, d]`.
fn past_length(g: &mut GraphBuilder, past_key: &Value) -> Value {
    let two = scalar_i64(g, 2);
    let past_shape = g.node("Shape", &[past_key], Vec::new());
    g.node("Gather", &[&past_shape, &two], vec![GraphBuilder::attr_int("axis", 0)])
}

/// Float positions `[b, s]` and the additive mask `[b, 1, s, past + s]`, from the 0/1
/// `attention_mask` `[b, past + s]` and the past length (0-D int64), as `src/models/inputs.rs`
/// builds them for tch.
///
/// Every index is a running sum over the mask rather than a `Range` over shape values, so
/// backends with symbolic shapes (tract) can follow the lengths through the graph.
pub(crate) fn prepare_inputs(g: &mut GraphBuilder, attention_mask: &Value, past_len: &Value) -> Result<(Value, Value)> {
    let (one, zero) = (scalar_i64(g, 1), scalar_i64(g, 0));
    let start = g.unsqueeze(past_len, 0)?;
    let end = g.const_i64(&[i64::MAX]);
    let last_axis = g.const_i64(&[-1]);
    // Positions: running count of real tokens minus one, clamped at 0, for the new tokens only.
    let counted = g.node("CumSum", &[attention_mask, &one], Vec::new());
    let from_zero = g.node("Sub", &[&counted, &one], Vec::new());
    let clamped = g.node("Max", &[&from_zero, &zero], Vec::new());
    let new_positions = g.node("Slice", &[&clamped, &start, &end, &last_axis], Vec::new());
    let positions = g.cast(&new_positions, data_type::FLOAT);
    // Absolute key indices 0..t, and the query indices past..t among them.
    let k_abs = indices_along(g, attention_mask);
    let q_abs = g.node("Slice", &[&k_abs, &start, &end, &last_axis], Vec::new());
    // Causal: key index <= query index (absolute), then padding.
    let q_col = g.unsqueeze(&q_abs, 1)?; // [s, 1]
    let k_row = g.unsqueeze(&k_abs, 0)?; // [1, t]
    let causal = g.node("LessOrEqual", &[&k_row, &q_col], Vec::new()); // [s, t]
    let real = g.node("Equal", &[attention_mask, &one], Vec::new()); // [b, t]
    let real = g.unsqueeze(&real, 1)?;
    let real = g.unsqueeze(&real, 1)?; // [b, 1, 1, t]
    let keep = g.node("And", &[&real, &causal], Vec::new()); // [b, 1, s, t]
    let (open, shut) = (scalar_f32(g, 0.0), scalar_f32(g, MASKED));
    let additive = g.node("Where", &[&keep, &open, &shut], Vec::new());
    Ok((positions, additive))
}

/// Records `config`'s decoder with weights from `weights` (and adapters from `adapters`).
pub fn decoder_graph<W: Weights<GraphBuilder>, T: Trainables<GraphBuilder>>(
    config: &DecoderConfig,
    weights: &mut W,
    adapters: Option<AdapterSpec<'_, T>>,
    store_as: StoreAs,
) -> Result<DecoderGraph> {
    let mut g = GraphBuilder::new(store_as);
    let mut decoder = Decoder::load(&mut g, weights, config)?;
    if let Some(a) = adapters {
        decoder.adapters = Some(DecoderAdapters::init(
            &mut g,
            a.tensors,
            &decoder,
            a.method,
            a.encoder_dim,
        )?);
    }
    let (kv, hd) = (config.num_kv_heads, config.head_dim);
    let demographic_dim = decoder.adapters.as_ref().map(|a| a.profile_dim).filter(|&d| d > 0);
    let mut inputs = vec![
        IoSpec::new(io::INPUT_IDS, ElementType::Int64, &["batch", "seq"]),
        IoSpec::new(io::ATTENTION_MASK, ElementType::Int64, &["batch", TOTAL_SEQ]),
    ];
    if let Some(d) = demographic_dim {
        inputs.push(IoSpec::new(
            io::DEMOGRAPHIC,
            ElementType::Float32,
            &["batch", &d.to_string()],
        ));
    }
    for l in 0..config.num_layers {
        for part in KvPart::BOTH {
            inputs.push(IoSpec::new(
                &io::past(l, part),
                ElementType::Float32,
                &["batch", &kv.to_string(), "past_seq", &hd.to_string()],
            ));
        }
    }
    let ids = Value(io::INPUT_IDS.into());
    let attention_mask = Value(io::ATTENTION_MASK.into());
    let past: Vec<KvPair<Value>> = (0..config.num_layers)
        .map(|l| KvPair {
            key: Value(io::past(l, KvPart::Key)),
            value: Value(io::past(l, KvPart::Value)),
        })
        .collect();
    let past_len = past_length(&mut g, &past[0].key);
    let (positions, additive) = prepare_inputs(&mut g, &attention_mask, &past_len)?;
    let ctx = DecoderCtx {
        rope: decoder.rope(&mut g, &positions)?,
        mask: AttentionMask { additive },
        profile: demographic_dim.map(|_| Value(io::DEMOGRAPHIC.into())),
    };
    let out = decoder.forward(&mut g, &ids, &ctx, Some(&past))?;
    let logits = decoder.logits(&mut g, &out.hidden)?;
    let vocab = config.vocab_size.to_string();
    let mut outputs = vec![IoSpec::new(io::LOGITS, ElementType::Float32, &["batch", "seq", &vocab])];
    g.output_as(&logits, io::LOGITS);
    for (l, kvp) in out.presents.iter().enumerate() {
        for (part, v) in [(KvPart::Key, &kvp.key), (KvPart::Value, &kvp.value)] {
            let name = io::present(l, part);
            g.output_as(v, &name);
            outputs.push(IoSpec::new(
                &name,
                ElementType::Float32,
                &["batch", &kv.to_string(), TOTAL_SEQ, &hd.to_string()],
            ));
        }
    }
    let routers = decoder.router_labels();
    if !out.routing.is_empty() {
        let k = decoder.adapters.as_ref().map_or(0, |a| a.method.top_k).to_string();
        let n = out.routing.len().to_string();
        let experts: Vec<Value> = out
            .routing
            .iter()
            .map(|r| g.unsqueeze(&r.experts, 0))
            .collect::<Result<_>>()?;
        let gates: Vec<Value> = out
            .routing
            .iter()
            .map(|r| g.unsqueeze(&r.topk_gates, 0))
            .collect::<Result<_>>()?;
        let e = g.concat(&experts.iter().collect::<Vec<_>>(), 0)?;
        let w = g.concat(&gates.iter().collect::<Vec<_>>(), 0)?;
        g.output_as(&e, io::ROUTING_EXPERTS);
        g.output_as(&w, io::ROUTING_GATES);
        outputs.push(IoSpec::new(
            io::ROUTING_EXPERTS,
            ElementType::Int64,
            &[&n, "batch", "seq", &k],
        ));
        outputs.push(IoSpec::new(
            io::ROUTING_GATES,
            ElementType::Float32,
            &[&n, "batch", "seq", &k],
        ));
    }
    let graph = g.finish(
        "cuma_decoder",
        inputs.iter().map(value_info).collect(),
        outputs.iter().map(value_info).collect(),
    );
    Ok(DecoderGraph {
        graph,
        inputs,
        outputs,
        routers,
        demographic_dim,
    })
}
