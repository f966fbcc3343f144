//! `cuma-runtime`: runs an exported cuma bundle without libtorch or Python.
//!
//! [`Bundle::open`] reads and verifies a bundle (manifest version, every file's SHA-256);
//! [`tract_engine::TractGraph`] (feature `tract`) runs one of its graphs on pure-Rust tract.
//! The ONNX Runtime backend, sessions with profiles and generation land with the runtime issue.

pub mod bundle;
pub mod error;
pub mod tensor;
#[cfg(feature = "tract")]
pub mod tract_engine;

pub use bundle::Bundle;
pub use cuma_model as model;
pub use error::RuntimeError;
pub use tensor::HostTensor;
