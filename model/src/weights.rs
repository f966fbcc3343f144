//! `Weights`: where a model definition gets its named tensors from.

use crate::{Ops, Result};

/// A source of named tensors for backend `O`: an in-memory store of loaded weights (tch), a set
/// of ONNX initializers (export), or shapes only.
pub trait Weights<O: Ops> {
    /// The tensor called `name`, which must have exactly `shape`.
    ///
    /// Errors: [`crate::Error::MissingTensor`] when absent, [`crate::Error::Shape`] when the
    /// stored shape differs.
    fn get(&mut self, o: &mut O, name: &str, shape: &[usize]) -> Result<O::T>;
    /// Whether a tensor called `name` exists (used for optional tensors such as biases).
    fn contains(&self, name: &str) -> bool;
}
