//! Graph inputs and outputs as the bundle manifest describes them, and their ONNX value infos.

use crate::proto::{data_type, DimValue, Dimension, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto};
use serde::{Deserialize, Serialize};

/// One graph input or output: its name, element type and shape, where a dimension is either a
/// number or a symbol (`batch`, `seq`, `past_seq`, `total_seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoSpec {
    pub name: String,
    /// `float32` or `int64`.
    pub dtype: String,
    pub shape: Vec<String>,
}

impl IoSpec {
    pub fn new(name: &str, dtype: &str, shape: &[&str]) -> Self {
        Self { name: name.into(), dtype: dtype.into(), shape: shape.iter().map(|s| s.to_string()).collect() }
    }
}

/// The ONNX value info of `spec`: numeric dimensions fixed, the others symbolic.
pub fn value_info(spec: &IoSpec) -> ValueInfoProto {
    let elem_type = if spec.dtype == "int64" { data_type::INT64 } else { data_type::FLOAT };
    let dim = spec
        .shape
        .iter()
        .map(|d| Dimension { value: Some(d.parse::<i64>().map_or_else(|_| DimValue::Symbol(d.clone()), DimValue::Fixed)) })
        .collect();
    ValueInfoProto { name: spec.name.clone(), r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type, shape: Some(TensorShapeProto { dim }) }) }) }
}
