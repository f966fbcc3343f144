//! RMSNorm (decoders) and LayerNorm (BERT).

use crate::{Ops, Result, Weights};

/// RMSNorm with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm<T> {
    pub weight: T,
    pub eps: f64,
}

impl<T> RmsNorm<T> {
    /// Loads `weight` `[size]` from `w` (seen under the norm's path).
    pub fn load<O: Ops<T = T>>(o: &mut O, w: &mut impl Weights<O>, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get(o, "weight", &[size])?,
            eps,
        })
    }

    /// # Shapes
    /// `x`: `[.., size]` -> same.
    pub fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T) -> Result<T> {
        o.rms_norm(x, &self.weight, self.eps)
    }
}

/// LayerNorm with learned scale and shift.
#[derive(Debug, Clone)]
pub struct LayerNorm<T> {
    pub weight: T,
    pub bias: T,
    pub eps: f64,
}

impl<T> LayerNorm<T> {
    /// Loads `weight` and `bias`, both `[size]`, from `w` (seen under the norm's path).
    pub fn load<O: Ops<T = T>>(o: &mut O, w: &mut impl Weights<O>, size: usize, eps: f64) -> Result<Self> {
        let weight = w.get(o, "weight", &[size])?;
        let bias = w.get(o, "bias", &[size])?;
        Ok(Self { weight, bias, eps })
    }

    /// # Shapes
    /// `x`: `[.., size]` -> same.
    pub fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T) -> Result<T> {
        o.layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
