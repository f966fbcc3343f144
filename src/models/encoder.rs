//! `ProfileEncoder`: a frozen sentence encoder (BERT, or a Qwen3-Embedding-style decoder) that
//! maps profile texts to vectors: masked pooling, then L2 normalisation when the model's
//! sentence-transformers config asks for it. At most 128 tokens per text.

use super::backbone::tokenizer_for;
use super::inputs::pad_batch;
use super::source::ModelSource;
use crate::tch_ops::TchOps;
use crate::tokenizer::TextTokenizer;
use crate::weights::TchStore;
use crate::{Error, Result};
use cuma_model::arch::{Bert, Decoder, DecoderCtx};
use cuma_model::config::ModelConfig;
use cuma_model::layers::{decoder_inputs, encoder_inputs, pool};
use cuma_model::serve::padding::Side;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Longest profile text, in tokens.
pub const MAX_TOKENS: usize = 128;

pub use cuma_model::layers::Pooling;

enum Network {
    Bert(Bert<Tensor>),
    Decoder(Decoder<Tensor>),
}

/// A loaded sentence encoder.
pub struct ProfileEncoder {
    network: Network,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    pub normalize: bool,
    pub dim: usize,
    pub device: Device,
    pub source_path: std::path::PathBuf,
}

/// Pooling and normalisation from sentence-transformers' `modules.json` and `1_Pooling/config.json`;
/// mean pooling without normalisation when they are absent.
pub fn sentence_transformers_config(dir: &Path) -> Result<(Pooling, bool)> {
    let read = |p: &Path| -> Result<Option<serde_json::Value>> {
        match std::fs::read_to_string(p) {
            Ok(t) => serde_json::from_str(&t).map(Some).map_err(|e| Error::Json {
                path: p.into(),
                reason: e.to_string(),
            }),
            Err(_) => Ok(None),
        }
    };
    let modules = read(&dir.join("modules.json"))?;
    let types: Vec<String> = modules
        .as_ref()
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("type")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pooling_dir = modules
        .as_ref()
        .and_then(|m| m.as_array())
        .and_then(|a| {
            a.iter().find(|m| {
                m.get("type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("Pooling"))
            })
        })
        .and_then(|m| m.get("path")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "1_Pooling".into());
    let pooling = match read(&dir.join(pooling_dir).join("config.json"))? {
        Some(p) => {
            let on = |k: &str| p.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            if on("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else if on("pooling_mode_cls_token") {
                Pooling::Cls
            } else if on("pooling_mode_lasttoken") {
                Pooling::LastToken
            } else {
                return Err(Error::Json {
                    path: dir.join("1_Pooling/config.json"),
                    reason: "no supported pooling mode (mean, cls, lasttoken) is enabled".into(),
                });
            }
        }
        None => Pooling::Mean,
    };
    Ok((pooling, types.iter().any(|t| t.ends_with("Normalize"))))
}

impl ProfileEncoder {
    /// Loads a sentence encoder from a Hugging Face directory (or a decoder GGUF, mean-pooled).
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let source = ModelSource::open(path)?;
        let mut tokenizer = tokenizer_for(&source)?;
        let (pooling, normalize) = if source.path.is_dir() {
            sentence_transformers_config(&source.path)?
        } else {
            (Pooling::Mean, false)
        };
        tokenizer.inner = tokenizer.inner.truncated(MAX_TOKENS).map_err(|e| Error::Tokenizer {
            path: tokenizer.source.clone(),
            reason: e.reason,
        })?;
        let _guard = tch::no_grad_guard();
        let mut o = TchOps::new(device);
        let mut store = TchStore::new(&source.weights);
        let wrap = |e| source.error(e);
        let (network, dim) = match &source.config {
            ModelConfig::Bert(c) => (
                Network::Bert(Bert::load(&mut o, &mut store, c).map_err(wrap)?),
                c.hidden_size,
            ),
            ModelConfig::Decoder(c) => (
                Network::Decoder(Decoder::load(&mut o, &mut store, c).map_err(wrap)?),
                c.hidden_size,
            ),
        };
        Ok(Self {
            network,
            tokenizer,
            pooling,
            normalize,
            dim,
            device,
            source_path: source.path,
        })
    }

    /// Embeds `texts` into `[n, dim]` vectors (f32, on the encoder's device).
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::Invalid("no texts to embed".into()));
        }
        let _guard = tch::no_grad_guard();
        let rows = texts
            .iter()
            .map(|t| self.tokenizer.encode(t, true))
            .collect::<Result<Vec<_>>>()?;
        let mut o = TchOps::new(self.device);
        let is_decoder = matches!(self.network, Network::Decoder(_));
        let side = if is_decoder { Side::Left } else { Side::Right };
        let (ids, mask) = pad_batch(&rows, 0, side, self.device)?;
        let states = match &self.network {
            Network::Bert(bert) => {
                let prepared = encoder_inputs(&mut o, &mask)?;
                bert.forward(&mut o, &ids, &prepared.positions, &prepared.mask)?
            }
            Network::Decoder(dec) => {
                let prepared = decoder_inputs(&mut o, &mask, None)?;
                let ctx = DecoderCtx {
                    rope: dec.rope(&mut o, &prepared.positions)?,
                    mask: prepared.mask,
                    profile: None,
                    replay: None,
                };
                dec.forward(&mut o, &ids, &ctx, None)?.hidden
            }
        };
        if self.pooling == Pooling::LastToken && !is_decoder {
            return Err(Error::Invalid("last-token pooling needs a decoder encoder".into()));
        }
        let m = mask.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?;
        Ok(pool(&mut o, &states, &m, self.pooling, self.normalize)?)
    }
}
