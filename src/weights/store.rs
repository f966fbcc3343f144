//! `TchStore`: the frozen weights of a model as libtorch tensors, served to the model definition
//! through [`cuma_model::Weights`]. Shapes are checked before any data is converted.

use super::WeightSet;
use crate::tch_ops::TchOps;
use crate::trainables::TchTrainables;
use cuma_model::{Error as ModelError, Result as ModelResult, Weights};
use tch::{Kind, Tensor};

/// Frozen weights read from a [`WeightSet`] and placed on the ops' device as f32.
pub struct TchStore<'a> {
    set: &'a WeightSet,
}

impl<'a> TchStore<'a> {
    pub fn new(set: &'a WeightSet) -> Self {
        Self { set }
    }
}

impl Weights<TchOps> for TchStore<'_> {
    fn get(&mut self, o: &mut TchOps, name: &str, shape: &[usize]) -> ModelResult<Tensor> {
        if let Some(dtype) = self.set.unreadable(name) {
            return Err(ModelError::Backend(format!(
                "tensor `{name}` in {} is stored as {dtype}, which cuma cannot convert to f32",
                self.set.describe()
            )));
        }
        let entry = self.set.entry(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.into(),
            source_name: self.set.describe(),
        })?;
        if entry.shape != shape {
            return Err(ModelError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                got: entry.shape.clone(),
            });
        }
        let values = self
            .set
            .read_f32(name)
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_slice(&values)
            .and_then(|t| t.f_reshape(dims.as_slice()))
            .and_then(|t| t.f_to_device(o.device))
            .map_err(|e| ModelError::Backend(e.to_string()))?;
        t.set_requires_grad(false)
            .f_to_kind(Kind::Float)
            .map_err(|e| ModelError::Backend(e.to_string()))
    }

    fn contains(&self, name: &str) -> bool {
        self.set.entry(name).is_some()
    }
}

/// The backbone's own weights as trainables (full fine-tuning): each is read from the file (or
/// taken from `trainables` when a checkpoint restored it) and marked for gradients.
pub struct TrainableBackbone<'a> {
    pub frozen: TchStore<'a>,
    pub trainables: &'a mut TchTrainables,
}

impl Weights<TchOps> for TrainableBackbone<'_> {
    fn get(&mut self, o: &mut TchOps, name: &str, shape: &[usize]) -> ModelResult<Tensor> {
        if let Some(t) = self.trainables.tensors.get(name) {
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
        let t = self.frozen.get(o, name, shape)?.set_requires_grad(true);
        self.trainables.tensors.insert(name.into(), t.shallow_clone());
        Ok(t)
    }

    fn contains(&self, name: &str) -> bool {
        self.frozen.contains(name)
    }
}
