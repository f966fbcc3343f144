//! AdamW with decoupled weight decay (spec section 6: betas 0.9 / 0.999, eps 1e-8, weight decay
//! 0.01), global gradient-norm clipping, on the trainable tensors only. fp32 state.

use crate::Result;
use tch::Tensor;

/// AdamW hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Optimiser state for a fixed list of parameters.
pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: i64,
}

impl AdamW {
    pub fn new(params: Vec<Tensor>, config: AdamWConfig) -> Result<Self> {
        let m = params.iter().map(|p| p.f_zeros_like()).collect::<Result<Vec<_>, _>>()?;
        let v = params.iter().map(|p| p.f_zeros_like()).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            params,
            m,
            v,
            step: 0,
        })
    }

    /// The moments, named `m.{i}` / `v.{i}` by parameter position, plus `step`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("m.{i}"), m.shallow_clone()));
            out.push((format!("v.{i}"), v.shallow_clone()));
        }
        out.push(("step".into(), Tensor::from_slice(&[self.step])));
        out
    }

    /// Restores what [`AdamW::state`] saved.
    pub fn restore(&mut self, saved: &[(String, Tensor)]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let find = |name: &str| saved.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        for i in 0..self.m.len() {
            for (slot, key) in [(&mut self.m[i], format!("m.{i}")), (&mut self.v[i], format!("v.{i}"))] {
                let t = find(&key).ok_or_else(|| crate::Error::Invalid(format!("optimizer state lacks `{key}`")))?;
                if t.size() != slot.size() {
                    return Err(crate::Error::Invalid(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        t.size(),
                        slot.size()
                    )));
                }
                slot.f_copy_(&t.f_to_device(slot.device())?)?;
            }
        }
        let step = find("step").ok_or_else(|| crate::Error::Invalid("optimizer state lacks `step`".into()))?;
        if step.numel() != 1 {
            return Err(crate::Error::Invalid(format!(
                "optimizer state `step` has {} values, expected 1",
                step.numel()
            )));
        }
        self.step = step.f_int64_value(&[0])?;
        Ok(())
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        let _guard = tch::no_grad_guard();
        let mut total = 0.0;
        for p in &self.params {
            let g = p.grad();
            if g.defined() {
                total += g.f_square()?.f_sum(tch::Kind::Double)?.f_double_value(&[])?;
            }
        }
        let norm = total.sqrt();
        if norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for p in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(scale)?;
                }
            }
        }
        Ok(norm)
    }

    /// One update at learning rate `lr`.
    pub fn update(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.f_mul_scalar_(c.beta1)?.f_add_(&g.f_mul_scalar(1.0 - c.beta1)?)?;
            let _ = v
                .f_mul_scalar_(c.beta2)?
                .f_add_(&g.f_square()?.f_mul_scalar(1.0 - c.beta2)?)?;
            let _ = p.f_mul_scalar_(1.0 - lr * c.weight_decay)?;
            let denom = v.f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(c.eps)?;
            let update = m.f_div_scalar(bc1)?.f_div(&denom)?.f_mul_scalar(lr)?;
            let _ = p.f_sub_(&update)?;
        }
        Ok(())
    }
}
