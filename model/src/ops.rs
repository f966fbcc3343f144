//! `Ops`: the tensor operations the model definitions are written against.
//!
//! Only operations that standard ONNX (opset 17) expresses directly and tract runs: no host
//! round-trips, no data-dependent shapes. Composite operations (norms, activations) have default
//! definitions in terms of the primitives; an eager backend may override them with fused kernels
//! as long as the numbers agree to float precision.

use crate::Result;

/// A tensor backend. Shapes follow ONNX conventions (row-major, numpy broadcasting).
pub trait Ops {
    /// A tensor handle: an eager tensor, a graph value name, or a shape.
    type T;

    /// Another handle to the same tensor (no data copy): tied weights.
    fn share(&mut self, x: &Self::T) -> Self::T;

    /// Batched matrix product `a @ b` (numpy `matmul` semantics).
    fn matmul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `x @ w^T (+ b)` with `w` stored as `[out, in]` (the Hugging Face layout).
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>) -> Result<Self::T>;
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    fn div(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `x * s`.
    fn scale(&mut self, x: &Self::T, s: f64) -> Result<Self::T>;
    /// `x + s`.
    fn add_scalar(&mut self, x: &Self::T, s: f64) -> Result<Self::T>;
    /// `max(x, s)` elementwise.
    fn clamp_min(&mut self, x: &Self::T, s: f64) -> Result<Self::T>;
    fn sqrt(&mut self, x: &Self::T) -> Result<Self::T>;
    fn exp(&mut self, x: &Self::T) -> Result<Self::T>;
    fn erf(&mut self, x: &Self::T) -> Result<Self::T>;
    fn sigmoid(&mut self, x: &Self::T) -> Result<Self::T>;
    fn relu(&mut self, x: &Self::T) -> Result<Self::T>;
    fn cos(&mut self, x: &Self::T) -> Result<Self::T>;
    fn sin(&mut self, x: &Self::T) -> Result<Self::T>;
    /// Softmax over the last axis.
    fn softmax_last(&mut self, x: &Self::T) -> Result<Self::T>;
    /// Mean over axis `dim`, keeping it with size 1.
    fn mean_keepdim(&mut self, x: &Self::T, dim: i64) -> Result<Self::T>;
    /// Sum over axis `dim`, keeping it with size 1.
    fn sum_keepdim(&mut self, x: &Self::T, dim: i64) -> Result<Self::T>;
    /// ONNX `Reshape`: `0` copies the input's size at that index, `-1` is inferred.
    fn reshape(&mut self, x: &Self::T, shape: &[i64]) -> Result<Self::T>;
    /// Reorders axes: output axis `i` is input axis `perm[i]`.
    fn permute(&mut self, x: &Self::T, perm: &[usize]) -> Result<Self::T>;
    /// Inserts a size-1 axis at `dim`.
    fn unsqueeze(&mut self, x: &Self::T, dim: i64) -> Result<Self::T>;
    /// Concatenates along `dim`.
    fn concat(&mut self, xs: &[&Self::T], dim: i64) -> Result<Self::T>;
    /// `x[.., start..end, ..]` along `dim`; negative bounds count from the end (ONNX `Slice`).
    fn slice(&mut self, x: &Self::T, dim: i64, start: i64, end: i64) -> Result<Self::T>;
    /// `x` cut along its last axis into consecutive parts of `widths`, which must add up to that
    /// axis's size (an error otherwise where the backend can tell): one operation where the
    /// backend has it (ONNX `Split`: one node per step instead of one per part), else slices.
    fn split_last(&mut self, x: &Self::T, widths: &[usize]) -> Result<Vec<Self::T>> {
        let mut start = 0i64;
        let mut parts = Vec::with_capacity(widths.len());
        for &w in widths {
            parts.push(self.slice(x, -1, start, start + w as i64)?);
            start += w as i64;
        }
        Ok(parts)
    }
    /// Rows of `table` `[n, h]` picked by integer `ids` `[..]` -> `[.., h]` (ONNX `Gather` axis 0).
    fn embedding(&mut self, table: &Self::T, ids: &Self::T) -> Result<Self::T>;
    /// A constant f32 tensor.
    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Result<Self::T>;
    /// Index of the largest value over the last axis, kept as a size-1 axis (int64). Ties give
    /// the lowest index (torch `argmax`, ONNX `ArgMax` with `select_last_index = 0`).
    fn argmax_last(&mut self, x: &Self::T) -> Result<Self::T>;
    /// f32 one-hot rows of `depth` from int64 indices `[.., 1]` -> `[.., depth]`.
    fn one_hot(&mut self, idx: &Self::T, depth: usize) -> Result<Self::T>;
    /// The `k` largest values over the last axis and their int64 indices (`[.., k]` each),
    /// largest first, ties to the lowest index, in one operation (ONNX `TopK`). `None` (the
    /// default): the caller takes k rounds of [`Ops::argmax_last`], which give the same values
    /// and indices ([`crate::adapters::route`]).
    fn top_k_last(&mut self, x: &Self::T, k: usize) -> Result<Option<(Self::T, Self::T)>> {
        let _ = (x, k);
        Ok(None)
    }

    /// Running sum along `dim` (ONNX `CumSum`), in `x`'s element type.
    fn cumsum(&mut self, x: &Self::T, dim: i64) -> Result<Self::T>;
    /// `x` converted to float32 (from int64 or boolean).
    fn cast_f32(&mut self, x: &Self::T) -> Result<Self::T>;
    /// `0, 1, ..., n-1` as int64 `[n]`, for an int64 `x` of shape `[n]`. Backends with symbolic
    /// shapes can follow `n` from `x`, which a range over a shape value would hide.
    fn arange_like(&mut self, x: &Self::T) -> Result<Self::T>;
    /// `x[n..]` along `dim`, where `n` is `other`'s size along `other_dim`: a slice whose start
    /// is only known when the graph runs (the past length of a KV cache).
    fn slice_after(&mut self, x: &Self::T, dim: i64, other: &Self::T, other_dim: i64) -> Result<Self::T>;
    /// Boolean `a <= b` elementwise, with broadcasting (same element types).
    fn less_equal(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Boolean `x == v` elementwise, for a float32 `x`.
    fn eq_scalar(&mut self, x: &Self::T, v: f64) -> Result<Self::T>;
    /// Boolean `a && b` elementwise, with broadcasting.
    fn and(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Float32 `yes` where the boolean `cond` holds, `no` elsewhere (ONNX `Where`).
    fn where_scalars(&mut self, cond: &Self::T, yes: f64, no: f64) -> Result<Self::T>;

    /// Dropout with probability `p` while training; identity otherwise (and in exported graphs).
    fn dropout(&mut self, x: &Self::T, p: f64) -> Result<Self::T> {
        let _ = p;
        Ok(self.share(x))
    }

    /// `x * sigmoid(x)`.
    fn silu(&mut self, x: &Self::T) -> Result<Self::T> {
        let s = self.sigmoid(x)?;
        self.mul(x, &s)
    }

    /// Exact (erf) GELU: `0.5 x (1 + erf(x / sqrt 2))`.
    fn gelu(&mut self, x: &Self::T) -> Result<Self::T> {
        let scaled = self.scale(x, std::f64::consts::FRAC_1_SQRT_2)?;
        let e = self.erf(&scaled)?;
        let one_plus = self.add_scalar(&e, 1.0)?;
        let half_x = self.scale(x, 0.5)?;
        self.mul(&half_x, &one_plus)
    }

    /// Scaled dot-product attention as one fused kernel, where the backend has one: `q`
    /// `[b, heads, s, d]`, `k` and `v` `[b, kv_heads, t, d]` (query head `i` reads key/value
    /// head `i / (heads / kv_heads)`), `additive_mask` broadcast to `[b, heads, s, t]`, scores
    /// scaled by `scale`; returns `[b, heads, s, d]`. `None` (the default, and what exported
    /// graphs use): the caller composes it from MatMul and Softmax ([`crate::layers::attend`]).
    fn fused_attention(
        &mut self,
        q: &Self::T,
        k: &Self::T,
        v: &Self::T,
        additive_mask: &Self::T,
        scale: f64,
    ) -> Result<Option<Self::T>> {
        let _ = (q, k, v, additive_mask, scale);
        Ok(None)
    }

    /// Whether the adapters multiply the matrices that read one input (routers' token halves,
    /// experts' A) in one product of their concatenation ([`crate::adapters::LayerRun`]). Yes by
    /// default (a recorded graph concatenates constants once); an eager backend says yes only
    /// when the concatenation is paid back, as in a training step's forward and backward.
    fn fuses_shared_inputs(&self) -> bool {
        true
    }

    /// RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * w`.
    fn rms_norm(&mut self, x: &Self::T, w: &Self::T, eps: f64) -> Result<Self::T> {
        let sq = self.mul(x, x)?;
        let ms = self.mean_keepdim(&sq, -1)?;
        let ms = self.add_scalar(&ms, eps)?;
        let rms = self.sqrt(&ms)?;
        let normed = self.div(x, &rms)?;
        self.mul(&normed, w)
    }

    /// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * w + b`.
    fn layer_norm(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, eps: f64) -> Result<Self::T> {
        let mean = self.mean_keepdim(x, -1)?;
        let centred = self.sub(x, &mean)?;
        let sq = self.mul(&centred, &centred)?;
        let var = self.mean_keepdim(&sq, -1)?;
        let var = self.add_scalar(&var, eps)?;
        let std = self.sqrt(&var)?;
        let normed = self.div(&centred, &std)?;
        let scaled = self.mul(&normed, w)?;
        self.add(&scaled, b)
    }
}
