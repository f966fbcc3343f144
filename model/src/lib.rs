//! `cuma-model`: the one definition of every cuma architecture (and, later, adapter).
//!
//! Every layer is generic over [`Ops`], a small set of tensor operations that standard ONNX
//! (opset 17) can express and tract can run. The `cuma` crate implements it eagerly on libtorch
//! (training, inference), `cuma-export` implements it by recording ONNX nodes, and [`ShapeOps`]
//! implements it on shapes alone. One forward, several meanings.

pub mod adapters;
pub mod arch;
pub mod bundle;
pub mod config;
pub mod device;
pub mod error;
pub mod items;
pub mod layers;
pub mod names;
pub mod ops;
pub mod sampling;
pub mod serve;
pub mod shape_ops;
pub mod text;
#[cfg(feature = "weight-files")]
pub mod weight_files;
pub mod weights;

pub use error::{Error, Result};
pub use ops::Ops;
pub use shape_ops::{ParamCounter, ShapeOps, ShapeWeights};
pub use weights::{Init, Scoped, TensorPath, Trainables, Weights};
