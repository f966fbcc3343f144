//! `cuma export --onnx`: the bridge between cuma's weight readers / checkpoints and the
//! libtorch-free graph writer in `cuma-export`.

use crate::models::backbone::decoder_config;
use crate::models::source::ModelSource;
use crate::train::checkpoint;
use crate::train::sft::effective_method;
use crate::weights::WeightSet;
use crate::{Error, Result};
use cuma_export::{decoder_graph, AdapterSpec, AdapterTensors, DecoderGraph, SourceWeights, StoreAs, TensorSource};
use std::path::{Path, PathBuf};

/// A [`WeightSet`] (GGUF or safetensors, dequantised to f32) as the exporter's tensor source.
pub struct WeightSetSource<'a>(pub &'a WeightSet);

impl TensorSource for WeightSetSource<'_> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.entry(name).map(|e| e.shape.clone())
    }
    fn read(&self, name: &str) -> std::result::Result<Vec<f32>, String> {
        if let Some(dtype) = self.0.unreadable(name) {
            return Err(format!("tensor `{name}` in {} is stored as {dtype}, which cuma cannot convert to f32", self.0.describe()));
        }
        self.0.read_f32(name).map_err(|e| e.to_string())
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// What to export: a bare backbone, or a checkpoint's adapters on its backbone.
pub struct ExportInput {
    pub backbone: PathBuf,
    pub checkpoint: Option<checkpoint::Checkpoint>,
}

impl ExportInput {
    /// `path` is a run directory, a checkpoint directory, or a model (GGUF file / HF directory).
    /// `backbone` overrides the checkpoint's recorded backbone, which must then hash the same.
    pub fn resolve(path: &Path, backbone: Option<&Path>) -> Result<Self> {
        let dir = [path.to_path_buf(), path.join(crate::train::sft::CHECKPOINT_DIR)].into_iter().find(|d| d.join(checkpoint::MANIFEST_FILE).is_file());
        let Some(dir) = dir else {
            return Ok(Self { backbone: backbone.unwrap_or(path).to_path_buf(), checkpoint: None });
        };
        let ck = checkpoint::load(&dir)?;
        let recorded = &ck.manifest.backbone;
        let chosen = backbone.map_or_else(|| recorded.path.clone(), Path::to_path_buf);
        let hash = checkpoint::hash_files(&crate::train::sft::weight_files(&chosen)?)?;
        if hash != recorded.sha256 {
            return Err(Error::Invalid(format!(
                "{}: the checkpoint was trained on a backbone with SHA-256 {}, but {} hashes to {hash}",
                dir.display(),
                recorded.sha256,
                chosen.display()
            )));
        }
        Ok(Self { backbone: chosen, checkpoint: Some(ck) })
    }
}

/// Records the decoder graph of `input`.
pub fn export_decoder(input: &ExportInput, store_as: StoreAs) -> Result<DecoderGraph> {
    let source = ModelSource::open(&input.backbone)?;
    let config = decoder_config(&source)?.clone();
    let mut weights = SourceWeights { source: &WeightSetSource(&source.weights) };
    let graph = match &input.checkpoint {
        None => decoder_graph::<_, AdapterTensors>(&config, &mut weights, None, store_as),
        Some(ck) => {
            let method = effective_method(&ck.manifest.config.method)?;
            let mut tensors = AdapterTensors { origin: "the checkpoint's adapter.safetensors".into(), ..Default::default() };
            for (name, t) in &ck.adapters {
                let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
                let values: Vec<f32> = Vec::try_from(t.f_to_kind(tch::Kind::Float)?.f_contiguous()?.f_view([-1])?)?;
                tensors.tensors.insert(name.clone(), (shape, values));
            }
            let spec = AdapterSpec { method: &method, tensors: &mut tensors, encoder_dim: ck.manifest.profile_dim };
            decoder_graph(&config, &mut weights, Some(spec), store_as)
        }
    };
    graph.map_err(|e| source.error(e))
}
