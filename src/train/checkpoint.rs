//! Checkpoints: `adapter.safetensors` (adapters and routers), `optimizer.safetensors` (AdamW
//! moments) and `cuma.json` (config, method, base model and encoder identity, training state).
//! Written to a temporary directory and renamed into place, so a kill never leaves a half
//! checkpoint.

use super::config::TrainConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Format version of `cuma.json`.
pub const CHECKPOINT_VERSION: u32 = 1;
pub const ADAPTER_FILE: &str = "adapter.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const MANIFEST_FILE: &str = "cuma.json";

/// What a model file is: its architecture and a SHA-256 of its weight files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub path: PathBuf,
    pub architecture: String,
    pub sha256: String,
}

/// Where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: usize,
    /// Items consumed (the position in the seeded data order).
    pub items_seen: usize,
    pub last_loss: Option<f64>,
}

/// `cuma.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointManifest {
    pub version: u32,
    pub config: TrainConfig,
    pub backbone: ModelIdentity,
    pub encoder: ModelIdentity,
    /// D: the profile vector size the routers were built for.
    pub profile_dim: usize,
    pub state: TrainState,
    /// A DPO run: the SFT checkpoint it started from (its adapter file's SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<ModelIdentity>,
}

/// SHA-256 over the given files, in order.
pub fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    for f in files {
        let mut file = std::fs::File::open(f).map_err(crate::error::io(f))?;
        std::io::copy(&mut file, &mut h).map_err(crate::error::io(f))?;
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes a checkpoint into `dir` atomically.
pub fn save(
    dir: &Path,
    manifest: &CheckpointManifest,
    adapters: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(crate::error::io(parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        dir.file_name().map_or("checkpoint".into(), |n| n.to_string_lossy())
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(crate::error::io(&tmp))?;
    Tensor::write_safetensors(adapters, tmp.join(ADAPTER_FILE))?;
    Tensor::write_safetensors(optimizer, tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(tmp.join(MANIFEST_FILE), json).map_err(crate::error::io(tmp.join(MANIFEST_FILE)))?;
    let old = parent.join(format!(
        ".{}.old",
        dir.file_name().map_or("checkpoint".into(), |n| n.to_string_lossy())
    ));
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(crate::error::io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(crate::error::io(dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub manifest: CheckpointManifest,
    pub adapters: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
}

/// Reads the checkpoint in `dir`.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let mpath = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&mpath).map_err(crate::error::io(&mpath))?;
    let manifest: CheckpointManifest = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: mpath.clone(),
        reason: e.to_string(),
    })?;
    if manifest.version != CHECKPOINT_VERSION {
        return Err(Error::Invalid(format!(
            "{}: checkpoint version {} (this build reads {CHECKPOINT_VERSION})",
            mpath.display(),
            manifest.version
        )));
    }
    let read = |f: &str| -> Result<Vec<(String, Tensor)>> {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(Error::ModelPath {
                path: p,
                reason: "missing from the checkpoint".into(),
            });
        }
        let mut named = Tensor::read_safetensors(&p).map_err(|e| Error::Safetensors {
            path: p,
            reason: e.to_string(),
        })?;
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(named)
    };
    Ok(Checkpoint {
        manifest,
        adapters: read(ADAPTER_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
    })
}
