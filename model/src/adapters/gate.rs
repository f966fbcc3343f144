//! Router logits -> gates, for every gate mode. Top-k is one `TopK` in exported graphs and k
//! rounds of argmax elsewhere (ties go to the lowest expert index in every backend); neither
//! needs data-dependent shapes.

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
    // One top-k operation where the backend has it (graphs), else k rounds of argmax, each
    // pushing the chosen score below all others; the same experts and scores either way.
    let top = match forced {
        Some(_) => None,
        None => o.top_k_last(&scores, k)?,
    };
    let mut remaining = o.share(&scores);
    let (mut idx, mut hots, mut vals) = (Vec::with_capacity(k), Vec::with_capacity(k), Vec::with_capacity(k));
    for j in 0..k as i64 {
        let i = match (forced, &top) {
            (Some(f), _) => o.slice(f, -1, j, j + 1)?,
            (None, Some((_, indices))) => o.slice(indices, -1, j, j + 1)?,
            (None, None) => o.argmax_last(&remaining)?, // [.., 1]
        };
        let hot = o.one_hot(&i, experts)?; // [.., E]
        if top.is_none() {
            let picked = o.mul(&scores, &hot)?;
            vals.push(o.sum_keepdim(&picked, -1)?); // [.., 1]
            if j + 1 < k as i64 {
                let push_down = o.scale(&hot, EXCLUDE)?;
                remaining = o.add(&remaining, &push_down)?;
            }
        }
        idx.push(i);
        hots.push(hot);
    }
    let from_one_topk = top.is_some();
    let hot_refs: Vec<&O::T> = hots.iter().collect();
    let mut selected = o.share(hot_refs[0]);
    for h in &hot_refs[1..] {
        selected = o.add(&selected, h)?;
    }
    let (experts_t, topk_scores) = match top {
        Some((values, indices)) => (indices, values),
        None => {
            let idx_refs: Vec<&O::T> = idx.iter().collect();
            let val_refs: Vec<&O::T> = vals.iter().collect();
            (o.concat(&idx_refs, -1)?, o.concat(&val_refs, -1)?) // [.., k] each
        }
    };
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
            let gates = if from_one_topk {
                // One TopK gave the indices (graphs, whose logits are [b, s, E]): the gates as
                // one product of the k gates with the k one-hot rows, [b, s, 1, k] x
                // [b, s, k, E], in fewer nodes per step than k slices, one-hots and sums; the
                // same values (each gate meets one 1).
                let rows = o.unsqueeze(&experts_t, -1)?; // [.., k, 1]
                let hot_rows = o.one_hot(&rows, experts)?; // [.., k, E]
                let weights = o.unsqueeze(&topk_gates, -2)?; // [.., 1, k]
                let gates = o.matmul(&weights, &hot_rows)?;
                o.reshape(&gates, &[0, 0, -1])?
            } else {
                let mut gates = None;
                for (j, hot) in hots.iter().enumerate() {
                    let g = o.slice(&topk_gates, -1, j as i64, j as i64 + 1)?;
                    let term = o.mul(&g, hot)?;
                    gates = Some(match gates {
                        None => term,
                        Some(acc) => o.add(&acc, &term)?,
                    });
                }
                gates.ok_or_else(|| crate::Error::Config {
                    field: "top_k",
                    reason: "must be at least 1".into(),
                })?
            };
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
