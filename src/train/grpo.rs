//! Group relative policy optimisation (spec section 6) with router replay. For each prompt the
//! policy samples G completions through the serving core; each gets a reward; advantages are
//! normalised within the group, `(r - mean) / (std + 1e-4)` (std over the G rewards, n - 1 in
//! the denominator, as TRL); the loss is the clipped ratio objective
//! `-min(rho A, clip(rho, 1 - eps, 1 + eps) A)` averaged over each completion's tokens and then
//! over completions, plus `beta` times the k3 estimate of the KL to the reference,
//! `exp(ref - logp) - (ref - logp) - 1`.
//!
//! The ratio `rho = pi(token) / pi_sampler(token)` compares the training forward with the
//! probabilities the sampler actually drew from (both at the sampling temperature, before top-p),
//! so any difference between sampling and training - such as a router choosing other experts in
//! the full forward than it did token by token - shows up in it. **Router replay** records every
//! router's top-k choice while sampling and forces the training forward to use it, with gates
//! recomputed from the live router so it still learns. Each step logs how many (router, token)
//! choices the training forward would have made differently.
//!
//! Rewards (`reward`):
//! - `choice`: verifiable, for multiple-choice items: 1 when the completion opens with the
//!   respondent's answer letter, else 0; with `target = group`, the share of the respondent's
//!   group (the attributes in `group_by`, default country) in the training data that chose the
//!   sampled option, so the policy is rewarded for matching the group's distribution;
//! - `judge`: the pairwise judge of [`crate::eval::judge`] against the base model's reply for
//!   the same prompt and profile: win 1, tie 0.5, loss 0; a completion the judge could not
//!   settle gets no reward and no advantage (it is left out of its group's statistics).

use crate::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Where rewards come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RewardKind {
    /// The sampled answer letter against the survey (no judge).
    #[default]
    Choice,
    /// A pairwise judge against the base model's reply.
    Judge,
}

/// What the choice reward compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RewardTarget {
    /// The respondent's own answer.
    #[default]
    Respondent,
    /// The answer distribution of the respondent's group.
    Group,
}

/// GRPO settings (`[grpo]` in a training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Completions per prompt (G).
    pub group_size: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// The most tokens a completion may have.
    pub max_completion: usize,
    /// The clipping range of the ratio.
    pub epsilon: f64,
    /// Weight of the KL penalty to the reference (0: none, TRL's default).
    pub kl_beta: f64,
    pub reward: RewardKind,
    pub target: RewardTarget,
    /// The attributes that make a respondent's group for `target = group`.
    pub group_by: Vec<String>,
    /// Replay the sampler's expert choices in the training forward.
    pub router_replay: bool,
    /// Weight of the routers' balance loss.
    pub balance_lambda: f64,
    /// The judge for `reward = judge`: an OpenAI-compatible base URL (none: the rule judge).
    pub judge_url: Option<String>,
    pub judge_model: String,
    /// Extra attempts after a failed judge request.
    pub judge_retries: usize,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            temperature: 1.0,
            top_p: 1.0,
            max_completion: 16,
            epsilon: 0.2,
            kl_beta: 0.0,
            reward: RewardKind::Choice,
            target: RewardTarget::Respondent,
            group_by: vec!["country".into()],
            router_replay: true,
            balance_lambda: 0.001,
            judge_url: None,
            judge_model: "judge".into(),
            judge_retries: 2,
        }
    }
}

impl GrpoConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.group_size < 2 || self.group_size > 1024 {
            return Err(format!("grpo.group_size must be 2 to 1024, got {}", self.group_size));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "grpo.temperature must be positive (sampling), got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("grpo.top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.max_completion == 0 || self.max_completion > 1 << 16 {
            return Err(format!(
                "grpo.max_completion must be 1 to 65536, got {}",
                self.max_completion
            ));
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            return Err(format!("grpo.epsilon must be in (0, 1), got {}", self.epsilon));
        }
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if !non_negative(self.kl_beta) || !non_negative(self.balance_lambda) {
            return Err("grpo.kl_beta and grpo.balance_lambda must be non-negative".into());
        }
        if self.target == RewardTarget::Group && self.group_by.is_empty() {
            return Err("grpo.group_by must name at least one attribute for target = group".into());
        }
        Ok(())
    }
}

/// Group-normalised advantages: `rewards` holds consecutive groups of `group` values; `None`
/// (a completion without a reward) gets advantage 0 and stays out of its group's mean and std.
/// A group whose rewards are all equal has advantages 0.
pub fn group_advantages(rewards: &[Option<f64>], group: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group.max(1)) {
        let known: Vec<f64> = g.iter().flatten().copied().collect();
        let n = known.len() as f64;
        let mean = known.iter().sum::<f64>() / n.max(1.0);
        let std = if known.len() > 1 {
            (known.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        out.extend(g.iter().map(|r| r.map_or(0.0, |r| (r - mean) / (std + 1e-4))));
    }
    out
}

/// The clipped objective and its statistics.
pub struct Clipped {
    /// The loss (a scalar): minus the clipped surrogate, averaged per completion then overall.
    pub loss: Tensor,
    /// Share of tokens whose ratio lies outside `[1 - eps, 1 + eps]`.
    pub clip_fraction: f64,
}

/// The clipped ratio objective over completion tokens. `logp`, `old_logp`: `[tokens]`;
/// `advantages`: `[tokens]` (each token carries its completion's advantage); `rows`: `[tokens]`
/// (int64, the completion of each token) of `n_rows` completions.
pub fn clipped_objective(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    rows: &Tensor,
    n_rows: usize,
    epsilon: f64,
) -> Result<Clipped> {
    let ratio = logp.f_sub(&old_logp.f_detach()?)?.f_exp()?;
    let unclipped = ratio.f_mul(advantages)?;
    let clipped = ratio.f_clamp(1.0 - epsilon, 1.0 + epsilon)?.f_mul(advantages)?;
    let per_token = unclipped.f_minimum(&clipped)?.f_neg()?;
    let loss = per_completion_mean(&per_token, rows, n_rows)?;
    let outside = ratio
        .f_sub_scalar(1.0)?
        .f_abs()?
        .f_gt(epsilon)?
        .f_to_kind(Kind::Float)?
        .f_mean(Kind::Float)?
        .f_double_value(&[])?;
    Ok(Clipped {
        loss,
        clip_fraction: outside,
    })
}

/// The mean over completions of each completion's mean over its tokens.
pub fn per_completion_mean(per_token: &Tensor, rows: &Tensor, n_rows: usize) -> Result<Tensor> {
    let opts = (Kind::Float, per_token.device());
    let sums = Tensor::f_zeros([n_rows as i64], opts)?.f_index_add(0, rows, per_token)?;
    let counts = Tensor::f_zeros([n_rows as i64], opts)?.f_index_add(0, rows, &Tensor::f_ones_like(per_token)?)?;
    Ok(sums.f_div(&counts.f_clamp_min(1.0)?)?.f_mean(Kind::Float)?)
}

/// The k3 estimate of KL(policy || reference) per token: `exp(ref - logp) - (ref - logp) - 1`.
pub fn k3(logp: &Tensor, ref_logp: &Tensor) -> Result<Tensor> {
    let d = ref_logp.f_detach()?.f_sub(logp)?;
    Ok(d.f_exp()?.f_sub(&d)?.f_sub_scalar(1.0)?)
}

/// The per-step GRPO figures of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpoMetrics {
    pub reward_mean: f64,
    /// Mean over groups of the rewards' standard deviation.
    pub reward_std: f64,
    /// Completions without a reward (judge failures).
    pub unrewarded: usize,
    /// Mean k3 KL to the reference per completion token.
    pub kl: f64,
    pub clip_fraction: f64,
    /// Mean completion length in tokens.
    pub completion_tokens: f64,
    /// Share of (router, completion token) choices on which the training forward's own top-k
    /// differs from the sampler's.
    pub routing_disagreement: f64,
}

impl GrpoMetrics {
    /// The running mean over micro-batches: adds `other / n` (counts add up).
    pub fn accumulate(&mut self, other: &Self, n: f64) {
        self.reward_mean += other.reward_mean / n;
        self.reward_std += other.reward_std / n;
        self.unrewarded += other.unrewarded;
        self.kl += other.kl / n;
        self.clip_fraction += other.clip_fraction / n;
        self.completion_tokens += other.completion_tokens / n;
        self.routing_disagreement += other.routing_disagreement / n;
    }
}

/// Mean over groups of the sample standard deviation of the known rewards.
pub fn mean_group_std(rewards: &[Option<f64>], group: usize) -> f64 {
    let stds: Vec<f64> = rewards
        .chunks(group.max(1))
        .map(|g| {
            let known: Vec<f64> = g.iter().flatten().copied().collect();
            if known.len() < 2 {
                return 0.0;
            }
            let mean = known.iter().sum::<f64>() / known.len() as f64;
            (known.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (known.len() - 1) as f64).sqrt()
        })
        .collect();
    stds.iter().sum::<f64>() / stds.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_normalised_within_each_group() {
        // Group 1: 1, 0, 0, 1 -> mean 0.5, std (n-1) = sqrt(1/3).
        let a = group_advantages(
            &[
                Some(1.0),
                Some(0.0),
                Some(0.0),
                Some(1.0),
                Some(2.0),
                Some(2.0),
                None,
                Some(2.0),
            ],
            4,
        );
        let s = (1.0f64 / 3.0).sqrt() + 1e-4;
        for (got, want) in a.iter().zip([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0, 0.0]) {
            assert!((got - want).abs() < 1e-9, "{a:?}");
        }
        // A missing reward stays out: 1, 0, (none), 0 -> mean 1/3.
        let b = group_advantages(&[Some(1.0), Some(0.0), None, Some(0.0)], 4);
        assert_eq!(b[2], 0.0);
        assert!(b[0] > 0.0 && b[1] < 0.0 && (b[1] - b[3]).abs() < 1e-12);
        assert!(
            (mean_group_std(&[Some(1.0), Some(0.0), Some(0.0), Some(1.0)], 4) - (1.0f64 / 3.0).sqrt()).abs() < 1e-12
        );
    }

    #[test]
    fn the_clipped_objective_by_hand() {
        // Two completions: row 0 has tokens with ratios e^0.5 (clipped to 1.2) and 1; row 1 one
        // token with ratio e^-0.5 (A < 0: -min(rho A, clip A) = -max(...)).
        let logp = Tensor::from_slice(&[0.0f32, -1.0, -2.0]).set_requires_grad(true);
        let old = Tensor::from_slice(&[-0.5f32, -1.0, -1.5]);
        let adv = Tensor::from_slice(&[1.0f32, 1.0, -2.0]);
        let rows = Tensor::from_slice(&[0i64, 0, 1]);
        let c = clipped_objective(&logp, &old, &adv, &rows, 2, 0.2).expect("objective");
        let r = (-0.5f64).exp();
        // Row 0: tokens -min(1.6487, 1.2) = -1.2 and -1 -> mean -1.1. Row 1: -min(r * -2, 0.8 * -2)
        // = 2 * max(r, 0.8) = 2 * 0.8 = 1.6 (r = 0.6065 < 0.8: the clipped value is the min).
        let row1 = -f64::min(r * -2.0, 0.8 * -2.0);
        let want = (-1.1 + row1) / 2.0;
        assert!(
            (c.loss.double_value(&[]) - want).abs() < 1e-6,
            "{} vs {want}",
            c.loss.double_value(&[])
        );
        // (An f32 mean.)
        assert!((c.clip_fraction - 2.0 / 3.0).abs() < 1e-6, "{}", c.clip_fraction);
        // Gradient only where the ratio is not clipped: token 1 (ratio 1, A = 1) and token 2 (its
        // unclipped term is the min there).
        c.loss.backward();
        let g: Vec<f32> = Vec::try_from(logp.grad()).expect("grad");
        assert_eq!(g[0], 0.0, "clipped token");
        assert!((g[1] as f64 + 0.25).abs() < 1e-6, "{g:?}");
        assert!(g[2] == 0.0, "{g:?}");
    }

    #[test]
    fn k3_is_zero_at_equality_and_positive_elsewhere() {
        let logp = Tensor::from_slice(&[-1.0f32, -2.0]);
        assert_eq!(
            k3(&logp, &logp).expect("k3").abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        let v: Vec<f32> = Vec::try_from(k3(&logp, &Tensor::from_slice(&[-1.5f32, -1.0])).expect("k3")).expect("values");
        assert!((v[0] as f64 - ((-0.5f64).exp() + 0.5 - 1.0)).abs() < 1e-6 && v[1] > 0.0);
    }

    #[test]
    fn settings_are_checked() {
        assert!(GrpoConfig::default().validate().is_ok());
        for bad in [
            GrpoConfig {
                group_size: 1,
                ..Default::default()
            },
            GrpoConfig {
                temperature: 0.0,
                ..Default::default()
            },
            GrpoConfig {
                epsilon: 1.5,
                ..Default::default()
            },
            GrpoConfig {
                target: RewardTarget::Group,
                group_by: vec![],
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
