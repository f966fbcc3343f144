//! `RandomWeights`: a model's weights made up on the ops' device, for measuring speed and memory
//! at a model's shape without its checkpoint (a Qwen3-8B-shaped backbone on a GPU machine that
//! cannot receive 16 GB of weights). Matrices are Normal(0, 0.02^2), as Hugging Face initialises
//! them; norm scales are 1 and biases 0, so activations stay in a realistic range.

use crate::tch_ops::TchOps;
use cuma_model::{Error as ModelError, Result as ModelResult, Weights};
use tch::{Kind, Tensor};

/// The standard deviation of every random matrix.
pub const INIT_STD: f64 = 0.02;

/// Every tensor exists, with exactly the shape asked for; values depend on libtorch's seed.
#[derive(Debug, Default)]
pub struct RandomWeights {
    /// Values made so far (parameter accounting).
    pub values: usize,
}

impl Weights<TchOps> for RandomWeights {
    fn get(&mut self, o: &mut TchOps, name: &str, shape: &[usize]) -> ModelResult<Tensor> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let options = (Kind::Float, o.device);
        self.values += shape.iter().product::<usize>();
        let made = if shape.len() > 1 {
            Tensor::f_randn(dims.as_slice(), options).and_then(|t| t.f_mul_scalar(INIT_STD))
        } else if name.ends_with(".bias") {
            Tensor::f_zeros(dims.as_slice(), options)
        } else {
            Tensor::f_ones(dims.as_slice(), options)
        };
        made.map_err(|e| ModelError::Backend(format!("making `{name}` {shape:?}: {e}")))
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }
}
