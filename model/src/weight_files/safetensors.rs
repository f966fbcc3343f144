//! safetensors reader: one file, or a sharded set listed by `model.safetensors.index.json`.

use super::{Bytes, DType, Result, TensorEntry, WeightFileError as Error, WeightSet};
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
    add_bytes(set, path, Bytes::map(path)?, prefix_strip)
}

fn add_bytes(set: &mut WeightSet, path: &Path, bytes: Bytes, prefix_strip: &[&str]) -> Result<()> {
    let corrupt = |reason: String| Error::Safetensors {
        path: path.into(),
        reason,
    };
    let (header_len, meta) =
        safetensors::SafeTensors::read_metadata(bytes.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    let data_start = header_len
        .checked_add(8)
        .ok_or_else(|| corrupt(format!("header length {header_len} overflows")))?;
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
        let range = data_start
            .checked_add(s)
            .zip(data_start.checked_add(e))
            .filter(|&(start, end)| start <= end && end <= bytes.as_slice().len())
            .ok_or_else(|| {
                corrupt(format!(
                    "tensor `{name}`: data {s}..{e} runs past the end of the file ({} bytes)",
                    bytes.as_slice().len()
                ))
            })?;
        let entry = TensorEntry {
            file,
            start: range.0,
            end: range.1,
            dtype,
            shape: info.shape.clone(),
            unpermute_heads: None,
        };
        set.tensors.insert(hf, entry);
    }
    set.files.push((path.into(), bytes));
    Ok(())
}

/// Parses one safetensors file already in memory; `path` only names it in errors.
pub fn from_bytes(path: &Path, bytes: Bytes, prefix_strip: &[&str]) -> Result<WeightSet> {
    let mut set = WeightSet::empty();
    add_bytes(&mut set, path, bytes, prefix_strip)?;
    Ok(set)
}

/// A shard named by an index must be a plain file name beside it: an index that says
/// `../../secret` or `/dev/zero` would otherwise open files outside the model folder.
fn check_shard_name(index: &Path, shard: &str) -> Result<()> {
    let plain = Path::new(shard).components().count() == 1
        && matches!(
            Path::new(shard).components().next(),
            Some(std::path::Component::Normal(_))
        );
    if plain {
        Ok(())
    } else {
        Err(Error::Layout {
            path: index.into(),
            reason: format!("shard `{shard}` is not a plain file name in the model folder"),
        })
    }
}

/// Opens `dir`'s weights: `model.safetensors`, or the shards of `model.safetensors.index.json`.
/// Names starting with one of `prefix_strip` lose that prefix (BERT checkpoints saved with `bert.`).
pub fn open_dir(dir: &Path, prefix_strip: &[&str]) -> Result<WeightSet> {
    let mut set = WeightSet::empty();
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(super::error::io(&index))?;
        let idx: Index = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: index.clone(),
            reason: e.to_string(),
        })?;
        let shards: std::collections::BTreeSet<&String> = idx.weight_map.values().collect();
        for shard in shards {
            check_shard_name(&index, shard)?;
            let p = dir.join(shard);
            if !p.is_file() {
                return Err(Error::Layout {
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
        return Err(Error::Layout {
            path: dir.into(),
            reason: format!("no model.safetensors or {INDEX_FILE} in this directory"),
        });
    }
    add_file(&mut set, &single, prefix_strip)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_index(weight_map: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cuma-st-index-{}-{}", std::process::id(), weight_map.len()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(INDEX_FILE), format!(r#"{{"weight_map": {weight_map}}}"#)).expect("write");
        dir
    }

    #[test]
    fn an_index_cannot_name_a_shard_outside_the_folder() {
        for shard in ["../outside.safetensors", "/dev/zero", "sub/../../x.safetensors"] {
            let dir = dir_with_index(&format!(r#"{{"w": "{shard}"}}"#));
            let err = open_dir(&dir, &[]).expect_err(shard).to_string();
            assert!(err.contains("is not a plain file name"), "{shard}: {err}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn offsets_past_the_end_are_an_error() {
        // A valid header claiming 16 bytes of data, followed by only 4.
        let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        let err = from_bytes(Path::new("short.safetensors"), Bytes::Owned(bytes), &[]).expect_err("short");
        assert!(err.to_string().contains("not a valid safetensors file"), "{err}");
    }
}
