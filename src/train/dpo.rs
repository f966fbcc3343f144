//! Direct preference optimisation (spec section 6): the sigmoid loss
//! `-log sigmoid(beta * [(logp_c - logp_r) - (ref_c - ref_r)])` over sequence log-probabilities
//! (sums over the completion tokens), with optional label smoothing (the conservative DPO of
//! Mitchell 2023: `(1 - eps) * loss(z) + eps * loss(-z)`), and the implicit rewards
//! `beta * (logp - ref)` the per-step log reports.
//!
//! Choices where the spec is silent, as the trainer implements them:
//! - the reference is the SFT model the policy starts from, frozen (`reference = "base"` runs the
//!   bare backbone instead, as the reference code does); its log-probabilities are computed once
//!   per batch, without gradients, in the same padded batch as the policy's;
//! - dropout is off in both forwards (as TRL's `disable_dropout`), so at the first step the
//!   policy equals the reference exactly and the loss is ln 2;
//! - preference accuracy counts a pair when the chosen reward is strictly above the rejected one
//!   (0 at the first step);
//! - the routers' balance loss has its own weight, `dpo.balance_lambda` (default 0.001, TRL's
//!   default router loss coefficient for mixtures of experts).

pub use super::config::ReferenceModel;
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// DPO settings (`[dpo]` in a training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    pub beta: f64,
    /// Probability that a label is flipped (0: the plain sigmoid loss).
    pub label_smoothing: f64,
    /// Weight of the routers' balance loss during DPO.
    pub balance_lambda: f64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            label_smoothing: 0.0,
            balance_lambda: 0.001,
        }
    }
}

/// The learning rate of the paper's DPO stage.
pub const DPO_LR: f64 = 5e-6;

impl DpoConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(format!("dpo.beta must be positive, got {}", self.beta));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(format!(
                "dpo.label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            ));
        }
        if !(self.balance_lambda >= 0.0 && self.balance_lambda.is_finite()) {
            return Err(format!(
                "dpo.balance_lambda must be non-negative, got {}",
                self.balance_lambda
            ));
        }
        Ok(())
    }
}

/// The loss of a batch of pairs and its implicit rewards.
pub struct DpoLoss {
    /// Mean over the pairs (a scalar, differentiable through the policy).
    pub loss: Tensor,
    /// `beta * (logp_c - ref_c)` per pair, detached.
    pub chosen_rewards: Tensor,
    /// `beta * (logp_r - ref_r)` per pair, detached.
    pub rejected_rewards: Tensor,
}

/// The DPO loss from sequence log-probabilities, one value per pair in each tensor. The
/// reference tensors carry no gradient (the caller computes them without).
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
    label_smoothing: f64,
) -> Result<DpoLoss> {
    let policy = policy_chosen.f_sub(policy_rejected)?;
    let reference = reference_chosen.f_sub(reference_rejected)?.f_detach()?;
    let z = policy.f_sub(&reference)?.f_mul_scalar(beta)?;
    let loss = z
        .f_log_sigmoid()?
        .f_mul_scalar(-(1.0 - label_smoothing))?
        .f_sub(&z.f_neg()?.f_log_sigmoid()?.f_mul_scalar(label_smoothing)?)?
        .f_mean(Kind::Float)?;
    let reward = |p: &Tensor, r: &Tensor| -> Result<Tensor> { Ok(p.f_sub(r)?.f_mul_scalar(beta)?.f_detach()?) };
    Ok(DpoLoss {
        loss,
        chosen_rewards: reward(policy_chosen, reference_chosen)?,
        rejected_rewards: reward(policy_rejected, reference_rejected)?,
    })
}

/// The per-step DPO figures of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DpoMetrics {
    /// Mean implicit reward of the chosen replies.
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Mean of chosen minus rejected reward.
    pub margin: f64,
    /// Share of pairs whose chosen reward is strictly above the rejected one.
    pub accuracy: f64,
}

impl DpoMetrics {
    /// The figures of one batch.
    pub fn of(l: &DpoLoss) -> Result<Self> {
        let mean = |t: &Tensor| -> Result<f64> { Ok(t.f_mean(Kind::Float)?.f_double_value(&[])?) };
        let margin = l.chosen_rewards.f_sub(&l.rejected_rewards)?;
        Ok(Self {
            chosen_reward: mean(&l.chosen_rewards)?,
            rejected_reward: mean(&l.rejected_rewards)?,
            margin: mean(&margin)?,
            accuracy: mean(&margin.f_gt(0.0)?.f_to_kind(Kind::Float)?)?,
        })
    }

    /// The running mean over micro-batches: adds `other / n`.
    pub fn accumulate(&mut self, other: &Self, n: f64) {
        self.chosen_reward += other.chosen_reward / n;
        self.rejected_reward += other.rejected_reward / n;
        self.margin += other.margin / n;
        self.accuracy += other.accuracy / n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn value(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn the_loss_matches_a_hand_computed_value() {
        // z = 0.1 * ((-1 - -2) - (-1.5 - -1.5)) = 0.1; -ln sigmoid(0.1) = ln(1 + e^-0.1).
        let l = dpo_loss(&t(&[-1.0]), &t(&[-2.0]), &t(&[-1.5]), &t(&[-1.5]), 0.1, 0.0).expect("loss");
        assert!((value(&l.loss) - 0.644_396_6).abs() < 1e-6, "{}", value(&l.loss));
        assert!((value(&l.chosen_rewards.get(0)) - 0.05).abs() < 1e-6);
        assert!((value(&l.rejected_rewards.get(0)) + 0.05).abs() < 1e-6);
        // Smoothing 0.1: 0.9 ln(1 + e^-0.1) + 0.1 ln(1 + e^0.1).
        let s = dpo_loss(&t(&[-1.0]), &t(&[-2.0]), &t(&[-1.5]), &t(&[-1.5]), 0.1, 0.1).expect("loss");
        assert!((value(&s.loss) - 0.654_396_6).abs() < 1e-6, "{}", value(&s.loss));
        let m = DpoMetrics::of(&l).expect("metrics");
        assert!((m.margin - 0.1).abs() < 1e-6 && m.accuracy == 1.0, "{m:?}");
    }

    #[test]
    fn policy_equal_to_reference_gives_ln2_and_gradients_reach_only_the_policy() {
        // The policy's log-probabilities are w * x; the reference's the same, computed without
        // gradients. Were the reference not detached, the two paths would cancel to zero.
        let w = Tensor::from_slice(&[0.7f32]).set_requires_grad(true);
        let (xc, xr) = (t(&[-3.0, -1.0]), t(&[-2.0, -4.0]));
        let (pc, pr) = (&w * &xc, &w * &xr);
        let (rc, rr) = tch::no_grad(|| (&w * &xc, &w * &xr));
        let l = dpo_loss(&pc, &pr, &rc, &rr, 0.1, 0.0).expect("loss");
        assert!((value(&l.loss) - std::f64::consts::LN_2).abs() < 1e-6);
        assert_eq!(
            DpoMetrics::of(&l).expect("metrics").accuracy,
            0.0,
            "no pair is strictly ahead"
        );
        l.loss.backward();
        // dL/dw = mean over pairs of -beta * sigmoid(-0) * (xc - xr) = -0.05 * mean(-1, 3) = -0.05.
        let g = value(&w.grad().get(0));
        assert!((g + 0.05).abs() < 1e-6, "gradient {g}");
    }

    #[test]
    fn settings_are_checked() {
        let ok = DpoConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            DpoConfig {
                beta: 0.0,
                ..ok.clone()
            },
            DpoConfig {
                label_smoothing: 0.5,
                ..ok.clone()
            },
            DpoConfig {
                balance_lambda: f64::NAN,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
