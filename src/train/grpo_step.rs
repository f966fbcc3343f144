//! One GRPO micro-batch (see [`super::grpo`] for the objective and rewards): sample G
//! completions per prompt through the serving core (recording routing and token log-probs),
//! reward them, normalise advantages per group, and run the training forward on prompt +
//! completion rows - with the sampler's expert choices replayed when `router_replay` is on.

use super::config::TrainConfig;
use super::examples::{context_ids, tokenize, Example};
use super::grpo::{
    clipped_objective, group_advantages, k3, mean_group_std, per_completion_mean, GrpoMetrics, RewardKind, RewardTarget,
};
use super::sft::{MicroStep, SftRun, StageMetrics};
use crate::data::{ChoiceItem, Item};
use crate::eval::judge::{judge_case, opening_letter, Case, HttpJudge, Judge, Outcome, RuleJudge};
use crate::models::Backbone;
use crate::sampling::{Rng, SamplingConfig};
use crate::serve::{generate, FinishReason, GenerateOptions, Generation};
use crate::tch_ops::TchOps;
use crate::{Error, Result};
use cuma_model::serve::routing::RoutingTrace;
use cuma_model::text::Message;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// One prompt of the GRPO stage.
#[derive(Debug, Clone)]
pub struct GrpoPrompt {
    pub ids: Vec<u32>,
    /// Row of the profile vector.
    pub profile: usize,
    /// The respondent's answer letter (choice items).
    pub answer: Option<char>,
    /// The answer distribution of the respondent's group over the options (`target = group`).
    pub group_distribution: Option<Vec<f64>>,
    /// For the judge: the profile text and the conversation.
    pub profile_text: String,
    pub context: Vec<Message>,
    /// The base model's reply, once computed (judge reward).
    pub base_reply: Option<String>,
}

/// The training data's answer distribution per (question, group).
pub struct GroupTable {
    counts: HashMap<(String, String), Vec<f64>>,
    group_by: Vec<String>,
}

impl GroupTable {
    fn key(&self, item: &ChoiceItem) -> (String, String) {
        let group: Vec<&str> = self
            .group_by
            .iter()
            .map(|a| {
                item.groups
                    .get(a)
                    .or_else(|| item.profile.get(a))
                    .map_or("", String::as_str)
            })
            .collect();
        (item.question_id.clone(), group.join("|"))
    }

    /// Counts the answers of every choice item in `items` by question and group.
    pub fn of(items: &[Item], cfg: &super::grpo::GrpoConfig) -> Self {
        let mut t = Self {
            counts: HashMap::new(),
            group_by: cfg.group_by.clone(),
        };
        for item in items {
            if let Item::Choice(c) = item {
                let key = t.key(c);
                let row = t.counts.entry(key).or_insert_with(|| vec![0.0; c.options.len()]);
                if let Some(n) = row.get_mut(c.answer) {
                    *n += 1.0;
                }
            }
        }
        t
    }

    /// The distribution of `item`'s group, normalised.
    fn distribution(&self, item: &ChoiceItem) -> Option<Vec<f64>> {
        let counts = self.counts.get(&self.key(item))?;
        let total: f64 = counts.iter().sum();
        (total > 0.0).then(|| counts.iter().map(|c| c / total).collect())
    }
}

impl GrpoPrompt {
    /// The prompt of `item`, or `Ok(Err(()))` for an item the configured reward cannot score (a
    /// chat item under the choice reward) or whose prompt does not fit `max_len`.
    pub fn of(
        model: &Backbone,
        item: &Item,
        profile_text: &str,
        cfg: &TrainConfig,
        row: usize,
        groups: Option<&GroupTable>,
    ) -> Result<std::result::Result<Self, ()>> {
        match item {
            Item::Choice(c) => {
                let Some(example) = tokenize(model, c, profile_text, cfg, row, &[])? else {
                    return Ok(Err(()));
                };
                let context = vec![Message::new("user", &c.user_prompt())];
                Ok(Ok(Self {
                    ids: example.ids[..example.targets_from].to_vec(),
                    profile: row,
                    answer: Some(c.answer_letter()),
                    group_distribution: match cfg.grpo.target {
                        RewardTarget::Group => groups.and_then(|g| g.distribution(c)),
                        RewardTarget::Respondent => None,
                    },
                    profile_text: profile_text.to_string(),
                    context,
                    base_reply: None,
                }))
            }
            Item::Chat(c) if cfg.grpo.reward == RewardKind::Judge => {
                let context = match c.split_reply() {
                    Ok((context, _)) => context.to_vec(),
                    Err(_) => c.messages.clone(),
                };
                let ids = context_ids(model, &context, profile_text, cfg)?;
                if ids.len() + 1 >= cfg.max_len {
                    return Ok(Err(()));
                }
                Ok(Ok(Self {
                    ids,
                    profile: row,
                    answer: None,
                    group_distribution: None,
                    profile_text: profile_text.to_string(),
                    context,
                    base_reply: None,
                }))
            }
            Item::Chat(_) => Ok(Err(())),
        }
    }
}

/// One `[rows, s, k]` int64 tensor per router from the sampler's traces: position `p` of row
/// `i` gets the experts recorded for it; positions past the trace (the last sampled token, which
/// was never fed, and padding) repeat the last recorded choice (their outputs feed no target).
pub fn replay_tensors(traces: &[&RoutingTrace], width: usize, device: tch::Device) -> Result<Vec<Tensor>> {
    let routers = traces.first().map_or(0, |t| t.routers.len());
    let k = traces
        .iter()
        .find_map(|t| t.tokens.first())
        .and_then(|t| t.experts.first())
        .map_or(0, Vec::len);
    if routers == 0 || k == 0 {
        return Err(Error::Invalid("router replay: the sampler recorded no routing".into()));
    }
    (0..routers)
        .map(|r| {
            let mut data = Vec::with_capacity(traces.len() * width * k);
            for t in traces {
                let last = t
                    .tokens
                    .len()
                    .checked_sub(1)
                    .ok_or_else(|| Error::Invalid("router replay: an empty trace".into()))?;
                for p in 0..width {
                    data.extend(t.tokens[p.min(last)].experts[r].iter().map(|&e| i64::from(e)));
                }
            }
            Ok(Tensor::f_from_slice(&data)?
                .f_view([traces.len() as i64, width as i64, k as i64])?
                .f_to_device(device)?)
        })
        .collect()
}

/// The share of (router, position) choices where the forward's own top-k (from its live
/// scores) differs, as a set, from the sampler's; positions are those that predict completion
/// tokens (`targets_from - 1 ..= len - 2` of each row).
fn disagreement(
    routing: &[cuma_model::adapters::Routing<Tensor>],
    traces: &[&RoutingTrace],
    rows: &[&Example],
) -> Result<f64> {
    let (mut differ, mut total) = (0usize, 0usize);
    for (r, routed) in routing.iter().enumerate() {
        let k = traces
            .first()
            .and_then(|t| t.tokens.first())
            .map_or(0, |t| t.experts[r].len()) as i64;
        let (_, live) = routed.scores.f_topk(k, -1, true, true)?;
        let live = live.f_to_device(tch::Device::Cpu)?;
        let size = live.size();
        let flat: Vec<i64> = Vec::try_from(live.f_contiguous()?.f_view([-1])?)?;
        let (width, k) = (size[1] as usize, size[2] as usize);
        for (i, (trace, row)) in traces.iter().zip(rows).enumerate() {
            for p in row.targets_from.saturating_sub(1)..row.ids.len().saturating_sub(1) {
                let Some(recorded) = trace.tokens.get(p) else { continue };
                let mut want: Vec<i64> = recorded.experts[r].iter().map(|&e| i64::from(e)).collect();
                let mut got = flat[(i * width + p) * k..(i * width + p + 1) * k].to_vec();
                want.sort_unstable();
                got.sort_unstable();
                differ += usize::from(want != got);
                total += 1;
            }
        }
    }
    Ok(if total == 0 { 0.0 } else { differ as f64 / total as f64 })
}

/// The judge the configuration names.
fn judge_of(cfg: &super::grpo::GrpoConfig) -> Box<dyn Judge> {
    match &cfg.judge_url {
        Some(url) => Box::new(HttpJudge::new(
            url,
            &cfg.judge_model,
            std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()),
            std::time::Duration::from_secs(120),
        )),
        None => Box::new(RuleJudge),
    }
}

impl SftRun {
    /// The reward of one completion of `prompt` (`None`: the judge could not settle it).
    fn reward(&self, prompt: &GrpoPrompt, g: &Generation, judge: &mut dyn Judge, rng: &mut Rng) -> Option<f64> {
        let cfg = &self.config.grpo;
        match cfg.reward {
            RewardKind::Choice => {
                let letter = opening_letter(&g.text);
                Some(match (&prompt.group_distribution, letter) {
                    (Some(dist), Some(l)) => {
                        let i = (l as u8).checked_sub(b'A')? as usize;
                        dist.get(i).copied().unwrap_or(0.0)
                    }
                    (None, Some(l)) => f64::from(u8::from(Some(l) == prompt.answer)),
                    (_, None) => 0.0,
                })
            }
            RewardKind::Judge => {
                let base = prompt.base_reply.as_deref()?;
                let reference = prompt.answer.map(|a| a.to_string());
                let case = Case {
                    profile_text: &prompt.profile_text,
                    context: &prompt.context,
                    reply: &g.text,
                    other: base,
                    reference: reference.as_deref(),
                };
                match judge_case(judge, &case, rng, cfg.judge_retries).0 {
                    Outcome::Win => Some(1.0),
                    Outcome::Tie => Some(0.5),
                    Outcome::Loss => Some(0.0),
                    Outcome::Failed | Outcome::NotJudgeable => None,
                }
            }
        }
    }

    /// The base model's greedy reply to each prompt of `units` that has none yet (judge reward).
    fn base_replies(&mut self, units: &[usize]) -> Result<()> {
        let missing: Vec<usize> = units
            .iter()
            .copied()
            .filter(|&u| self.prompts[u].base_reply.is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let prompts: Vec<Vec<u32>> = missing.iter().map(|&u| self.prompts[u].ids.clone()).collect();
        let options = GenerateOptions {
            max_new_tokens: self.config.grpo.max_completion,
            sampling: SamplingConfig {
                temperature: 0.0,
                ..Default::default()
            },
            stop: Vec::new(),
            trace_routing: false,
            logprobs: false,
        };
        let adapters = self.model.decoder.adapters.take();
        let replies = generate(&self.model, &prompts, None, &options, |_| {});
        self.model.decoder.adapters = adapters;
        for (u, g) in missing.into_iter().zip(replies?) {
            self.prompts[u].base_reply = Some(g.text);
        }
        Ok(())
    }

    /// One GRPO micro-batch over the prompts `units`; `start` (the position in the data order)
    /// seeds the sampling, so a resumed run samples the same completions.
    pub(super) fn grpo_micro(&mut self, units: &[usize], accum: f64, start: usize) -> Result<MicroStep> {
        let cfg = self.config.grpo.clone();
        let device = self.model.device;
        if cfg.reward == RewardKind::Judge {
            self.base_replies(units)?;
        }
        let g = cfg.group_size;
        let mut prompts = Vec::with_capacity(units.len() * g);
        let mut profile_rows = Vec::with_capacity(units.len() * g);
        for &u in units {
            for _ in 0..g {
                prompts.push(self.prompts[u].ids.clone());
                profile_rows.push(self.prompts[u].profile as i64);
            }
        }
        let profiles = self
            .profiles
            .f_index_select(0, &Tensor::f_from_slice(&profile_rows)?.f_to_device(device)?)?;
        let routed = self
            .model
            .decoder
            .adapters
            .as_ref()
            .is_some_and(|a| a.layers.iter().any(|l| !l.routers.is_empty()));
        let seed = self.config.seed ^ (start as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let options = GenerateOptions {
            max_new_tokens: cfg.max_completion,
            sampling: SamplingConfig {
                temperature: cfg.temperature,
                top_p: cfg.top_p,
                top_k: 0,
                seed,
            },
            stop: Vec::new(),
            trace_routing: routed,
            logprobs: true,
        };
        let generations = generate(&self.model, &prompts, Some(&profiles), &options, |_| {})?;

        let mut judge = judge_of(&cfg);
        let mut judge_rng = Rng::new(seed ^ 0x5DEE_CE66);
        let rewards: Vec<Option<f64>> = generations
            .iter()
            .enumerate()
            .map(|(i, gen)| self.reward(&self.prompts[units[i / g]], gen, judge.as_mut(), &mut judge_rng))
            .collect();
        let advantages = group_advantages(&rewards, g);

        let examples: Vec<Example> = generations
            .iter()
            .enumerate()
            .map(|(i, gen)| {
                let p = &self.prompts[units[i / g]];
                let mut ids = p.ids.clone();
                ids.extend(&gen.token_ids);
                if gen.finish_reason == FinishReason::EndOfTurn {
                    ids.extend(gen.end_token);
                }
                Example {
                    ids,
                    targets_from: p.ids.len(),
                    profile: p.profile,
                }
            })
            .collect();
        let rows: Vec<&Example> = examples.iter().collect();
        let traces: Vec<&RoutingTrace> = generations.iter().filter_map(|gen| gen.routing.as_ref()).collect();
        let width = rows.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let replay = if routed && cfg.router_replay {
            Some(replay_tensors(&traces, width, device)?)
        } else {
            None
        };
        let mixed = self.config.mixed_precision(device);
        // Dropout off, so the ratio compares like with like.
        let mut o = TchOps {
            train: false,
            ..TchOps::training(device, mixed)
        };
        let f = self.forward_targets(&mut o, &rows, replay, cfg.temperature)?;
        let logp = f.token_logprobs()?;
        let old: Vec<f32> = generations
            .iter()
            .flat_map(|gen| gen.logprobs.iter().copied())
            .collect();
        if old.len() as i64 != logp.size()[0] {
            return Err(Error::Invalid(format!(
                "GRPO: {} sampled log-probs for {} completion tokens",
                old.len(),
                logp.size()[0]
            )));
        }
        let old = Tensor::f_from_slice(&old)?.f_to_device(device)?;
        let adv_rows: Vec<f32> = advantages.iter().map(|&a| a as f32).collect();
        let adv = Tensor::f_from_slice(&adv_rows)?
            .f_to_device(device)?
            .f_index_select(0, &f.token_rows)?;
        let clipped = clipped_objective(&logp, &old, &adv, &f.token_rows, f.rows, cfg.epsilon)?;
        let kl = if self.reference.is_some() {
            let reference = tch::no_grad(|| {
                self.with_reference(|run| {
                    run.forward_targets(&mut o, &rows, None, cfg.temperature)?
                        .token_logprobs()
                })
            })?;
            per_completion_mean(&k3(&logp, &reference)?, &f.token_rows, f.rows)?
        } else {
            Tensor::f_zeros([], (Kind::Float, device))?
        };
        let loss = if cfg.kl_beta > 0.0 {
            clipped.loss.f_add(&kl.f_mul_scalar(cfg.kl_beta)?)?
        } else {
            clipped.loss.shallow_clone()
        };
        let routing_disagreement = if routed {
            disagreement(&f.routing, &traces, &rows)?
        } else {
            0.0
        };
        let known: Vec<f64> = rewards.iter().flatten().copied().collect();
        let metrics = GrpoMetrics {
            reward_mean: known.iter().sum::<f64>() / known.len().max(1) as f64,
            reward_std: mean_group_std(&rewards, g),
            unrewarded: rewards.iter().filter(|r| r.is_none()).count(),
            kl: kl.f_double_value(&[])?,
            clip_fraction: clipped.clip_fraction,
            completion_tokens: rows.iter().map(|e| e.ids.len() - e.targets_from).sum::<usize>() as f64
                / rows.len().max(1) as f64,
            routing_disagreement,
        };
        self.finish_micro(loss, &f, accum, StageMetrics::Grpo(metrics))
    }
}
