//! Near-ties, defined once for every test that compares a ranking recorded on one machine with
//! the scores computed on another.
//!
//! The same f32 model on two CPUs (AVX2 against AVX-512 kernels, MKL's code paths) agrees to the
//! last few bits, not exactly. Where two candidates - two experts competing for a router slot,
//! two tokens competing for the argmax - score within [`NEAR_TIE`] of each other, the order
//! between them is decided by those bits, so either order is accepted. Everything else is exact.

/// Two scores `a` and `b` are a near-tie when `|a - b| <= NEAR_TIE * max(1, |a|, |b|)`: an
/// absolute tolerance of 1e-4 for gate probabilities and small router logits, relative for
/// large vocabulary logits (1.5e-3 at a logit of 15). Measured cross-CPU differences of the
/// fixtures are far below it (README, Tests).
pub const NEAR_TIE: f32 = 1e-4;

/// Whether `a` and `b` are a near-tie.
pub fn near_tie(a: f32, b: f32) -> bool {
    (a - b).abs() <= NEAR_TIE * a.abs().max(b.abs()).max(1.0)
}

/// How a recorded ranking compares with live scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// The recorded candidates are the live best ones, in the live order.
    Exact,
    /// They differ from the live order, but only where the scores are near-ties.
    NearTie,
    /// They differ where the scores are not near-ties (or the ranking is malformed).
    Differs,
}

/// The indices of `scores`, best first; equal scores go to the lower index (as the model's
/// argmax-based top-k does).
pub fn live_order(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Compares `recorded` (candidate indices, best first: the top-k experts, the top-5 tokens, or
/// one greedy token) with the live `scores` of every candidate. At each rank `j` the recorded
/// candidate must be the live one, or score within a near-tie of the live `j`-th best.
pub fn compare_ranking(recorded: &[u32], scores: &[f32]) -> Ranking {
    let live = live_order(scores);
    let mut seen = std::collections::HashSet::new();
    let mut verdict = Ranking::Exact;
    for (j, &r) in recorded.iter().enumerate() {
        let r = r as usize;
        if r >= scores.len() || j >= live.len() || !seen.insert(r) {
            return Ranking::Differs;
        }
        if r != live[j] {
            if !near_tie(scores[r], scores[live[j]]) {
                return Ranking::Differs;
            }
            verdict = Ranking::NearTie;
        }
    }
    verdict
}

/// Counts of [`Ranking`] verdicts over many decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub exact: usize,
    pub near_ties: usize,
    pub differ: usize,
}

impl Tally {
    pub fn add(&mut self, r: Ranking) {
        match r {
            Ranking::Exact => self.exact += 1,
            Ranking::NearTie => self.near_ties += 1,
            Ranking::Differs => self.differ += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.exact + self.near_ties + self.differ
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} decisions: {} exact, {} differ only at near-ties, {} differ",
            self.total(),
            self.exact,
            self.near_ties,
            self.differ
        )
    }
}
