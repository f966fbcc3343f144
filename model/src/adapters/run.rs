//! Applying a layer's adapters during one forward pass: router logits are computed once per
//! router (a q/k/v-shared router once for all three), gates from them, and each adapted
//! projection gets its expert update added.

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
}

impl<'a, T> LayerRun<'a, T> {
    /// Prepares layer `layer` of `all`: computes each router's profile part once. `replay`, when
    /// given, holds one recorded selection per router of the layer.
    ///
    /// # Shapes
    /// `profile`: `[b, D]` (required when the routers see demographics); `replay[r]`: `[b, s, k]`.
    pub fn start<O: Ops<T = T>>(
        o: &mut O,
        all: &'a DecoderAdapters<T>,
        layer: usize,
        profile: Option<&T>,
        replay: Option<&'a [T]>,
    ) -> Result<Self> {
        let adapters = all.layers.get(layer).ok_or_else(|| crate::Error::Config {
            field: "adapters",
            reason: format!("no adapters for layer {layer} ({} layers adapted)", all.layers.len()),
        })?;
        let profile_parts = adapters
            .routers
            .iter()
            .map(|r| r.profile_part(o, profile))
            .collect::<Result<Vec<_>>>()?;
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
        })
    }

    /// The projection `linear` of `target` applied to `x`, with its adapter when it has one:
    /// `W x + b + update(x)`, or DoRA's `m * (W + dW) x / ||W + dW|| + b`.
    ///
    /// # Shapes
    /// `x`: `[b, s, in]` -> `[b, s, out]`.
    pub fn apply<O: Ops<T = T>>(&mut self, o: &mut O, target: Target, x: &T, linear: &Linear<T>) -> Result<T> {
        let Some(module) = self.adapters.modules.iter().find(|m| m.target == target) else {
            return linear.forward(o, x);
        };
        if let Some(magnitude) = &module.magnitude {
            return dora(o, &module.bank, magnitude, x, linear);
        }
        let y = linear.forward(o, x)?;
        let gates = match module.router {
            None => None,
            Some(r) => {
                if self.routings[r].is_none() {
                    let logits = self.adapters.routers[r].logits(o, x, &self.profile_parts[r])?;
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
        let delta = module.bank.forward(o, x, gates)?;
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
