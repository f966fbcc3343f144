//! The `cuma` library's error type. Every variant names the file, tensor or value at fault.

use std::path::PathBuf;

/// Errors from loading, tokenising and running models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing `path` failed (the reason is part of the message, not a separate source,
    /// so that error chains do not repeat it).
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: std::io::Error },
    /// A safetensors file libtorch reads (checkpoints, cached profile vectors) is corrupt.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// The model definition rejected the weights or configuration found in `path`.
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: cuma_model::Error },
    /// `config.json` (or an other JSON file) does not parse.
    #[error("{path}: invalid JSON: {reason}")]
    Json { path: PathBuf, reason: String },
    /// No tokenizer could be built.
    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A model path that is neither a GGUF file nor a Hugging Face model directory.
    #[error("{path}: {reason}")]
    ModelPath { path: PathBuf, reason: String },
    /// A request the code cannot honour (bad flag value, no CUDA, ...).
    #[error("{0}")]
    Invalid(String),
    /// A weight file (GGUF, safetensors) could not be read.
    #[error(transparent)]
    WeightFile(#[from] cuma_model::weight_files::WeightFileError),
    /// libtorch reported a failure.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl From<cuma_model::Error> for Error {
    fn from(e: cuma_model::Error) -> Self {
        Error::Model {
            path: PathBuf::from("<model>"),
            source: e,
        }
    }
}

/// Result alias for the `cuma` library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Error::Io` with the path attached.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |reason| Error::Io { path, reason }
}
