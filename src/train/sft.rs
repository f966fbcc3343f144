//! The training loop of both stages (spec section 6). **SFT**: the profile (optionally) as the
//! system prompt, the question with lettered options (or a conversation) as the context, the loss
//! on the answer letter (optionally also the end-of-turn tokens) or the final reply, plus the
//! routers' load-balancing loss. **DPO** ([`super::dpo`]): pairs of replies sharing one context
//! and profile vector run as 2B rows of one forward; the policy starts from an SFT run's adapters,
//! the reference is that run frozen (or the bare backbone).
//!
//! Seeded and resumable: batch composition depends only on how many items were consumed, dropout
//! on the step number. libtorch's generator is process-global, so two runs in one process must
//! not train at the same time if they are to stay reproducible.

use super::checkpoint::{self, CheckpointManifest, ModelIdentity, TrainState};
use super::config::{Stage, TrainConfig};
use super::dpo::{DpoMetrics, ReferenceModel};
use super::examples::{tokenize, tokenize_chat, tokenize_pair, Example, Pair};
use super::grpo::GrpoMetrics;
use super::grpo_step::GrpoPrompt;
use super::optim::{AdamW, AdamWConfig};
use super::schedule::cosine_with_warmup;
use crate::data::{jsonl, pairs, profile, Item};
use crate::models::backbone::{Backbone, StepInput};
use crate::models::inputs::pad_batch;
use crate::models::ProfileEncoder;
use crate::sampling::Rng;
use crate::tch_ops::TchOps;
use crate::trainables::TchTrainables;
use crate::{Error, Result};
use cuma_model::adapters::{balance_loss, DecoderAdapters, Prefix};
use cuma_model::config::Method;
use cuma_model::serve::padding::Side;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

/// The checkpoint directory inside a run.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Where `snapshot_every` keeps the adapters along the way (`step-NNNNNN/` each).
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Reorders a shuffled `order` so that batches of `batch` consecutive units have similar
/// `lengths`: each window of `buckets * batch` units is sorted by length (stable, so ties keep
/// the shuffled order), cut into batches, and those batches are shuffled within the window.
fn bucket_by_length(order: &mut [usize], lengths: &[usize], batch: usize, buckets: usize, rng: &mut Rng) {
    let batch = batch.max(1);
    for window in order.chunks_mut(batch * buckets.max(1)) {
        window.sort_by_key(|&u| lengths[u]);
        let mut batches: Vec<Vec<usize>> = window.chunks(batch).map(<[usize]>::to_vec).collect();
        rng.shuffle(&mut batches);
        for (slot, unit) in window.iter_mut().zip(batches.into_iter().flatten()) {
            *slot = unit;
        }
    }
}

/// A detached CPU copy of a tensor, for writing.
fn to_cpu(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_to_device(tch::Device::Cpu)?)
}

/// Embeds each unique profile text once (in batches, with a progress bar), cached in the run
/// directory as `profiles.safetensors` + `profiles.json`.
pub fn embed_profiles(encoder: &ProfileEncoder, texts: &[String], run_dir: &Path, progress: bool) -> Result<Tensor> {
    let (vec_path, txt_path) = (run_dir.join("profiles.safetensors"), run_dir.join("profiles.json"));
    if let (Ok(saved), true) = (std::fs::read_to_string(&txt_path), vec_path.is_file()) {
        if serde_json::from_str::<Vec<String>>(&saved).ok().as_deref() == Some(texts) {
            let loaded = Tensor::read_safetensors(&vec_path).map_err(|e| Error::Safetensors {
                path: vec_path.clone(),
                reason: e.to_string(),
            })?;
            if let Some((_, t)) = loaded.into_iter().find(|(n, _)| n == "vectors") {
                return Ok(t.f_to_device(encoder.device)?);
            }
        }
    }
    let bar = progress_bar(texts.len() as u64, progress, "embedding profiles");
    let mut rows = Vec::new();
    for chunk in texts.chunks(32) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        rows.push(encoder.embed(&refs)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let vectors = Tensor::f_cat(&rows, 0)?;
    std::fs::create_dir_all(run_dir).map_err(crate::error::io(run_dir))?;
    Tensor::write_safetensors(&[("vectors", &vectors.f_to_device(tch::Device::Cpu)?)], &vec_path)?;
    std::fs::write(
        &txt_path,
        serde_json::to_string(texts).map_err(|e| Error::Invalid(e.to_string()))?,
    )
    .map_err(crate::error::io(&txt_path))?;
    Ok(vectors)
}

fn progress_bar(len: u64, visible: bool, msg: &'static str) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {wide_msg} ETA {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

/// The frozen model DPO compares the policy with: the SFT run's adapters, or none (the bare
/// backbone).
pub struct Reference {
    pub adapters: Option<DecoderAdapters<Tensor>>,
}

/// A prepared run: model with adapters attached, data, optimiser, state.
pub struct SftRun {
    pub config: TrainConfig,
    pub model: Backbone,
    pub profiles: Tensor,
    /// The SFT stage's examples (empty in a DPO run).
    pub examples: Vec<Example>,
    /// The DPO stage's pairs (empty otherwise).
    pub pairs: Vec<Pair>,
    /// The GRPO stage's prompts (empty otherwise).
    pub prompts: Vec<GrpoPrompt>,
    /// DPO's reference model.
    pub reference: Option<Reference>,
    pub store: TchTrainables,
    pub optimizer: AdamW,
    pub state: TrainState,
    pub manifest: CheckpointManifest,
    /// Items skipped as too long.
    pub too_long: usize,
    /// DPO: chat items skipped because they have no `rejected` reply.
    pub not_pairs: usize,
    /// P-tuning v2's virtual tokens, when that is the method.
    pub prefix: Option<Prefix<Tensor>>,
    /// The seeded order of the current epoch.
    epoch_order: Option<(usize, Vec<usize>)>,
}

/// The per-step log in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Keeps the lines of the metrics log at `path` whose `step` is at most `step` (none for a run
/// starting afresh); a torn or unreadable line goes too. Rewritten atomically; no file, no-op.
fn cut_metrics(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::error::io(path)(e)),
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step as u64)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept).map_err(crate::error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(crate::error::io(path))
}

/// One optimiser step's numbers (also a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    /// Mean balance loss per router.
    pub balance: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub seconds: f64,
    /// The DPO stage's rewards, margin and preference accuracy.
    #[serde(flatten, default)]
    pub dpo: Option<DpoMetrics>,
    /// The GRPO stage's rewards, KL, clipping and routing disagreement.
    #[serde(flatten, default)]
    pub grpo: Option<GrpoMetrics>,
}

fn identity(path: &Path, architecture: &str, files: Vec<PathBuf>) -> Result<ModelIdentity> {
    Ok(ModelIdentity {
        path: path.into(),
        architecture: architecture.into(),
        sha256: checkpoint::hash_files(&files)?,
    })
}

/// The files whose bytes identify a model: the GGUF file, or every safetensors shard.
pub fn weight_files(path: &Path) -> Result<Vec<PathBuf>> {
    let (p, format) = crate::models::source::locate(path)?;
    Ok(match format {
        crate::models::source::Format::Gguf => vec![p],
        crate::models::source::Format::Safetensors => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(crate::error::io(&p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            files.sort();
            files
        }
    })
}

/// The log-probabilities of a batch's target tokens.
pub(super) struct TargetForward {
    /// `[tokens, vocab]`.
    pub log_probs: Tensor,
    /// `[tokens]`: the target ids.
    pub targets: Tensor,
    /// `[tokens]`: the row each target token belongs to.
    pub token_rows: Tensor,
    pub rows: usize,
    /// The routers' balance loss, summed (a scalar).
    balance: Tensor,
    routers: usize,
    tokens: usize,
    /// Every router's decisions, in the output order.
    pub routing: Vec<cuma_model::adapters::Routing<Tensor>>,
}

impl TargetForward {
    /// `[tokens]`: the log-probability of every target token.
    pub fn token_logprobs(&self) -> Result<Tensor> {
        Ok(self
            .log_probs
            .f_gather(1, &self.targets.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?)
    }

    /// `[rows]`: each row's sum of target-token log-probabilities.
    pub(super) fn sequence_logprobs(&self) -> Result<Tensor> {
        let picked = self.token_logprobs()?;
        let zeros = Tensor::f_zeros([self.rows as i64], (Kind::Float, picked.device()))?;
        Ok(zeros.f_index_add(0, &self.token_rows, &picked)?)
    }
}

/// One micro-batch's numbers.
pub(super) struct MicroStep {
    loss: f64,
    balance: f64,
    tokens: usize,
    stage: StageMetrics,
}

/// The figures only one stage has.
pub(super) enum StageMetrics {
    None,
    Dpo(DpoMetrics),
    Grpo(GrpoMetrics),
}

/// Where DPO's reference comes from.
enum ReferenceSource {
    /// The SFT stage: none.
    None,
    Base,
    /// The SFT run's adapter tensors (frozen).
    Adapters(Vec<(String, Tensor)>),
}

/// Reads the SFT run a DPO run starts from (`path`: the run directory or its checkpoint), with
/// the identity of its adapters.
pub fn load_init(path: &Path) -> Result<(checkpoint::Checkpoint, ModelIdentity)> {
    let dir = if path.join(CHECKPOINT_DIR).join(checkpoint::MANIFEST_FILE).is_file() {
        path.join(CHECKPOINT_DIR)
    } else {
        path.to_path_buf()
    };
    if !dir.join(checkpoint::MANIFEST_FILE).is_file() {
        return Err(Error::ModelPath {
            path: path.into(),
            reason: "no SFT checkpoint here (expected a run directory with checkpoint/cuma.json)".into(),
        });
    }
    let ck = checkpoint::load(&dir)?;
    let id = identity(&dir, "sft-adapters", vec![dir.join(checkpoint::ADAPTER_FILE)])?;
    Ok((ck, id))
}

/// A DPO run takes the model side of its configuration from the SFT run it starts from: the
/// method and adapter shapes, the profile text and prompt settings, the backbone and encoder.
fn inherit(config: &mut TrainConfig, sft: &TrainConfig) {
    config.method = sft.method.clone();
    config.profile_style = sft.profile_style;
    config.profile_order = sft.profile_order.clone();
    config.loss_on_end_of_turn = sft.loss_on_end_of_turn;
    if config.backbone.is_none() {
        config.backbone = sft.backbone.clone();
    }
    if config.encoder.is_none() {
        config.encoder = sft.encoder.clone();
    }
}

/// What [`SftRun::assemble`] builds a run from.
struct Parts {
    config: TrainConfig,
    model: Backbone,
    encoder_dim: usize,
    profiles: Tensor,
    examples: Vec<Example>,
    pairs: Vec<Pair>,
    prompts: Vec<GrpoPrompt>,
    reference: ReferenceSource,
    too_long: usize,
    not_pairs: usize,
    /// Trainables already filled (full fine-tuning's backbone, a checkpoint's adapters).
    store: TchTrainables,
    restored: Option<checkpoint::Checkpoint>,
    backbone: ModelIdentity,
    encoder: ModelIdentity,
    init: Option<ModelIdentity>,
}

impl SftRun {
    /// Loads models and data, embeds profiles, attaches adapters; resumes from the run's
    /// checkpoint when `resume` and one exists.
    pub fn prepare(config: TrainConfig, resume: bool, progress: bool) -> Result<Self> {
        let own = config.out.join(CHECKPOINT_DIR);
        let restore = (resume && own.join(checkpoint::MANIFEST_FILE).is_file()).then_some(own);
        Self::prepare_from(config, restore, progress)
    }

    /// A DPO-shaped run over the pairs in `data` with a trained checkpoint's adapters, for
    /// measuring them ([`SftRun::pair_metrics`]): a DPO checkpoint keeps its reference; an SFT
    /// checkpoint is compared with the bare backbone. `scratch` takes the profile cache.
    pub fn for_pairs(
        checkpoint_path: &Path,
        data: &Path,
        scratch: &Path,
        device: &str,
        progress: bool,
    ) -> Result<Self> {
        let (ck, _) = load_init(checkpoint_path)?;
        let dir = if checkpoint_path.join(CHECKPOINT_DIR).is_dir() {
            checkpoint_path.join(CHECKPOINT_DIR)
        } else {
            checkpoint_path.to_path_buf()
        };
        let mut config = ck.manifest.config;
        config.data = Some(data.into());
        config.out = scratch.into();
        config.max_items = 0;
        config.device = device.into();
        if config.stage == Stage::Grpo {
            config.stage = Stage::Dpo;
        }
        if config.stage == Stage::Sft {
            config.stage = Stage::Dpo;
            config.init = Some(dir.clone());
            config.reference = ReferenceModel::Base;
        }
        Self::prepare_from(config, Some(dir), progress)
    }

    /// [`SftRun::prepare`], restoring adapters, optimiser and state from `restore` when given.
    fn prepare_from(mut config: TrainConfig, restore: Option<PathBuf>, progress: bool) -> Result<Self> {
        config.validate()?;
        let init = match (&config.stage, &config.init) {
            (Stage::Dpo | Stage::Grpo, Some(path)) => {
                let (ck, id) = load_init(path)?;
                let from = ck.manifest.config.stage;
                if (config.stage == Stage::Dpo && from != Stage::Sft)
                    || (config.stage == Stage::Grpo && from == Stage::Grpo)
                {
                    return Err(Error::Invalid(format!(
                        "{}: --init must be an SFT (or, for GRPO, a DPO) run, this one is {:?}",
                        path.display(),
                        ck.manifest.config.stage
                    )));
                }
                inherit(&mut config, &ck.manifest.config);
                Some((ck, id))
            }
            _ => None,
        };
        let (init, init_id) = init.unzip();
        let method = config.method.effective();
        if init.is_some() && matches!(method.method, Method::Full | Method::Ptuning) {
            return Err(Error::Invalid(format!(
                "DPO trains LoRA-type adapters; the SFT run's method is `{:?}`",
                method.method
            )));
        }
        let device = crate::device::parse_device(&config.device)?;
        let backbone_path = crate::defaults::backbone(config.backbone.as_deref())?;
        let encoder_path = crate::defaults::encoder(config.encoder.as_deref())?;
        let data_path = config
            .data
            .clone()
            .ok_or_else(|| Error::Invalid("no training data (set `data` or --data)".into()))?;
        let mut loaded = jsonl::read::<Item>(&data_path, Item::validate)?;
        if progress {
            eprintln!("{}: {}", data_path.display(), loaded.summary());
        }
        if config.max_items > 0 {
            loaded.rows.truncate(config.max_items);
        }
        let restored = restore.as_deref().map(checkpoint::load).transpose()?;
        let checkpoint_dir = restore.unwrap_or_else(|| config.out.join(CHECKPOINT_DIR));
        if let Some(ck) = &restored {
            // (An SFT checkpoint measured on pairs is its own init.)
            let own_init = init_id.as_ref().is_some_and(|i| i.path == checkpoint_dir);
            if !own_init && ck.manifest.init.as_ref().map(|i| &i.sha256) != init_id.as_ref().map(|i| &i.sha256) {
                return Err(Error::Invalid(format!(
                    "{}: this run started from another SFT checkpoint than --init {} (or the stage changed); \
                     start afresh with --force",
                    checkpoint_dir.display(),
                    config.init.as_deref().unwrap_or(Path::new("(none)")).display()
                )));
            }
        }

        let mut store = TchTrainables::default();
        // A resumed run continues its own adapters; a fresh DPO run starts from the SFT run's.
        if let Some(adapters) = restored.as_ref().or(init.as_ref()).map(|ck| &ck.adapters) {
            for (name, t) in adapters {
                let t = t.f_to_device(device)?.f_detach()?.f_mul_scalar(1.0)?;
                store.tensors.insert(name.clone(), t.set_requires_grad(true));
            }
        }
        let full = method.method == Method::Full;
        let mut model = if full {
            Backbone::load_trainable(&backbone_path, device, &mut store)?
        } else {
            Backbone::load(&backbone_path, device)?
        };
        // An SFT step with bf16 products reads the frozen projections only as bf16: cast them
        // once here instead of at every product of every step. DPO and GRPO also run f32
        // forwards of the backbone, and DoRA renormalises the f32 weight, so they keep f32
        // weights and cast per product.
        let reads_only_bf16 = !matches!(method.method, Method::Full | Method::Dora);
        if reads_only_bf16 && config.stage == Stage::Sft && config.mixed_precision(device) {
            model.cast_frozen_projections(tch::Kind::BFloat16)?;
        }
        let encoder = ProfileEncoder::load(&encoder_path, device)?;
        let backbone_id = identity(
            &backbone_path,
            model.config().family.model_type(),
            weight_files(&backbone_path)?,
        )?;
        if let Some(ck) = &restored {
            if ck.manifest.backbone.sha256 != backbone_id.sha256 {
                return Err(Error::Invalid(format!(
                    "{}: the checkpoint was trained on a backbone with SHA-256 {}, but {} has {}",
                    checkpoint_dir.display(),
                    ck.manifest.backbone.sha256,
                    backbone_path.display(),
                    backbone_id.sha256
                )));
            }
        }
        let encoder_id = identity(&encoder_path, "sentence-encoder", weight_files(&encoder_path)?)?;
        if let Some(ck) = &init {
            let from = config.init.as_deref().unwrap_or(Path::new("?")).display();
            if ck.manifest.backbone.sha256 != backbone_id.sha256 {
                return Err(Error::Invalid(format!(
                    "--init {from} was trained on another backbone ({}, SHA-256 {}) than {} (SHA-256 {})",
                    ck.manifest.backbone.path.display(),
                    ck.manifest.backbone.sha256,
                    backbone_path.display(),
                    backbone_id.sha256
                )));
            }
            if ck.manifest.encoder.sha256 != encoder_id.sha256 {
                return Err(Error::Invalid(format!(
                    "--init {from} was trained with another profile encoder ({}) than {}",
                    ck.manifest.encoder.path.display(),
                    encoder_path.display()
                )));
            }
        }

        let order: Vec<&str> = config.profile_order.iter().map(String::as_str).collect();
        let (texts, item_rows) = profile::index(loaded.rows.iter().map(Item::profile), &order, config.profile_style);
        let profiles = embed_profiles(&encoder, &texts, &config.out, progress)?;
        let (mut examples, mut pairs, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
        let groups =
            (config.stage == Stage::Grpo).then(|| super::grpo_step::GroupTable::of(&loaded.rows, &config.grpo));
        let (mut too_long, mut not_pairs) = (0, 0);
        for (item, &row) in loaded.rows.iter().zip(&item_rows) {
            let text = &texts[row];
            let fits = match (config.stage, item) {
                (Stage::Sft, Item::Choice(c)) => {
                    tokenize(&model, c, text, &config, row, &[])?.map(|e| examples.push(e))
                }
                (Stage::Sft, Item::Chat(c)) => tokenize_chat(&model, c, text, &config, row)?.map(|e| examples.push(e)),
                // A choice item is a pair by the rule of `cuma data pairs`.
                (Stage::Dpo, Item::Choice(c)) => {
                    tokenize_pair(&model, &pairs::choice_pair(c, config.seed), text, &config, row)?
                        .map(|p| pairs.push(p))
                }
                (Stage::Dpo, Item::Chat(c)) if c.rejected.is_none() => {
                    not_pairs += 1;
                    Some(())
                }
                (Stage::Dpo, Item::Chat(c)) => tokenize_pair(&model, c, text, &config, row)?.map(|p| pairs.push(p)),
                (Stage::Grpo, item) => match GrpoPrompt::of(&model, item, text, &config, row, groups.as_ref())? {
                    Ok(p) => {
                        prompts.push(p);
                        Some(())
                    }
                    Err(()) => {
                        not_pairs += 1;
                        Some(())
                    }
                },
            };
            if fits.is_none() {
                too_long += 1;
            }
        }
        if examples.is_empty() && pairs.is_empty() && prompts.is_empty() {
            let note = match (not_pairs, config.stage) {
                (0, _) => String::new(),
                (n, Stage::Grpo) => {
                    format!(" ({n} chat items have no answer letter for the choice reward; use --reward judge)")
                }
                (n, _) => format!(" ({n} chat items have no `rejected` reply)"),
            };
            let unit = match config.stage {
                Stage::Sft => "example",
                Stage::Dpo => "pair",
                Stage::Grpo => "prompt",
            };
            return Err(Error::Invalid(format!(
                "no training {unit} fits max_len {}{note}",
                config.max_len
            )));
        }
        let reference = match (&init, config.reference) {
            (None, _) => ReferenceSource::None,
            (Some(_), ReferenceModel::Base) => ReferenceSource::Base,
            (Some(ck), ReferenceModel::Sft) => ReferenceSource::Adapters(
                ck.adapters
                    .iter()
                    .map(|(n, t)| Ok((n.clone(), t.f_to_device(device)?)))
                    .collect::<Result<_>>()?,
            ),
        };

        Self::assemble(Parts {
            config,
            model,
            encoder_dim: encoder.dim,
            profiles,
            examples,
            pairs,
            prompts,
            reference,
            too_long,
            not_pairs,
            store,
            restored,
            backbone: backbone_id,
            encoder: encoder_id,
            init: init_id,
        })
    }

    /// A run over prepared parts with nothing read from disk: `model` (for example
    /// [`Backbone::random`]), one profile vector of `encoder_dim` values per row of `profiles`,
    /// and tokenised `examples`. For benchmarks at a model's shape; full fine-tuning needs the
    /// backbone's own weights as trainables and is refused.
    pub fn synthetic(
        config: TrainConfig,
        model: Backbone,
        encoder_dim: usize,
        profiles: Tensor,
        examples: Vec<Example>,
    ) -> Result<Self> {
        config.validate()?;
        if config.method.effective().method == Method::Full {
            return Err(Error::Invalid(
                "a synthetic run trains adapters; full fine-tuning needs the backbone's weights as trainables".into(),
            ));
        }
        if config.stage != Stage::Sft {
            return Err(Error::Invalid("a synthetic run is an SFT run".into()));
        }
        if examples.is_empty() {
            return Err(Error::Invalid("a synthetic run needs at least one example".into()));
        }
        let made_up = |what: &str| ModelIdentity {
            path: model.source_path.clone(),
            architecture: what.into(),
            sha256: "(random weights)".into(),
        };
        let (backbone, encoder) = (made_up(model.config().family.model_type()), made_up("profile vectors"));
        Self::assemble(Parts {
            config,
            model,
            encoder_dim,
            profiles,
            examples,
            pairs: Vec::new(),
            prompts: Vec::new(),
            reference: ReferenceSource::None,
            too_long: 0,
            not_pairs: 0,
            store: TchTrainables::default(),
            restored: None,
            backbone,
            encoder,
            init: None,
        })
    }

    /// Attaches the method's adapters (fresh or from `restored`) and builds the optimiser.
    fn assemble(parts: Parts) -> Result<Self> {
        let Parts {
            config,
            mut model,
            encoder_dim,
            profiles,
            examples,
            pairs,
            prompts,
            reference,
            too_long,
            not_pairs,
            mut store,
            restored,
            backbone: backbone_id,
            encoder: encoder_id,
            init: init_id,
        } = parts;
        let method = config.method.effective();
        let device = model.device;
        let full = method.method == Method::Full;
        tch::manual_seed(config.seed as i64);
        let mut prefix = None;
        let profile_dim = if full {
            0 // every backbone weight trains; no adapters, no router
        } else if method.method == Method::Ptuning {
            prefix = Some(Prefix::init(
                &mut TchOps::new(device),
                &mut store,
                model.config(),
                method.prefix_tokens,
            )?);
            0
        } else {
            let adapters = DecoderAdapters::init(
                &mut TchOps::new(device),
                &mut store,
                &model.decoder,
                &method,
                encoder_dim,
            )
            .map_err(|e| Error::Invalid(format!("attaching adapters: {e}")))?;
            let d = adapters.profile_dim;
            model.decoder.adapters = Some(adapters);
            d
        };
        let reference = match reference {
            ReferenceSource::None => None,
            ReferenceSource::Base => Some(Reference { adapters: None }),
            ReferenceSource::Adapters(tensors) => {
                let n = tensors.len();
                let mut frozen = TchTrainables {
                    tensors: tensors.into_iter().collect(),
                };
                let adapters = DecoderAdapters::init(
                    &mut TchOps::new(device),
                    &mut frozen,
                    &model.decoder,
                    &method,
                    encoder_dim,
                )
                .map_err(|e| Error::Invalid(format!("the reference adapters: {e}")))?;
                if frozen.tensors.len() != n {
                    return Err(Error::Invalid(
                        "the SFT run's adapters do not match its own method settings".into(),
                    ));
                }
                Some(Reference {
                    adapters: Some(adapters),
                })
            }
        };
        let mut optimizer = AdamW::new(
            store.tensors.values().map(Tensor::shallow_clone).collect(),
            AdamWConfig::default(),
        )?;
        let state = match &restored {
            Some(ck) => {
                optimizer.restore(&ck.optimizer)?;
                ck.manifest.state.clone()
            }
            None => TrainState {
                step: 0,
                items_seen: 0,
                last_loss: None,
            },
        };
        // Steps logged after the checkpoint (a kill between saves) are run again: drop them, so
        // every step appears once, in order.
        cut_metrics(&config.out.join(METRICS_FILE), state.step)?;
        let manifest = CheckpointManifest {
            version: checkpoint::CHECKPOINT_VERSION,
            config: config.clone(),
            backbone: backbone_id,
            encoder: encoder_id,
            profile_dim,
            state: state.clone(),
            init: init_id,
        };
        Ok(Self {
            config,
            model,
            profiles,
            examples,
            pairs,
            prompts,
            reference,
            store,
            optimizer,
            state,
            manifest,
            too_long,
            not_pairs,
            prefix,
            epoch_order: None,
        })
    }

    /// How many units (examples, or pairs in DPO) one epoch has.
    fn units(&self) -> usize {
        match self.config.stage {
            Stage::Sft => self.examples.len(),
            Stage::Dpo => self.pairs.len(),
            Stage::Grpo => self.prompts.len(),
        }
    }

    /// The index of the unit at global position `i` of the seeded, per-epoch shuffled order.
    /// (Shuffled once per epoch and cached.)
    fn unit_at(&mut self, i: usize) -> usize {
        let n = self.units();
        let (epoch, pos) = (i / n, i % n);
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..n).collect();
            let mut rng = Rng::new(self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
            rng.shuffle(&mut order);
            if self.config.length_buckets > 0 && self.config.stage == Stage::Sft {
                let lengths: Vec<usize> = self.examples.iter().map(|e| e.ids.len()).collect();
                bucket_by_length(
                    &mut order,
                    &lengths,
                    self.config.batch_size,
                    self.config.length_buckets,
                    &mut rng,
                );
            }
            self.epoch_order = Some((epoch, order));
        }
        self.epoch_order.as_ref().map_or(pos, |(_, o)| o[pos])
    }

    /// The units of the micro-batch that starts at global position `start`.
    fn batch_units(&mut self, start: usize) -> Vec<usize> {
        (start..start + self.config.batch_size)
            .map(|i| self.unit_at(i))
            .collect()
    }

    /// The examples of every micro-batch from the current state to `config.steps`, in training
    /// order: exactly what [`SftRun::train`] feeds the model (SFT only).
    pub fn planned_batches(&mut self) -> Result<Vec<Vec<&Example>>> {
        if self.config.stage != Stage::Sft {
            return Err(Error::Invalid("only an SFT run's batches can be listed".into()));
        }
        let micro = self.config.steps.saturating_sub(self.state.step) * self.config.grad_accum;
        let (first, batch) = (self.state.items_seen, self.config.batch_size);
        let units: Vec<Vec<usize>> = (0..micro).map(|m| self.batch_units(first + m * batch)).collect();
        Ok(units
            .into_iter()
            .map(|batch| batch.into_iter().map(|u| &self.examples[u]).collect())
            .collect())
    }

    /// The padded forward of `rows` through the model as it is (adapters attached or not): the
    /// log-probabilities of every target token (of `logits / temperature`), the routing and the
    /// routers' balance loss; `replay` forces recorded expert choices (one `[rows, s, k]` per
    /// router, `s` the longest row).
    pub(super) fn forward_targets(
        &self,
        o: &mut TchOps,
        rows: &[&Example],
        replay: Option<Vec<Tensor>>,
        temperature: f64,
    ) -> Result<TargetForward> {
        let device = self.model.device;
        let ids: Vec<Vec<u32>> = rows.iter().map(|e| e.ids.clone()).collect();
        let (ids_t, mask_t) = pad_batch(&ids, 0, Side::Right, device)?;
        let s = ids_t.size()[1] as usize;
        let (mut positions, mut targets, mut token_rows) = (Vec::new(), Vec::new(), Vec::new());
        for (r, e) in rows.iter().enumerate() {
            for p in e.targets_from..e.ids.len() {
                positions.push((r * s + p - 1) as i64);
                targets.push(i64::from(e.ids[p]));
                token_rows.push(r as i64);
            }
        }
        let profile_rows: Vec<i64> = rows.iter().map(|e| e.profile as i64).collect();
        let profile = self
            .profiles
            .f_index_select(0, &Tensor::f_from_slice(&profile_rows)?.f_to_device(device)?)?;
        // P-tuning: the virtual tokens enter as a past every sequence attends to.
        let (past, full_mask) = match &self.prefix {
            Some(p) => {
                let ones = Tensor::f_ones([rows.len() as i64, 1, 1, 1], (Kind::Float, device))?;
                let prefix_mask = Tensor::f_ones([rows.len() as i64, p.tokens as i64], (Kind::Int64, device))?;
                (Some(p.past(o, &ones)?), Tensor::f_cat(&[&prefix_mask, &mask_t], 1)?)
            }
            None => (None, mask_t.shallow_clone()),
        };
        let out = self.model.run_hidden_replaying(
            o,
            &StepInput {
                ids: &ids_t,
                attention_mask: &full_mask,
                past: past.as_deref(),
                profile: Some(&profile),
            },
            replay,
        )?;
        let hidden = out.hidden.f_view([-1, self.model.config().hidden_size as i64])?;
        let picked = hidden.f_index_select(0, &Tensor::f_from_slice(&positions)?.f_to_device(device)?)?;
        let mut logits = self.model.decoder.logits(o, &picked)?;
        if temperature != 1.0 {
            logits = logits.f_div_scalar(temperature)?;
        }
        let m = &self.config.method;
        let token_mask = mask_t.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?;
        let mut balance = Tensor::f_zeros([1], (Kind::Float, device))?;
        for r in &out.routing {
            let b = balance_loss(o, &r.gates, &r.selected, &token_mask, m.experts, m.top_k)?;
            balance = balance.f_add(&b)?;
        }
        Ok(TargetForward {
            log_probs: logits.f_log_softmax(-1, Kind::Float)?,
            targets: Tensor::f_from_slice(&targets)?.f_to_device(device)?,
            token_rows: Tensor::f_from_slice(&token_rows)?.f_to_device(device)?,
            rows: rows.len(),
            balance: balance.f_sum(Kind::Float)?,
            routers: out.routing.len(),
            tokens: rows.iter().map(|e| e.ids.len()).sum(),
            routing: out.routing,
        })
    }

    /// The balance weight that applies in this stage (0 without routers or with balance off).
    fn balance_weight(&self, routers: usize) -> f64 {
        let m = &self.config.method;
        match self.config.stage {
            _ if !m.balance || routers == 0 => 0.0,
            Stage::Sft => m.balance_lambda,
            Stage::Dpo => self.config.dpo.balance_lambda,
            Stage::Grpo => self.config.grpo.balance_lambda,
        }
    }

    /// Loss of one micro-batch; backpropagates `loss / accum`.
    fn micro_step(&mut self, start: usize, accum: f64) -> Result<MicroStep> {
        let units = self.batch_units(start);
        let device = self.model.device;
        let mixed = self.config.mixed_precision(device);
        match self.config.stage {
            Stage::Sft => {
                let rows: Vec<&Example> = units.iter().map(|&u| &self.examples[u]).collect();
                let mut o = TchOps::training(device, mixed);
                let f = self.forward_targets(&mut o, &rows, None, 1.0)?;
                let task = f
                    .log_probs
                    .f_nll_loss(&f.targets, None::<Tensor>, tch::Reduction::Mean, -100)?;
                self.finish_micro(task, &f, accum, StageMetrics::None)
            }
            Stage::Dpo => self.dpo_micro(&units, accum),
            Stage::Grpo => self.grpo_micro(&units, accum, start),
        }
    }

    /// Runs `f` with the reference model's adapters swapped in (the policy's are back in place
    /// afterwards, whatever happened).
    pub(super) fn with_reference<R>(&mut self, f: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        let Some(reference) = self.reference.as_mut() else {
            return Err(Error::Invalid("a preference step without a reference model".into()));
        };
        std::mem::swap(&mut self.model.decoder.adapters, &mut reference.adapters);
        let out = f(self);
        if let Some(reference) = self.reference.as_mut() {
            std::mem::swap(&mut self.model.decoder.adapters, &mut reference.adapters);
        }
        out
    }

    /// Adds the balance loss, backpropagates `(task + lambda * balance) / accum` and reads the
    /// numbers of the step.
    pub(super) fn finish_micro(
        &self,
        task: Tensor,
        f: &TargetForward,
        accum: f64,
        stage: StageMetrics,
    ) -> Result<MicroStep> {
        let lambda = self.balance_weight(f.routers);
        let loss = task.f_add(&f.balance.f_mul_scalar(lambda)?)?;
        loss.f_div_scalar(accum)?.backward();
        Ok(MicroStep {
            loss: task.f_double_value(&[])?,
            balance: f.balance.f_double_value(&[])? / f.routers.max(1) as f64,
            tokens: f.tokens,
            stage,
        })
    }

    /// Saves the run's checkpoint.
    pub fn save(&mut self) -> Result<()> {
        self.manifest.state = self.state.clone();
        let opt = self
            .optimizer
            .state()
            .into_iter()
            .map(|(n, t)| Ok((n, to_cpu(&t)?)))
            .collect::<Result<Vec<(String, Tensor)>>>()?;
        checkpoint::save(
            &self.config.out.join(CHECKPOINT_DIR),
            &self.manifest,
            &self.adapters_on_cpu()?,
            &opt,
        )
    }

    /// Keeps the adapters of the current step in `snapshots/step-NNNNNN/` (no optimiser state).
    pub fn snapshot(&mut self) -> Result<()> {
        self.manifest.state = self.state.clone();
        let dir = self
            .config
            .out
            .join(SNAPSHOT_DIR)
            .join(format!("step-{:06}", self.state.step));
        checkpoint::save(&dir, &self.manifest, &self.adapters_on_cpu()?, &[])
    }

    fn adapters_on_cpu(&self) -> Result<Vec<(String, Tensor)>> {
        self.store
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), to_cpu(t)?)))
            .collect()
    }

    /// Trains until `config.steps` or until `stop` is set (then saves and returns early).
    /// Appends each step to `metrics.jsonl`.
    pub fn train(&mut self, progress: bool, stop: &AtomicBool) -> Result<Vec<StepMetrics>> {
        self.train_until(self.config.steps, progress, stop)
    }

    /// [`SftRun::train`], pausing (with a checkpoint) after step `last` (the schedule still
    /// spans `config.steps`).
    pub fn train_until(&mut self, last: usize, progress: bool, stop: &AtomicBool) -> Result<Vec<StepMetrics>> {
        use std::io::Write;
        let metrics_path = self.config.out.join(METRICS_FILE);
        std::fs::create_dir_all(&self.config.out).map_err(crate::error::io(&self.config.out))?;
        let mut metrics_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(crate::error::io(&metrics_path))?;
        let c = self.config.clone();
        let bar = progress_bar(c.steps as u64, progress, "training");
        bar.set_position(self.state.step as u64);
        let mut history = Vec::new();
        let last = last.min(c.steps);
        while self.state.step < last {
            let started = std::time::Instant::now();
            tch::manual_seed(
                (c.seed as i64)
                    .wrapping_mul(1_000_003)
                    .wrapping_add(self.state.step as i64),
            );
            self.optimizer.zero_grad();
            let (mut loss, mut bal, mut tokens) = (0.0, 0.0, 0);
            let mut dpo: Option<DpoMetrics> = None;
            let mut grpo: Option<GrpoMetrics> = None;
            let n = c.grad_accum as f64;
            for _ in 0..c.grad_accum {
                let m = self.micro_step(self.state.items_seen, n)?;
                self.state.items_seen += c.batch_size;
                loss += m.loss / n;
                bal += m.balance / n;
                tokens += m.tokens;
                match &m.stage {
                    StageMetrics::None => {}
                    StageMetrics::Dpo(d) => dpo.get_or_insert_with(Default::default).accumulate(d, n),
                    StageMetrics::Grpo(g) => grpo.get_or_insert_with(Default::default).accumulate(g, n),
                }
            }
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "loss became {loss} at step {}; lower the learning rate",
                    self.state.step
                )));
            }
            let grad_norm = self.optimizer.clip_grad_norm(c.clip)?;
            let lr = cosine_with_warmup(c.lr, self.state.step, c.warmup_steps, c.steps);
            self.optimizer.update(lr)?;
            self.state.step += 1;
            self.state.last_loss = Some(loss);
            let m = StepMetrics {
                step: self.state.step,
                loss,
                balance: bal,
                lr,
                grad_norm,
                tokens,
                seconds: started.elapsed().as_secs_f64(),
                dpo,
                grpo,
            };
            writeln!(
                metrics_file,
                "{}",
                serde_json::to_string(&m).map_err(|e| Error::Invalid(e.to_string()))?
            )
            .map_err(crate::error::io(&metrics_path))?;
            let dpo_note = match (&m.dpo, &m.grpo) {
                (Some(d), _) => format!(" margin {:.3} acc {:.2}", d.margin, d.accuracy),
                (_, Some(g)) => format!(
                    " reward {:.3} kl {:.4} clip {:.3} routing diff {:.3}",
                    g.reward_mean, g.kl, g.clip_fraction, g.routing_disagreement
                ),
                _ => String::new(),
            };
            bar.set_message(format!(
                "loss {loss:.4}{dpo_note} bal {bal:.3} lr {lr:.2e} {:.0} tok/s",
                tokens as f64 / m.seconds.max(1e-9)
            ));
            bar.inc(1);
            history.push(m);
            if self.state.step % c.checkpoint_every == 0 || self.state.step == last {
                self.save()?;
            }
            if c.snapshot_every > 0 && (self.state.step % c.snapshot_every == 0 || self.state.step == c.steps) {
                self.snapshot()?;
            }
            if stop.load(Ordering::SeqCst) {
                self.save()?;
                bar.abandon_with_message(format!("interrupted at step {}; checkpoint saved", self.state.step));
                return Ok(history);
            }
        }
        bar.finish_with_message(format!(
            "done: {} steps, last loss {:.4}",
            self.state.step,
            self.state.last_loss.unwrap_or(f64::NAN)
        ));
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_buckets_keep_every_unit_and_group_similar_lengths() {
        // 24 units of lengths 0..24 in a shuffled order; batches of 4 in windows of 3 batches.
        let lengths: Vec<usize> = (0..24).collect();
        let mut order: Vec<usize> = (0..24).collect();
        let mut rng = Rng::new(3);
        rng.shuffle(&mut order);
        let shuffled = order.clone();
        bucket_by_length(&mut order, &lengths, 4, 3, &mut rng);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..24).collect::<Vec<_>>(), "a permutation");
        for (window, before) in order.chunks(12).zip(shuffled.chunks(12)) {
            let (mut a, mut b) = (window.to_vec(), before.to_vec());
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "units stay in their window");
            for batch in window.chunks(4) {
                let ranks: Vec<usize> = batch
                    .iter()
                    .map(|u| b.iter().position(|x| x == u).expect("in window"))
                    .collect();
                let (lo, hi) = (ranks.iter().min().expect("rank"), ranks.iter().max().expect("rank"));
                assert_eq!(hi - lo, 3, "a batch holds 4 neighbours in length: {batch:?}");
            }
        }
        // Padding: the longest row per batch, summed, falls against the shuffled order.
        let padded = |o: &[usize]| -> usize { o.chunks(4).map(|c| c.iter().max().expect("row") * 4).sum() };
        assert!(padded(&order) < padded(&shuffled));
    }
}
