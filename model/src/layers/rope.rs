//! Rotary position embeddings in the Hugging Face "rotate half" layout.

use crate::{Ops, Result};

/// Cos / sin tables for one forward pass.
#[derive(Debug, Clone)]
pub struct Rope<T> {
    /// `[b, 1, s, head_dim]`
    pub cos: T,
    /// `[b, 1, s, head_dim]`
    pub sin: T,
}

impl<T> Rope<T> {
    /// Builds the tables from float `positions` `[b, s]` and the inverse frequencies
    /// (`head_dim / 2` of them).
    pub fn from_positions<O: Ops<T = T>>(o: &mut O, positions: &T, inv_freq: &[f32]) -> Result<Self> {
        let half = inv_freq.len();
        let freq = o.constant(inv_freq, &[1, 1, half])?;
        let pos = o.unsqueeze(positions, -1)?; // [b, s, 1]
        let angles = o.mul(&pos, &freq)?; // [b, s, half]
        let angles = o.concat(&[&angles, &angles], -1)?; // [b, s, head_dim]
        let angles = o.unsqueeze(&angles, 1)?; // [b, 1, s, head_dim]
        Ok(Self {
            cos: o.cos(&angles)?,
            sin: o.sin(&angles)?,
        })
    }

    /// `x * cos + rotate_half(x) * sin` where `rotate_half([a, b]) = [-b, a]`.
    ///
    /// # Shapes
    /// `x`: `[b, heads, s, head_dim]` -> same.
    pub fn apply<O: Ops<T = T>>(&self, o: &mut O, x: &T, head_dim: usize) -> Result<T> {
        let half = (head_dim / 2) as i64;
        let first = o.slice(x, -1, 0, half)?;
        let second = o.slice(x, -1, half, 2 * half)?;
        let neg_second = o.scale(&second, -1.0)?;
        let rotated = o.concat(&[&neg_second, &first], -1)?;
        let a = o.mul(x, &self.cos)?;
        let b = o.mul(&rotated, &self.sin)?;
        o.add(&a, &b)
    }
}
