//! The load-balancing loss of one router (spec section 5), over the real tokens of a batch:
//! `E * sum_e freq_e * prop_e`, where `freq_e` is the share of the k selections that went to
//! expert e and `prop_e` its mean gate. 1 at perfect balance; E / k when every token picks the
//! same k experts. Gradients flow through `prop` only (selections are not differentiable).

use crate::{Ops, Result};

/// # Shapes
/// `gates`, `selected`: `[b, s, E]`; `token_mask`: `[b, s, 1]` (1 real, 0 padding); returns `[1]`.
pub fn balance_loss<O: Ops>(
    o: &mut O,
    gates: &O::T,
    selected: &O::T,
    token_mask: &O::T,
    experts: usize,
    k: usize,
) -> Result<O::T> {
    let e = experts as i64;
    let real = o.reshape(token_mask, &[-1, 1])?; // [n, 1]
    let n = o.sum_keepdim(&real, 0)?; // [1, 1]
    let n = o.clamp_min(&n, 1.0)?;
    let sel = o.reshape(selected, &[-1, e])?;
    let sel = o.mul(&sel, &real)?;
    let counts = o.sum_keepdim(&sel, 0)?; // [1, E]
    let nk = o.scale(&n, k as f64)?;
    let freq = o.div(&counts, &nk)?;
    let g = o.reshape(gates, &[-1, e])?;
    let g = o.mul(&g, &real)?;
    let g_sum = o.sum_keepdim(&g, 0)?;
    let prop = o.div(&g_sum, &n)?;
    let fp = o.mul(&freq, &prop)?;
    let total = o.sum_keepdim(&fp, -1)?; // [1, 1]
    let total = o.reshape(&total, &[1])?;
    o.scale(&total, experts as f64)
}
