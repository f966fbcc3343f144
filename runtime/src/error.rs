//! The runtime's error type; every variant names the file, input or value at fault.

/// Errors from opening bundles, loading graphs and serving requests. More variants may come; match
/// with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: std::io::Error },
    #[error("{path}: {reason}")]
    Manifest { path: String, reason: String },
    /// A file is missing or its bytes differ from the manifest's checksum.
    #[error("{path}: {reason}")]
    Integrity { path: String, reason: String },
    #[error("{graph}: {reason}")]
    Backend { graph: String, reason: String },
    /// A request or tensor the graph cannot take (wrong shape, too long, empty, ...).
    #[error("{0}")]
    Input(String),
    /// A profile that does not fit the bundle's attributes.
    #[error("profile: {0}")]
    Profile(String),
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },
    /// A backend (or its CUDA support) that this build was compiled without.
    #[error("{backend} is not compiled into this build (cargo feature `{feature}`)")]
    BackendNotCompiled { backend: String, feature: &'static str },
    /// The ONNX Runtime library could not be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    OrtLibrary(String),
    /// Something this build or bundle cannot do.
    #[error("{0}")]
    Unsupported(String),
}
