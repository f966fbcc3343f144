//! Where the exporter's weights come from: any [`TensorSource`] of float32 tensors (the `cuma`
//! crate adapts its GGUF / safetensors readers), and a map of trained adapter tensors.

use crate::graph::{GraphBuilder, Value};
use cuma_model::{Error, Init, Result, Trainables, Weights};
use std::collections::HashMap;

/// Float32 tensors by name.
pub trait TensorSource {
    /// The shape of `name`, or `None` when absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The values of `name` (row-major), converted to f32.
    fn read(&self, name: &str) -> std::result::Result<Vec<f32>, String>;
    /// The files behind the source, for error messages.
    fn describe(&self) -> String;
}

/// Frozen backbone or encoder weights, written as graph initializers.
pub struct SourceWeights<'a, S: TensorSource + ?Sized> {
    pub source: &'a S,
}

impl<S: TensorSource + ?Sized> Weights<GraphBuilder> for SourceWeights<'_, S> {
    fn get(&mut self, o: &mut GraphBuilder, name: &str, shape: &[usize]) -> Result<Value> {
        let got = self.source.shape(name).ok_or_else(|| Error::MissingTensor {
            name: name.into(),
            source_name: self.source.describe(),
        })?;
        if got != shape {
            return Err(Error::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                got,
            });
        }
        let values = self.source.read(name).map_err(Error::Backend)?;
        Ok(o.projection_weight(name, shape, values))
    }

    fn contains(&self, name: &str) -> bool {
        self.source.shape(name).is_some()
    }
}

/// Trained adapter tensors (from a checkpoint); every tensor the method needs must be present.
#[derive(Debug, Default, Clone)]
pub struct AdapterTensors {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Where they came from, for error messages.
    pub origin: String,
}

impl AdapterTensors {
    fn take(&mut self, o: &mut GraphBuilder, name: &str, shape: &[usize]) -> Result<Value> {
        let (got, values) = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.into(),
            source_name: self.origin.clone(),
        })?;
        if got != shape {
            return Err(Error::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                got: got.clone(),
            });
        }
        Ok(o.weight(name, shape, values))
    }
}

impl Trainables<GraphBuilder> for AdapterTensors {
    fn param(&mut self, o: &mut GraphBuilder, name: &str, shape: &[usize], _init: Init) -> Result<Value> {
        self.take(o, name, shape)
    }

    fn param_from(&mut self, o: &mut GraphBuilder, name: &str, shape: &[usize], _value: &Value) -> Result<Value> {
        self.take(o, name, shape)
    }
}
