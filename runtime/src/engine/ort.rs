//! One bundle graph on ONNX Runtime (CPU, or CUDA with feature `cuda`). The library is loaded at
//! run time (`load-dynamic`): from `ORT_DYLIB_PATH`, else from the path this crate was built
//! with (the bootstrap's venv), so nothing native is linked into the binary.

use super::{Device, Engine, EngineOptions};
use crate::{HostTensor, RuntimeError};
use cuma_model::bundle::GraphSpec;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A loaded ONNX Runtime session.
pub struct OrtGraph {
    session: Session,
    outputs: Vec<String>,
    label: String,
}

fn backend(label: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Backend {
        graph: label.into(),
        reason: e.to_string(),
    }
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH` at run time, else the one seen at build time.
pub fn library_path() -> Result<PathBuf, RuntimeError> {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| option_env!("ORT_DYLIB_PATH").map(PathBuf::from));
    match path {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => Err(RuntimeError::OrtLibrary(format!(
            "{} does not exist; set ORT_DYLIB_PATH to libonnxruntime.so (pip install onnxruntime==1.31.1)",
            p.display()
        ))),
        None => Err(RuntimeError::OrtLibrary(
            "not found; set ORT_DYLIB_PATH to libonnxruntime.so (pip install onnxruntime==1.31.1)".into(),
        )),
    }
}

/// The process-wide ONNX Runtime environment, created on first use.
fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
        builder
            .with_name("cuma-runtime")
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| RuntimeError::OrtLibrary(e.clone()))
}

impl OrtGraph {
    /// Loads the graph at `path` on `device` with `options`' threads and quantized-product mode.
    pub fn load(path: &Path, spec: &GraphSpec, device: Device, options: &EngineOptions) -> Result<Self, RuntimeError> {
        let label = path.display().to_string();
        let env = environment()?;
        let mut builder = Session::builder(env).map_err(|e| backend(&label, e))?;
        if let Some(n) = options.threads {
            builder = builder.with_intra_threads(n).map_err(|e| backend(&label, e))?;
        }
        // A `--quant` bundle's DequantizeLinear + MatMul pairs become MatMulNBits; this picks
        // how it multiplies (a float bundle has none, and ignores it).
        builder = builder
            .with_config_entry(
                "session.qdq_matmulnbits_accuracy_level",
                options.quant_compute.accuracy_level(),
            )
            .map_err(|e| backend(&label, e))?;
        match device {
            Device::Cpu => {}
            #[cfg(feature = "cuda")]
            Device::Cuda(id) => {
                let cuda = ort::ep::CUDA::default().with_device_id(id).build().error_on_failure();
                builder = builder
                    .with_execution_providers([cuda])
                    .map_err(|e| backend(&label, format!("CUDA execution provider: {e}")))?;
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(i) => {
                return Err(RuntimeError::BackendNotCompiled {
                    backend: format!("ort-cuda:{i}"),
                    feature: "cuda",
                })
            }
        }
        let session = builder.commit_from_file(path).map_err(|e| backend(&label, e))?;
        Ok(Self {
            session,
            outputs: spec.outputs.iter().map(|o| o.name.clone()).collect(),
            label,
        })
    }
}

impl Engine for OrtGraph {
    fn run(&mut self, inputs: &[(&str, &HostTensor)]) -> Result<Vec<HostTensor>, RuntimeError> {
        let label = self.label.clone();
        let mut feed: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let value = match t {
                HostTensor::F32 { shape, data } => {
                    TensorRef::from_array_view((shape.clone(), data.as_slice())).map(Into::into)
                }
                HostTensor::I64 { shape, data } => {
                    TensorRef::from_array_view((shape.clone(), data.as_slice())).map(Into::into)
                }
            }
            .map_err(|e| RuntimeError::Input(format!("{label}: input `{name}`: {e}")))?;
            feed.push((name.to_string(), value));
        }
        let mut outputs = self.session.run(feed).map_err(|e| backend(&label, e))?;
        self.outputs
            .iter()
            .map(|name| {
                let value = outputs
                    .remove(name)
                    .ok_or_else(|| backend(&label, format!("no output `{name}`")))?;
                if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                    Ok(HostTensor::F32 {
                        shape: shape.iter().map(|&d| d as usize).collect(),
                        data: data.to_vec(),
                    })
                } else if let Ok((shape, data)) = value.try_extract_tensor::<i64>() {
                    Ok(HostTensor::I64 {
                        shape: shape.iter().map(|&d| d as usize).collect(),
                        data: data.to_vec(),
                    })
                } else {
                    Err(backend(&label, format!("output `{name}` is neither float32 nor int64")))
                }
            })
            .collect()
    }
}
