//! The runtime's error type; every variant names the file or value at fault.

/// Errors from opening bundles and running graphs.
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
    #[error("{0}")]
    Input(String),
}
