//! `cuma-export`: writes ONNX bundles from trained cuma weights, driven by the shared model
//! definition in `cuma-model`. No libtorch dependency. The graph writer lands with the export issue;
//! for now the crate fixes its place in the dependency graph (it depends on `cuma-model` only).

pub use cuma_model as model;
