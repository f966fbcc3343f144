//! `TchTrainables`: the adapter and router tensors on libtorch, created fresh with their
//! initialisation (seeded through `tch::manual_seed`) and marked for gradients. The optimiser
//! sees only these; the backbone stays in [`crate::weights::TchStore`], frozen.

use crate::tch_ops::TchOps;
use cuma_model::{Error as ModelError, Init, Result as ModelResult, Trainables};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Trainable tensors by name, in creation order of names (sorted map for stable iteration).
#[derive(Default)]
pub struct TchTrainables {
    pub tensors: BTreeMap<String, Tensor>,
}

impl TchTrainables {
    /// Total number of trainable values.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(|t| t.numel()).sum()
    }
}

fn backend(e: tch::TchError) -> ModelError {
    ModelError::Backend(e.to_string())
}

impl Trainables<TchOps> for TchTrainables {
    fn param(&mut self, o: &mut TchOps, name: &str, shape: &[usize], init: Init) -> ModelResult<Tensor> {
        if let Some(t) = self.tensors.get(name) {
            let got: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            if got != shape {
                return Err(ModelError::Shape {
                    name: name.into(),
                    expected: shape.to_vec(),
                    got,
                });
            }
            return Ok(t.shallow_clone());
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        // Random values are drawn by the CPU's generator and then moved, so that one seed gives
        // the same adapters on every device (CUDA's generator draws other numbers).
        let opts = (Kind::Float, tch::Device::Cpu);
        let t = match init {
            Init::Zeros => Tensor::f_zeros(dims.as_slice(), opts),
            Init::Ones => Tensor::f_ones(dims.as_slice(), opts),
            Init::Normal { std } => Tensor::f_randn(dims.as_slice(), opts).and_then(|t| t.f_mul_scalar(std)),
            Init::Uniform { bound } => Tensor::f_rand(dims.as_slice(), opts)
                .and_then(|t| t.f_mul_scalar(2.0 * bound))
                .and_then(|t| t.f_sub_scalar(bound)),
        }
        .and_then(|t| t.f_to_device(o.device))
        .map_err(backend)?
        .set_requires_grad(true);
        self.tensors.insert(name.into(), t.shallow_clone());
        Ok(t)
    }

    fn param_from(&mut self, o: &mut TchOps, name: &str, shape: &[usize], value: &Tensor) -> ModelResult<Tensor> {
        if self.tensors.contains_key(name) {
            return self.param(o, name, shape, Init::Zeros);
        }
        let got: Vec<usize> = value.size().iter().map(|&d| d as usize).collect();
        if got != shape {
            return Err(ModelError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                got,
            });
        }
        // `* 1.0` makes a fresh copy, so training never writes into `value`.
        let t = value
            .f_detach()
            .and_then(|v| v.f_mul_scalar(1.0))
            .map_err(backend)?
            .set_requires_grad(true);
        self.tensors.insert(name.into(), t.shallow_clone());
        Ok(t)
    }
}
