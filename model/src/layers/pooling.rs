//! Sentence-encoder pooling: token states `[b, t, h]` -> one vector per text `[b, h]`, optionally
//! L2-normalised (sentence-transformers' `Normalize` module).

use crate::{Ops, Result};

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Pooling {
    /// Mean over real (unpadded) tokens.
    Mean,
    /// The first token's state.
    Cls,
    /// The last token's state (decoder encoders; texts are left-padded so it is the last real one).
    LastToken,
}

/// Pools `states` `[b, t, h]` with the 0/1 float `mask` `[b, t, 1]`; returns `[b, h]`.
pub fn pool<O: Ops>(o: &mut O, states: &O::T, mask: &O::T, pooling: Pooling, normalize: bool) -> Result<O::T> {
    let pooled = match pooling {
        Pooling::Mean => {
            let masked = o.mul(states, mask)?;
            let summed = o.sum_keepdim(&masked, 1)?; // [b, 1, h]
            let count = o.sum_keepdim(mask, 1)?; // [b, 1, 1]
            let count = o.clamp_min(&count, 1e-9)?;
            o.div(&summed, &count)?
        }
        Pooling::Cls => o.slice(states, 1, 0, 1)?,
        Pooling::LastToken => o.slice(states, 1, -1, i64::MAX)?,
    };
    let pooled = o.reshape(&pooled, &[0, -1])?;
    if !normalize {
        return Ok(pooled);
    }
    let sq = o.mul(&pooled, &pooled)?;
    let norm = o.sum_keepdim(&sq, -1)?;
    let norm = o.sqrt(&norm)?;
    let norm = o.clamp_min(&norm, 1e-12)?;
    o.div(&pooled, &norm)
}
