//! Backends that run one bundle graph: ONNX Runtime (feature `ort`, CPU or CUDA) and tract
//! (feature `tract`, pure Rust CPU). Both take named [`HostTensor`] inputs and return the graph's
//! outputs in the order the manifest lists them, so everything above is backend-agnostic.

#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "tract")]
pub mod tract;

use crate::{HostTensor, RuntimeError};
use cuma_model::bundle::GraphSpec;
use std::path::Path;

/// Where ONNX Runtime runs a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// A CUDA device by index (ONNX Runtime's CUDA execution provider; feature `cuda`).
    Cuda(i32),
}

/// The inference engine behind a [`crate::Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ONNX Runtime, loaded from the library named by `ORT_DYLIB_PATH`.
    Ort { device: Device },
    /// tract: pure Rust, CPU only, no native library needed.
    Tract,
}

impl Default for Backend {
    /// ONNX Runtime on the CPU when this build has it, else tract.
    fn default() -> Self {
        if cfg!(feature = "ort") {
            Self::Ort { device: Device::Cpu }
        } else {
            Self::Tract
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ort { device: Device::Cpu } => write!(f, "ort-cpu"),
            Self::Ort {
                device: Device::Cuda(i),
            } => write!(f, "ort-cuda:{i}"),
            Self::Tract => write!(f, "tract"),
        }
    }
}

/// The most intra-op threads a session may ask for: more is a mistake, not a setting (each
/// thread reserves a stack, and a million of them exhaust memory).
pub const MAX_THREADS: usize = 1024;

/// How graphs are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineOptions {
    pub backend: Backend,
    /// Intra-op threads (ONNX Runtime), 1 to [`MAX_THREADS`]; `None` lets the backend decide.
    /// tract runs on one thread.
    pub threads: Option<usize>,
    /// ONNX Runtime only: how its fused 4-/8-bit products of a `--quant` bundle compute.
    pub quant_compute: QuantCompute,
}

/// How ONNX Runtime's `MatMulNBits` (which it forms from a quantized bundle's
/// `DequantizeLinear` + `MatMul`) multiplies; its session option
/// `session.qdq_matmulnbits_accuracy_level`. Measured in docs/quantization.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantCompute {
    /// Activations stay float32 (accuracy level 0): the products are those of the dequantized
    /// weights, so a bundle carrying GGUF blocks exactly computes what the float bundle does.
    #[default]
    F32,
    /// Activations are quantized to int8 per block of 32 (accuracy level 4, ONNX Runtime's
    /// default for this fusion): faster at batch 1 on CPUs with int8 dot products, less exact.
    Int8,
}

impl QuantCompute {
    /// The value of `session.qdq_matmulnbits_accuracy_level`.
    pub fn accuracy_level(self) -> &'static str {
        match self {
            Self::F32 => "0",
            Self::Int8 => "4",
        }
    }
}

/// One loaded graph.
pub trait Engine: Send {
    /// Runs the graph on `inputs` (every graph input, by name); outputs in manifest order.
    fn run(&mut self, inputs: &[(&str, &HostTensor)]) -> Result<Vec<HostTensor>, RuntimeError>;
}

/// Loads the graph at `path` (described by `spec`) on `options.backend`.
pub fn load(path: &Path, spec: &GraphSpec, options: &EngineOptions) -> Result<Box<dyn Engine>, RuntimeError> {
    if let Some(n) = options.threads.filter(|n| !(1..=MAX_THREADS).contains(n)) {
        return Err(RuntimeError::Input(format!("{n} threads: ask for 1 to {MAX_THREADS}")));
    }
    // A build without engines uses neither.
    #[cfg(not(any(feature = "ort", feature = "tract")))]
    let _ = (path, spec);
    match options.backend {
        #[cfg(feature = "ort")]
        Backend::Ort { device } => Ok(Box::new(ort::OrtGraph::load(path, spec, device, options)?)),
        #[cfg(feature = "tract")]
        Backend::Tract => Ok(Box::new(tract::TractGraph::load(path)?)),
        #[allow(unreachable_patterns)]
        other => Err(RuntimeError::BackendNotCompiled {
            backend: other.to_string(),
            feature: if matches!(other, Backend::Tract) {
                "tract"
            } else {
                "ort"
            },
        }),
    }
}
