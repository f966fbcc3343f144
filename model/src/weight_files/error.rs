//! The weight-file readers' error type: every variant names the file (and tensor) at fault.

use std::path::PathBuf;

/// Errors from opening, parsing or decoding a weight file.
#[derive(Debug, thiserror::Error)]
pub enum WeightFileError {
    /// Reading `path` failed.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
    /// A safetensors file (or its index) is truncated or corrupt.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// A GGUF file is truncated, corrupt or uses a feature cuma does not read.
    #[error("{path}: {reason}")]
    Gguf { path: PathBuf, reason: String },
    /// A tensor is stored in a data type cuma cannot convert.
    #[error("{path}: tensor `{tensor}` has unsupported data type {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A tensor the caller asked for is not in the set.
    #[error("missing tensor `{name}` in {source_name}")]
    MissingTensor { name: String, source_name: String },
    /// Policy: a NaN or infinite weight makes every logit it touches NaN, so the file is refused
    /// at load with the tensor named.
    #[error("{path}: tensor `{tensor}` holds {value} at index {index}; weights must be finite (corrupt file?)")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        value: f32,
        index: usize,
    },
    /// An index file does not parse.
    #[error("{path}: invalid JSON: {reason}")]
    Json { path: PathBuf, reason: String },
    /// A directory without the expected files, or an index naming a shard it may not.
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
}

/// `WeightFileError::Io` with the path attached.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> WeightFileError {
    let path = path.into();
    move |reason| WeightFileError::Io { path, reason }
}
