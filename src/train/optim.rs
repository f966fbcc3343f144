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
        // In place where libtorch allows, two temporaries per tensor: the moments are large for
        // CuMA (its routers), and each temporary is a fresh allocation the kernel must zero.
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.f_lerp_(&g, 1.0 - c.beta1)?; // beta1 m + (1 - beta1) g
            let scaled = g.f_mul_scalar(1.0 - c.beta2)?;
            let _ = v.f_mul_scalar_(c.beta2)?.f_addcmul_(&g, &scaled)?; // beta2 v + (1 - beta2) g^2
            if lr == 0.0 {
                continue;
            }
            let _ = p.f_mul_scalar_(1.0 - lr * c.weight_decay)?;
            // p -= lr (m / bc1) / (sqrt(v / bc2) + eps), as p += m / denom with the factor in denom.
            let mut denom = v.f_sqrt()?;
            let _ = denom
                .f_div_scalar_(bc2.sqrt())?
                .f_add_scalar_(c.eps)?
                .f_mul_scalar_(-bc1 / lr)?;
            let _ = p.f_addcdiv_(m, &denom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three steps against the textbook AdamW, computed in f64.
    #[test]
    fn update_matches_the_textbook_formula() {
        let start = [0.5f32, -1.0, 2.0];
        let grads = [[0.1f64, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.0, 0.2]];
        let p = Tensor::from_slice(&start).set_requires_grad(true);
        let c = AdamWConfig::default();
        let mut opt = AdamW::new(vec![p.shallow_clone()], c).expect("optimiser");
        let (mut want, mut m, mut v) = (start.map(f64::from), [0.0f64; 3], [0.0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            let lr = 1e-2 * (t + 1) as f64;
            opt.zero_grad();
            // The gradient of sum(p * g) is g.
            (&p * Tensor::from_slice(g).to_kind(tch::Kind::Float))
                .sum(tch::Kind::Float)
                .backward();
            opt.update(lr).expect("update");
            let step = (t + 1) as i32;
            for i in 0..3 {
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
                want[i] *= 1.0 - lr * c.weight_decay;
                let (mh, vh) = (m[i] / (1.0 - c.beta1.powi(step)), v[i] / (1.0 - c.beta2.powi(step)));
                want[i] -= lr * mh / (vh.sqrt() + c.eps);
            }
        }
        let got = Vec::<f32>::try_from(&p.detach()).expect("floats");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} against {want:?}");
        }
    }
}
