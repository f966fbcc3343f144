//! Routing traces: for every token of a request, which experts each router chose and with what
//! gates, read off a step's routing (`[routers, batch, seq, k]`, as the bundle's
//! `routing_experts` / `routing_gates` outputs). Deployments log these to audit whose values a
//! reply drew on.

use super::ServeError;
use serde::Serialize;

/// One token's routing: `experts[r]` and `gates[r]` are router `r`'s top-k choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRouting {
    pub token: u32,
    pub experts: Vec<Vec<u32>>,
    pub gates: Vec<Vec<f32>>,
}

/// The routing of one request, token by token (prompt first, then generated tokens).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RoutingTrace {
    /// Router labels, in the order of every token's `experts` / `gates`.
    pub routers: Vec<String>,
    pub tokens: Vec<TokenRouting>,
}

/// One decoder step's routing outputs, `[routers, batch, seq, k]` row-major.
#[derive(Debug, Clone, Copy)]
pub struct StepRouting<'a> {
    pub experts: &'a [i64],
    pub gates: &'a [f32],
    pub batch: usize,
    pub seq: usize,
}

impl RoutingTrace {
    /// The trace of batch row `row` of one step: the last `tokens.len()` positions, whose ids
    /// are `tokens` (left padding comes first and is skipped).
    pub fn from_step(
        routers: &[String],
        step: &StepRouting<'_>,
        row: usize,
        tokens: &[u32],
    ) -> Result<Self, ServeError> {
        let mut trace = Self {
            routers: routers.to_vec(),
            tokens: Vec::new(),
        };
        trace.append(step, row, tokens)?;
        Ok(trace)
    }

    /// Appends the last `tokens.len()` positions of batch row `row` of one step.
    pub fn append(&mut self, step: &StepRouting<'_>, row: usize, tokens: &[u32]) -> Result<(), ServeError> {
        let StepRouting {
            experts,
            gates,
            batch,
            seq,
        } = *step;
        let r = self.routers.len();
        let cells = r * batch * seq;
        if cells == 0
            || experts.len() != gates.len()
            || experts.len() % cells != 0
            || tokens.len() > seq
            || row >= batch
        {
            return Err(ServeError::Backend(format!(
                "routing outputs of {} values do not fit {r} routers x {batch} x {seq}",
                experts.len()
            )));
        }
        let from = seq - tokens.len();
        let k = experts.len() / cells;
        for (pos, &token) in (from..seq).zip(tokens) {
            let mut t = TokenRouting {
                token,
                experts: Vec::with_capacity(r),
                gates: Vec::with_capacity(r),
            };
            for router in 0..r {
                let at = ((router * batch + row) * seq + pos) * k;
                t.experts.push(experts[at..at + k].iter().map(|&e| e as u32).collect());
                t.gates.push(gates[at..at + k].to_vec());
            }
            self.tokens.push(t);
        }
        Ok(())
    }

    /// How often each expert was chosen, per router (`[router][expert]`), over all tokens.
    pub fn expert_counts(&self, experts: usize) -> Vec<Vec<usize>> {
        let mut counts = vec![vec![0; experts]; self.routers.len()];
        for t in &self.tokens {
            for (r, chosen) in t.experts.iter().enumerate() {
                for &e in chosen {
                    if let Some(c) = counts[r].get_mut(e as usize) {
                        *c += 1;
                    }
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_rows_tokens_out_of_the_batch() {
        // 2 routers, batch 2, seq 3, k 1: value = router*100 + row*10 + pos
        let mut experts = Vec::new();
        for r in 0..2 {
            for b in 0..2 {
                for p in 0..3 {
                    experts.push(r * 100 + b * 10 + p);
                }
            }
        }
        let gates: Vec<f32> = experts.iter().map(|&e| e as f32).collect();
        let routers = vec!["a".to_string(), "b".to_string()];
        let step = StepRouting {
            experts: &experts,
            gates: &gates,
            batch: 2,
            seq: 3,
        };
        let trace = RoutingTrace::from_step(&routers, &step, 1, &[7, 8]).expect("fits");
        assert_eq!(trace.tokens.len(), 2);
        assert_eq!(trace.tokens[0].experts, vec![vec![11], vec![111]]);
        assert_eq!(trace.tokens[1].token, 8);
        assert_eq!(trace.tokens[1].gates, vec![vec![12.0], vec![112.0]]);
        let short = StepRouting {
            experts: &experts[1..],
            gates: &gates[1..],
            batch: 2,
            seq: 3,
        };
        assert!(RoutingTrace::from_step(&routers, &short, 1, &[7]).is_err());
    }
}
