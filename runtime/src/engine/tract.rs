//! One bundle graph on tract (pure Rust, CPU). Inputs are given by name and ordered as the graph
//! declares them; outputs come back in the graph's output order (the manifest's). tract runs
//! on the calling thread.

use super::Engine;
use crate::{HostTensor, RuntimeError};
use std::path::Path;
use tract_onnx::prelude::*;

/// A loaded, optimised tract plan.
pub struct TractGraph {
    plan: TypedRunnableModel<TypedModel>,
    input_names: Vec<String>,
    label: String,
}

fn backend(label: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Backend {
        graph: label.into(),
        reason: e.to_string(),
    }
}

impl TractGraph {
    /// Loads and optimises the ONNX graph at `path`.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let label = path.display().to_string();
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| backend(&label, e))?;
        let input_names = model
            .input_outlets()
            .map_err(|e| backend(&label, e))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| backend(&label, format!("{e:?}")))?;
        Ok(Self {
            plan,
            input_names,
            label,
        })
    }

    /// The graph's input names, in order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }
}

impl Engine for TractGraph {
    fn run(&mut self, inputs: &[(&str, &HostTensor)]) -> Result<Vec<HostTensor>, RuntimeError> {
        let mut ordered: TVec<TValue> = TVec::new();
        for name in &self.input_names {
            let (_, t) = inputs
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| RuntimeError::Input(format!("{}: input `{name}` not given", self.label)))?;
            let tensor = match t {
                HostTensor::F32 { shape, data } => Tensor::from_shape(shape, data),
                HostTensor::I64 { shape, data } => Tensor::from_shape(shape, data),
            }
            .map_err(|e| RuntimeError::Input(format!("{}: input `{name}`: {e}", self.label)))?;
            ordered.push(tensor.into_tvalue());
        }
        let outputs = self
            .plan
            .run(ordered)
            .map_err(|e| backend(&self.label, format!("{e:?}")))?;
        outputs
            .into_iter()
            .map(|v| {
                let t = v.into_tensor();
                let shape = t.shape().to_vec();
                if let Ok(view) = t.as_slice::<f32>() {
                    Ok(HostTensor::F32 {
                        shape,
                        data: view.to_vec(),
                    })
                } else if let Ok(view) = t.as_slice::<i64>() {
                    Ok(HostTensor::I64 {
                        shape,
                        data: view.to_vec(),
                    })
                } else {
                    Err(backend(&self.label, format!("an output of type {:?}", t.datum_type())))
                }
            })
            .collect()
    }
}
