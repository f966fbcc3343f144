//! `TrainConfig`: everything a run needs, from a TOML file and/or flags (flags win), with the
//! paper's presets. Saved into every checkpoint's `cuma.json`.

use crate::data::ProfileStyle;
use crate::{Error, Result};
use cuma_model::config::MethodConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Current version of the training config format.
pub const TRAIN_CONFIG_VERSION: u32 = 1;

/// The largest micro-batch (and gradient accumulation) a run may ask for.
pub const MAX_BATCH: usize = 1 << 16;
/// The most optimiser steps a run may ask for.
pub const MAX_STEPS: usize = 1 << 30;
/// The longest training example in tokens.
pub const MAX_LEN: usize = 1 << 20;

/// Which model gives the reference log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceModel {
    /// The SFT run the policy starts from, frozen (standard DPO).
    #[default]
    Sft,
    /// The bare backbone with no adapters (what the reference code does).
    Base,
}

/// What a run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Supervised fine-tuning on the answers / final replies.
    #[default]
    Sft,
    /// Direct preference optimisation on chosen / rejected pairs, from an SFT run (`init`).
    Dpo,
    /// Group relative policy optimisation with sampled completions and rewards, from a run
    /// (`init`).
    Grpo,
}

/// A training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub version: u32,
    /// Backbone (default: the embedded SmolLM2).
    pub backbone: Option<PathBuf>,
    /// Profile encoder (default: the embedded MiniLM).
    pub encoder: Option<PathBuf>,
    /// Canonical JSONL training items.
    pub data: Option<PathBuf>,
    /// Run directory (checkpoints, metrics, profile cache).
    pub out: PathBuf,
    pub stage: Stage,
    /// DPO, GRPO: the run directory (or its `checkpoint/`) whose adapters start the policy.
    pub init: Option<PathBuf>,
    /// DPO, GRPO: the frozen model the policy is compared with (GRPO: for its KL).
    pub reference: ReferenceModel,
    pub method: MethodConfig,
    /// Settings of the DPO stage.
    pub dpo: super::dpo::DpoConfig,
    /// Settings of the GRPO stage.
    pub grpo: super::grpo::GrpoConfig,
    pub lr: f64,
    pub warmup_steps: usize,
    /// Optimiser steps (each `batch_size * grad_accum` items).
    pub steps: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_len: usize,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Every this many steps, also keep the adapters (no optimiser state) in
    /// `snapshots/step-NNNNNN/`, for evaluating the run along its way (0: never).
    pub snapshot_every: usize,
    /// SFT: form each epoch's batches inside windows of this many batches of the shuffled
    /// order, sorted by length (then the window's batches shuffled), so a batch pads little
    /// (0: batches straight from the shuffled order).
    pub length_buckets: usize,
    pub clip: f64,
    /// Also train on the end-of-turn tokens after the answer letter (reference behaviour).
    pub loss_on_end_of_turn: bool,
    pub profile_style: ProfileStyle,
    /// Attribute order of the profile text (attributes not listed follow alphabetically).
    pub profile_order: Vec<String>,
    /// Use only the first N items of the data (0: all).
    pub max_items: usize,
    pub device: String,
    /// Matrix products in bf16 on CUDA (fp32 master weights); off on CPU unless `force_bf16`.
    pub bf16_on_cuda: bool,
    /// bf16 matrix products on any device (for tests of the mixed-precision path on CPU).
    pub force_bf16: bool,
}

impl TrainConfig {
    /// Whether a training step on `device` computes its matrix products in bf16.
    pub fn mixed_precision(&self, device: tch::Device) -> bool {
        self.force_bf16 || (self.bf16_on_cuda && device.is_cuda())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            version: TRAIN_CONFIG_VERSION,
            backbone: None,
            encoder: None,
            data: None,
            out: PathBuf::from("runs/cuma"),
            stage: Stage::Sft,
            init: None,
            reference: ReferenceModel::Sft,
            method: MethodConfig::default(),
            dpo: Default::default(),
            grpo: Default::default(),
            lr: 2e-4,
            warmup_steps: 10,
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            max_len: 1024,
            seed: 0,
            checkpoint_every: 50,
            snapshot_every: 0,
            length_buckets: 0,
            clip: 1.0,
            loss_on_end_of_turn: false,
            profile_style: ProfileStyle::Wvb,
            profile_order: crate::data::profile::DEFAULT_ORDER
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_items: 0,
            device: "auto".into(),
            bf16_on_cuda: true,
            force_bf16: false,
        }
    }
}

/// The paper's hyperparameter sets (spec section 6): effective batch 32, max length 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// r = 8, alpha 16, lr 2e-5.
    PaperR8,
    /// r = 64, alpha 128, lr 5e-6.
    PaperR64,
}

impl TrainConfig {
    /// Reads a TOML file.
    pub fn from_toml(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        toml::from_str(&text).map_err(|e| Error::Json {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Applies a preset.
    pub fn apply_preset(&mut self, p: Preset) {
        let (rank, lr) = match p {
            Preset::PaperR8 => (8, 2e-5),
            Preset::PaperR64 => (64, 5e-6),
        };
        self.method.rank = rank;
        self.method.alpha = 2.0 * rank as f64;
        self.lr = lr;
        self.max_len = 1024;
        if self.batch_size * self.grad_accum != 32 {
            self.grad_accum = 32usize.div_ceil(self.batch_size.max(1));
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        self.method.validate().map_err(|e| Error::Invalid(e.to_string()))?;
        let bad = |m: &str| Err(Error::Invalid(m.into()));
        if self.version != TRAIN_CONFIG_VERSION {
            return bad(&format!(
                "train config version {} (this build reads {TRAIN_CONFIG_VERSION})",
                self.version
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.steps == 0 {
            return bad("batch_size, grad_accum and steps must be positive");
        }
        // Beyond these a run cannot be meant: they would size impossible allocations (a batch
        // of 10^12 rows) or overflow the count of items seen.
        if self.batch_size > MAX_BATCH || self.grad_accum > MAX_BATCH {
            return bad(&format!(
                "batch_size and grad_accum must be at most {MAX_BATCH}, got {} and {}",
                self.batch_size, self.grad_accum
            ));
        }
        if self.steps > MAX_STEPS || self.max_len > MAX_LEN {
            return bad(&format!(
                "steps must be at most {MAX_STEPS} and max_len at most {MAX_LEN}, got {} and {}",
                self.steps, self.max_len
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(&format!("lr must be positive, got {}", self.lr));
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be positive");
        }
        match self.stage {
            Stage::Sft => {}
            Stage::Dpo => self.dpo.validate().map_err(Error::Invalid)?,
            Stage::Grpo => self.grpo.validate().map_err(Error::Invalid)?,
        }
        if self.stage != Stage::Sft && self.init.is_none() {
            return bad(&format!(
                "the {:?} stage starts from a trained run: pass --init <run directory>",
                self.stage
            ));
        }
        Ok(())
    }
}
