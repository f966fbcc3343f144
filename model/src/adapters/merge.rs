//! The adapted weight of a plain LoRA, `W + scale * B A`, and the per-output row norms of a
//! weight: written once for DoRA's forward (spec section 8), DoRA's magnitude initialisation and
//! `cuma export --merge`, which folds a LoRA into the backbone.

use crate::{Ops, Result};

/// `weight` `[out, in]` plus `scale * b a` (`b` `[out, r]`, `a` `[r, in]`).
pub fn merged_weight<O: Ops>(o: &mut O, weight: &O::T, a: &O::T, b: &O::T, scale: f64) -> Result<O::T> {
    let delta = o.matmul(b, a)?; // [out, in]
    let delta = o.scale(&delta, scale)?;
    o.add(weight, &delta)
}

/// The L2 norm of every output row of `weight` `[out, in]`, as `[out]`.
pub fn row_norms<O: Ops>(o: &mut O, weight: &O::T) -> Result<O::T> {
    let sq = o.mul(weight, weight)?;
    let norms = o.sum_keepdim(&sq, -1)?;
    let norms = o.sqrt(&norms)?;
    o.reshape(&norms, &[-1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShapeOps;

    #[test]
    fn shapes_of_the_merge_and_the_norms() {
        let mut o = ShapeOps;
        let (w, a, b) = (vec![6, 4], vec![2, 4], vec![6, 2]);
        assert_eq!(merged_weight(&mut o, &w, &a, &b, 2.0).expect("merge"), vec![6, 4]);
        assert_eq!(row_norms(&mut o, &w).expect("norms"), vec![6]);
    }
}
