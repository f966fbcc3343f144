//! Weights on libtorch: [`TchStore`] serves a [`WeightSet`] (read by `cuma-model`'s weight-file
//! readers, which need no libtorch) to the model definition as tensors; [`RandomWeights`] makes
//! them up at a model's shape (benchmarks).

pub mod random;
pub mod store;

pub use cuma_model::weight_files::{dequant, gguf, safetensors, DType, TensorEntry, WeightSet};
pub use random::RandomWeights;
pub use store::{TchStore, TrainableBackbone};
