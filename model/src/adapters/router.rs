//! The demographic-aware router (spec section 4): an MLP over concat(x_t, d), written as
//! `W_h x_t + (W_d d + b)` so the profile part is computed once per sequence, not per token.

use crate::{Init, Ops, Result, Trainables};

/// What the routers of a forward read about the user.
#[derive(Debug, Clone)]
pub enum ProfileInput<T> {
    /// The profile vector `[b, D]`: each router computes its term `W_d d + b` in the forward.
    Vector(T),
    /// Every router's term computed ahead ([`crate::adapters::DecoderAdapters::profile_terms`]),
    /// `[b, 1, P]`, P the sum of the routers' first-layer widths, cut into every router's part by
    /// one split ([`crate::adapters::DecoderAdapters::profile_parts`]).
    /// What a served decoder takes, so the term is computed once per profile, not per step.
    Terms(T),
}

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

/// One router: `Linear(H + D -> hidden)`, ReLU, `Linear(hidden -> E)`, dropout before each;
/// or, with hidden size 0, the single layer `Linear(H + D -> E)`.
#[derive(Debug, Clone)]
pub struct Router<T> {
    /// `[hidden, H]` (`[E, H]` for a single-layer router)
    pub w_token: T,
    /// `[hidden, D]`, absent when D = 0 (no demographics).
    pub w_profile: Option<T>,
    /// `[hidden]` (`[E]`)
    pub b1: T,
    /// The second layer `[E, hidden]` and its bias `[E]`; absent for a single-layer router.
    pub out: Option<(T, T)>,
    pub dropout: f64,
    /// The first layer's width: `hidden`, or E for a single-layer router.
    pub width: usize,
}

fn uniform(fan_in: usize) -> Init {
    Init::Uniform {
        bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
    }
}

impl<T> Router<T> {
    /// Fresh or restored router (`w_token`, `w_profile`, `b1`, `w_out`, `b_out` in `t`, a store
    /// seen under the router's path), with PyTorch's `nn.Linear` initialisation.
    pub fn init<O: Ops<T = T>>(o: &mut O, t: &mut impl Trainables<O>, dims: RouterDims, dropout: f64) -> Result<Self> {
        let RouterDims {
            token: hidden_in,
            profile: profile_dim,
            hidden: mlp_hidden,
            experts,
        } = dims;
        let fan_in = hidden_in + profile_dim;
        let first = if mlp_hidden == 0 { experts } else { mlp_hidden };
        let w_profile = if profile_dim > 0 {
            Some(t.param(o, "w_profile", &[first, profile_dim], uniform(fan_in))?)
        } else {
            None
        };
        let w_token = t.param(o, "w_token", &[first, hidden_in], uniform(fan_in))?;
        let b1 = t.param(o, "b1", &[first], uniform(fan_in))?;
        let out = if mlp_hidden == 0 {
            None
        } else {
            Some((
                t.param(o, "w_out", &[experts, mlp_hidden], uniform(mlp_hidden))?,
                t.param(o, "b_out", &[experts], uniform(mlp_hidden))?,
            ))
        };
        Ok(Self {
            w_token,
            w_profile,
            b1,
            out,
            dropout,
            width: first,
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
            (Some(_), None) => Err(crate::Error::Config {
                field: "profile",
                reason: "this router needs a profile vector".into(),
            }),
        }
    }

    /// Router logits.
    ///
    /// # Shapes
    /// `x`: `[b, s, H]`; `profile_part`: from [`Router::profile_part`]; returns `[b, s, E]`.
    pub fn logits<O: Ops<T = T>>(&self, o: &mut O, x: &T, profile_part: &T) -> Result<T> {
        let x = o.dropout(x, self.dropout)?;
        let h = o.linear(&x, &self.w_token, None)?;
        self.logits_from_token_part(o, &h, profile_part)
    }

    /// [`Router::logits`] from the token part `dropout(x) W_h^T` (`[b, s, hidden]`), computed by
    /// the caller (for example in one MatMul with other matrices that read the same input).
    pub fn logits_from_token_part<O: Ops<T = T>>(&self, o: &mut O, token_part: &T, profile_part: &T) -> Result<T> {
        let h = o.add(token_part, profile_part)?;
        let Some((w_out, b_out)) = &self.out else { return Ok(h) };
        let h = o.relu(&h)?;
        let h = o.dropout(&h, self.dropout)?;
        o.linear(&h, w_out, Some(b_out))
    }

    /// Trainable parameters of one router.
    pub fn parameter_count(d: RouterDims) -> usize {
        if d.hidden == 0 {
            return (d.token + d.profile) * d.experts + d.experts;
        }
        (d.token + d.profile) * d.hidden + d.hidden + d.hidden * d.experts + d.experts
    }
}
