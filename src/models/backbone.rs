//! `Backbone`: a decoder LLM on libtorch with its tokenizer and chat template.

use super::source::ModelSource;
use crate::tch_ops::TchOps;
use crate::tokenizer::{gguf_bpe, TextTokenizer};
use crate::weights::TchStore;
use crate::{Error, Result};
use cuma_model::adapters::{ProfileInput, Routing};
use cuma_model::arch::{Decoder, DecoderCtx, DecoderOutput, KvPair};
use cuma_model::config::{DecoderConfig, ModelConfig};
use cuma_model::layers::decoder_inputs;
use std::path::Path;
use tch::{Device, Tensor};

/// Inputs of [`Backbone::run`].
pub struct StepInput<'a> {
    /// `[b, s]` int64.
    pub ids: &'a Tensor,
    /// `[b, past + s]` of 0 / 1.
    pub attention_mask: &'a Tensor,
    pub past: Option<&'a [KvPair<Tensor>]>,
    /// `[b, D]`, for demographic-aware routers.
    pub profile: Option<&'a Tensor>,
}

/// Outputs of [`Backbone::run`].
pub struct StepOutput {
    /// `[b, s, vocab]`
    pub logits: Tensor,
    pub presents: Vec<KvPair<Tensor>>,
    /// Every router's decision, layer by layer.
    pub routing: Vec<Routing<Tensor>>,
}

/// A loaded decoder backbone.
pub struct Backbone {
    pub decoder: Decoder<Tensor>,
    pub tokenizer: TextTokenizer,
    pub device: Device,
    pub source_path: std::path::PathBuf,
}

/// The tokenizer that belongs with `source`.
pub fn tokenizer_for(source: &ModelSource) -> Result<TextTokenizer> {
    match &source.gguf {
        Some(g) => gguf_bpe::from_gguf(g),
        None => TextTokenizer::from_dir(&source.path),
    }
}

/// The decoder config of `source`, or an error naming what it is instead.
pub fn decoder_config(source: &ModelSource) -> Result<&DecoderConfig> {
    match &source.config {
        ModelConfig::Decoder(c) => Ok(c),
        ModelConfig::Bert(_) => Err(Error::ModelPath {
            path: source.path.clone(),
            reason: "is a BERT encoder, not a decoder LLM".into(),
        }),
    }
}

impl Backbone {
    /// Stores the frozen projection weights as `kind` (for bf16 products: the cast made once).
    /// Products in f32 still work on them ([`TchOps`] casts such a weight back per product).
    pub fn cast_frozen_projections(&mut self, kind: tch::Kind) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.decoder
            .map_projections(|w| w.f_to_kind(kind).map_err(|e| cuma_model::Error::Backend(e.to_string())))
            .map_err(|e| crate::Error::Invalid(format!("casting the backbone's projections: {e}")))
    }

    /// Loads the model at `path` (GGUF file or Hugging Face directory) onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let source = ModelSource::open(path)?;
        let config = decoder_config(&source)?.clone();
        let tokenizer = tokenizer_for(&source)?;
        let _guard = tch::no_grad_guard();
        let mut o = TchOps::new(device);
        let decoder =
            Decoder::load(&mut o, &mut TchStore::new(&source.weights), &config).map_err(|e| source.error(e))?;
        Ok(Self {
            decoder,
            tokenizer,
            device,
            source_path: source.path,
        })
    }

    /// A backbone of `config`'s shape with random weights ([`crate::weights::RandomWeights`],
    /// seeded by `seed`) made on `device`, and no vocabulary: for speed and memory measurements
    /// at a model's size without its checkpoint. It is fed token ids, never text.
    pub fn random(config: &DecoderConfig, device: Device, seed: u64) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(seed as i64);
        let mut weights = crate::weights::RandomWeights::default();
        let decoder = Decoder::load(&mut TchOps::new(device), &mut weights, config)
            .map_err(|e| Error::Invalid(format!("random {} backbone: {e}", config.family.model_type())))?;
        Ok(Self {
            decoder,
            tokenizer: TextTokenizer::without_vocabulary()?,
            device,
            source_path: format!("random:{}", config.family.model_type()).into(),
        })
    }

    /// Loads the model with its own weights trainable (full fine-tuning): they go into
    /// `trainables` (or come from it, when a checkpoint pre-filled it).
    pub fn load_trainable(
        path: &Path,
        device: Device,
        trainables: &mut crate::trainables::TchTrainables,
    ) -> Result<Self> {
        let source = ModelSource::open(path)?;
        let config = decoder_config(&source)?.clone();
        let tokenizer = tokenizer_for(&source)?;
        let mut o = TchOps::new(device);
        let mut store = crate::weights::TrainableBackbone {
            frozen: TchStore::new(&source.weights),
            trainables,
        };
        let decoder = Decoder::load(&mut o, &mut store, &config).map_err(|e| source.error(e))?;
        Ok(Self {
            decoder,
            tokenizer,
            device,
            source_path: source.path,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.decoder.config
    }

    /// One forward step over new tokens.
    ///
    /// # Shapes
    /// `ids`: `[b, s]`; `attention_mask`: `[b, past + s]` (0/1); returns logits `[b, s, vocab]`
    /// and the updated cache.
    pub fn step(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        past: Option<&[KvPair<Tensor>]>,
    ) -> Result<(Tensor, Vec<KvPair<Tensor>>)> {
        let out = self.run(
            &mut TchOps::new(self.device),
            &StepInput {
                ids,
                attention_mask,
                past,
                profile: None,
            },
        )?;
        Ok((out.logits, out.presents))
    }

    /// One forward step with everything: adapters (when attached), the profile vector for
    /// their routers, and `o`'s mode (training enables dropout).
    pub fn run(&self, o: &mut TchOps, input: &StepInput<'_>) -> Result<StepOutput> {
        let out = self.run_hidden(o, input)?;
        Ok(StepOutput {
            logits: self.decoder.logits(o, &out.hidden)?,
            presents: out.presents,
            routing: out.routing,
        })
    }

    /// [`Backbone::run`] without the output head: hidden states `[b, s, hidden]`, for callers
    /// that need logits at a few positions only (training on answer letters).
    pub fn run_hidden(&self, o: &mut TchOps, input: &StepInput<'_>) -> Result<DecoderOutput<Tensor>> {
        self.run_hidden_replaying(o, input, None)
    }

    /// [`Backbone::run_hidden`] with router replay: `replay` holds one recorded selection
    /// `[b, s, k]` (int64) per router, in the order of the output's routing.
    pub fn run_hidden_replaying(
        &self,
        o: &mut TchOps,
        input: &StepInput<'_>,
        replay: Option<Vec<Tensor>>,
    ) -> Result<DecoderOutput<Tensor>> {
        let past_keys = input.past.and_then(|p| p.first()).map(|kv| &kv.key);
        let prepared = decoder_inputs(o, input.attention_mask, past_keys)?;
        let profile = input.profile.map(|p| ProfileInput::Vector(p.shallow_clone()));
        let ctx = DecoderCtx {
            rope: self.decoder.rope(o, &prepared.positions)?,
            mask: prepared.mask,
            profile,
            replay,
        };
        Ok(self.decoder.forward(o, input.ids, &ctx, input.past)?)
    }
}
