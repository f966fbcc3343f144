//! `cuma-export`: writes ONNX graphs from trained cuma weights. No libtorch.
//!
//! The graphs are not a second copy of the architectures: [`graph::GraphBuilder`] implements the
//! `cuma_model::Ops` trait by appending ONNX nodes, so running the shared model definition
//! (the same `Decoder` / adapters code the tch backend trains) against it records the graph.
//! Only standard ONNX operators (opset [`graph::OPSET`], default domain) are used; top-k routing
//! is k rounds of ArgMax, so no shape depends on the data.

pub mod decoder;
pub mod encoder;
pub mod graph;
pub mod io;
pub mod proto;
pub mod weights;

pub use cuma_model as model;
pub use decoder::{decoder_graph, AdapterSpec, DecoderGraph};
pub use encoder::{encoder_graph, EncoderGraph};
pub use graph::{GraphBuilder, StoreAs, IR_VERSION, OPSET};
pub use weights::{AdapterTensors, SourceWeights, TensorSource};

use prost::Message;
use std::path::Path;

/// Errors of writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Model(#[from] cuma_model::Error),
    #[error("{path}: {reason}")]
    Io { path: String, reason: std::io::Error },
}

/// Wraps a graph into a model with cuma's opset and IR version.
pub fn model_proto(graph: proto::GraphProto, doc: &str) -> proto::ModelProto {
    proto::ModelProto {
        ir_version: IR_VERSION,
        producer_name: "cuma".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc.into(),
        graph: Some(graph),
        opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: Vec::new(),
    }
}

/// Serialises `model` to `path`.
pub fn write_model(model: &proto::ModelProto, path: &Path) -> Result<u64, ExportError> {
    let bytes = model.encode_to_vec();
    std::fs::write(path, &bytes).map_err(|reason| ExportError::Io { path: path.display().to_string(), reason })?;
    Ok(bytes.len() as u64)
}
