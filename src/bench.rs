//! Throughput at a model's shape: SFT steps and decoding on a backbone with random weights
//! ([`Backbone::random`]), so that speed and memory at 8B scale can be measured on a machine the
//! checkpoint cannot reach. The training side runs the real SFT loop ([`SftRun::synthetic`]) on a
//! fixed batch of random token ids, each with its answer as the last token; the decode side runs
//! the real forward with its KV cache, greedy, one host read of the chosen tokens per step (what a
//! server does).
//!
//! Model FLOPs are counted the usual way: a frozen matrix costs 2 FLOPs per value and token
//! forward and 2 more for the input gradient (no weight gradient), a trainable one 6; attention
//! adds `4 s (heads x head_dim)` forward per layer and token (scores and values over all `s`
//! positions, as computed here, causal or not) and twice that backward. Embedding look-ups and the
//! output head at the answer positions only are left out.

use crate::models::backbone::{Backbone, StepInput};
use crate::tch_ops::TchOps;
use crate::train::config::TrainConfig;
use crate::train::examples::Example;
use crate::train::sft::SftRun;
use crate::{Error, Result};
use cuma_model::adapters::DecoderAdapters;
use cuma_model::config::{DecoderConfig, MethodConfig};
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A named backbone shape.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Shape {
    /// Qwen3-8B: 36 layers, hidden 4096, 32 heads / 8 KV heads of 128, MLP 12288, vocab 151936.
    #[value(name = "qwen3-8b")]
    #[serde(rename = "qwen3-8b")]
    Qwen3_8b,
    /// SmolLM2-135M: 30 layers, hidden 576, 9 heads / 3 KV heads of 64, MLP 1536, vocab 49152.
    #[value(name = "smollm2-135m")]
    #[serde(rename = "smollm2-135m")]
    Smollm2_135m,
    /// Two layers of hidden 64: for checking the benchmark itself on a CPU.
    #[value(name = "tiny")]
    #[serde(rename = "tiny")]
    Tiny,
}

impl Shape {
    /// The decoder config of this shape.
    pub fn config(self) -> DecoderConfig {
        match self {
            Shape::Qwen3_8b => DecoderConfig::qwen3_8b(),
            Shape::Smollm2_135m => DecoderConfig::smollm2_135m(),
            Shape::Tiny => DecoderConfig {
                vocab_size: 512,
                hidden_size: 64,
                intermediate_size: 128,
                num_layers: 2,
                num_heads: 4,
                num_kv_heads: 2,
                head_dim: 16,
                max_position_embeddings: 4096,
                ..DecoderConfig::qwen3_8b()
            },
        }
    }
}

/// Values in the frozen projections of one layer (q, k, v, o and the gated MLP).
fn layer_matrix_values(c: &DecoderConfig) -> usize {
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size
}

/// Model FLOPs per trained token at sequence length `seq` (see the module docs).
pub fn train_flops_per_token(c: &DecoderConfig, trainable: usize, seq: usize) -> f64 {
    let frozen = (c.num_layers * layer_matrix_values(c)) as f64;
    let attention = 12.0 * (seq * c.num_heads * c.head_dim * c.num_layers) as f64;
    4.0 * frozen + 6.0 * trainable as f64 + attention
}

/// What a training measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub shape: Shape,
    pub method: MethodConfig,
    pub device: String,
    pub mixed_bf16: bool,
    pub batch: usize,
    pub seq: usize,
    pub warmup_steps: usize,
    pub timed_steps: usize,
    pub backbone_values: usize,
    pub trainable_values: usize,
    /// Loss of every step, warm-up included (one fixed batch: it should fall).
    pub losses: Vec<f64>,
    pub step_seconds: Vec<f64>,
    /// Tokens per second over the timed steps (median step time).
    pub tokens_per_second: f64,
    pub flops_per_token: f64,
    /// Model FLOP utilisation against `peak_tflops`, when one was given.
    pub mfu: Option<f64>,
    pub peak_tflops: Option<f64>,
}

/// How a training measurement runs.
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub shape: Shape,
    pub method: MethodConfig,
    pub device: Device,
    pub batch: usize,
    pub seq: usize,
    pub warmup_steps: usize,
    pub timed_steps: usize,
    /// The profile vectors' size (MiniLM's 384).
    pub profile_dim: usize,
    pub seed: u64,
    /// bf16 matrix products with f32 masters (on CUDA; CPU stays f32 unless forced).
    pub bf16: bool,
    pub peak_tflops: Option<f64>,
    /// Where the run's metrics and final checkpoint go.
    pub out: std::path::PathBuf,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// `[n, dim]` unit-length random profile vectors on `device` (a sentence encoder's output).
fn random_profiles(n: usize, dim: usize, device: Device) -> Result<Tensor> {
    let v = Tensor::f_randn([n as i64, dim as i64], (Kind::Float, device))?;
    let norm = v.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?;
    Ok(v.f_div(&norm)?)
}

/// `n` rows of `len` random token ids below `vocab`.
fn random_rows(n: usize, len: usize, vocab: usize) -> Result<Vec<Vec<u32>>> {
    let ids = Tensor::f_randint(vocab as i64, [n as i64, len as i64], (Kind::Int64, Device::Cpu))?;
    let flat = Vec::<i64>::try_from(&ids.f_view([-1])?)?;
    Ok(flat
        .chunks(len)
        .map(|r| r.iter().map(|&x| x as u32).collect())
        .collect())
}

impl TrainBench {
    /// Runs `warmup_steps + timed_steps` SFT steps on one fixed random batch.
    pub fn run(&self) -> Result<TrainReport> {
        if self.seq < 2 || self.batch == 0 || self.timed_steps == 0 {
            return Err(Error::Invalid(
                "need seq >= 2, batch >= 1 and at least one timed step".into(),
            ));
        }
        let config = self.shape.config();
        tch::manual_seed(self.seed as i64);
        let model = Backbone::random(&config, self.device, self.seed)?;
        let examples = random_rows(self.batch, self.seq, config.vocab_size)?
            .into_iter()
            .enumerate()
            .map(|(i, ids)| Example {
                targets_from: ids.len() - 1,
                ids,
                profile: i,
            })
            .collect();
        let profiles = random_profiles(self.batch, self.profile_dim, self.device)?;
        let steps = self.warmup_steps + self.timed_steps;
        let train = TrainConfig {
            method: self.method.clone(),
            out: self.out.clone(),
            steps,
            warmup_steps: 1,
            batch_size: self.batch,
            max_len: self.seq,
            seed: self.seed,
            checkpoint_every: steps,
            device: crate::device::device_name(self.device),
            bf16_on_cuda: self.bf16,
            force_bf16: self.bf16 && !self.device.is_cuda(),
            ..TrainConfig::default()
        };
        let mut run = SftRun::synthetic(train, model, self.profile_dim, profiles, examples)?;
        let trainable: usize = run.store.tensors.values().map(Tensor::numel).sum();
        let history = run.train(false, &AtomicBool::new(false))?;
        let step_seconds: Vec<f64> = history.iter().map(|m| m.seconds).collect();
        let timed = median(&step_seconds[self.warmup_steps..]);
        let tokens_per_second = (self.batch * self.seq) as f64 / timed;
        let flops_per_token = train_flops_per_token(&config, trainable, self.seq);
        Ok(TrainReport {
            shape: self.shape,
            method: self.method.clone(),
            device: crate::device::device_name(self.device),
            mixed_bf16: self.bf16,
            batch: self.batch,
            seq: self.seq,
            warmup_steps: self.warmup_steps,
            timed_steps: self.timed_steps,
            backbone_values: config.num_layers * layer_matrix_values(&config),
            trainable_values: trainable,
            losses: history.iter().map(|m| m.loss).collect(),
            step_seconds,
            tokens_per_second,
            flops_per_token,
            mfu: self
                .peak_tflops
                .map(|p| flops_per_token * tokens_per_second / (p * 1e12)),
            peak_tflops: self.peak_tflops,
        })
    }
}

/// What a decode measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeReport {
    pub shape: Shape,
    /// `None`: the plain backbone.
    pub method: Option<MethodConfig>,
    pub device: String,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Prefill of the prompt to the first chosen token on the host.
    pub first_token_ms: f64,
    /// Decode steps per second for one sequence (median step); the batch makes `batch` times
    /// as many tokens.
    pub tokens_per_second: f64,
    /// Bytes of weights read per decode step (f32).
    pub weight_bytes: usize,
    /// The memory-bandwidth bound on steps per second, `peak_bandwidth / weight_bytes`, when a
    /// peak bandwidth was given.
    pub bandwidth_bound_tokens_per_second: Option<f64>,
}

/// How a decode measurement runs.
#[derive(Debug, Clone)]
pub struct DecodeBench {
    pub shape: Shape,
    /// Adapters to attach (fresh: their experts cost the same as trained ones).
    pub method: Option<MethodConfig>,
    pub device: Device,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub profile_dim: usize,
    pub seed: u64,
    /// Bytes per second the device's memory moves, for the bound.
    pub peak_bandwidth: Option<f64>,
}

impl DecodeBench {
    pub fn run(&self) -> Result<DecodeReport> {
        if self.prompt_tokens == 0 || self.new_tokens == 0 || self.batch == 0 {
            return Err(Error::Invalid(
                "need a prompt, a batch and at least one new token".into(),
            ));
        }
        let config = self.shape.config();
        let _guard = tch::no_grad_guard();
        let mut model = Backbone::random(&config, self.device, self.seed)?;
        let mut o = TchOps::new(self.device);
        let mut adapter_values = 0;
        let profile = match &self.method {
            Some(m) => {
                let mut store = crate::trainables::TchTrainables::default();
                let adapters = DecoderAdapters::init(&mut o, &mut store, &model.decoder, m, self.profile_dim)
                    .map_err(|e| Error::Invalid(format!("attaching adapters: {e}")))?;
                adapter_values = store.tensors.values().map(Tensor::numel).sum();
                let reads_profile = adapters.profile_dim > 0;
                model.decoder.adapters = Some(adapters);
                reads_profile
                    .then(|| random_profiles(self.batch, self.profile_dim, self.device))
                    .transpose()?
            }
            None => None,
        };
        let rows = random_rows(self.batch, self.prompt_tokens, config.vocab_size)?;
        let flat: Vec<i64> = rows.iter().flatten().map(|&x| i64::from(x)).collect();
        let b = self.batch as i64;
        let mut ids = Tensor::f_from_slice(&flat)?.f_view([b, -1])?.f_to_device(self.device)?;
        let mut mask = Tensor::f_ones([b, self.prompt_tokens as i64], (Kind::Int64, self.device))?;
        let mut past = None;
        let mut step_seconds = Vec::with_capacity(self.new_tokens);
        let mut first_token_ms = f64::NAN;
        for step in 0..=self.new_tokens {
            let started = Instant::now();
            let out = model.run(
                &mut o,
                &StepInput {
                    ids: &ids,
                    attention_mask: &mask,
                    past: past.as_deref(),
                    profile: profile.as_ref(),
                },
            )?;
            let next = out.logits.f_select(1, -1)?.f_argmax(-1, true)?;
            // The host needs the chosen tokens (stop checks, streaming): one read per step.
            let chosen = Vec::<i64>::try_from(&next.f_to_device(Device::Cpu)?.f_view([-1])?)?;
            let elapsed = started.elapsed().as_secs_f64();
            if step == 0 {
                first_token_ms = 1e3 * elapsed;
            } else {
                step_seconds.push(elapsed);
            }
            ids = Tensor::f_from_slice(&chosen)?
                .f_view([b, 1])?
                .f_to_device(self.device)?;
            let one = Tensor::f_ones([b, 1], (Kind::Int64, self.device))?;
            mask = Tensor::f_cat(&[&mask, &one], 1)?;
            past = Some(out.presents);
        }
        // Every projection and the output head are read each step; the embedding only by row.
        let head = config.vocab_size * config.hidden_size;
        let weight_bytes = 4 * (config.num_layers * layer_matrix_values(&config) + head + adapter_values);
        Ok(DecodeReport {
            shape: self.shape,
            method: self.method.clone(),
            device: crate::device::device_name(self.device),
            batch: self.batch,
            prompt_tokens: self.prompt_tokens,
            new_tokens: self.new_tokens,
            first_token_ms,
            tokens_per_second: 1.0 / median(&step_seconds),
            weight_bytes,
            bandwidth_bound_tokens_per_second: self.peak_bandwidth.map(|bw| bw / weight_bytes as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_shapes_have_their_published_sizes() {
        // Qwen3-8B is 8.19 B parameters with its untied head; SmolLM2-135M 134.5 M, tied.
        for (shape, low, high) in [(Shape::Qwen3_8b, 8.1e9, 8.3e9), (Shape::Smollm2_135m, 1.3e8, 1.4e8)] {
            let c = shape.config();
            cuma_model::arch::Decoder::load(&mut cuma_model::ShapeOps, &mut cuma_model::ShapeWeights, &c)
                .expect("a valid config");
            let n = c.parameter_count() as f64;
            assert!((low..high).contains(&n), "{shape:?}: {n}");
        }
    }

    #[test]
    fn flops_count_frozen_matrices_four_times_and_trainables_six() {
        let c = Shape::Tiny.config();
        let base = train_flops_per_token(&c, 0, 1);
        assert_eq!(train_flops_per_token(&c, 10, 1) - base, 60.0);
        let per_layer = layer_matrix_values(&c) as f64;
        let attention = 12.0 * (c.num_heads * c.head_dim * c.num_layers) as f64;
        assert_eq!(base, 4.0 * per_layer * c.num_layers as f64 + attention);
    }
}
