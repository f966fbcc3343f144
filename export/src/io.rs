//! ONNX value infos of graph inputs and outputs as the bundle manifest describes them.

use crate::proto::{data_type, DimValue, Dimension, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto};
pub use cuma_model::bundle::{io, io::KvPart, ElementType, IoSpec};

/// The ONNX value info of `spec`: numeric dimensions fixed, the others symbolic.
pub fn value_info(spec: &IoSpec) -> ValueInfoProto {
    let elem_type = match spec.dtype {
        ElementType::Int64 => data_type::INT64,
        ElementType::Float32 => data_type::FLOAT,
    };
    let dim = spec
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(
                d.parse::<i64>()
                    .map_or_else(|_| DimValue::Symbol(d.clone()), DimValue::Fixed),
            ),
        })
        .collect();
    ValueInfoProto {
        name: spec.name.clone(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}
