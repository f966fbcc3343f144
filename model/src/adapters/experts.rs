//! The mixture of LoRA experts in its stacked two-matmul form (spec section 3): all A_e stacked
//! into one `[E*r, in]` matrix, all B_e into one `[out, E*r]` matrix; the gate vector, repeated r
//! times, weights the E*r low-rank activations in between. Plain LoRA is the case E = 1 with the
//! gate fixed at 1.

use crate::config::{ExpertLayout, MethodConfig};
use crate::{Init, Ops, Result, Trainables};

/// Standard deviation of the A initialisation (spec: A ~ N(0, 0.01^2)).
pub const A_INIT_STD: f64 = 0.01;

/// The LoRA experts of one adapted projection.
#[derive(Debug, Clone)]
pub struct ExpertBank<T> {
    /// `[E*r, in]`, or `[r, in]` when A is shared.
    pub a: T,
    /// `[out, E*r]`.
    pub b: T,
    pub experts: usize,
    pub rank: usize,
    pub shared_a: bool,
    pub scale: f64,
    pub dropout: f64,
}

impl<T> ExpertBank<T> {
    /// Fresh (A random, B zero, so the update is exactly 0) or restored experts for a
    /// projection `in_features -> out_features`: `lora_a` / `lora_b` in `t`, a store seen under
    /// the projection's path.
    pub fn init<O: Ops<T = T>>(
        o: &mut O,
        t: &mut impl Trainables<O>,
        in_features: usize,
        out_features: usize,
        cfg: &MethodConfig,
    ) -> Result<Self> {
        let (e, r) = (cfg.experts, cfg.rank);
        let shared_a = cfg.expert_layout == ExpertLayout::SharedA && e > 1;
        let a_rows = if shared_a { r } else { e * r };
        Ok(Self {
            a: t.param(o, "lora_a", &[a_rows, in_features], Init::Normal { std: A_INIT_STD })?,
            b: t.param(o, "lora_b", &[out_features, e * r], Init::Zeros)?,
            experts: e,
            rank: r,
            shared_a,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        })
    }

    /// The update `sum_e g_e (alpha/r) B_e A_e dropout(x)`; `gates` `None` means one expert at
    /// gate 1 (plain LoRA).
    ///
    /// # Shapes
    /// `x`: `[b, s, in]`; `gates`: `[b, s, E]`; returns `[b, s, out]`.
    pub fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T, gates: Option<&T>) -> Result<T> {
        let x = o.dropout(x, self.dropout)?;
        let z = o.linear(&x, &self.a, None)?; // [b, s, E*r] or [b, s, r]
        self.from_low_rank(o, z, gates)
    }

    /// [`ExpertBank::forward`] from its first product `z = dropout(x) A^T` (`[b, s, E*r]`, or
    /// `[b, s, r]` when A is shared), computed by the caller (for example in one MatMul with
    /// other matrices that read the same input).
    pub fn from_low_rank<O: Ops<T = T>>(&self, o: &mut O, z: T, gates: Option<&T>) -> Result<T> {
        let mut z = z;
        if self.shared_a {
            let copies: Vec<&T> = std::iter::repeat_n(&z, self.experts).collect();
            z = o.concat(&copies, -1)?;
        }
        let Some(g) = gates else {
            let delta = o.linear(&z, &self.b, None)?;
            return o.scale(&delta, self.scale);
        };
        // Each gate repeated r times and multiplied by alpha/r, [b, s, E] -> [b, s, E*r], as one
        // product with the matrix that holds alpha/r where gate e goes to columns e*r..(e+1)*r
        // (one non-zero term each): the scale rides on the gates instead of costing a product
        // of its own with the [b, s, out] update.
        let (e, r) = (self.experts, self.rank);
        let mut repeat = vec![0.0f32; e * e * r];
        for (row, cols) in repeat.chunks_mut(e * r).enumerate() {
            cols[row * r..(row + 1) * r].fill(self.scale as f32);
        }
        let repeat = o.constant(&repeat, &[e, e * r])?;
        let g = o.matmul(g, &repeat)?;
        z = o.mul(&z, &g)?;
        o.linear(&z, &self.b, None)
    }

    /// Rows of A: `E*r`, or `r` when A is shared.
    pub fn a_rows(&self) -> usize {
        if self.shared_a {
            self.rank
        } else {
            self.experts * self.rank
        }
    }

    /// Trainable parameters.
    pub fn parameter_count(in_features: usize, out_features: usize, cfg: &MethodConfig) -> usize {
        let (e, r) = (cfg.experts, cfg.rank);
        let a_rows = if cfg.expert_layout == ExpertLayout::SharedA && e > 1 {
            r
        } else {
            e * r
        };
        a_rows * in_features + out_features * e * r
    }
}
