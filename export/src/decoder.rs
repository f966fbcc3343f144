//! The decoder graph (`model.onnx`): the shared input preparation
//! ([`cuma_model::layers::inputs`]) and a `cuma-model` decoder (with its adapters, when given),
//! recorded through [`GraphBuilder`]; this module adds only the graph's signature. One graph
//! serves prefill (past length 0) and decode.

use crate::graph::{GraphBuilder, QuantReport, Value, WeightFormat};
use crate::io::{io, value_info, ElementType, IoSpec, KvPart};
use cuma_model::adapters::DecoderAdapters;
use cuma_model::arch::{Decoder, DecoderCtx, KvPair};
use cuma_model::config::{DecoderConfig, MethodConfig};
use cuma_model::layers::decoder_inputs;
use cuma_model::{Ops, Result, Trainables, Weights};

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
    /// The opset the graph needs ([`crate::OPSET`], or [`crate::quant::QUANT_OPSET`] quantized).
    pub opset: i64,
    /// What block quantization did (all zero without it).
    pub quant: QuantReport,
}

/// Records `config`'s decoder with weights from `weights` (and adapters from `adapters`).
pub fn decoder_graph<W: Weights<GraphBuilder>, T: Trainables<GraphBuilder>>(
    config: &DecoderConfig,
    weights: &mut W,
    adapters: Option<AdapterSpec<'_, T>>,
    format: WeightFormat,
) -> Result<DecoderGraph> {
    let mut g = match format.quant {
        Some(bits) => GraphBuilder::quantized(format.store_as, bits),
        None => GraphBuilder::new(format.store_as),
    };
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
    let prepared = decoder_inputs(&mut g, &attention_mask, past.first().map(|kv| &kv.key))?;
    let ctx = DecoderCtx {
        rope: decoder.rope(&mut g, &prepared.positions)?,
        mask: prepared.mask,
        profile: demographic_dim.map(|_| Value(io::DEMOGRAPHIC.into())),
        replay: None,
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
        // Every router's [b, s, k] stacked into [routers, b, s, k]: one Concat along k, one
        // Reshape and one Transpose (an Unsqueeze per router would cost a node each per step).
        let routers_k = [0, 0, out.routing.len() as i64, -1];
        let mut stack = |parts: Vec<&Value>| -> Result<Value> {
            let joined = g.concat(&parts, -1)?;
            let split = g.reshape(&joined, &routers_k)?;
            g.permute(&split, &[2, 0, 1, 3])
        };
        let e = stack(out.routing.iter().map(|r| &r.experts).collect())?;
        let w = stack(out.routing.iter().map(|r| &r.topk_gates).collect())?;
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
    let (opset, quant) = (g.opset(), g.quant_report().clone());
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
        opset,
        quant,
    })
}
