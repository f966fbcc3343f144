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
    if k == 0 {
        return Err(crate::Error::Config {
            field: "top_k",
            reason: "must be at least 1".into(),
        });
    }
    // Scores whose top-k is taken: logits, or softmax probabilities (same order, same ties).
    let scores = match mode {
        GateMode::DoubleSoftmax | GateMode::Soft => o.softmax_last(logits)?,
        GateMode::TopkSoftmax => o.share(logits),
    };
    // One top-k operation where the backend has it (graphs), else k rounds of argmax, each
    // pushing the chosen score below all others; the same experts and scores either way.
    if forced.is_none() {
        if let Some((values, indices)) = o.top_k_last(&scores, k)? {
            return from_top_k(o, mode, scores, values, indices, experts);
        }
    }
    let mut remaining = o.share(&scores);
    let (mut idx, mut hots, mut vals) = (Vec::with_capacity(k), Vec::with_capacity(k), Vec::with_capacity(k));
    for j in 0..k as i64 {
        let i = match forced {
            Some(f) => o.slice(f, -1, j, j + 1)?,
            None => o.argmax_last(&remaining)?, // [.., 1]
        };
        let hot = o.one_hot(&i, experts)?; // [.., E]
        let picked = o.mul(&scores, &hot)?;
        vals.push(o.sum_keepdim(&picked, -1)?); // [.., 1]
        if j + 1 < k as i64 {
            let push_down = o.scale(&hot, EXCLUDE)?;
            remaining = o.add(&remaining, &push_down)?;
        }
        idx.push(i);
        hots.push(hot);
    }
    let mut selected = o.share(&hots[0]);
    for h in &hots[1..] {
        selected = o.add(&selected, h)?;
    }
    let idx_refs: Vec<&O::T> = idx.iter().collect();
    let val_refs: Vec<&O::T> = vals.iter().collect();
    let (experts_t, topk_scores) = (o.concat(&idx_refs, -1)?, o.concat(&val_refs, -1)?); // [.., k] each
    let (gates, topk_gates) = match mode {
        GateMode::Soft => (o.share(&scores), topk_scores),
        GateMode::TopkSoftmax | GateMode::DoubleSoftmax => {
            let topk_gates = o.softmax_last(&topk_scores)?;
            let first = o.slice(&topk_gates, -1, 0, 1)?;
            let mut gates = o.mul(&first, &hots[0])?;
            for (j, hot) in hots.iter().enumerate().skip(1) {
                let g = o.slice(&topk_gates, -1, j as i64, j as i64 + 1)?;
                let term = o.mul(&g, hot)?;
                gates = o.add(&gates, &term)?;
            }
            (gates, topk_gates)
        }
    };
    Ok(Routing {
        gates,
        selected,
        experts: experts_t,
        topk_gates,
        scores,
    })
}

/// The routing from one top-k operation's `values` and `indices` (`[b, s, k]`; graphs, whose
/// logits are `[b, s, E]`): the k one-hot rows `[b, s, k, E]` built at once, the selection their
/// sum over k, and the gates one product of the k gates with them, `[b, s, 1, k] x [b, s, k, E]`:
/// fewer nodes per step than k slices, one-hots and sums, and the same values (each gate meets
/// one 1).
fn from_top_k<O: Ops>(
    o: &mut O,
    mode: GateMode,
    scores: O::T,
    values: O::T,
    indices: O::T,
    experts: usize,
) -> Result<Routing<O::T>> {
    let rows = o.unsqueeze(&indices, -1)?; // [b, s, k, 1]
    let hot_rows = o.one_hot(&rows, experts)?; // [b, s, k, E]
    let selected = o.sum_keepdim(&hot_rows, -2)?;
    let selected = o.reshape(&selected, &[0, 0, -1])?;
    let (gates, topk_gates) = match mode {
        GateMode::Soft => (o.share(&scores), values),
        GateMode::TopkSoftmax | GateMode::DoubleSoftmax => {
            let topk_gates = o.softmax_last(&values)?;
            let weights = o.unsqueeze(&topk_gates, -2)?; // [b, s, 1, k]
            let gates = o.matmul(&weights, &hot_rows)?;
            (o.reshape(&gates, &[0, 0, -1])?, topk_gates)
        }
    };
    Ok(Routing {
        gates,
        selected,
        experts: indices,
        topk_gates,
        scores,
    })
}
