//! Where a model lives: a GGUF file, or a Hugging Face directory (`config.json` + safetensors +
//! `tokenizer.json`). Detected once; errors list what was found.

use crate::weights::{gguf, safetensors, WeightSet};
use crate::{Error, Result};
use cuma_model::config::{HfConfig, ModelConfig};
use std::path::{Path, PathBuf};

/// The on-disk format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gguf,
    Safetensors,
}

/// A located, parsed model: its config and its weights (not yet on a device).
pub struct ModelSource {
    pub path: PathBuf,
    pub format: Format,
    pub config: ModelConfig,
    pub weights: WeightSet,
    /// The parsed GGUF file, for tokenizer metadata.
    pub gguf: Option<gguf::GgufFile>,
}

/// Resolves `path` to a GGUF file or a model directory.
pub fn locate(path: &Path) -> Result<(PathBuf, Format)> {
    if path.is_file() {
        return match path.extension().and_then(|e| e.to_str()) {
            Some("gguf") => Ok((path.into(), Format::Gguf)),
            _ => Err(Error::ModelPath {
                path: path.into(),
                reason: "not a .gguf file; pass a GGUF file or a model directory".into(),
            }),
        };
    }
    if !path.is_dir() {
        return Err(Error::ModelPath {
            path: path.into(),
            reason: "no such file or directory".into(),
        });
    }
    if path.join("config.json").is_file() {
        return Ok((path.into(), Format::Safetensors));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(crate::error::io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok((one.clone(), Format::Gguf)),
        [] => Err(Error::ModelPath {
            path: path.into(),
            reason: "neither config.json nor a .gguf file is here".into(),
        }),
        many => Err(Error::ModelPath {
            path: path.into(),
            reason: format!("{} .gguf files here; pass one of them", many.len()),
        }),
    }
}

/// Reads `config.json`.
pub fn read_hf_config(dir: &Path) -> Result<HfConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(crate::error::io(&path))?;
    HfConfig::from_json(&text).map_err(|e| Error::Json {
        path,
        reason: e.to_string(),
    })
}

impl ModelSource {
    /// Attaches the most specific file to a model-definition error: the weight file holding the
    /// tensor it names, else the model path.
    pub fn error(&self, e: cuma_model::Error) -> Error {
        let tensor = match &e {
            cuma_model::Error::Shape { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let path = tensor
            .and_then(|t| self.weights.file_of(t))
            .map_or_else(|| self.path.clone(), PathBuf::from);
        Error::Model { path, source: e }
    }

    /// Opens the model at `path` (GGUF file, or directory). BERT names lose a `bert.` prefix.
    pub fn open(path: &Path) -> Result<Self> {
        let (path, format) = locate(path)?;
        match format {
            Format::Gguf => {
                let (g, weights) = gguf::open(&path)?;
                let hf = gguf::hf_config(&g, &weights)?;
                let config = ModelConfig::try_from(&hf).map_err(|source| Error::Model {
                    path: path.clone(),
                    source,
                })?;
                Ok(Self {
                    path,
                    format,
                    config,
                    weights,
                    gguf: Some(g),
                })
            }
            Format::Safetensors => {
                let hf = read_hf_config(&path)?;
                let config = ModelConfig::try_from(&hf).map_err(|source| Error::Model {
                    path: path.join("config.json"),
                    source,
                })?;
                let weights = safetensors::open_dir(&path, &["bert."])?;
                Ok(Self {
                    path,
                    format,
                    config,
                    weights,
                    gguf: None,
                })
            }
        }
    }
}
