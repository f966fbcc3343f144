//! `Backbone`: a decoder LLM on libtorch with its tokenizer and chat template.

use super::inputs::decoder_inputs;
use super::source::ModelSource;
use crate::tch_ops::TchOps;
use crate::tokenizer::{gguf_bpe, TextTokenizer};
use crate::weights::TchStore;
use crate::{Error, Result};
use cuma_model::arch::{Decoder, DecoderCtx, KvPair};
use cuma_model::config::{DecoderConfig, ModelConfig};
use cuma_model::layers::AttentionMask;
use std::path::Path;
use tch::{Device, Tensor};

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
        ModelConfig::Bert(_) => Err(Error::ModelPath { path: source.path.clone(), reason: "is a BERT encoder, not a decoder LLM".into() }),
    }
}

impl Backbone {
    /// Loads the model at `path` (GGUF file or Hugging Face directory) onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let source = ModelSource::open(path)?;
        let config = decoder_config(&source)?.clone();
        let tokenizer = tokenizer_for(&source)?;
        let _guard = tch::no_grad_guard();
        let mut o = TchOps::new(device);
        let decoder = Decoder::load(&mut o, &mut TchStore::new(&source.weights), &config)
            .map_err(|e| source.error(e))?;
        Ok(Self { decoder, tokenizer, device, source_path: source.path })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.decoder.config
    }

    /// One forward step over new tokens.
    ///
    /// # Shapes
    /// `ids`: `[b, s]`; `attention_mask`: `[b, past + s]` (0/1); returns logits `[b, s, vocab]`
    /// and the updated cache.
    pub fn step(&self, ids: &Tensor, attention_mask: &Tensor, past: Option<&[KvPair<Tensor>]>) -> Result<(Tensor, Vec<KvPair<Tensor>>)> {
        let past_len = past.and_then(|p| p.first()).map_or(0, |kv| kv.key.size()[2]);
        let (positions, additive) = decoder_inputs(attention_mask, past_len)?;
        let mut o = TchOps::new(self.device);
        let ctx = DecoderCtx { rope: self.decoder.rope(&mut o, &positions)?, mask: AttentionMask { additive } };
        let (hidden, presents) = self.decoder.forward(&mut o, ids, &ctx, past)?;
        Ok((self.decoder.logits(&mut o, &hidden)?, presents))
    }
}
