//! The runtime's error type; every variant names the file, input or value at fault.

/// Errors from opening bundles, loading graphs and serving requests.
#[derive(Debug, thiserror::Error)]
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
    /// Something this build or bundle cannot do.
    #[error("{0}")]
    Unsupported(String),
}
