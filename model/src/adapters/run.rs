//! Applying a layer's adapters during one forward pass: router logits are computed once per
//! router (a q/k/v-shared router once for all three), gates from them, and each adapted
//! projection gets its expert update added.
//!
//! The trainable matrices that read one input tensor - the routers' token halves `W_h` and the
//! expert banks' stacked A of q, k and v (or of gate and up) - are multiplied with it in one
//! MatMul of their concatenation, under one dropout mask, the first time any of them is needed:
//! one large product instead of several narrow ones, when the backend asks for it
//! ([`Ops::fuses_shared_inputs`]): in training and in the exported graphs (there the Concat has
//! only constant inputs, which a graph optimiser folds, and one Split hands out the parts), not
//! in eager inference, where concatenating the weights again at every decode step would move as
//! many bytes as the products read.

use super::gate::{route, Routing};
use super::set::{DecoderAdapters, LayerAdapters};
use crate::config::{MethodConfig, Target};
use crate::layers::Linear;
use crate::{Ops, Result};

/// One layer's adapters for one forward pass.
pub struct LayerRun<'a, T> {
    adapters: &'a LayerAdapters<T>,
    method: &'a MethodConfig,
    /// The per-sequence profile part of each router.
    profile_parts: Vec<T>,
    /// Each router's decision, once computed.
    pub routings: Vec<Option<Routing<T>>>,
    /// Recorded selections to replay, one `[b, s, k]` per router of the layer.
    replay: Option<&'a [T]>,
    /// Each router's token half `dropout(x) W_h^T`, computed in a shared product and not yet used.
    token_parts: Vec<Option<T>>,
    /// Each module's first expert product `dropout(x) A^T`, likewise.
    low_ranks: Vec<Option<T>>,
    /// The input groups ([`Target::input_group`]) whose shared product has been computed.
    fused_groups: Vec<u8>,
}

impl<'a, T> LayerRun<'a, T> {
    /// Prepares layer `layer` of `all` with its routers' `profile_parts` (that layer's list of
    /// [`DecoderAdapters::profile_parts`]). `replay`, when given, holds one recorded selection
    /// per router of the layer.
    ///
    /// # Shapes
    /// `profile_parts[r]`: `[b, 1, width]` (or `[width]` without demographics);
    /// `replay[r]`: `[b, s, k]`.
    pub fn start(
        all: &'a DecoderAdapters<T>,
        layer: usize,
        profile_parts: Vec<T>,
        replay: Option<&'a [T]>,
    ) -> Result<Self> {
        let adapters = all.layers.get(layer).ok_or_else(|| crate::Error::Config {
            field: "adapters",
            reason: format!("no adapters for layer {layer} ({} layers adapted)", all.layers.len()),
        })?;
        if profile_parts.len() != adapters.routers.len() {
            return Err(crate::Error::Config {
                field: "profile",
                reason: format!(
                    "layer {layer} has {} routers, {} profile parts",
                    adapters.routers.len(),
                    profile_parts.len()
                ),
            });
        }
        if replay.is_some_and(|r| r.len() != adapters.routers.len()) {
            return Err(crate::Error::Config {
                field: "replay",
                reason: format!(
                    "layer {layer} has {} routers, the replay {}",
                    adapters.routers.len(),
                    replay.map_or(0, <[T]>::len)
                ),
            });
        }
        Ok(Self {
            adapters,
            method: &all.method,
            profile_parts,
            routings: (0..adapters.routers.len()).map(|_| None).collect(),
            replay,
            token_parts: (0..adapters.routers.len()).map(|_| None).collect(),
            low_ranks: (0..adapters.modules.len()).map(|_| None).collect(),
            fused_groups: Vec::new(),
        })
    }

    /// Computes, in one MatMul of `x` with their concatenation, the router token halves and
    /// expert A products of every module in `group` (DoRA's are left out; it merges its weight),
    /// when there are at least two such matrices with one dropout rate; otherwise each is
    /// computed on its own when needed. Once per group and forward.
    fn fuse_group<O: Ops<T = T>>(&mut self, o: &mut O, group: u8, x: &T) -> Result<()> {
        if self.fused_groups.contains(&group) || !o.fuses_shared_inputs() {
            return Ok(());
        }
        self.fused_groups.push(group);
        let members: Vec<usize> = (0..self.adapters.modules.len())
            .filter(|&m| {
                let module = &self.adapters.modules[m];
                module.target.input_group() == group && module.magnitude.is_none()
            })
            .collect();
        let mut routers: Vec<usize> = Vec::new();
        for &m in &members {
            if let Some(r) = self.adapters.modules[m].router {
                if self.routings[r].is_none() && !routers.contains(&r) {
                    routers.push(r);
                }
            }
        }
        let rates: Vec<f64> = routers
            .iter()
            .map(|&r| self.adapters.routers[r].dropout)
            .chain(members.iter().map(|&m| self.adapters.modules[m].bank.dropout))
            .collect();
        if rates.len() < 2 || rates.iter().any(|&p| p != rates[0]) {
            return Ok(());
        }
        let weights: Vec<&T> = routers
            .iter()
            .map(|&r| &self.adapters.routers[r].w_token)
            .chain(members.iter().map(|&m| &self.adapters.modules[m].bank.a))
            .collect();
        let widths: Vec<usize> = routers
            .iter()
            .map(|&r| self.adapters.routers[r].width)
            .chain(members.iter().map(|&m| self.adapters.modules[m].bank.a_rows()))
            .collect();
        let stacked = o.concat(&weights, 0)?;
        let xd = o.dropout(x, rates[0])?;
        let product = o.linear(&xd, &stacked, None)?;
        let mut parts = o.split_last(&product, &widths)?.into_iter();
        for &r in &routers {
            self.token_parts[r] = parts.next();
        }
        for &m in &members {
            self.low_ranks[m] = parts.next();
        }
        Ok(())
    }

    /// The projection `linear` of `target` applied to `x`, with its adapter when it has one:
    /// `W x + b + update(x)`, or DoRA's `m * (W + dW) x / ||W + dW|| + b`. Within one forward,
    /// the projections of one input group ([`Target::input_group`]) must be given the same `x`
    /// (their adapters' products with it are shared).
    ///
    /// # Shapes
    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    pub fn apply<O: Ops<T = T>>(&mut self, o: &mut O, target: Target, x: &T, linear: &Linear<T>) -> Result<T> {
        let adapters = self.adapters;
        let Some(index) = adapters.modules.iter().position(|m| m.target == target) else {
            return linear.forward(o, x);
        };
        let module = &adapters.modules[index];
        if let Some(magnitude) = &module.magnitude {
            return dora(o, &module.bank, magnitude, x, linear);
        }
        self.fuse_group(o, target.input_group(), x)?;
        let y = linear.forward(o, x)?;
        let gates = match module.router {
            None => None,
            Some(r) => {
                if self.routings[r].is_none() {
                    let router = &adapters.routers[r];
                    let logits = match self.token_parts[r].take() {
                        Some(h) => router.logits_from_token_part(o, &h, &self.profile_parts[r])?,
                        None => router.logits(o, x, &self.profile_parts[r])?,
                    };
                    self.routings[r] = Some(route(
                        o,
                        &logits,
                        self.method.gate,
                        self.method.top_k,
                        self.method.experts,
                        self.replay.and_then(|all| all.get(r)),
                    )?);
                }
                self.routings[r].as_ref().map(|rt| &rt.gates)
            }
        };
        let delta = match self.low_ranks[index].take() {
            Some(z) => module.bank.from_low_rank(o, z, gates)?,
            None => module.bank.forward(o, x, gates)?,
        };
        o.add(&y, &delta)
    }

    /// The routers' decisions, in router order (routers never reached are skipped).
    pub fn finish(self) -> Vec<Routing<T>> {
        self.routings.into_iter().flatten().collect()
    }
}

/// DoRA (spec section 8): the adapted weight `W + dW` (dW = scale * B A) renormalised per output
/// row and rescaled by the trainable magnitude.
fn dora<O: Ops>(
    o: &mut O,
    bank: &super::ExpertBank<O::T>,
    magnitude: &O::T,
    x: &O::T,
    linear: &Linear<O::T>,
) -> Result<O::T> {
    let adapted = super::merged_weight(o, &linear.weight, &bank.a, &bank.b, bank.scale)?;
    let norms = super::row_norms(o, &adapted)?; // [out]
    let factor = o.div(magnitude, &norms)?;
    let xd = o.dropout(x, bank.dropout)?;
    let y = o.linear(&xd, &adapted, None)?;
    let y = o.mul(&y, &factor)?;
    match &linear.bias {
        Some(b) => o.add(&y, b),
        None => Ok(y),
    }
}
