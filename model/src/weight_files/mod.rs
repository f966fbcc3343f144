//! Weight-file readers (feature `weight-files`): named tensors from safetensors (single or sharded)
//! and GGUF files, converted to f32 on demand. They need no tensor backend, so the libtorch crate,
//! the exporter and the fuzz targets share them. No model logic lives here beyond GGUF's name and
//! layout mapping. Every count, offset and size read from a file is checked before it is used.

pub mod dequant;
mod error;
pub mod gguf;
mod mmap;
pub mod safetensors;

use std::path::PathBuf;

pub use error::WeightFileError;
pub use mmap::Bytes;

/// Result alias for the weight-file readers.
pub type Result<T, E = WeightFileError> = std::result::Result<T, E>;

/// How a tensor's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
}

/// Where one tensor lives and how to turn it into f32 values in Hugging Face layout.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Index into the set's files.
    pub file: usize,
    /// Byte range within that file.
    pub start: usize,
    pub end: usize,
    pub dtype: DType,
    /// Shape in Hugging Face (row-major, PyTorch) order.
    pub shape: Vec<usize>,
    /// llama.cpp stores Q and K rows in an interleaved rotary order; undo it with this many heads.
    pub unpermute_heads: Option<usize>,
}

/// A set of weight files and the tensors they hold, keyed by Hugging Face name.
#[derive(Debug)]
pub struct WeightSet {
    files: Vec<(PathBuf, Bytes)>,
    tensors: std::collections::BTreeMap<String, TensorEntry>,
    /// Tensors present but in a type cuma does not convert (name -> type), e.g. BERT's int64
    /// `position_ids` buffer: harmless unless a model asks for them.
    unreadable: std::collections::BTreeMap<String, String>,
}

impl WeightSet {
    fn empty() -> Self {
        Self {
            files: Vec::new(),
            tensors: std::collections::BTreeMap::new(),
            unreadable: std::collections::BTreeMap::new(),
        }
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The type of a tensor cuma cannot convert, if `name` is one.
    pub fn unreadable(&self, name: &str) -> Option<&str> {
        self.unreadable.get(name).map(String::as_str)
    }

    /// The entry for `name`, if present.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The file that holds `name` (for error messages).
    pub fn file_of(&self, name: &str) -> Option<&std::path::Path> {
        self.tensors
            .get(name)
            .and_then(|e| self.files.get(e.file))
            .map(|(p, _)| p.as_path())
    }

    /// A description of the files, for error messages: `a.safetensors` or `a, b (+3 more)`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|(p, _)| p.display().to_string()).collect();
        match names.len() {
            0 => "<no files>".into(),
            1..=2 => names.join(", "),
            n => format!("{}, {} (+{} more)", names[0], names[1], n - 2),
        }
    }

    /// The dtype most tensors are stored in (for `cuma info`).
    pub fn dominant_dtype(&self) -> Option<DType> {
        let mut counts: Vec<(DType, usize)> = Vec::new();
        for e in self.tensors.values() {
            let n = e.shape.iter().product::<usize>();
            match counts.iter_mut().find(|(d, _)| *d == e.dtype) {
                Some((_, c)) => *c += n,
                None => counts.push((e.dtype, n)),
            }
        }
        counts.into_iter().max_by_key(|(_, c)| *c).map(|(d, _)| d)
    }

    /// Reads `name` as f32 values in Hugging Face layout.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        if let Some(dtype) = self.unreadable.get(name) {
            return Err(WeightFileError::UnsupportedDtype {
                path: self.describe().into(),
                tensor: name.into(),
                dtype: dtype.clone(),
            });
        }
        let e = self.tensors.get(name).ok_or_else(|| WeightFileError::MissingTensor {
            name: name.into(),
            source_name: self.describe(),
        })?;
        let (path, bytes) = &self.files[e.file];
        let corrupt = |reason: String| WeightFileError::Gguf {
            path: path.clone(),
            reason: format!("tensor `{name}`: {reason}"),
        };
        let raw = bytes.as_slice().get(e.start..e.end).ok_or_else(|| {
            corrupt(format!(
                "data range {}..{} is beyond the end of the file",
                e.start, e.end
            ))
        })?;
        let numel = e
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| corrupt(format!("shape {:?} overflows", e.shape)))?;
        let mut values = dequant::to_f32(e.dtype, raw, numel).map_err(corrupt)?;
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(WeightFileError::NonFinite {
                path: path.clone(),
                tensor: name.into(),
                value,
                index,
            });
        }
        if let Some(heads) = e.unpermute_heads {
            values = dequant::unpermute_rotary(&values, &e.shape, heads).map_err(corrupt)?;
        }
        Ok(values)
    }
}
