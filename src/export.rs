//! `cuma export --onnx`: the bridge between cuma's weight readers / checkpoints and the
//! libtorch-free graph writer in `cuma-export`.

use crate::models::backbone::decoder_config;
use crate::models::source::ModelSource;
use crate::tch_ops::TchOps;
use crate::train::checkpoint;
use crate::weights::WeightSet;
use crate::{Error, Result};
use cuma_export::{
    decoder_graph, AdapterSpec, AdapterTensors, DecoderGraph, QuantReport, SourceWeights, StoreAs, TensorSource,
    WeightFormat,
};
use std::path::{Path, PathBuf};

/// A [`WeightSet`] (GGUF or safetensors, dequantised to f32) as the exporter's tensor source.
pub struct WeightSetSource<'a>(pub &'a WeightSet);

impl TensorSource for WeightSetSource<'_> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.entry(name).map(|e| e.shape.clone())
    }
    fn read(&self, name: &str) -> std::result::Result<Vec<f32>, String> {
        if let Some(dtype) = self.0.unreadable(name) {
            return Err(format!(
                "tensor `{name}` in {} is stored as {dtype}, which cuma cannot convert to f32",
                self.0.describe()
            ));
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
    /// Fold a plain LoRA's update into the backbone weights instead of recording adapter nodes.
    pub merge: bool,
    /// Give the routers' profile terms a graph of their own (`profile_terms.onnx`, run once per
    /// profile) instead of recomputing them inside the decoder at every step.
    pub profile_terms: bool,
}

impl ExportInput {
    /// `path` is a run directory, a checkpoint directory, or a model (GGUF file / HF directory).
    /// `backbone` overrides the checkpoint's recorded backbone, which must then hash the same.
    pub fn resolve(path: &Path, backbone: Option<&Path>) -> Result<Self> {
        let dir = [path.to_path_buf(), path.join(crate::train::sft::CHECKPOINT_DIR)]
            .into_iter()
            .find(|d| d.join(checkpoint::MANIFEST_FILE).is_file());
        let Some(dir) = dir else {
            return Ok(Self {
                backbone: backbone.unwrap_or(path).to_path_buf(),
                checkpoint: None,
                merge: false,
                profile_terms: true,
            });
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
        Ok(Self {
            backbone: chosen,
            checkpoint: Some(ck),
            merge: false,
            profile_terms: true,
        })
    }
}

/// A tensor source with some tensors replaced (merged LoRA weights).
struct Overlaid<'a> {
    base: WeightSetSource<'a>,
    replaced: std::collections::HashMap<String, Vec<f32>>,
}

impl TensorSource for Overlaid<'_> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.base.shape(name)
    }
    fn read(&self, name: &str) -> std::result::Result<Vec<f32>, String> {
        match self.replaced.get(name) {
            Some(v) => Ok(v.clone()),
            None => self.base.read(name),
        }
    }
    fn describe(&self) -> String {
        self.base.describe()
    }
}

/// `W + (alpha / r) B A` for every adapted projection of a plain LoRA checkpoint.
fn merged_lora(
    base: &WeightSetSource<'_>,
    ck: &checkpoint::Checkpoint,
    method: &cuma_model::config::MethodConfig,
    layers: usize,
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    if method.method != cuma_model::config::Method::Lora || method.experts != 1 {
        return Err(Error::Invalid(format!(
            "--merge folds a single plain LoRA into the weights; this checkpoint is `{}` with {} experts",
            as_text(&method.method),
            method.experts
        )));
    }
    let adapters: std::collections::HashMap<&str, &tch::Tensor> =
        ck.adapters.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = std::collections::HashMap::new();
    for layer in 0..layers {
        for &target in &method.targets {
            let path = cuma_model::names::decoder::target(layer, target);
            let (a, b) = match (
                adapters.get(path.name("lora_a").as_str()),
                adapters.get(path.name("lora_b").as_str()),
            ) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::Invalid(format!("the checkpoint has no LoRA tensors for {path}"))),
            };
            let name = path.name("weight");
            let w = base.read(&name).map_err(Error::Invalid)?;
            let (rows, cols) = (b.size()[0], a.size()[1]);
            if w.len() as i64 != rows * cols {
                return Err(Error::Invalid(format!(
                    "{name}: {} values, the LoRA update has {rows} x {cols}",
                    w.len()
                )));
            }
            let w = tch::Tensor::f_from_slice(&w)?.f_view([rows, cols])?;
            let (a, b) = (a.f_to_kind(tch::Kind::Float)?, b.f_to_kind(tch::Kind::Float)?);
            let merged =
                cuma_model::adapters::merged_weight(&mut TchOps::new(tch::Device::Cpu), &w, &a, &b, method.scale())?
                    .f_contiguous()?;
            out.insert(name, Vec::<f32>::try_from(&merged.f_view([-1])?)?);
        }
    }
    Ok(out)
}

/// Records the decoder graph of `input`, whose backbone is already open as `source`.
pub fn export_decoder(input: &ExportInput, source: &ModelSource, format: WeightFormat) -> Result<DecoderGraph> {
    let config = decoder_config(source)?.clone();
    if let (true, Some(ck)) = (input.merge, &input.checkpoint) {
        let method = ck.manifest.config.method.effective();
        let base = WeightSetSource(&source.weights);
        let replaced = merged_lora(&base, ck, &method, config.num_layers)?;
        let overlaid = Overlaid { base, replaced };
        let mut weights = SourceWeights { source: &overlaid };
        return decoder_graph::<_, AdapterTensors>(&config, &mut weights, None, format).map_err(|e| source.error(e));
    }
    let mut weights = SourceWeights {
        source: &WeightSetSource(&source.weights),
    };
    let graph = match &input.checkpoint {
        None => decoder_graph::<_, AdapterTensors>(&config, &mut weights, None, format),
        Some(ck) => {
            let method = ck.manifest.config.method.effective();
            if matches!(
                method.method,
                cuma_model::config::Method::Full | cuma_model::config::Method::Ptuning
            ) {
                return Err(Error::Invalid(format!(
                    "exporting `{}` checkpoints is not supported yet (cuma exports backbones with LoRA-type adapters)",
                    as_text(&method.method)
                )));
            }
            let mut tensors = AdapterTensors {
                origin: "the checkpoint's adapter.safetensors".into(),
                ..Default::default()
            };
            for (name, t) in &ck.adapters {
                let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
                let values: Vec<f32> = Vec::try_from(t.f_to_kind(tch::Kind::Float)?.f_contiguous()?.f_view([-1])?)?;
                tensors.tensors.insert(name.clone(), (shape, values));
            }
            let spec = AdapterSpec {
                method: &method,
                tensors: &mut tensors,
                encoder_dim: ck.manifest.profile_dim,
                profile_terms: input.profile_terms,
            };
            decoder_graph(&config, &mut weights, Some(spec), format)
        }
    };
    graph.map_err(|e| source.error(e))
}

/// Files written and how long it took.
pub struct BundleReport {
    /// File name -> size in bytes.
    pub sizes: std::collections::BTreeMap<String, u64>,
    pub routers: usize,
    pub seconds: f64,
    /// What `--quant` did to the decoder's weights.
    pub quant: QuantReport,
}

/// Writes one graph (and its external data file, past `external_data_above` weight bytes); the
/// names of the files written.
fn write_graph(
    graph: cuma_export::proto::GraphProto,
    doc: &str,
    opset: i64,
    path: &Path,
    external_data_above: u64,
) -> Result<Vec<String>> {
    let written = cuma_export::write_model(cuma_export::model_proto(graph, doc, opset), path, external_data_above)
        .map_err(|e| Error::Invalid(format!("writing {}: {e}", path.display())))?;
    Ok(written.files.into_iter().map(|(name, _)| name).collect())
}

fn as_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `bytes` as a new file at `path`, never through a link planted there ([`cuma_export::create_new_file`]).
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    cuma_export::write_new_file(path, bytes).map_err(|e| Error::Invalid(e.to_string()))
}

/// A tokenizer as `tokenizer.json` at `path`.
fn write_tokenizer(tokenizer: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer.to_string(false).map_err(|e| Error::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_new(path, json.as_bytes())
}

/// Writes a complete bundle for `input` into `out` (which must exist): `model.onnx`,
/// `tokenizer.json`, for checkpoints whose routers read the profile also `encoder.onnx`,
/// `encoder.tokenizer.json` and (with [`ExportInput::profile_terms`]) `profile_terms.onnx`, and
/// `manifest.json` with every file's SHA-256.
pub fn write_bundle(
    input: &ExportInput,
    out: &Path,
    format: WeightFormat,
    external_data_above: u64,
) -> Result<BundleReport> {
    let store_as = format.store_as;
    use cuma_model::bundle::{self, BackboneSpec, EncoderSpec, GraphSpec, Manifest, ProfileSpec};
    let started = std::time::Instant::now();
    let mut graphs = std::collections::BTreeMap::new();
    let mut files = Vec::new();

    let source = ModelSource::open(&input.backbone)?;
    let config = decoder_config(&source)?.clone();
    let tokenizer = crate::models::backbone::tokenizer_for(&source)?;
    let mut decoder = export_decoder(input, &source, format)?;
    if let Some(terms) = decoder.profile_terms.take() {
        files.extend(write_graph(
            terms.graph,
            "cuma router profile terms",
            cuma_export::OPSET,
            &out.join("profile_terms.onnx"),
            external_data_above,
        )?);
        graphs.insert(
            "profile_terms".to_string(),
            GraphSpec {
                file: "profile_terms.onnx".into(),
                inputs: terms.inputs,
                outputs: terms.outputs,
            },
        );
    }
    let model_path = out.join("model.onnx");
    files.extend(write_graph(
        decoder.graph,
        "cuma decoder",
        decoder.opset,
        &model_path,
        external_data_above,
    )?);
    graphs.insert(
        "model".to_string(),
        GraphSpec {
            file: "model.onnx".into(),
            inputs: decoder.inputs,
            outputs: decoder.outputs,
        },
    );
    let tok_path = out.join("tokenizer.json");
    write_tokenizer(tokenizer.inner.raw(), &tok_path)?;
    files.push("tokenizer.json".into());

    let train_config = input
        .checkpoint
        .as_ref()
        .map(|c| c.manifest.config.clone())
        .unwrap_or_default();
    let method = train_config.method.effective();
    let mut encoder_spec = None;
    if let (Some(ck), Some(dim)) = (&input.checkpoint, decoder.demographic_dim) {
        let enc_path = &ck.manifest.encoder.path;
        let enc_source = ModelSource::open(enc_path)?;
        let (pooling, normalize) = if enc_source.path.is_dir() {
            crate::models::encoder::sentence_transformers_config(&enc_source.path)?
        } else {
            (cuma_model::layers::Pooling::Mean, false)
        };
        let weights = &mut SourceWeights {
            source: &WeightSetSource(&enc_source.weights),
        };
        let (graph, family) = match &enc_source.config {
            cuma_model::config::ModelConfig::Bert(bert) => (
                cuma_export::encoder_graph(bert, weights, pooling, normalize, store_as),
                bundle::EncoderFamily::Bert,
            ),
            cuma_model::config::ModelConfig::Decoder(dec) => (
                cuma_export::encoder::decoder_encoder_graph(dec, weights, pooling, normalize, store_as),
                dec.family.into(),
            ),
        };
        let graph = graph.map_err(|e| enc_source.error(e))?;
        if graph.dim != dim {
            return Err(Error::Invalid(format!(
                "{}: the encoder gives {}-d vectors, the routers were trained on {dim}-d ones",
                enc_path.display(),
                graph.dim
            )));
        }
        let enc_model = out.join("encoder.onnx");
        files.extend(write_graph(
            graph.graph,
            "cuma demographic encoder",
            cuma_export::OPSET,
            &enc_model,
            external_data_above,
        )?);
        graphs.insert(
            "encoder".to_string(),
            GraphSpec {
                file: "encoder.onnx".into(),
                inputs: graph.inputs,
                outputs: graph.outputs,
            },
        );
        let enc_tok = crate::models::backbone::tokenizer_for(&enc_source)?;
        let enc_tok_path = out.join("encoder.tokenizer.json");
        write_tokenizer(enc_tok.inner.raw(), &enc_tok_path)?;
        files.push("encoder.tokenizer.json".to_string());
        encoder_spec = Some(EncoderSpec {
            family,
            dim,
            pooling,
            normalize,
            max_tokens: crate::models::encoder::MAX_TOKENS,
            tokenizer: "encoder.tokenizer.json".into(),
        });
    }
    let adapter = input.checkpoint.as_ref().map(|_| bundle::AdapterSpec {
        method: method.method,
        experts: method.experts,
        top_k: method.top_k,
        rank: method.rank,
        alpha: method.alpha,
        targets: method.targets.iter().copied().collect(),
        gate: method.gate,
        router_layout: method.router_layout,
        routers: decoder.routers.clone(),
        demographic_dim: decoder.demographic_dim.unwrap_or(0),
        merged: input.merge,
    });
    let choice = cuma_model::text::choice::ChoiceWording::default();
    let manifest = Manifest {
        format_version: bundle::BUNDLE_FORMAT_VERSION,
        producer: format!("cuma {}", env!("CARGO_PKG_VERSION")),
        dtype: if store_as == StoreAs::F16 {
            bundle::StorageDtype::F16
        } else {
            bundle::StorageDtype::F32
        },
        quant: format.quant.map(|bits| bundle::QuantSpec {
            bits: bits.bits(),
            block_size: cuma_export::quant::BLOCK,
        }),
        opset: decoder.opset,
        ir_version: cuma_export::IR_VERSION,
        backbone: BackboneSpec {
            family: config.family,
            layers: config.num_layers,
            hidden: config.hidden_size,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            tokenizer: "tokenizer.json".into(),
            chat_template: tokenizer.chat_template.clone(),
            end_of_turn: tokenizer.end_of_turn.clone(),
            bos_token: tokenizer.bos_token.clone(),
            eos_token: tokenizer.eos_token.clone(),
        },
        encoder: encoder_spec,
        adapter,
        profile: ProfileSpec {
            wording: train_config.profile_style.wording(),
            order: train_config.profile_order.clone(),
            in_prompt: train_config.method.profile_in_prompt,
            neutral_system: crate::train::examples::NEUTRAL_SYSTEM.into(),
        },
        choice: bundle::ChoiceSpec {
            letter_ids: crate::eval::choice::letter_ids(&tokenizer, choice.letters.len())?,
            wording: choice,
        },
        graphs,
        files: Default::default(),
    };
    let sizes = cuma_export::finish_bundle(out, manifest, &files).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(BundleReport {
        sizes,
        routers: decoder.routers.len(),
        seconds: started.elapsed().as_secs_f64(),
        quant: decoder.quant,
    })
}
