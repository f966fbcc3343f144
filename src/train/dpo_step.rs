//! One DPO micro-batch (see [`super::dpo`] for the loss): chosen and rejected rows of the batch's
//! pairs in one forward of the policy, the reference's log-probabilities once without
//! gradients; and the measurement of a trained model on a set of pairs.

use super::dpo::{dpo_loss, DpoMetrics, ReferenceModel};
use super::examples::{Example, Pair};
use super::sft::{MicroStep, SftRun, StageMetrics};
use crate::tch_ops::TchOps;
use crate::Result;
use tch::{Kind, Tensor};

/// How a model ranks the replies of a set of pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairMetrics {
    pub pairs: usize,
    /// What the rewards are measured against.
    pub reference: ReferenceModel,
    /// Implicit rewards `beta * (logp - ref)`, their margin and preference accuracy.
    pub rewards: DpoMetrics,
    /// Reference-free: the share of pairs whose chosen reply is the more likely one.
    pub logp_accuracy: f64,
    /// Mean of `logp_chosen - logp_rejected` (nats).
    pub logp_margin: f64,
}

impl SftRun {
    /// One DPO micro-batch over the pairs `units`; backpropagates `loss / accum`.
    pub(super) fn dpo_micro(&mut self, units: &[usize], accum: f64) -> Result<MicroStep> {
        let device = self.model.device;
        let mixed = self.config.mixed_precision(device);
        // Chosen rows first, then the rejected ones: 2B rows in one forward.
        // (Owned: the reference forward swaps the run's adapters.)
        let pairs: Vec<Pair> = units.iter().map(|&u| self.pairs[u].clone()).collect();
        let rows: Vec<&Example> = pairs
            .iter()
            .map(|p| &p.chosen)
            .chain(pairs.iter().map(|p| &p.rejected))
            .collect();
        // Dropout off: at the first step the policy equals the reference exactly.
        let mut o = TchOps {
            train: false,
            ..TchOps::training(device, mixed)
        };
        let f = self.forward_targets(&mut o, &rows, None, 1.0)?;
        let policy = f.sequence_logprobs()?;
        let reference = tch::no_grad(|| self.reference_logprobs(&mut o, &rows))?;
        let b = pairs.len() as i64;
        let dpo = &self.config.dpo;
        let l = dpo_loss(
            &policy.f_narrow(0, 0, b)?,
            &policy.f_narrow(0, b, b)?,
            &reference.f_narrow(0, 0, b)?,
            &reference.f_narrow(0, b, b)?,
            dpo.beta,
            dpo.label_smoothing,
        )?;
        let metrics = DpoMetrics::of(&l)?;
        self.finish_micro(l.loss, &f, accum, StageMetrics::Dpo(metrics))
    }

    /// The reference model's sequence log-probabilities of `rows`.
    fn reference_logprobs(&mut self, o: &mut TchOps, rows: &[&Example]) -> Result<Tensor> {
        self.with_reference(|run| {
            run.forward_targets(o, rows, None, 1.0)
                .and_then(|f| f.sequence_logprobs())
        })
    }

    /// The policy's and the reference's sequence log-probabilities on every pair of the run, in
    /// batches, without gradients or dropout.
    pub fn pair_metrics(&mut self) -> Result<PairMetrics> {
        let device = self.model.device;
        let (mut chosen, mut rejected, mut logp_margins) = (Vec::new(), Vec::new(), Vec::new());
        let pairs = self.pairs.clone();
        for batch in pairs.chunks(self.config.batch_size) {
            let rows: Vec<&Example> = batch
                .iter()
                .map(|p| &p.chosen)
                .chain(batch.iter().map(|p| &p.rejected))
                .collect();
            let mut o = TchOps::new(device);
            let (policy, reference) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                let policy = self.forward_targets(&mut o, &rows, None, 1.0)?.sequence_logprobs()?;
                Ok((policy, self.reference_logprobs(&mut o, &rows)?))
            })?;
            let b = batch.len() as i64;
            let (pc, pr) = (policy.f_narrow(0, 0, b)?, policy.f_narrow(0, b, b)?);
            let l = dpo_loss(
                &pc,
                &pr,
                &reference.f_narrow(0, 0, b)?,
                &reference.f_narrow(0, b, b)?,
                self.config.dpo.beta,
                0.0,
            )?;
            let values = |t: &Tensor| -> Result<Vec<f64>> { Ok(Vec::<f64>::try_from(t.f_to_kind(Kind::Double)?)?) };
            chosen.extend(values(&l.chosen_rewards)?);
            rejected.extend(values(&l.rejected_rewards)?);
            logp_margins.extend(values(&pc.f_sub(&pr)?)?);
        }
        let n = chosen.len().max(1) as f64;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / n;
        let margins: Vec<f64> = chosen.iter().zip(&rejected).map(|(c, r)| c - r).collect();
        Ok(PairMetrics {
            pairs: chosen.len(),
            reference: self.config.reference,
            rewards: DpoMetrics {
                chosen_reward: mean(&chosen),
                rejected_reward: mean(&rejected),
                margin: mean(&margins),
                accuracy: margins.iter().filter(|m| **m > 0.0).count() as f64 / n,
            },
            logp_accuracy: logp_margins.iter().filter(|m| **m > 0.0).count() as f64 / n,
            logp_margin: mean(&logp_margins),
        })
    }
}
