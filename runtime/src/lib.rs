//! `cuma-runtime`: runs an exported cuma bundle on ONNX Runtime or tract, embeddable in
//! applications, without libtorch or Python. The backends land with the runtime issue; for now the
//! crate fixes its place in the dependency graph (it depends on `cuma-model` only).

pub use cuma_model as model;
