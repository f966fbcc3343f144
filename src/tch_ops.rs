//! `TchOps`: the model definition's tensor operations computed eagerly by libtorch (with autograd
//! when a tensor requires it). Composite ops (RMSNorm, LayerNorm, attention, SiLU, GELU) use
//! libtorch's fused kernels.

use cuma_model::{Error, Ops, Result};
use tch::{Device, Kind, Tensor};

/// The eager libtorch backend.
#[derive(Debug, Clone, Copy)]
pub struct TchOps {
    pub device: Device,
    /// Training mode: dropout is active.
    pub train: bool,
    /// Mixed precision: matrix products compute in bf16 (inputs cast, result cast back to f32),
    /// as autocast does; weights, norms, softmax and losses stay f32.
    pub bf16_matmul: bool,
}

impl TchOps {
    /// Inference on `device` (dropout off, f32 throughout).
    pub fn new(device: Device) -> Self {
        Self {
            device,
            train: false,
            bf16_matmul: false,
        }
    }

    /// Training on `device`: dropout on, bf16 matrix products when `mixed`.
    pub fn training(device: Device, mixed: bool) -> Self {
        Self {
            device,
            train: true,
            bf16_matmul: mixed,
        }
    }
}

fn bf16(x: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
    x.f_to_kind(Kind::BFloat16)
}

fn t<T>(r: std::result::Result<T, tch::TchError>) -> Result<T> {
    r.map_err(|e| Error::Backend(e.to_string()))
}

impl Ops for TchOps {
    type T = Tensor;

    fn share(&mut self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }

    fn matmul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if self.bf16_matmul {
            return t(bf16(a)
                .and_then(|a| a.f_matmul(&bf16(b)?))
                .and_then(|y| y.f_to_kind(Kind::Float)));
        }
        t(a.f_matmul(b))
    }
    fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if self.bf16_matmul {
            let bias = b.map(bf16).transpose().map_err(|e| Error::Backend(e.to_string()))?;
            return t(bf16(x)
                .and_then(|x| x.f_linear(&bf16(w)?, bias.as_ref()))
                .and_then(|y| y.f_to_kind(Kind::Float)));
        }
        if w.kind() != x.kind() {
            // A weight stored in bf16 for mixed-precision steps, met by an f32 product.
            return t(w.f_to_kind(x.kind()).and_then(|w| x.f_linear(&w, b)));
        }
        t(x.f_linear(w, b))
    }
    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_add(b))
    }
    fn sub(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_sub(b))
    }
    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_mul(b))
    }
    fn div(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_div(b))
    }
    fn scale(&mut self, x: &Tensor, s: f64) -> Result<Tensor> {
        t(x.f_mul_scalar(s))
    }
    fn add_scalar(&mut self, x: &Tensor, s: f64) -> Result<Tensor> {
        t(x.f_add_scalar(s))
    }
    fn clamp_min(&mut self, x: &Tensor, s: f64) -> Result<Tensor> {
        t(x.f_clamp_min(s))
    }
    fn sqrt(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_sqrt())
    }
    fn exp(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_exp())
    }
    fn erf(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_erf())
    }
    fn sigmoid(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_sigmoid())
    }
    fn relu(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_relu())
    }
    fn cos(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_cos())
    }
    fn sin(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_sin())
    }
    fn softmax_last(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_softmax(-1, Kind::Float))
    }
    fn mean_keepdim(&mut self, x: &Tensor, dim: i64) -> Result<Tensor> {
        t(x.f_mean_dim(Some([dim].as_slice()), true, Kind::Float))
    }
    fn sum_keepdim(&mut self, x: &Tensor, dim: i64) -> Result<Tensor> {
        t(x.f_sum_dim_intlist(Some([dim].as_slice()), true, Kind::Float))
    }
    fn reshape(&mut self, x: &Tensor, shape: &[i64]) -> Result<Tensor> {
        let size = x.size();
        let mut resolved = Vec::with_capacity(shape.len());
        for (i, &s) in shape.iter().enumerate() {
            if s == 0 {
                let d = size
                    .get(i)
                    .ok_or_else(|| Error::Backend(format!("reshape: 0 at axis {i} of a rank-{} tensor", size.len())))?;
                resolved.push(*d);
            } else {
                resolved.push(s);
            }
        }
        t(x.f_reshape(resolved.as_slice()))
    }
    fn permute(&mut self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        let p: Vec<i64> = perm.iter().map(|&d| d as i64).collect();
        t(x.f_permute(p.as_slice()))
    }
    fn unsqueeze(&mut self, x: &Tensor, dim: i64) -> Result<Tensor> {
        t(x.f_unsqueeze(dim))
    }
    fn concat(&mut self, xs: &[&Tensor], dim: i64) -> Result<Tensor> {
        t(Tensor::f_cat(xs, dim))
    }
    fn slice(&mut self, x: &Tensor, dim: i64, start: i64, end: i64) -> Result<Tensor> {
        t(x.f_slice(dim, start, end, 1))
    }
    fn split_last(&mut self, x: &Tensor, widths: &[usize]) -> Result<Vec<Tensor>> {
        let sizes: Vec<i64> = widths.iter().map(|&w| w as i64).collect();
        t(x.f_split_with_sizes(&sizes, -1))
    }
    fn embedding(&mut self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        t(Tensor::f_embedding(table, ids, -1, false, false))
    }
    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Result<Tensor> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        t(Tensor::f_from_slice(values)
            .and_then(|x| x.f_reshape(dims.as_slice()))
            .and_then(|x| x.f_to_device(self.device)))
    }

    fn argmax_last(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_argmax(-1, true))
    }
    fn one_hot(&mut self, idx: &Tensor, depth: usize) -> Result<Tensor> {
        t(idx
            .f_squeeze_dim(-1)
            .and_then(|i| i.f_one_hot(depth as i64))
            .and_then(|h| h.f_to_kind(Kind::Float)))
    }
    fn cumsum(&mut self, x: &Tensor, dim: i64) -> Result<Tensor> {
        t(x.f_cumsum(dim, x.kind()))
    }
    fn cast_f32(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_to_kind(Kind::Float))
    }
    fn arange_like(&mut self, x: &Tensor) -> Result<Tensor> {
        match x.size().as_slice() {
            [n] => t(Tensor::f_arange(*n, (Kind::Int64, x.device()))),
            other => Err(Error::Backend(format!("arange_like needs a 1-D input, got {other:?}"))),
        }
    }
    fn slice_after(&mut self, x: &Tensor, dim: i64, other: &Tensor, other_dim: i64) -> Result<Tensor> {
        let sizes = other.size();
        let axis = if other_dim < 0 {
            other_dim + sizes.len() as i64
        } else {
            other_dim
        };
        let start = usize::try_from(axis)
            .ok()
            .and_then(|a| sizes.get(a))
            .ok_or_else(|| Error::Backend(format!("slice_after: axis {other_dim} of {sizes:?}")))?;
        t(x.f_slice(dim, *start, i64::MAX, 1))
    }
    fn less_equal(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_le_tensor(b))
    }
    fn eq_scalar(&mut self, x: &Tensor, v: f64) -> Result<Tensor> {
        t(x.f_eq(v))
    }
    fn and(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t(a.f_logical_and(b))
    }
    fn where_scalars(&mut self, cond: &Tensor, yes: f64, no: f64) -> Result<Tensor> {
        t(Tensor::f_where_scalar(cond, yes, no).and_then(|w| w.f_to_kind(Kind::Float)))
    }
    fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        if self.train && p > 0.0 {
            t(x.f_dropout(p, true))
        } else {
            Ok(x.shallow_clone())
        }
    }

    fn silu(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_silu())
    }
    fn gelu(&mut self, x: &Tensor) -> Result<Tensor> {
        t(x.f_gelu("none"))
    }
    /// In training only: at a decode step the concatenation would cost what the products do.
    fn fuses_shared_inputs(&self) -> bool {
        self.train
    }
    fn rms_norm(&mut self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        let last = *x
            .size()
            .last()
            .ok_or_else(|| Error::Backend("rms_norm on a scalar".into()))?;
        t(x.f_rms_norm([last].as_slice(), Some(w), eps))
    }
    fn fused_attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        additive_mask: &Tensor,
        scale: f64,
    ) -> Result<Option<Tensor>> {
        let grouped = q.size().get(1) != k.size().get(1);
        let out = if self.bf16_matmul {
            bf16(q).and_then(|q| {
                Tensor::f_scaled_dot_product_attention(
                    &q,
                    &bf16(k)?,
                    &bf16(v)?,
                    Some(bf16(additive_mask)?),
                    0.0,
                    false,
                    scale,
                    grouped,
                )?
                .f_to_kind(Kind::Float)
            })
        } else {
            Tensor::f_scaled_dot_product_attention(q, k, v, Some(additive_mask), 0.0, false, scale, grouped)
        };
        t(out).map(Some)
    }
    fn layer_norm(&mut self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        let last = *x
            .size()
            .last()
            .ok_or_else(|| Error::Backend("layer_norm on a scalar".into()))?;
        t(x.f_layer_norm([last].as_slice(), Some(w), Some(b), eps, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A projection stored in bf16 for mixed-precision steps still serves an f32 product: the
    /// same numbers as the f32 product with the bf16-rounded weight, in f32.
    #[test]
    fn an_f32_product_meets_a_bf16_weight() {
        let mut o = TchOps::new(Device::Cpu);
        let x = Tensor::from_slice(&[0.5f32, -1.25, 2.0, 0.75, 3.0, -0.5]).reshape([2, 3]);
        let w = Tensor::from_slice(&[0.1f32, 0.2, -0.3, 1.7, -2.3, 0.9]).reshape([2, 3]);
        let w16 = w.to_kind(Kind::BFloat16);
        let y = o.linear(&x, &w16, None).expect("mixed kinds");
        assert_eq!(y.kind(), Kind::Float);
        let want = x.linear(&w16.to_kind(Kind::Float), None::<Tensor>);
        assert!(y.allclose(&want, 0.0, 0.0, false), "{y} vs {want}");
    }
}
