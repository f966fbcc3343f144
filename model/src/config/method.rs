//! `MethodConfig`: which adapter method, on which projections, with which routing. Our own format
//! (versioned, unknown fields rejected); defaults follow `shared/spec/method.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The training method (spec section 8 lists the baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Method {
    Cuma,
    Lora,
    Dora,
    Hydralora,
    Mixlora,
    Ptuning,
    Full,
}

/// How router logits become gates (spec section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum GateMode {
    /// Keep the k largest logits; softmax over those k (the paper's default).
    #[default]
    TopkSoftmax,
    /// Softmax over all E, keep the top k probabilities, softmax again over those (reference code).
    DoubleSoftmax,
    /// Softmax over all E experts, all computed (the soft-routing ablation).
    Soft,
}

/// Whether each expert has its own down-projection A or all share one (HydraLoRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExpertLayout {
    #[default]
    SeparateA,
    SharedA,
}

/// Where routers sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum RouterLayout {
    /// One router per adapted module (the paper).
    #[default]
    PerModule,
    /// One router shared by the q, k and v projections of a layer.
    SharedQkv,
    /// One router per layer shared by every adapted projection (MixLoRA); the projections must
    /// read inputs of one size.
    PerLayer,
}

/// A projection that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Target {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

/// Every target, in layer order.
pub const ALL_TARGETS: [Target; 7] = [
    Target::QProj,
    Target::KProj,
    Target::VProj,
    Target::OProj,
    Target::GateProj,
    Target::UpProj,
    Target::DownProj,
];

impl Target {
    /// The Hugging Face module name (`q_proj`, ...).
    pub fn module(self) -> &'static str {
        match self {
            Self::QProj => "q_proj",
            Self::KProj => "k_proj",
            Self::VProj => "v_proj",
            Self::OProj => "o_proj",
            Self::GateProj => "gate_proj",
            Self::UpProj => "up_proj",
            Self::DownProj => "down_proj",
        }
    }

    /// Whether the projection reads the attention block's normed input (q, k, v).
    pub fn is_qkv(self) -> bool {
        matches!(self, Self::QProj | Self::KProj | Self::VProj)
    }

    /// Projections of a layer with equal groups read the same input tensor: q, k and v (the
    /// attention block's normed input), gate and up (the MLP's); o and down read their own.
    pub fn input_group(self) -> u8 {
        match self {
            Self::QProj | Self::KProj | Self::VProj => 0,
            Self::GateProj | Self::UpProj => 1,
            Self::OProj => 2,
            Self::DownProj => 3,
        }
    }
}

/// The full adapter configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    pub version: u32,
    pub method: Method,
    pub targets: BTreeSet<Target>,
    /// Experts per adapted module (E).
    pub experts: usize,
    /// Experts selected per token (k).
    pub top_k: usize,
    /// LoRA rank (r).
    pub rank: usize,
    /// LoRA alpha; the update is scaled by alpha / r.
    pub alpha: f64,
    pub dropout: f64,
    pub expert_layout: ExpertLayout,
    pub router_layout: RouterLayout,
    pub gate: GateMode,
    /// Hidden size of the router MLP; 0 makes the router a single linear layer (MixLoRA).
    pub router_hidden: usize,
    /// Profile vector into the router (false: D = 0, a semantic-only MoE).
    pub profile_in_router: bool,
    /// Profile text as the system prompt.
    pub profile_in_prompt: bool,
    /// Load-balancing loss on.
    pub balance: bool,
    pub balance_lambda: f64,
    /// Virtual key/value tokens per layer (P-tuning v2).
    pub prefix_tokens: usize,
}

/// Current version of the method config format.
pub const METHOD_CONFIG_VERSION: u32 = 1;

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            version: METHOD_CONFIG_VERSION,
            method: Method::Cuma,
            targets: [Target::QProj, Target::VProj].into_iter().collect(),
            experts: 8,
            top_k: 2,
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            expert_layout: ExpertLayout::SeparateA,
            router_layout: RouterLayout::PerModule,
            gate: GateMode::TopkSoftmax,
            router_hidden: 256,
            profile_in_router: true,
            profile_in_prompt: true,
            balance: true,
            balance_lambda: 0.01,
            prefix_tokens: 32,
        }
    }
}

impl MethodConfig {
    /// The method as the adapters see it: each baseline is a switch setting of the same code path
    /// (LoRA / DoRA: one expert; HydraLoRA: shared A, no profile in the router; MixLoRA: one
    /// single-linear router per layer, top-2, no profile). Training, export and evaluation all
    /// resolve a method through this one function.
    pub fn effective(&self) -> Self {
        let mut m = self.clone();
        match m.method {
            Method::Cuma | Method::Full | Method::Ptuning => {}
            Method::Lora | Method::Dora => {
                m.experts = 1;
                m.top_k = 1;
            }
            Method::Hydralora => {
                m.expert_layout = ExpertLayout::SharedA;
                m.profile_in_router = false;
            }
            Method::Mixlora => {
                m.expert_layout = ExpertLayout::SeparateA;
                m.router_layout = RouterLayout::PerLayer;
                m.router_hidden = 0;
                m.profile_in_router = false;
                m.top_k = 2.min(m.experts);
            }
        }
        m
    }

    /// Plain LoRA on the same targets (one expert, no router).
    pub fn lora(rank: usize) -> Self {
        Self {
            method: Method::Lora,
            experts: 1,
            top_k: 1,
            rank,
            alpha: 2.0 * rank as f64,
            ..Self::default()
        }
    }

    /// The update scale alpha / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether this method routes tokens among experts.
    pub fn routed(&self) -> bool {
        matches!(self.method, Method::Cuma | Method::Hydralora | Method::Mixlora)
    }

    /// Checks the numbers fit together.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, reason: String| Err(crate::Error::Config { field, reason });
        if self.version != METHOD_CONFIG_VERSION {
            return bad(
                "version",
                format!("{} (this build reads {METHOD_CONFIG_VERSION})", self.version),
            );
        }
        if self.rank == 0 {
            return bad("rank", "must be positive".into());
        }
        if self.experts == 0 || self.top_k == 0 || self.top_k > self.experts {
            return bad(
                "top_k",
                format!("k = {} must be in 1..={} (E)", self.top_k, self.experts),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        if self.targets.is_empty() && !matches!(self.method, Method::Ptuning | Method::Full) {
            return bad("targets", "no projection to adapt".into());
        }
        Ok(())
    }
}
