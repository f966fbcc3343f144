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

/// How a fresh trainable tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// Normal(0, std^2).
    Normal {
        std: f64,
    },
    /// Uniform(-bound, bound) (PyTorch's `nn.Linear` default uses 1 / sqrt(fan_in)).
    Uniform {
        bound: f64,
    },
}

/// A store of trainable tensors (adapters, routers): created fresh with `init`, or restored
/// from a checkpoint by name.
pub trait Trainables<O: Ops> {
    /// The trainable tensor called `name` with exactly `shape`.
    fn param(&mut self, o: &mut O, name: &str, shape: &[usize], init: Init) -> Result<O::T>;
    /// The trainable tensor called `name`, starting from a copy of `value` when fresh (DoRA's
    /// magnitude starts as the frozen weight's row norms). `shape` is `value`'s shape.
    fn param_from(&mut self, o: &mut O, name: &str, shape: &[usize], value: &O::T) -> Result<O::T>;
}
