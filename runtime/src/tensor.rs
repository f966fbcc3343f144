//! Host tensors passed to and from a backend: row-major data plus shape.

/// A tensor on the host, of one of the element types bundles use.
#[derive(Debug, Clone, PartialEq)]
pub enum HostTensor {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

impl HostTensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::F32 { shape, .. } | Self::I64 { shape, .. } => shape,
        }
    }

    /// The float data, when this is a float tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::F32 { data, .. } => Some(data),
            Self::I64 { .. } => None,
        }
    }

    /// The integer data, when this is an int64 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match self {
            Self::I64 { data, .. } => Some(data),
            Self::F32 { .. } => None,
        }
    }
}
