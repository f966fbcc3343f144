//! safetensors reader: one file, or a sharded set listed by `model.safetensors.index.json`.

use super::{mmap::Bytes, DType, TensorEntry, WeightSet};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The index file naming the shards of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

#[derive(serde::Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

fn dtype_of(d: safetensors::Dtype) -> Option<DType> {
    match d {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::F16 => Some(DType::F16),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

fn add_file(set: &mut WeightSet, path: &Path, prefix_strip: &[&str]) -> Result<()> {
    let bytes = Bytes::map(path)?;
    let (header_len, meta) =
        safetensors::SafeTensors::read_metadata(bytes.as_slice()).map_err(|e| Error::Safetensors {
            path: path.into(),
            reason: e.to_string(),
        })?;
    let data_start = 8 + header_len;
    let file = set.files.len();
    for (name, info) in meta.tensors() {
        let hf = prefix_strip
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .map_or(name.clone(), str::to_string);
        let Some(dtype) = dtype_of(info.dtype) else {
            set.unreadable.insert(hf, format!("{:?}", info.dtype));
            continue;
        };
        let (s, e) = info.data_offsets;
        let entry = TensorEntry {
            file,
            start: data_start + s,
            end: data_start + e,
            dtype,
            shape: info.shape.clone(),
            unpermute_heads: None,
        };
        set.tensors.insert(hf, entry);
    }
    set.files.push((path.into(), bytes));
    Ok(())
}

/// Opens `dir`'s weights: `model.safetensors`, or the shards of `model.safetensors.index.json`.
/// Names starting with one of `prefix_strip` lose that prefix (BERT checkpoints saved with `bert.`).
pub fn open_dir(dir: &Path, prefix_strip: &[&str]) -> Result<WeightSet> {
    let mut set = WeightSet {
        files: Vec::new(),
        tensors: BTreeMap::new(),
        unreadable: BTreeMap::new(),
    };
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(crate::error::io(&index))?;
        let idx: Index = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: index.clone(),
            reason: e.to_string(),
        })?;
        let shards: std::collections::BTreeSet<&String> = idx.weight_map.values().collect();
        for shard in shards {
            let p = dir.join(shard);
            if !p.is_file() {
                return Err(Error::ModelPath {
                    path: p,
                    reason: format!("shard listed in {INDEX_FILE} is missing"),
                });
            }
            add_file(&mut set, &p, prefix_strip)?;
        }
        for (name, shard) in &idx.weight_map {
            let hf = prefix_strip.iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name);
            if set.entry(hf).is_none() && set.unreadable(hf).is_none() {
                return Err(Error::Safetensors {
                    path: dir.join(shard),
                    reason: format!("tensor `{name}` listed in the index is not in the shard"),
                });
            }
        }
        return Ok(set);
    }
    let single = dir.join("model.safetensors");
    if !single.is_file() {
        return Err(Error::ModelPath {
            path: dir.into(),
            reason: format!("no model.safetensors or {INDEX_FILE} in this directory"),
        });
    }
    add_file(&mut set, &single, prefix_strip)?;
    Ok(set)
}
