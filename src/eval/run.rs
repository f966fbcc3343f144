//! Evaluating a checkpoint (or the bare backbone with an inference-time baseline) on canonical
//! multiple-choice items: option probabilities in batches, then every metric of spec section 9.

use super::choice::{score, ChoicePrompt};
use super::fewshot::ShotPool;
use super::metrics::{argmax, summarize, Scored, Summary};
use super::routing::{analyse, ItemRouting, RoutedPrompt, RoutingReport};
use crate::data::clusters::ClusterMap;
use crate::data::{jsonl, profile, ChoiceItem};
use crate::models::{Backbone, ProfileEncoder};
use crate::tch_ops::TchOps;
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::examples::tokenize;
use crate::trainables::TchTrainables;
use crate::{Error, Result};
use cuma_model::adapters::DecoderAdapters;
use std::path::Path;
use tch::{Device, Tensor};

/// What is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalMethod {
    /// The trained checkpoint.
    Checkpoint,
    /// The bare backbone with no profile anywhere.
    Vanilla,
    /// The bare backbone with the profile as its system prompt.
    Persona,
    /// Persona prompting plus answers of three other respondents from the same country as
    /// earlier chat turns (needs `--examples`).
    Fewshot,
    /// No model: each question's answer distribution in `--examples` (the training split), for
    /// everyone.
    PooledTable,
    /// No model: the distribution of the item's country in `--examples`, shrunk towards the
    /// pooled one by `--pseudo-counts`.
    CountryTable,
}

/// How to evaluate.
#[derive(Clone, Copy)]
pub struct EvalOptions<'a> {
    /// Prompts per forward pass.
    pub batch: usize,
    /// Record the routers' decisions and analyse them.
    pub routing: bool,
    /// Few-shot examples and how many to show per question.
    pub shots: Option<(&'a ShotPool, usize)>,
    pub seed: u64,
    /// Refuse the evaluation at the first item that cannot be scored (its prompt is longer
    /// than the model's context, or it does not tokenise) instead of skipping it.
    pub strict: bool,
    /// Country -> cultural cluster, for `emd_cluster`.
    pub clusters: Option<&'a ClusterMap>,
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        Self {
            batch: 16,
            routing: false,
            shots: None,
            seed: 0,
            strict: false,
            clusters: None,
        }
    }
}

/// One scored item, as `predictions.jsonl` lists it: enough to recompute any metric or test.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    pub id: String,
    pub respondent: String,
    pub question: String,
    /// The item's group ids (e.g. `country`; an item without one gets its profile's country,
    /// the group `emd_country` counts it in).
    pub groups: std::collections::BTreeMap<String, String>,
    /// The option probabilities, in option order (they sum to 1).
    pub probs: Vec<f64>,
    /// The respondent's answer (an option index).
    pub answer: usize,
    /// The most probable option ([`argmax`], as the accuracy in `eval.json` counts it).
    pub predicted: usize,
}

impl Prediction {
    fn of(item: &ChoiceItem, probs: &[f64]) -> Self {
        let mut groups = item.groups.clone();
        groups.entry("country".into()).or_insert_with(|| country_of(item));
        Self {
            id: item.id.clone(),
            respondent: item.respondent.clone(),
            question: item.question_id.clone(),
            groups,
            probs: probs.to_vec(),
            answer: item.answer,
            predicted: argmax(probs),
        }
    }

    /// The item as the metrics see it (no profile attributes: no subgroup spreads).
    pub fn scored(&self, clusters: Option<&ClusterMap>) -> Scored {
        let country = self.groups.get("country").cloned().unwrap_or_default();
        Scored {
            question: self.question.clone(),
            cluster: cluster_of(&country, clusters),
            group: country,
            truth: self.answer,
            probs: self.probs.clone(),
            attributes: Default::default(),
        }
    }
}

/// The metrics' view of `items` scored with `probs` (one distribution per item), one
/// [`Prediction`] each, and their summary.
pub fn assemble(
    items: &[&ChoiceItem],
    probs: Vec<Vec<f64>>,
    clusters: Option<&ClusterMap>,
) -> (Vec<Scored>, Vec<Prediction>, Summary) {
    let scored: Vec<Scored> = items
        .iter()
        .zip(probs)
        .map(|(item, p)| {
            let country = country_of(item);
            Scored {
                question: item.question_id.clone(),
                cluster: cluster_of(&country, clusters),
                group: country,
                truth: item.answer,
                probs: p,
                attributes: item.profile.clone(),
            }
        })
        .collect();
    let predictions: Vec<Prediction> = items
        .iter()
        .zip(&scored)
        .map(|(item, s)| Prediction::of(item, &s.probs))
        .collect();
    let summary = summarize(&scored);
    (scored, predictions, summary)
}

fn cluster_of(country: &str, clusters: Option<&ClusterMap>) -> Option<String> {
    clusters.and_then(|m| m.cluster_of(country)).map(str::to_string)
}

/// Scores, metrics and (when asked) the routing analysis of one item set.
pub struct Evaluation {
    /// The items scored, in input order (skipped ones left out).
    pub scored: Vec<Scored>,
    /// The same items, one [`Prediction`] each.
    pub predictions: Vec<Prediction>,
    /// Items that could not be scored: (item id, why). Only without [`EvalOptions::strict`].
    pub skipped: Vec<(String, String)>,
    pub summary: Summary,
    pub routing: Option<RoutingReport>,
}

/// A model ready to score items.
pub struct Evaluator {
    pub model: Backbone,
    pub encoder: ProfileEncoder,
    pub config: TrainConfig,
}

impl Evaluator {
    /// Loads the backbone and encoder a checkpoint was trained with, and its adapters.
    pub fn from_checkpoint(dir: &Path, device: Device) -> Result<Self> {
        let ck = checkpoint::load(dir)?;
        let config = ck.manifest.config.clone();
        let mut model = Backbone::load(&ck.manifest.backbone.path, device)?;
        let encoder = ProfileEncoder::load(&ck.manifest.encoder.path, device)?;
        let method = config.method.effective();
        let mut store = TchTrainables::default();
        for (name, t) in ck.adapters {
            store.tensors.insert(name, t.f_to_device(device)?);
        }
        match method.method {
            cuma_model::config::Method::Full | cuma_model::config::Method::Ptuning => {
                return Err(Error::Invalid(format!(
                    "evaluating `{:?}` checkpoints is not supported yet",
                    method.method
                )));
            }
            _ => {
                let adapters = DecoderAdapters::init(
                    &mut TchOps::new(device),
                    &mut store,
                    &model.decoder,
                    &method,
                    encoder.dim,
                )
                .map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
                model.decoder.adapters = Some(adapters);
            }
        }
        Ok(Self { model, encoder, config })
    }

    /// The bare backbone for an inference-time baseline.
    pub fn baseline(backbone: &Path, encoder: &Path, method: EvalMethod, device: Device) -> Result<Self> {
        let mut config = TrainConfig::default();
        config.method.profile_in_prompt = matches!(method, EvalMethod::Persona | EvalMethod::Fewshot);
        Ok(Self {
            model: Backbone::load(backbone, device)?,
            encoder: ProfileEncoder::load(encoder, device)?,
            config,
        })
    }

    /// Option probabilities and metrics for `items`; `on_batch` reports progress.
    pub fn evaluate(
        &self,
        items: &[ChoiceItem],
        opts: EvalOptions<'_>,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Evaluation> {
        let order: Vec<&str> = self.config.profile_order.iter().map(String::as_str).collect();
        let (texts, rows) = profile::index(items.iter().map(|i| &i.profile), &order, self.config.profile_style);
        let mut cfg = self.config.clone();
        cfg.max_len = usize::MAX;
        // The same context rule as training and cuma-run: a prompt must fit the model's
        // positions. An item that does not is skipped (and counted), or refused with `strict`;
        // either way it never reaches a forward pass.
        let context = self.model.config().max_position_embeddings;
        let mut prompts = Vec::with_capacity(items.len());
        let (mut kept, mut skipped) = (Vec::with_capacity(items.len()), Vec::new());
        for (item, &row) in items.iter().zip(&rows) {
            let shots = opts
                .shots
                .map(|(pool, n)| pool.pick(item, n, opts.seed))
                .unwrap_or_default();
            let prompt = match tokenize(&self.model, item, &texts[row], &cfg, row, &shots) {
                Ok(Some(ex)) if ex.targets_from <= context => Ok(ex.ids[..ex.targets_from].to_vec()),
                Ok(Some(ex)) => Err(format!(
                    "its prompt is {} tokens, past the model's context of {context}",
                    ex.targets_from
                )),
                Ok(None) => Err("it could not be tokenised".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match prompt {
                Ok(ids) => {
                    prompts.push(ChoicePrompt {
                        ids,
                        options: item.options.len(),
                        profile: row,
                    });
                    kept.push(item);
                }
                Err(why) if opts.strict => return Err(Error::Invalid(format!("item {}: {why}", item.id))),
                Err(why) => skipped.push((item.id.clone(), why)),
            }
        }
        let items = kept;
        let profiles: Option<Tensor> = if self.model.decoder.adapters.as_ref().is_some_and(|a| a.profile_dim > 0) {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let rows = refs
                .chunks(32)
                .map(|c| self.encoder.embed(c))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::f_cat(&rows, 0)?)
        } else {
            None
        };
        let record = opts.routing && self.model.decoder.adapters.as_ref().is_some_and(|a| a.method.routed());
        // Batches of similar lengths pad little; results go back to the items' order.
        let mut probs: Vec<Option<Vec<f64>>> = vec![None; items.len()];
        let mut routings: Vec<Option<ItemRouting>> = vec![None; if record { items.len() } else { 0 }];
        for batch in length_sorted_batches(&prompts, opts.batch) {
            let chunk: Vec<ChoicePrompt> = batch.iter().map(|&i| prompts[i].clone()).collect();
            let (batch_probs, batch_routing) = score(&self.model, &chunk, profiles.as_ref(), record)?;
            for (&i, p) in batch.iter().zip(batch_probs) {
                probs[i] = Some(p);
            }
            for (&i, r) in batch.iter().zip(batch_routing) {
                routings[i] = Some(r);
            }
            on_batch(batch.len());
        }
        let probs = probs.into_iter().map(Option::unwrap_or_default).collect();
        let (scored, predictions, summary) = assemble(&items, probs, opts.clusters);
        let routings: Vec<ItemRouting> = routings.into_iter().flatten().collect();
        let routing = match (&self.model.decoder.adapters, record) {
            (Some(adapters), true) => {
                let routed: Vec<RoutedPrompt<'_>> = scored
                    .iter()
                    .zip(&prompts)
                    .zip(&routings)
                    .map(|((s, p), r)| RoutedPrompt {
                        question: &s.question,
                        country: &s.group,
                        profile: p.profile,
                        ids: &p.ids,
                        routing: r,
                    })
                    .collect();
                Some(analyse(&adapters.router_names(), adapters.method.experts, &routed))
            }
            _ => None,
        };
        Ok(Evaluation {
            scored,
            predictions,
            skipped,
            summary,
            routing,
        })
    }
}

/// Indices of `prompts` in batches of at most `batch`, each batch holding prompts of similar
/// length (sorted by length, ties in input order), so left padding wastes little compute.
fn length_sorted_batches(prompts: &[ChoicePrompt], batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].ids.len());
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// The group an item's `emd_country` and routing signature count it in: its country.
pub fn country_of(item: &ChoiceItem) -> String {
    item.groups
        .get("country")
        .or_else(|| item.profile.get("country"))
        .cloned()
        .unwrap_or_default()
}

/// A metric that may be undefined, as a table cell.
pub fn optional(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// Reads items for evaluation.
pub fn read_items(path: &Path, limit: usize) -> Result<Vec<ChoiceItem>> {
    let mut loaded = jsonl::read::<ChoiceItem>(path, ChoiceItem::validate)?;
    if limit > 0 {
        loaded.rows.truncate(limit);
    }
    Ok(loaded.rows)
}

/// The summary as a Markdown table (header, separator, one row), then the subgroup spreads.
pub fn markdown(name: &str, s: &Summary) -> String {
    let mut out = format!(
        "| method | items | acc | country acc | macro-F1 | emd_argmax | emd_prob | emd_country | emd_cluster | emd_country_scale | ECE | entropy |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n| {name} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {} | {:.4} | {:.4} |\n",
        s.items,
        s.accuracy,
        s.mean_group_accuracy,
        s.macro_f1,
        s.emd_argmax,
        s.emd_prob,
        s.emd_country,
        optional(s.emd_cluster),
        optional(s.emd_country_scale),
        s.ece,
        s.entropy
    );
    out.push_str(&format!(
        "\nCells: emd_country {} (question x country, any size); emd_cluster {} (question x cultural cluster) and emd_country_scale {} (country x scale length, pooled over questions), each with >= {} items.\n",
        s.emd_country_cells,
        s.emd_cluster_cells,
        s.emd_country_scale_cells,
        super::metrics::MIN_CELL_ITEMS
    ));
    if !s.subgroup_spread.is_empty() {
        out.push_str(&format!("\nSubgroup accuracy spread per attribute (subgroups with >= {} items):\n\n| attribute | subgroups | min acc | max acc | spread | std |\n|---|---|---|---|---|---|\n", super::metrics::MIN_SUBGROUP_ITEMS));
        for (attr, sp) in &s.subgroup_spread {
            out.push_str(&format!(
                "| {attr} | {} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
                sp.subgroups, sp.min_accuracy, sp.max_accuracy, sp.spread, sp.std
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(len: usize) -> ChoicePrompt {
        ChoicePrompt {
            ids: vec![1; len],
            options: 2,
            profile: 0,
        }
    }

    #[test]
    fn batches_group_similar_lengths_and_cover_every_prompt_once() {
        let prompts: Vec<ChoicePrompt> = [5, 1, 9, 1, 7, 3].into_iter().map(prompt).collect();
        let batches = length_sorted_batches(&prompts, 4);
        assert_eq!(batches, vec![vec![1, 3, 5, 0], vec![4, 2]]);
        assert_eq!(
            length_sorted_batches(&prompts, 0).len(),
            6,
            "a zero batch size means one prompt per batch"
        );
        assert!(length_sorted_batches(&[], 4).is_empty());
    }
}
