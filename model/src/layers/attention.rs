//! Scaled dot-product attention with grouped-query heads, written with plain
//! MatMul / Softmax / Reshape so every backend (and tract's KV cache) can run it.

use crate::{Ops, Result};

/// An additive attention mask: 0 where a query may attend, a large negative value elsewhere.
#[derive(Debug, Clone)]
pub struct AttentionMask<T> {
    /// `[b, 1, s, t]` (broadcast over heads).
    pub additive: T,
}

/// Head counts and size for [`attend`].
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Attention of `q` `[b, heads, s, d]` over `k`, `v` `[b, kv_heads, t, d]`.
///
/// Grouped-query attention without copying keys: the `heads / kv_heads` query heads that share a
/// key head are folded into its query axis, so one batched matmul serves the whole group.
///
/// # Shapes
/// returns `[b, s, heads * d]`.
pub fn attend<O: Ops>(o: &mut O, q: &O::T, k: &O::T, v: &O::T, mask: &AttentionMask<O::T>, h: Heads) -> Result<O::T> {
    let (nh, kvh, d) = (h.heads as i64, h.kv_heads as i64, h.head_dim as i64);
    if let Some(out) = o.fused_attention(q, k, v, &mask.additive, 1.0 / (h.head_dim as f64).sqrt())? {
        let out = o.permute(&out, &[0, 2, 1, 3])?; // [b, s, nh, d]
        return o.reshape(&out, &[0, 0, nh * d]);
    }
    let q_grouped = o.reshape(q, &[0, kvh, -1, d])?; // [b, kvh, rep*s, d]
    let k_t = o.permute(k, &[0, 1, 3, 2])?; // [b, kvh, d, t]
    let scores = o.matmul(&q_grouped, &k_t)?; // [b, kvh, rep*s, t]
    let scores = o.scale(&scores, 1.0 / (h.head_dim as f64).sqrt())?;
    let scores = o.reshape(&scores, &[0, nh, -1, 0])?; // [b, nh, s, t]
    let scores = o.add(&scores, &mask.additive)?;
    let probs = o.softmax_last(&scores)?;
    let probs = o.reshape(&probs, &[0, kvh, -1, 0])?; // [b, kvh, rep*s, t]
    let out = o.matmul(&probs, v)?; // [b, kvh, rep*s, d]
    let out = o.reshape(&out, &[0, nh, -1, d])?; // [b, nh, s, d]
    let out = o.permute(&out, &[0, 2, 1, 3])?; // [b, s, nh, d]
    o.reshape(&out, &[0, 0, nh * d])
}
