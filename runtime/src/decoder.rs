//! The bundle's decoder graph as a [`DecoderStep`] of the serving core: host tensors in, the
//! graph's outputs checked and handed back (last-position logits, the KV cache, the routing).
//! A decoder that takes `profile_terms` gets them from [`ProfileTerms`], once per profile.

use crate::engine::Engine;
use crate::kv_cache::HostKvCache;
use crate::profile_terms::ProfileTerms;
use crate::{Bundle, HostTensor, RuntimeError};
use cuma_model::bundle::io::{self, KvPart};
use cuma_model::bundle::GraphSpec;
use cuma_model::serve::{self, DecoderStep, RoutingOutput, ServeError, StepInput};

impl From<ServeError> for RuntimeError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Input(m) => RuntimeError::Input(m),
            ServeError::Backend(reason) => RuntimeError::Backend {
                graph: "model".into(),
                reason,
            },
            ServeError::Tokenizer(reason) => RuntimeError::Tokenizer {
                path: "tokenizer.json".into(),
                reason,
            },
        }
    }
}

/// One decoder call's results, as the graph gives them.
pub struct StepOutput {
    /// `[batch, seq, vocab]`, row-major.
    pub logits: Vec<f32>,
    pub seq: usize,
    /// `present.{l}.key`, `present.{l}.value`, ... in layer order.
    pub presents: Vec<HostTensor>,
    /// `[routers, batch, seq, k]` experts and gates, for routed bundles.
    pub routing: Option<(Vec<i64>, Vec<f32>)>,
}

/// The loaded `model` graph and the sizes its inputs are built from.
pub struct GraphDecoder {
    engine: Box<dyn Engine>,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context: usize,
    /// D of the profile vectors (0: the routers do not read a profile).
    demographic_dim: usize,
    /// Turns profile vectors into the decoder's `profile_terms` input, when it takes those.
    terms: Option<ProfileTerms>,
    routers: Vec<String>,
    /// `past.{l}.key` / `past.{l}.value` input names, built once.
    past_names: Vec<(String, String)>,
    outputs: OutputIndex,
}

/// Where each output the runtime reads sits in the engine's results (the manifest's order).
struct OutputIndex {
    logits: Option<usize>,
    /// `present.{l}.key`, `present.{l}.value`, ... in layer order.
    presents: Vec<usize>,
    routing_experts: Option<usize>,
    routing_gates: Option<usize>,
}

impl OutputIndex {
    fn new(spec: &GraphSpec, layers: usize) -> Result<Self, RuntimeError> {
        let at = |name: &str| spec.outputs.iter().position(|o| o.name == name);
        let presents = (0..layers)
            .flat_map(|l| KvPart::BOTH.map(|part| io::present(l, part)))
            .map(|name| {
                at(&name).ok_or_else(|| RuntimeError::Manifest {
                    path: "manifest.json".into(),
                    reason: format!("graph `model` has no output `{name}`"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            logits: at(io::LOGITS),
            presents,
            routing_experts: at(io::ROUTING_EXPERTS),
            routing_gates: at(io::ROUTING_GATES),
        })
    }
}

impl GraphDecoder {
    /// The decoder graph loaded as `engine`; `terms`, the bundle's `profile_terms` graph
    /// loaded, when the decoder takes `profile_terms` (the manifest has been validated: the
    /// graph is there exactly then).
    pub fn new(engine: Box<dyn Engine>, terms: Option<Box<dyn Engine>>, bundle: &Bundle) -> Result<Self, RuntimeError> {
        let m = &bundle.manifest;
        let spec = bundle.graph_spec("model")?;
        let outputs = OutputIndex::new(spec, m.backbone.layers)?;
        let demographic_dim = m.adapter.as_ref().map_or(0, |a| a.demographic_dim);
        let width = spec
            .inputs
            .iter()
            .find(|i| i.name == io::PROFILE_TERMS)
            .and_then(|i| i.shape.last())
            .and_then(|p| p.parse().ok());
        let terms = match (terms, width) {
            (Some(engine), Some(width)) => Some(ProfileTerms::new(
                engine,
                bundle.graph_spec("profile_terms")?,
                demographic_dim,
                width,
            )?),
            (None, None) => None,
            _ => {
                return Err(RuntimeError::Manifest {
                    path: "manifest.json".into(),
                    reason: "graph `model`'s `profile_terms` input and the `profile_terms` graph come together".into(),
                })
            }
        };
        Ok(Self {
            terms,
            engine,
            layers: m.backbone.layers,
            kv_heads: m.backbone.kv_heads,
            head_dim: m.backbone.head_dim,
            vocab: m.backbone.vocab,
            context: m.backbone.max_positions,
            demographic_dim,
            routers: m.adapter.as_ref().map(|a| a.routers.clone()).unwrap_or_default(),
            past_names: (0..m.backbone.layers)
                .map(|l| (io::past(l, KvPart::Key), io::past(l, KvPart::Value)))
                .collect(),
            outputs,
        })
    }

    /// Whether the routers read a profile vector.
    pub fn reads_profile_vector(&self) -> bool {
        self.demographic_dim > 0
    }

    /// The profile-terms cache, when the decoder takes `profile_terms`.
    pub fn profile_terms(&self) -> Option<&ProfileTerms> {
        self.terms.as_ref()
    }

    /// One call of the graph: `rows` (equal length) of new tokens, the 0/1 `mask`
    /// `[batch, past + seq]` (row-major), the profile vectors `[batch * D]` and the past (None:
    /// empty).
    pub fn run(
        &mut self,
        rows: &[Vec<i64>],
        mask: &[i64],
        demographic: Option<&[f32]>,
        past: Option<&[HostTensor]>,
    ) -> Result<StepOutput, RuntimeError> {
        let (b, s) = (rows.len(), rows.first().map_or(0, Vec::len));
        let (layers, kv, hd, vocab) = (self.layers, self.kv_heads, self.head_dim, self.vocab);
        if rows.iter().any(|r| r.len() != s) {
            return Err(RuntimeError::Input(
                "step: the rows of new tokens differ in length".into(),
            ));
        }
        if let Some(p) = past.filter(|p| p.len() != 2 * layers) {
            return Err(RuntimeError::Input(format!(
                "step: {} past tensors for {layers} layers (a key and a value each)",
                p.len()
            )));
        }
        if b == 0 || mask.len() % b != 0 {
            return Err(RuntimeError::Input(format!(
                "step: a mask of {} values for a batch of {b}",
                mask.len()
            )));
        }
        // An id outside the embedding table would index past it inside the engine.
        if let Some(id) = rows.iter().flatten().find(|&&id| id < 0 || id as u64 >= vocab as u64) {
            return Err(RuntimeError::Input(format!(
                "step: token id {id} is outside the vocabulary of {vocab} (tokenizer and graph disagree?)"
            )));
        }
        let ids = HostTensor::I64 {
            shape: vec![b, s],
            data: rows.concat(),
        };
        let total = mask.len() / b.max(1);
        let mask_t = HostTensor::I64 {
            shape: vec![b, total],
            data: mask.to_vec(),
        };
        let empty = HostTensor::F32 {
            shape: vec![b, kv, 0, hd],
            data: Vec::new(),
        };
        let mut inputs: Vec<(&str, &HostTensor)> = vec![(io::INPUT_IDS, &ids), (io::ATTENTION_MASK, &mask_t)];
        let vectors_t;
        if self.demographic_dim > 0 {
            let d = self.demographic_dim;
            let v =
                demographic.ok_or_else(|| RuntimeError::Input("this bundle's routers need a profile vector".into()))?;
            if v.len() != b * d {
                return Err(RuntimeError::Input(format!(
                    "{} profile values for a batch of {b} and D = {d}",
                    v.len()
                )));
            }
            match &mut self.terms {
                Some(terms) => inputs.push((io::PROFILE_TERMS, terms.for_rows(v, b)?)),
                None => {
                    vectors_t = HostTensor::F32 {
                        shape: vec![b, d],
                        data: v.to_vec(),
                    };
                    inputs.push((io::DEMOGRAPHIC, &vectors_t));
                }
            }
        }
        for (l, (k, v)) in self.past_names.iter().enumerate() {
            match past {
                Some(p) => {
                    inputs.push((k, &p[2 * l]));
                    inputs.push((v, &p[2 * l + 1]));
                }
                None => {
                    inputs.push((k, &empty));
                    inputs.push((v, &empty));
                }
            }
        }
        // Outputs are read by name: `outputs` is in the manifest's order, `self.outputs` says where.
        let mut out: Vec<Option<HostTensor>> = self.engine.run(&inputs)?.into_iter().map(Some).collect();
        let mut take = |index: Option<usize>| index.and_then(|i| out.get_mut(i)).and_then(Option::take);
        let logits = match take(self.outputs.logits) {
            Some(HostTensor::F32 { shape, data }) if shape == [b, s, vocab] => data,
            other => {
                return Err(RuntimeError::Backend {
                    graph: "model".into(),
                    reason: format!(
                        "logits: expected float [{b}, {s}, {vocab}], got {:?}",
                        other.map(|t| t.shape().to_vec())
                    ),
                })
            }
        };
        let presents: Vec<HostTensor> = self
            .outputs
            .presents
            .iter()
            .map(|&i| take(Some(i)))
            .collect::<Option<_>>()
            .ok_or_else(|| RuntimeError::Backend {
                graph: "model".into(),
                reason: format!(
                    "fewer outputs than the {} present tensors the manifest lists",
                    2 * layers
                ),
            })?;
        let routing = match (take(self.outputs.routing_experts), take(self.outputs.routing_gates)) {
            (Some(HostTensor::I64 { data: e, .. }), Some(HostTensor::F32 { data: g, .. })) => Some((e, g)),
            _ => None,
        };
        Ok(StepOutput {
            logits,
            seq: s,
            presents,
            routing,
        })
    }
}

impl DecoderStep for GraphDecoder {
    type Cache = HostKvCache;
    type Error = RuntimeError;

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn context(&self) -> usize {
        self.context
    }

    fn routers(&self) -> Vec<String> {
        self.routers.clone()
    }

    fn step(&mut self, input: StepInput<'_, Self::Cache>) -> Result<serve::StepOutput<Self::Cache>, RuntimeError> {
        if input.ids.first().is_none_or(Vec::is_empty) {
            return Err(RuntimeError::Input("step: no new tokens".into()));
        }
        let rows: Vec<Vec<i64>> = input
            .ids
            .iter()
            .map(|r| r.iter().map(|&i| i64::from(i)).collect())
            .collect();
        let out = self.run(
            &rows,
            input.mask,
            input.profiles,
            input.past.as_ref().map(|c| c.0.as_slice()),
        )?;
        let (seq, vocab) = (out.seq, self.vocab);
        let last_logits = out
            .logits
            .chunks(seq * vocab)
            .flat_map(|row| &row[(seq - 1) * vocab..])
            .copied()
            .collect();
        let routing = out
            .routing
            .filter(|_| input.routing)
            .map(|(experts, gates)| RoutingOutput {
                experts,
                gates,
                dense_gates: None,
            });
        Ok(serve::StepOutput {
            last_logits,
            cache: HostKvCache(out.presents),
            routing,
        })
    }
}
