//! The demographic-aware router (spec section 4): an MLP over concat(x_t, d), written as
//! `W_h x_t + (W_d d + b)` so the profile part is computed once per sequence, not per token.

use crate::{Init, Ops, Result, Trainables};

/// The sizes of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterDims {
    /// H: the adapted module's input size.
    pub token: usize,
    /// D: the profile vector's size (0: no demographics).
    pub profile: usize,
    /// The MLP's hidden size (256 in the paper).
    pub hidden: usize,
    /// E.
    pub experts: usize,
}

/// One router: `Linear(H + D -> hidden)`, ReLU, `Linear(hidden -> E)`, dropout before each.
#[derive(Debug, Clone)]
pub struct Router<T> {
    /// `[hidden, H]`
    pub w_token: T,
    /// `[hidden, D]`, absent when D = 0 (no demographics).
    pub w_profile: Option<T>,
    /// `[hidden]`
    pub b1: T,
    /// `[E, hidden]`
    pub w_out: T,
    /// `[E]`
    pub b_out: T,
    pub dropout: f64,
}

fn uniform(fan_in: usize) -> Init {
    Init::Uniform { bound: 1.0 / (fan_in.max(1) as f64).sqrt() }
}

impl<T> Router<T> {
    /// Fresh or restored router named `{prefix}.router.*`, with PyTorch's `nn.Linear`
    /// initialisation.
    pub fn init<O: Ops<T = T>>(o: &mut O, t: &mut impl Trainables<O>, prefix: &str, dims: RouterDims, dropout: f64) -> Result<Self> {
        let RouterDims { token: hidden_in, profile: profile_dim, hidden: mlp_hidden, experts } = dims;
        let fan_in = hidden_in + profile_dim;
        let w_profile = if profile_dim > 0 {
            Some(t.param(o, &format!("{prefix}.router.w_profile"), &[mlp_hidden, profile_dim], uniform(fan_in))?)
        } else {
            None
        };
        Ok(Self {
            w_token: t.param(o, &format!("{prefix}.router.w_token"), &[mlp_hidden, hidden_in], uniform(fan_in))?,
            w_profile,
            b1: t.param(o, &format!("{prefix}.router.b1"), &[mlp_hidden], uniform(fan_in))?,
            w_out: t.param(o, &format!("{prefix}.router.w_out"), &[experts, mlp_hidden], uniform(mlp_hidden))?,
            b_out: t.param(o, &format!("{prefix}.router.b_out"), &[experts], uniform(mlp_hidden))?,
            dropout,
        })
    }

    /// The per-sequence part `W_d d + b`.
    ///
    /// # Shapes
    /// `profile`: `[b, D]` -> `[b, 1, hidden]` (or `[hidden]` when D = 0).
    pub fn profile_part<O: Ops<T = T>>(&self, o: &mut O, profile: Option<&T>) -> Result<T> {
        match (&self.w_profile, profile) {
            (Some(w), Some(d)) => {
                let d = o.dropout(d, self.dropout)?;
                let p = o.linear(&d, w, Some(&self.b1))?;
                o.unsqueeze(&p, 1)
            }
            (None, _) => Ok(o.share(&self.b1)),
            (Some(_), None) => Err(crate::Error::Config { field: "profile", reason: "this router needs a profile vector".into() }),
        }
    }

    /// Router logits.
    ///
    /// # Shapes
    /// `x`: `[b, s, H]`; `profile_part`: from [`Router::profile_part`]; returns `[b, s, E]`.
    pub fn logits<O: Ops<T = T>>(&self, o: &mut O, x: &T, profile_part: &T) -> Result<T> {
        let x = o.dropout(x, self.dropout)?;
        let h = o.linear(&x, &self.w_token, None)?;
        let h = o.add(&h, profile_part)?;
        let h = o.relu(&h)?;
        let h = o.dropout(&h, self.dropout)?;
        o.linear(&h, &self.w_out, Some(&self.b_out))
    }

    /// Trainable parameters of one router.
    pub fn parameter_count(d: RouterDims) -> usize {
        (d.token + d.profile) * d.hidden + d.hidden + d.hidden * d.experts + d.experts
    }
}
