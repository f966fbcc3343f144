//! GGUF reader (versions 2 and 3): metadata, tensor directory, and the mapping of llama.cpp tensor
//! names and layouts onto Hugging Face ones. Every count and offset read from the file is checked.

use super::{Bytes, DType, Result, TensorEntry, WeightFileError as Error, WeightSet};
use crate::config::Target;
use crate::names::decoder as n;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::UInt(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Float(v) => Some(v),
            MetaValue::UInt(v) => Some(v as f64),
            MetaValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A parsed GGUF file's metadata (its tensors go into a [`WeightSet`]).
#[derive(Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
}

impl GgufFile {
    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get("general.architecture").and_then(MetaValue::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn fail(&self, what: &str) -> Error {
        Error::Gguf {
            path: self.path.into(),
            reason: format!("truncated or corrupt header: {what} at byte {}", self.pos),
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.fail(what))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > remaining {
            return Err(self.fail(&format!("{what} of {n} items exceeds the file")));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.len(what, 1)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.fail(&format!("{what} is not UTF-8")))
    }
    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<MetaValue> {
        let b = |c: &mut Self, n| c.take(n, key);
        Ok(match ty {
            0 => MetaValue::UInt(u64::from(b(self, 1)?[0])),
            1 => MetaValue::Int(i64::from(b(self, 1)?[0] as i8)),
            2 => {
                let x = b(self, 2)?;
                MetaValue::UInt(u64::from(u16::from_le_bytes([x[0], x[1]])))
            }
            3 => {
                let x = b(self, 2)?;
                MetaValue::Int(i64::from(i16::from_le_bytes([x[0], x[1]])))
            }
            4 => MetaValue::UInt(u64::from(self.u32(key)?)),
            5 => MetaValue::Int(i64::from(self.u32(key)? as i32)),
            6 => MetaValue::Float(f64::from(f32::from_bits(self.u32(key)?))),
            7 => MetaValue::Bool(b(self, 1)?[0] != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(self.fail(&format!("`{key}`: arrays nested too deeply")));
                }
                let item_ty = self.u32(key)?;
                let n = self.len(key, 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item_ty, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::UInt(self.u64(key)?),
            11 => MetaValue::Int(self.u64(key)? as i64),
            12 => MetaValue::Float(f64::from_bits(self.u64(key)?)),
            other => return Err(self.fail(&format!("`{key}` has unknown value type {other}"))),
        })
    }
}

fn ggml_dtype(code: u32) -> std::result::Result<DType, String> {
    Ok(match code {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        8 => DType::Q8_0,
        30 => DType::BF16,
        6 => return Err("Q5_0".into()),
        7 => return Err("Q5_1".into()),
        10..=15 => return Err(format!("K-quant type {code} (Q2_K..Q8_K)")),
        other => return Err(format!("ggml type {other}")),
    })
}

/// Maps a llama.cpp tensor name onto the Hugging Face name; `None` for tensors cuma ignores.
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some(n::embed()),
        "output_norm.weight" => return Some(n::final_norm()),
        "output.weight" => return Some(n::lm_head()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = part.rsplit_once('.')?;
    let block = n::layer(layer);
    let path = match module {
        "attn_norm" => block.pp(n::INPUT_NORM),
        "ffn_norm" => block.pp(n::POST_ATTENTION_NORM),
        "attn_q" => n::target(layer, Target::QProj),
        "attn_k" => n::target(layer, Target::KProj),
        "attn_v" => n::target(layer, Target::VProj),
        "attn_output" => n::target(layer, Target::OProj),
        "attn_q_norm" => block.pp(n::SELF_ATTN).pp(n::Q_NORM),
        "attn_k_norm" => block.pp(n::SELF_ATTN).pp(n::K_NORM),
        "ffn_gate" => n::target(layer, Target::GateProj),
        "ffn_up" => n::target(layer, Target::UpProj),
        "ffn_down" => n::target(layer, Target::DownProj),
        _ => return None,
    };
    Some(path.name(suffix))
}

/// Opens and parses a GGUF file: its metadata, and its tensors in Hugging Face names and layout.
/// Tensor data stays mapped and is converted on demand.
pub fn open(path: &Path) -> Result<(GgufFile, WeightSet)> {
    from_bytes(path, Bytes::map(path)?)
}

/// Parses GGUF `bytes` already in memory; `path` only names them in errors.
pub fn from_bytes(path: &Path, bytes: Bytes) -> Result<(GgufFile, WeightSet)> {
    let (version, metadata, tensors) = parse(path, bytes.as_slice())?;
    let weights = WeightSet {
        files: vec![(path.into(), bytes)],
        tensors,
        unreadable: BTreeMap::new(),
    };
    Ok((
        GgufFile {
            path: path.into(),
            version,
            metadata,
        },
        weights,
    ))
}

/// Maps GGUF metadata onto the Hugging Face config fields.
pub fn hf_config(g: &GgufFile, weights: &WeightSet) -> Result<crate::config::HfConfig> {
    let arch = g.architecture().ok_or_else(|| Error::Gguf {
        path: g.path.clone(),
        reason: "no `general.architecture` in metadata".into(),
    })?;
    let u = |k: &str| {
        g.get(&format!("{arch}.{k}"))
            .and_then(MetaValue::as_u64)
            .map(|v| v as usize)
    };
    let f = |k: &str| g.get(&format!("{arch}.{k}")).and_then(MetaValue::as_f64);
    let vocab = u("vocab_size")
        .or_else(|| {
            g.get("tokenizer.ggml.tokens")
                .and_then(MetaValue::as_array)
                .map(<[_]>::len)
        })
        .or_else(|| weights.entry(&n::embed()).map(|e| e.shape[0]));
    Ok(crate::config::HfConfig {
        model_type: Some(arch.to_string()),
        vocab_size: vocab,
        hidden_size: u("embedding_length"),
        intermediate_size: u("feed_forward_length"),
        num_hidden_layers: u("block_count"),
        num_attention_heads: u("attention.head_count"),
        num_key_value_heads: u("attention.head_count_kv"),
        head_dim: u("attention.key_length"),
        rms_norm_eps: f("attention.layer_norm_rms_epsilon"),
        rope_theta: f("rope.freq_base"),
        max_position_embeddings: u("context_length"),
        tie_word_embeddings: Some(weights.entry(&n::lm_head()).is_none()),
        ..Default::default()
    })
}

type Parsed = (u32, BTreeMap<String, MetaValue>, BTreeMap<String, TensorEntry>);

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { bytes, pos: 0, path };
    if c.take(4, "magic")? != MAGIC {
        return Err(Error::Gguf {
            path: path.into(),
            reason: "not a GGUF file (bad magic)".into(),
        });
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(Error::Gguf {
            path: path.into(),
            reason: format!("unsupported GGUF version {version} (cuma reads 2 and 3)"),
        });
    }
    let n_tensors = c.len("tensor count", 24)?;
    let n_kv = c.len("metadata count", 12)?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        let ty = c.u32("metadata type")?;
        let value = c.value(ty, &key, 0)?;
        metadata.insert(key, value);
    }
    let arch = metadata
        .get("general.architecture")
        .and_then(MetaValue::as_str)
        .unwrap_or("")
        .to_string();
    let heads = |key: &str| {
        metadata
            .get(&format!("{arch}.attention.{key}"))
            .and_then(MetaValue::as_u64)
    };
    let (n_head, n_head_kv) = (heads("head_count"), heads("head_count_kv").or(heads("head_count")));
    let alignment = metadata
        .get("general.alignment")
        .and_then(MetaValue::as_u64)
        .unwrap_or(DEFAULT_ALIGNMENT);
    if alignment == 0 || alignment > 1 << 20 {
        return Err(Error::Gguf {
            path: path.into(),
            reason: format!("invalid alignment {alignment}"),
        });
    }

    let mut raw = Vec::with_capacity(n_tensors.min(1 << 16));
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let n_dims = c.u32("tensor rank")?;
        if n_dims == 0 || n_dims > 4 {
            return Err(Error::Gguf {
                path: path.into(),
                reason: format!("tensor `{name}` has rank {n_dims}"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dimension")?);
        }
        let ty = c.u32("tensor type")?;
        let offset = c.u64("tensor offset")?;
        if offset % alignment != 0 {
            return Err(Error::Gguf {
                path: path.into(),
                reason: format!("tensor `{name}`: offset {offset} is not a multiple of the alignment {alignment}"),
            });
        }
        raw.push((name, dims, ty, offset));
    }
    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;

    let mut tensors = BTreeMap::new();
    for (name, dims, ty, offset) in raw {
        let Some(hf) = hf_name(&name) else { continue };
        let dtype = ggml_dtype(ty).map_err(|dtype| Error::UnsupportedDtype {
            path: path.into(),
            tensor: name.clone(),
            dtype,
        })?;
        // ggml lists the fastest-varying dimension first; PyTorch lists it last.
        let shape: Vec<usize> = dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let byte_len = numel.and_then(|n| dtype.byte_len(n)).ok_or_else(|| Error::Gguf {
            path: path.into(),
            reason: format!("tensor `{name}`: shape {shape:?} is invalid for {}", dtype.name()),
        })?;
        let start = data_start.checked_add(offset).and_then(|s| usize::try_from(s).ok());
        let end = start.and_then(|s| s.checked_add(byte_len)).filter(|&e| e <= bytes.len()).ok_or_else(|| Error::Gguf {
            path: path.into(),
            reason: format!("tensor `{name}`: data (offset {offset}, {byte_len} bytes) runs past the end of the file ({} bytes)", bytes.len()),
        })?;
        // Only llama.cpp's "llama" converter permutes Q/K rows; Qwen2/Qwen3 are stored as-is.
        let unpermute_heads = match (arch.as_str(), hf.contains("q_proj"), hf.contains("k_proj")) {
            ("llama", true, _) => n_head.map(|h| h as usize),
            ("llama", _, true) => n_head_kv.map(|h| h as usize),
            _ => None,
        };
        tensors.insert(
            hf,
            TensorEntry {
                file: 0,
                start: end - byte_len,
                end,
                dtype,
                shape,
                unpermute_heads,
            },
        );
    }
    // Two tensors may not share bytes: a hostile file could otherwise alias weights.
    let mut ranges: Vec<(&String, usize, usize)> = tensors.iter().map(|(n, t)| (n, t.start, t.end)).collect();
    ranges.sort_by_key(|&(_, start, end)| (start, end));
    if let Some(w) = ranges.windows(2).find(|w| w[1].1 < w[0].2) {
        return Err(Error::Gguf {
            path: path.into(),
            reason: format!(
                "tensors `{}` and `{}` share bytes {}..{} of the file",
                w[0].0,
                w[1].0,
                w[1].1,
                w[0].2.min(w[1].2)
            ),
        });
    }
    Ok((version, metadata, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_hugging_face() {
        assert_eq!(
            hf_name("blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_name("blk.1.attn_k.bias").as_deref(),
            Some("model.layers.1.self_attn.k_proj.bias")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    fn header(version: u32) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b
    }

    #[test]
    fn unknown_version_is_rejected() {
        let err = parse(Path::new("x.gguf"), &header(7)).expect_err("v7");
        assert!(err.to_string().contains("unsupported GGUF version 7"), "{err}");
        assert!(parse(Path::new("x.gguf"), &header(3)).is_ok());
    }

    fn put_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    /// A GGUF with F32 tensors `(name, elements, offset)` and `data` bytes of tensor data.
    fn f32_gguf(tensors: &[(&str, u64, u64)], data: usize) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend(1u64.to_le_bytes());
        put_str(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        put_str(&mut b, "llama");
        for &(name, n, offset) in tensors {
            put_str(&mut b, name);
            b.extend(1u32.to_le_bytes());
            b.extend(n.to_le_bytes());
            b.extend(0u32.to_le_bytes()); // F32
            b.extend(offset.to_le_bytes());
        }
        b.resize(b.len().div_ceil(32) * 32 + data, 0);
        b
    }

    #[test]
    fn overlapping_or_unaligned_tensor_data_is_refused() {
        let ok = f32_gguf(
            &[("blk.0.attn_norm.weight", 8, 0), ("blk.0.ffn_norm.weight", 8, 32)],
            64,
        );
        assert!(parse(Path::new("ok.gguf"), &ok).is_ok());
        let overlap = f32_gguf(
            &[("blk.0.attn_norm.weight", 16, 0), ("blk.0.ffn_norm.weight", 8, 32)],
            64,
        );
        let msg = parse(Path::new("o.gguf"), &overlap).expect_err("overlap").to_string();
        // File positions: the 32 bytes after the second tensor's start.
        assert!(
            msg.contains("input_layernorm") && msg.contains("post_attention_layernorm") && msg.contains("share bytes"),
            "{msg}"
        );
        let unaligned = f32_gguf(&[("blk.0.attn_norm.weight", 8, 4)], 64);
        let msg = parse(Path::new("u.gguf"), &unaligned)
            .expect_err("unaligned")
            .to_string();
        assert!(msg.contains("offset 4 is not a multiple of the alignment 32"), "{msg}");
    }

    #[test]
    fn unknown_quant_type_names_the_tensor() {
        let mut b = MAGIC.to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes()); // one tensor
        b.extend(1u64.to_le_bytes()); // one metadata pair
        put_str(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        put_str(&mut b, "llama");
        put_str(&mut b, "blk.0.ffn_up.weight");
        b.extend(2u32.to_le_bytes());
        b.extend(256u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(12u32.to_le_bytes()); // Q4_K
        b.extend(0u64.to_le_bytes());
        b.resize(b.len() + 2048, 0);
        let err = parse(Path::new("k.gguf"), &b).expect_err("Q4_K");
        let msg = err.to_string();
        assert!(
            msg.contains("blk.0.ffn_up.weight") && msg.contains("K-quant type 12"),
            "{msg}"
        );
    }

    #[test]
    fn absurd_counts_do_not_allocate() {
        let mut b = MAGIC.to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        let err = parse(Path::new("x.gguf"), &b).expect_err("huge count");
        assert!(err.to_string().contains("exceeds the file"), "{err}");
    }
}
