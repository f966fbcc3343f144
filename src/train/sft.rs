//! Supervised fine-tuning of adapters on multiple-choice survey items (spec section 6): the
//! profile (optionally) as the system prompt, the question with lettered options as the user
//! turn, the loss on the answer letter only (optionally also the end-of-turn tokens), plus the
//! routers' load-balancing loss. Seeded and resumable: batch composition depends only on how many
//! items were consumed, dropout on the step number. libtorch's generator is process-global, so
//! two runs in one process must not train at the same time if they are to stay reproducible.

use super::checkpoint::{self, CheckpointManifest, ModelIdentity, TrainState};
use super::config::TrainConfig;
use super::optim::{AdamW, AdamWConfig};
use super::schedule::cosine_with_warmup;
use crate::data::{jsonl, profile, ChatItem, ChoiceItem, Item};
use crate::models::backbone::{Backbone, StepInput};
use crate::models::inputs::pad_batch;
use crate::models::ProfileEncoder;
use crate::sampling::Rng;
use crate::tch_ops::TchOps;
use crate::tokenizer::chat::render;
use crate::trainables::TchTrainables;
use crate::{Error, Result};
use cuma_model::adapters::{balance_loss, DecoderAdapters, Prefix};
use cuma_model::config::Method;
use cuma_model::serve::padding::Side;
use cuma_model::serve::prompt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

/// System prompt when the profile is kept out of the prompt (spec section 6).
pub use cuma_model::text::NEUTRAL_SYSTEM;
/// The checkpoint directory inside a run.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// One tokenised training example.
#[derive(Debug, Clone)]
pub struct Example {
    pub ids: Vec<u32>,
    /// Index of the first token that carries loss (the answer letter).
    pub targets_from: usize,
    /// Row of the profile vector.
    pub profile: usize,
}

/// Renders and tokenises a chat item with the loss on its final reply (plus the end-of-turn
/// token); the profile becomes the system message unless the item has its own. `None` when
/// longer than `max_len`.
pub fn tokenize_chat(
    model: &Backbone,
    item: &ChatItem,
    profile_text: &str,
    cfg: &TrainConfig,
    profile_row: usize,
) -> Result<Option<Example>> {
    let (context, reply) = item
        .split_reply()
        .map_err(|e| Error::Invalid(format!("chat item {}: {e}", item.id)))?;
    let system = prompt::system_text(profile_text, cfg.method.profile_in_prompt, NEUTRAL_SYSTEM);
    let messages = prompt::with_system(system, context);
    let prompt = render(&model.tokenizer, &messages)?;
    let mut ids = model.tokenizer.encode(&prompt, false)?;
    let targets_from = ids.len();
    ids.extend(model.tokenizer.encode(reply, false)?);
    ids.extend(model.tokenizer.end_of_turn.first());
    Ok(
        (ids.len() <= cfg.max_len && ids.len() > targets_from).then_some(Example {
            ids,
            targets_from,
            profile: profile_row,
        }),
    )
}

/// Renders and tokenises a multiple-choice item, after `shots` (answered examples shown as
/// earlier turns; empty in training); `None` when it is longer than `max_len`.
pub fn tokenize(
    model: &Backbone,
    item: &ChoiceItem,
    profile_text: &str,
    cfg: &TrainConfig,
    profile_row: usize,
    shots: &[&ChoiceItem],
) -> Result<Option<Example>> {
    let system = prompt::system_text(profile_text, cfg.method.profile_in_prompt, NEUTRAL_SYSTEM);
    let shots: Vec<prompt::Shot<'_>> = shots
        .iter()
        .map(|s| prompt::Shot {
            question: &s.question,
            options: &s.options,
            answer: s.answer,
        })
        .collect();
    let messages = prompt::choice_messages(&Default::default(), system, &shots, &item.question, &item.options);
    let prompt = render(&model.tokenizer, &messages)?;
    let mut ids = model.tokenizer.encode(&prompt, false)?;
    let targets_from = ids.len();
    let letter = model.tokenizer.encode(&item.answer_letter().to_string(), false)?;
    ids.extend(letter);
    if cfg.loss_on_end_of_turn {
        ids.extend(model.tokenizer.end_of_turn.first());
    }
    Ok((ids.len() <= cfg.max_len).then_some(Example {
        ids,
        targets_from,
        profile: profile_row,
    }))
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

/// A prepared run: model with adapters attached, data, optimiser, state.
pub struct SftRun {
    pub config: TrainConfig,
    pub model: Backbone,
    pub profiles: Tensor,
    pub examples: Vec<Example>,
    pub store: TchTrainables,
    pub optimizer: AdamW,
    pub state: TrainState,
    pub manifest: CheckpointManifest,
    /// Items skipped as too long.
    pub too_long: usize,
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

/// What [`SftRun::assemble`] builds a run from.
struct Parts {
    config: TrainConfig,
    model: Backbone,
    encoder_dim: usize,
    profiles: Tensor,
    examples: Vec<Example>,
    too_long: usize,
    /// Trainables already filled (full fine-tuning's backbone, a checkpoint's adapters).
    store: TchTrainables,
    restored: Option<checkpoint::Checkpoint>,
    backbone: ModelIdentity,
    encoder: ModelIdentity,
}

impl SftRun {
    /// Loads models and data, embeds profiles, attaches adapters; resumes from the run's
    /// checkpoint when `resume` and one exists.
    pub fn prepare(config: TrainConfig, resume: bool, progress: bool) -> Result<Self> {
        config.validate()?;
        let method = config.method.effective();
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
        let checkpoint_dir = config.out.join(CHECKPOINT_DIR);
        let restored = if resume && checkpoint_dir.join(checkpoint::MANIFEST_FILE).is_file() {
            Some(checkpoint::load(&checkpoint_dir)?)
        } else {
            None
        };

        let mut store = TchTrainables::default();
        if let Some(ck) = &restored {
            for (name, t) in &ck.adapters {
                store
                    .tensors
                    .insert(name.clone(), t.f_to_device(device)?.set_requires_grad(true));
            }
        }
        let full = method.method == Method::Full;
        let model = if full {
            Backbone::load_trainable(&backbone_path, device, &mut store)?
        } else {
            Backbone::load(&backbone_path, device)?
        };
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

        let order: Vec<&str> = config.profile_order.iter().map(String::as_str).collect();
        let (texts, item_rows) = profile::index(loaded.rows.iter().map(Item::profile), &order, config.profile_style);
        let profiles = embed_profiles(&encoder, &texts, &config.out, progress)?;
        let mut examples = Vec::with_capacity(loaded.rows.len());
        let mut too_long = 0;
        for (item, &row) in loaded.rows.iter().zip(&item_rows) {
            let example = match item {
                Item::Choice(c) => tokenize(&model, c, &texts[row], &config, row, &[])?,
                Item::Chat(c) => tokenize_chat(&model, c, &texts[row], &config, row)?,
            };
            match example {
                Some(e) => examples.push(e),
                None => too_long += 1,
            }
        }
        if examples.is_empty() {
            return Err(Error::Invalid(format!(
                "no training example fits max_len {}",
                config.max_len
            )));
        }

        Self::assemble(Parts {
            config,
            model,
            encoder_dim: encoder.dim,
            profiles,
            examples,
            too_long,
            store,
            restored,
            backbone: backbone_id,
            encoder: encoder_id,
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
            too_long: 0,
            store: TchTrainables::default(),
            restored: None,
            backbone,
            encoder,
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
            too_long,
            mut store,
            restored,
            backbone: backbone_id,
            encoder: encoder_id,
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
        };
        Ok(Self {
            config,
            model,
            profiles,
            examples,
            store,
            optimizer,
            state,
            manifest,
            too_long,
            prefix,
            epoch_order: None,
        })
    }

    /// The example at global position `i` of the seeded, per-epoch shuffled order.
    /// (Shuffled once per epoch and cached.)
    fn example_at(&mut self, i: usize) -> &Example {
        let n = self.examples.len();
        let (epoch, pos) = (i / n, i % n);
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..n).collect();
            Rng::new(self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)).shuffle(&mut order);
            self.epoch_order = Some((epoch, order));
        }
        let order = self.epoch_order.as_ref().map_or(pos, |(_, o)| o[pos]);
        &self.examples[order]
    }

    /// Loss of one micro-batch; backpropagates `loss / accum`. Returns (task loss, mean balance, tokens).
    fn micro_step(&mut self, start: usize, accum: f64) -> Result<(f64, f64, usize)> {
        let device = self.model.device;
        let batch: Vec<Example> = (start..start + self.config.batch_size)
            .map(|i| self.example_at(i).clone())
            .collect();
        let rows: Vec<Vec<u32>> = batch.iter().map(|e| e.ids.clone()).collect();
        let (ids_t, mask_t) = pad_batch(&rows, 0, Side::Right, device)?;
        let s = ids_t.size()[1] as usize;
        let (mut positions, mut targets) = (Vec::new(), Vec::new());
        for (r, e) in batch.iter().enumerate() {
            for p in e.targets_from..e.ids.len() {
                positions.push((r * s + p - 1) as i64);
                targets.push(i64::from(e.ids[p]));
            }
        }
        let rows: Vec<i64> = batch.iter().map(|e| e.profile as i64).collect();
        let profile = self
            .profiles
            .f_index_select(0, &Tensor::f_from_slice(&rows)?.f_to_device(device)?)?;
        let mixed = self.config.force_bf16 || (self.config.bf16_on_cuda && device.is_cuda());
        let mut o = TchOps::training(device, mixed);
        // P-tuning: the virtual tokens enter as a past every sequence attends to.
        let (past, full_mask) = match &self.prefix {
            Some(p) => {
                let ones = Tensor::f_ones([batch.len() as i64, 1, 1, 1], (Kind::Float, device))?;
                let prefix_mask = Tensor::f_ones([batch.len() as i64, p.tokens as i64], (Kind::Int64, device))?;
                (
                    Some(p.past(&mut o, &ones)?),
                    Tensor::f_cat(&[&prefix_mask, &mask_t], 1)?,
                )
            }
            None => (None, mask_t.shallow_clone()),
        };
        let out = self.model.run_hidden(
            &mut o,
            &StepInput {
                ids: &ids_t,
                attention_mask: &full_mask,
                past: past.as_deref(),
                profile: Some(&profile),
            },
        )?;
        let hidden = out.hidden.f_view([-1, self.model.config().hidden_size as i64])?;
        let picked = hidden.f_index_select(0, &Tensor::f_from_slice(&positions)?.f_to_device(device)?)?;
        let logits = self.model.decoder.logits(&mut o, &picked)?;
        let target_t = Tensor::f_from_slice(&targets)?.f_to_device(device)?;
        let task =
            logits
                .f_log_softmax(-1, Kind::Float)?
                .f_nll_loss(&target_t, None::<Tensor>, tch::Reduction::Mean, -100)?;
        let m = &self.config.method;
        let token_mask = mask_t.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?;
        let mut balance = Tensor::f_zeros([1], (Kind::Float, device))?;
        for r in &out.routing {
            let b = balance_loss(&mut o, &r.gates, &r.selected, &token_mask, m.experts, m.top_k)?;
            balance = balance.f_add(&b)?;
        }
        let n_routers = out.routing.len().max(1) as f64;
        let lambda = if m.balance && !out.routing.is_empty() {
            m.balance_lambda
        } else {
            0.0
        };
        let loss = task.f_add(&balance.f_sum(Kind::Float)?.f_mul_scalar(lambda)?)?;
        loss.f_div_scalar(accum)?.backward();
        let tokens = batch.iter().map(|e| e.ids.len()).sum();
        Ok((
            task.f_double_value(&[])?,
            balance.f_double_value(&[0])? / n_routers,
            tokens,
        ))
    }

    /// Saves the run's checkpoint.
    pub fn save(&mut self) -> Result<()> {
        self.manifest.state = self.state.clone();
        let cpu = |t: &Tensor| t.f_detach().and_then(|t| t.f_to_device(tch::Device::Cpu));
        let adapters = self
            .store
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), cpu(t)?)))
            .collect::<Result<Vec<(String, Tensor)>>>()?;
        let opt = self
            .optimizer
            .state()
            .into_iter()
            .map(|(n, t)| Ok((n, cpu(&t)?)))
            .collect::<Result<Vec<(String, Tensor)>>>()?;
        checkpoint::save(&self.config.out.join(CHECKPOINT_DIR), &self.manifest, &adapters, &opt)
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
            for _ in 0..c.grad_accum {
                let (l, b, t) = self.micro_step(self.state.items_seen, c.grad_accum as f64)?;
                self.state.items_seen += c.batch_size;
                loss += l / c.grad_accum as f64;
                bal += b / c.grad_accum as f64;
                tokens += t;
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
            };
            writeln!(
                metrics_file,
                "{}",
                serde_json::to_string(&m).map_err(|e| Error::Invalid(e.to_string()))?
            )
            .map_err(crate::error::io(&metrics_path))?;
            bar.set_message(format!(
                "loss {loss:.4} bal {bal:.3} lr {lr:.2e} {:.0} tok/s",
                tokens as f64 / m.seconds.max(1e-9)
            ));
            bar.inc(1);
            history.push(m);
            if self.state.step % c.checkpoint_every == 0 || self.state.step == last {
                self.save()?;
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
