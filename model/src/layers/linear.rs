//! A dense projection `y = x W^T + b` with the weight stored `[out, in]`.

use crate::{Ops, Result, Weights};

/// A frozen linear layer.
#[derive(Debug, Clone)]
pub struct Linear<T> {
    pub weight: T,
    pub bias: Option<T>,
    pub in_features: usize,
    pub out_features: usize,
}

impl<T> Linear<T> {
    /// Loads `weight` `[out, in]` and, when `bias`, `bias` `[out]` from `w` (a store seen under
    /// the layer's path, see [`Weights::pp`]).
    pub fn load<O: Ops<T = T>>(
        o: &mut O,
        w: &mut impl Weights<O>,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = w.get(o, "weight", &[out_features, in_features])?;
        let bias = if bias {
            Some(w.get(o, "bias", &[out_features])?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// # Shapes
    /// `x`: `[.., in]` -> `[.., out]`.
    pub fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T) -> Result<T> {
        o.linear(x, &self.weight, self.bias.as_ref())
    }
}
