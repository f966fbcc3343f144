//! `cuma-export`: writes ONNX graphs from trained cuma weights. No libtorch.
//!
//! The graphs are not a second copy of the architectures: [`graph::GraphBuilder`] implements the
//! `cuma_model::Ops` trait by appending ONNX nodes, so running the shared model definition
//! (the same `Decoder` / adapters code the tch backend trains) against it records the graph.
//! Only standard ONNX operators (opset [`graph::OPSET`], default domain) are used; top-k routing
//! is one `TopK` with a constant k, so no shape depends on the data. [`bundle`] finishes a bundle: hashes
//! and the manifest.

pub mod bundle;
pub mod decoder;
pub mod encoder;
pub mod graph;
pub mod io;
pub mod proto;
pub mod quant;
pub mod subgraph;
pub mod weights;

pub use bundle::{finish_bundle, sha256_file};
pub use cuma_model as model;
pub use decoder::{decoder_graph, AdapterSpec, DecoderGraph, ProfileTermsGraph};
pub use encoder::{encoder_graph, EncoderGraph};
pub use graph::{GraphBuilder, QuantReport, StoreAs, WeightFormat, IR_VERSION, OPSET};
pub use quant::{QuantBits, QUANT_OPSET};
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
    /// The manifest the exporter assembled does not pass the runtime's own checks.
    #[error("manifest.json: {0}")]
    Manifest(String),
}

/// Creates `path` as a new regular file for writing. Whatever is there already - an earlier
/// export's file, or a symbolic link planted in the output folder - is removed first (a link is
/// removed, never followed), and the file is created exclusively, so a write can never land
/// outside the folder. A folder at `path` is an error.
pub fn create_new_file(path: &Path) -> Result<std::fs::File, ExportError> {
    let io = |reason| ExportError::Io {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(io(std::io::Error::other("is a folder, not a file"))),
        Ok(_) => std::fs::remove_file(path).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)
}

/// [`create_new_file`], then `bytes` written into it.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    use std::io::Write;
    create_new_file(path)?
        .write_all(bytes)
        .map_err(|reason| ExportError::Io {
            path: path.display().to_string(),
            reason,
        })
}

/// Wraps a graph into a model with cuma's IR version, importing `opset` ([`OPSET`] for float
/// graphs, [`QUANT_OPSET`] for block-quantized ones).
pub fn model_proto(graph: proto::GraphProto, doc: &str, opset: i64) -> proto::ModelProto {
    proto::ModelProto {
        ir_version: IR_VERSION,
        producer_name: "cuma".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc.into(),
        graph: Some(graph),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        metadata_props: Vec::new(),
    }
}

/// Models whose weights exceed this many bytes keep them in an external data file: a protobuf
/// message cannot exceed 2 GiB.
pub const DEFAULT_EXTERNAL_DATA_ABOVE: u64 = 1_800_000_000;

/// The threshold for quantized graphs (`--quant`): low, so that their weights live in the
/// external data file, which ONNX Runtime maps instead of copying out of the protobuf (peak RSS
/// of `cuma-run` on SmolLM2 int4: 351 MB against 553 MB, docs/quantization.md).
pub const QUANT_EXTERNAL_DATA_ABOVE: u64 = 64 << 20;

/// The files [`write_model`] wrote: the graph, and the external data file when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenModel {
    /// (file name, bytes) of each file, the graph first.
    pub files: Vec<(String, u64)>,
}

/// Serialises `model` to `path`. When its initializers hold more than `external_data_above`
/// bytes, every initializer of 1 KiB or more goes to `<file name>.data` beside it (ONNX external
/// data: location, offset and length per tensor) and the graph keeps only references.
pub fn write_model(
    mut model: proto::ModelProto,
    path: &Path,
    external_data_above: u64,
) -> Result<WrittenModel, ExportError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut files = Vec::new();
    let graph = model.graph.as_mut();
    let weight_bytes: u64 = graph
        .as_ref()
        .map_or(0, |g| g.initializer.iter().map(|t| t.raw_data.len() as u64).sum());
    if let (Some(graph), true) = (graph, weight_bytes > external_data_above) {
        let data_name = format!("{name}.data");
        let data_path = path.with_file_name(&data_name);
        let mut data = std::io::BufWriter::new(create_new_file(&data_path)?);
        let mut offset = 0u64;
        for t in graph.initializer.iter_mut().filter(|t| t.raw_data.len() >= 1024) {
            use std::io::Write;
            data.write_all(&t.raw_data).map_err(|reason| ExportError::Io {
                path: data_path.display().to_string(),
                reason,
            })?;
            let length = t.raw_data.len() as u64;
            let entry = |key: &str, value: String| proto::StringStringEntryProto { key: key.into(), value };
            t.external_data = vec![
                entry("location", data_name.clone()),
                entry("offset", offset.to_string()),
                entry("length", length.to_string()),
            ];
            t.data_location = 1;
            t.raw_data = Vec::new();
            offset += length;
        }
        use std::io::Write;
        data.flush().map_err(|reason| ExportError::Io {
            path: data_path.display().to_string(),
            reason,
        })?;
        files.push((data_name, offset));
    }
    let bytes = model.encode_to_vec();
    write_new_file(path, &bytes)?;
    files.insert(0, (name, bytes.len() as u64));
    Ok(WrittenModel { files })
}
