//! The demographic-encoder graph (`encoder.onnx`): token ids + attention mask -> the pooled
//! (optionally L2-normalised) profile vector `[batch, D]`, recorded from the shared BERT or
//! decoder definition (Qwen3-Embedding style, last-token pooling) and the shared pooling.

use crate::graph::{GraphBuilder, StoreAs, Value};
use crate::io::{io, value_info, ElementType, IoSpec};
use crate::proto::data_type;
use cuma_model::arch::{Bert, Decoder, DecoderCtx};
use cuma_model::config::{BertConfig, DecoderConfig};
use cuma_model::layers::{decoder_inputs, encoder_inputs, pool, Pooling};
use cuma_model::{Ops, Result, Weights};

/// A recorded encoder graph and its interface.
pub struct EncoderGraph {
    pub graph: crate::proto::GraphProto,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub dim: usize,
}

/// Records a BERT sentence encoder with `pooling` (and L2 normalisation when `normalize`).
pub fn encoder_graph<W: Weights<GraphBuilder>>(
    config: &BertConfig,
    weights: &mut W,
    pooling: Pooling,
    normalize: bool,
    store_as: StoreAs,
) -> Result<EncoderGraph> {
    if pooling == Pooling::LastToken {
        return Err(cuma_model::Error::Config {
            field: "pooling",
            reason: "last-token pooling needs a decoder encoder; BERT pools by mean or CLS".into(),
        });
    }
    let mut g = GraphBuilder::new(store_as);
    let bert = Bert::load(&mut g, weights, config)?;
    let (ids, mask) = (Value(io::INPUT_IDS.into()), Value(io::ATTENTION_MASK.into()));
    let prepared = encoder_inputs(&mut g, &mask)?;
    let states = bert.forward(&mut g, &ids, &prepared.positions, &prepared.mask)?;
    pooled_output(g, &states, &mask, pooling, normalize, config.hidden_size)
}

/// Records a decoder used as a sentence encoder (Qwen3-Embedding style): the shared decoder
/// forward with causal attention, then `pooling` (normally the last token; inputs are left
/// padded, as the tch encoder pads them).
pub fn decoder_encoder_graph<W: Weights<GraphBuilder>>(
    config: &DecoderConfig,
    weights: &mut W,
    pooling: Pooling,
    normalize: bool,
    store_as: StoreAs,
) -> Result<EncoderGraph> {
    let mut g = GraphBuilder::new(store_as);
    let decoder = Decoder::load(&mut g, weights, config)?;
    let (ids, mask) = (Value(io::INPUT_IDS.into()), Value(io::ATTENTION_MASK.into()));
    let prepared = decoder_inputs(&mut g, &mask, None)?;
    let ctx = DecoderCtx {
        rope: decoder.rope(&mut g, &prepared.positions)?,
        mask: prepared.mask,
        profile: None,
        replay: None,
    };
    let states = decoder.forward(&mut g, &ids, &ctx, None)?.hidden;
    pooled_output(g, &states, &mask, pooling, normalize, config.hidden_size)
}

/// Pools `states` `[b, s, dim]` over the real tokens of `mask` (the shared pooling) into the
/// `embedding` output, and finishes the encoder graph with its interface.
fn pooled_output(
    mut g: GraphBuilder,
    states: &Value,
    mask: &Value,
    pooling: Pooling,
    normalize: bool,
    dim: usize,
) -> Result<EncoderGraph> {
    let weights_mask = g.cast(mask, data_type::FLOAT);
    let weights_mask = g.unsqueeze(&weights_mask, -1)?;
    let pooled = pool(&mut g, states, &weights_mask, pooling, normalize)?;
    g.output_as(&pooled, io::EMBEDDING);
    let inputs = vec![
        IoSpec::new(io::INPUT_IDS, ElementType::Int64, &["batch", "seq"]),
        IoSpec::new(io::ATTENTION_MASK, ElementType::Int64, &["batch", "seq"]),
    ];
    let outputs = vec![IoSpec::new(
        io::EMBEDDING,
        ElementType::Float32,
        &["batch", &dim.to_string()],
    )];
    let graph = g.finish(
        "cuma_encoder",
        inputs.iter().map(value_info).collect(),
        outputs.iter().map(value_info).collect(),
    );
    Ok(EncoderGraph {
        graph,
        inputs,
        outputs,
        dim,
    })
}
