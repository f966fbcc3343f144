//! The model crate's error type: every variant names the thing that is wrong and the value found.

/// Errors raised while configuring, loading or running a model definition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weight the architecture needs is absent from the weight source.
    #[error("missing tensor `{name}` in {source_name}")]
    MissingTensor { name: String, source_name: String },
    /// A tensor (weight or activation) has a shape other than the one the architecture needs.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The configuration names an architecture cuma does not implement.
    #[error("unsupported architecture `{model_type}` (supported: {supported})")]
    UnsupportedFamily {
        model_type: String,
        supported: &'static str,
    },
    /// A configuration field is missing or out of range.
    #[error("invalid model config: `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// A sampling parameter (temperature, top-p) out of range.
    #[error("sampling `{field}`: {reason}")]
    Sampling { field: &'static str, reason: String },
    /// The tensor backend reported a failure.
    #[error("tensor backend: {0}")]
    Backend(String),
}

/// Result alias for the model crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
