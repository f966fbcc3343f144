//! Input preparation, the step every backend takes before the model proper: from the 0/1
//! padding mask to the positions and the additive attention mask. Written once against [`Ops`],
//! so libtorch computes it and the exporter records it into the graph (which then takes only
//! token ids, the padding mask and the cache).
//!
//! - A decoder's positions count real tokens only, so left padding does not shift them; its mask
//!   is causal and padding-aware, over the cached and the new tokens.
//! - A bidirectional encoder uses absolute positions and a padding-only mask.

use crate::layers::AttentionMask;
use crate::{Ops, Result};

/// The additive mask value for a hidden key: large enough that its softmax weight is exactly 0,
/// finite so that a row masked entirely (a left-padding query) still gives numbers, not NaN.
pub const MASKED: f32 = -1e9;

/// The axis of a past key tensor `[b, kv_heads, past, head_dim]` that holds the past length.
pub const PAST_AXIS: i64 = 2;

/// What a forward pass needs besides the token ids.
pub struct PreparedInputs<T> {
    /// Decoder: float32 `[b, s]` for the rotary embedding. Encoder: int64 `[1, s]` (absolute,
    /// broadcast over the batch) for the position table.
    pub positions: T,
    pub mask: AttentionMask<T>,
}

/// A decoder step over `s` new tokens after the cached ones.
///
/// # Shapes
/// `attention_mask`: int64 `[b, past + s]` of 0 / 1 (cached and new tokens); `past_keys`: any
/// layer's cached keys `[b, kv_heads, past, head_dim]`, or `None` when nothing is cached. Returns
/// positions `[b, s]` and the mask `[b, 1, s, past + s]`.
pub fn decoder_inputs<O: Ops>(
    o: &mut O,
    attention_mask: &O::T,
    past_keys: Option<&O::T>,
) -> Result<PreparedInputs<O::T>> {
    let real = o.cast_f32(attention_mask)?;
    // Position of a token: how many real tokens come before it (0 for padding).
    let counted = o.cumsum(&real, 1)?;
    let from_zero = o.add_scalar(&counted, -1.0)?;
    let all_positions = o.clamp_min(&from_zero, 0.0)?;
    // Absolute key indices 0..past+s, and the new tokens' (query) indices past..past+s.
    let first_row = o.slice(attention_mask, 0, 0, 1)?;
    let first_row = o.reshape(&first_row, &[-1])?;
    let keys = o.arange_like(&first_row)?;
    let (positions, queries) = match past_keys {
        Some(past) => (
            o.slice_after(&all_positions, 1, past, PAST_AXIS)?,
            o.slice_after(&keys, 0, past, PAST_AXIS)?,
        ),
        None => (all_positions, o.share(&keys)),
    };
    let query_column = o.unsqueeze(&queries, 1)?; // [s, 1]
    let key_row = o.unsqueeze(&keys, 0)?; // [1, t]
    let causal = o.less_equal(&key_row, &query_column)?; // [s, t]
    let real_keys = padding_keep(o, &real)?; // [b, 1, 1, t]
    let keep = o.and(&real_keys, &causal)?; // [b, 1, s, t]
    Ok(PreparedInputs {
        positions,
        mask: AttentionMask {
            additive: o.where_scalars(&keep, 0.0, f64::from(MASKED))?,
        },
    })
}

/// A bidirectional encoder over a padded batch.
///
/// # Shapes
/// `attention_mask`: int64 `[b, s]` of 0 / 1. Returns positions `[1, s]` (int64) and the mask
/// `[b, 1, 1, s]`.
pub fn encoder_inputs<O: Ops>(o: &mut O, attention_mask: &O::T) -> Result<PreparedInputs<O::T>> {
    let first_row = o.slice(attention_mask, 0, 0, 1)?;
    let first_row = o.reshape(&first_row, &[-1])?;
    let indices = o.arange_like(&first_row)?;
    let real = o.cast_f32(attention_mask)?;
    let keep = padding_keep(o, &real)?;
    Ok(PreparedInputs {
        positions: o.unsqueeze(&indices, 0)?,
        mask: AttentionMask {
            additive: o.where_scalars(&keep, 0.0, f64::from(MASKED))?,
        },
    })
}

/// Boolean `[b, 1, 1, t]`: which keys are real tokens, from the float 0/1 mask `[b, t]`.
fn padding_keep<O: Ops>(o: &mut O, real: &O::T) -> Result<O::T> {
    let keep = o.eq_scalar(real, 1.0)?;
    let keep = o.unsqueeze(&keep, 1)?;
    o.unsqueeze(&keep, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShapeOps;

    #[test]
    fn decoder_shapes_cover_the_cached_and_the_new_tokens() {
        let mut o = ShapeOps;
        let past = vec![2, 3, 5, 64];
        let out = decoder_inputs(&mut o, &vec![2, 8], Some(&past)).expect("prepares");
        assert_eq!(out.positions, vec![2, 3]);
        assert_eq!(out.mask.additive, vec![2, 1, 3, 8]);
        let prefill = decoder_inputs(&mut o, &vec![2, 8], None).expect("prepares");
        assert_eq!(prefill.positions, vec![2, 8]);
        assert_eq!(prefill.mask.additive, vec![2, 1, 8, 8]);
    }

    #[test]
    fn encoder_shapes_broadcast_positions_over_the_batch() {
        let out = encoder_inputs(&mut ShapeOps, &vec![3, 7]).expect("prepares");
        assert_eq!(out.positions, vec![1, 7]);
        assert_eq!(out.mask.additive, vec![3, 1, 1, 7]);
    }
}
