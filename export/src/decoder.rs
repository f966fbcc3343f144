//! The decoder graph (`model.onnx`): the shared input preparation
//! ([`cuma_model::layers::inputs`]) and a `cuma-model` decoder (with its adapters, when given),
//! recorded through [`GraphBuilder`]; this module adds only the graph's signature. One graph
//! serves prefill (past length 0) and decode.
//!
//! With [`AdapterSpec::profile_terms`], the routers' profile half `W_d d + b` leaves the decoder
//! for a graph of its own (`profile_terms.onnx`: `demographic` -> `profile_terms`), which a
//! runtime runs once per profile; the decoder then takes `profile_terms` in place of
//! `demographic`. Both are cut from one recording ([`crate::subgraph`]), so the terms are the
//! same [`DecoderAdapters::profile_terms`] the decoder would otherwise compute at every step.

use crate::graph::{GraphBuilder, QuantReport, Value, WeightFormat};
use crate::io::{io, value_info, ElementType, IoSpec, KvPart};
use cuma_model::adapters::{DecoderAdapters, ProfileInput};
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
    /// Record the routers' profile terms as a graph of their own, which the decoder reads as
    /// its `profile_terms` input (ignored when the routers read no profile).
    pub profile_terms: bool,
}

/// The routers' profile terms graph (`profile_terms.onnx`) and its interface.
pub struct ProfileTermsGraph {
    pub graph: crate::proto::GraphProto,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// P: the terms' width.
    pub width: usize,
}

/// A recorded decoder graph and its interface.
pub struct DecoderGraph {
    pub graph: crate::proto::GraphProto,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// Router labels in the order of `routing_experts`' first axis (empty without routers).
    pub routers: Vec<String>,
    /// D, when the routers read a profile vector (through a `demographic` input, or through
    /// `profile_terms` computed from it by [`DecoderGraph::profile_terms`]).
    pub demographic_dim: Option<usize>,
    /// The graph that turns profile vectors into the decoder's `profile_terms` input.
    pub profile_terms: Option<ProfileTermsGraph>,
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
    let split_terms = adapters.as_ref().is_some_and(|a| a.profile_terms);
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
    let demographic_spec = |d: usize| IoSpec::new(io::DEMOGRAPHIC, ElementType::Float32, &["batch", &d.to_string()]);
    let terms_width = match (&decoder.adapters, demographic_dim) {
        (Some(a), Some(_)) if split_terms => Some(a.profile_terms_width()),
        _ => None,
    };
    let terms_spec = |p: usize| IoSpec::new(io::PROFILE_TERMS, ElementType::Float32, &["batch", "1", &p.to_string()]);
    match (terms_width, demographic_dim) {
        (Some(p), _) => inputs.push(terms_spec(p)),
        (None, Some(d)) => inputs.push(demographic_spec(d)),
        (None, None) => {}
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
        profile: match (terms_width, demographic_dim) {
            (Some(_), _) => Some(ProfileInput::Terms(Value(io::PROFILE_TERMS.into()))),
            (None, Some(_)) => Some(ProfileInput::Vector(Value(io::DEMOGRAPHIC.into()))),
            (None, None) => None,
        },
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
    // The terms, recorded after the decoder from the same router weights and cut out below.
    let terms_value = match (&decoder.adapters, terms_width) {
        (Some(a), Some(_)) => Some(a.profile_terms(&mut g, &Value(io::DEMOGRAPHIC.into()))?),
        _ => None,
    };
    let (opset, quant) = (g.opset(), g.quant_report().clone());
    let mut graph = g.finish(
        "cuma_decoder",
        inputs.iter().map(value_info).collect(),
        outputs.iter().map(value_info).collect(),
    );
    let profile_terms = match (terms_value, terms_width, demographic_dim) {
        (Some(value), Some(width), Some(d)) => {
            let inputs = vec![demographic_spec(d)];
            let outputs = vec![terms_spec(width)];
            let terms = crate::subgraph::extract(
                &graph,
                "cuma_profile_terms",
                inputs.iter().map(value_info).collect(),
                vec![(value.0, value_info(&outputs[0]))],
            )
            .map_err(|reason| cuma_model::Error::Config {
                field: "profile_terms",
                reason,
            })?;
            Some(ProfileTermsGraph {
                graph: terms,
                inputs,
                outputs,
                width,
            })
        }
        _ => None,
    };
    // Without the terms' nodes, and without what the shared code computes for training only
    // (the gates' 0/1 selection masks, say).
    crate::subgraph::prune(&mut graph);
    Ok(DecoderGraph {
        graph,
        inputs,
        outputs,
        routers,
        demographic_dim,
        profile_terms,
        opset,
        quant,
    })
}
