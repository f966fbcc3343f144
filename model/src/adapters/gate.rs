//! Router logits -> gates, for every gate mode. Top-k is k rounds of argmax (ties go to the
//! lowest expert index in every backend), so it needs no data-dependent shapes.

use crate::config::GateMode;
use crate::{Ops, Result};

/// Large enough to push a chosen logit below every other one.
const EXCLUDE: f64 = -1e30;

/// The routing decision for a batch of tokens.
#[derive(Debug, Clone)]
pub struct Routing<T> {
    /// `[.., E]`: the weight of every expert (exactly 0 for experts not selected, except in
    /// `Soft` mode where all are used).
    pub gates: T,
    /// `[.., E]`: 1 for the k selected experts, else 0.
    pub selected: T,
    /// `[.., k]` int64: the selected experts, strongest first.
    pub experts: T,
    /// `[.., k]`: the gates of `experts`.
    pub topk_gates: T,
    /// `[.., E]`: what the experts are ranked by, for every expert (router logits in
    /// `TopkSoftmax`, their softmax otherwise). Two experts whose scores are nearly equal are a
    /// near-tie: the order between them is at the mercy of the last bits of the kernels.
    pub scores: T,
}

/// Turns router `logits` `[.., E]` into gates with `mode`, selecting `k` experts - or, with
/// `forced` (`[.., k]` int64, strongest first), replaying a recorded selection: the experts are
/// the given ones, their gates computed from the live `logits` exactly as for a selection of its
/// own, so gradients still reach the router (router replay, as R3 does for RL on mixtures).
pub fn route<O: Ops>(
    o: &mut O,
    logits: &O::T,
    mode: GateMode,
    k: usize,
    experts: usize,
    forced: Option<&O::T>,
) -> Result<Routing<O::T>> {
    // Scores whose top-k is taken: logits, or softmax probabilities (same order, same ties).
    let scores = match mode {
        GateMode::DoubleSoftmax | GateMode::Soft => o.softmax_last(logits)?,
        GateMode::TopkSoftmax => o.share(logits),
    };
    let mut remaining = o.share(&scores);
    let (mut idx, mut hots, mut vals) = (Vec::with_capacity(k), Vec::with_capacity(k), Vec::with_capacity(k));
    for _ in 0..k {
        let i = match forced {
            Some(f) => o.slice(f, -1, idx.len() as i64, idx.len() as i64 + 1)?,
            None => o.argmax_last(&remaining)?, // [.., 1]
        };
        let hot = o.one_hot(&i, experts)?; // [.., E]
        let picked = o.mul(&scores, &hot)?;
        vals.push(o.sum_keepdim(&picked, -1)?); // [.., 1]
        let push_down = o.scale(&hot, EXCLUDE)?;
        remaining = o.add(&remaining, &push_down)?;
        idx.push(i);
        hots.push(hot);
    }
    let idx_refs: Vec<&O::T> = idx.iter().collect();
    let experts_t = o.concat(&idx_refs, -1)?;
    let hot_refs: Vec<&O::T> = hots.iter().collect();
    let mut selected = o.share(hot_refs[0]);
    for h in &hot_refs[1..] {
        selected = o.add(&selected, h)?;
    }
    let val_refs: Vec<&O::T> = vals.iter().collect();
    let topk_scores = o.concat(&val_refs, -1)?; // [.., k]
    match mode {
        GateMode::Soft => Ok(Routing {
            gates: o.share(&scores),
            selected,
            experts: experts_t,
            topk_gates: topk_scores,
            scores,
        }),
        GateMode::TopkSoftmax | GateMode::DoubleSoftmax => {
            let topk_gates = o.softmax_last(&topk_scores)?;
            let mut gates = None;
            for (j, hot) in hots.iter().enumerate() {
                let g = o.slice(&topk_gates, -1, j as i64, j as i64 + 1)?;
                let term = o.mul(&g, hot)?;
                gates = Some(match gates {
                    None => term,
                    Some(acc) => o.add(&acc, &term)?,
                });
            }
            let gates = gates.ok_or_else(|| crate::Error::Config {
                field: "top_k",
                reason: "must be at least 1".into(),
            })?;
            Ok(Routing {
                gates,
                selected,
                experts: experts_t,
                topk_gates,
                scores,
            })
        }
    }
}
