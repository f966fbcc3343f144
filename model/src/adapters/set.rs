//! The adapters of a whole decoder: for every layer, an expert bank on each target projection and
//! the routers that gate them (one per module, or one shared by q/k/v).

use super::experts::ExpertBank;
use super::router::{ProfileInput, Router, RouterDims};
use crate::arch::Decoder;
use crate::config::{DecoderConfig, Method, MethodConfig, RouterLayout, Target};
use crate::names::decoder as n;
use crate::{Ops, Result, Scoped, Trainables};

/// Input and output sizes of a target projection.
pub fn target_dims(c: &DecoderConfig, t: Target) -> (usize, usize) {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    match t {
        Target::QProj => (h, q),
        Target::KProj | Target::VProj => (h, kv),
        Target::OProj => (q, h),
        Target::GateProj | Target::UpProj => (h, i),
        Target::DownProj => (i, h),
    }
}

/// Where a router's tensors live: `router` under the projection it gates (per module), under
/// `self_attn.qkv` (shared by q/k/v) or under the layer (per layer).
const ROUTER: &str = "router";

/// One adapted projection.
#[derive(Debug, Clone)]
pub struct ModuleAdapter<T> {
    pub target: Target,
    pub bank: ExpertBank<T>,
    /// Index into the layer's routers; `None` for unrouted methods (LoRA).
    pub router: Option<usize>,
    /// DoRA's per-output magnitude `[out]`.
    pub magnitude: Option<T>,
}

/// The adapters of one layer.
#[derive(Debug, Clone)]
pub struct LayerAdapters<T> {
    pub modules: Vec<ModuleAdapter<T>>,
    pub routers: Vec<Router<T>>,
}

/// The adapters of a decoder.
#[derive(Debug, Clone)]
pub struct DecoderAdapters<T> {
    pub method: MethodConfig,
    /// D: the profile vector's size seen by the routers (0 without demographics).
    pub profile_dim: usize,
    pub layers: Vec<LayerAdapters<T>>,
}

impl<T> DecoderAdapters<T> {
    /// Fresh or restored adapters for every layer of `decoder`. `encoder_dim` is the profile
    /// encoder's output size; it is ignored when the method keeps the profile out of the router.
    pub fn init<O: Ops<T = T>>(
        o: &mut O,
        t: &mut impl Trainables<O>,
        decoder: &Decoder<T>,
        m: &MethodConfig,
        encoder_dim: usize,
    ) -> Result<Self> {
        m.validate()?;
        let c: &DecoderConfig = &decoder.config;
        if m.method == Method::Dora && m.experts != 1 {
            return Err(crate::Error::Config {
                field: "experts",
                reason: "DoRA adapts with one expert".into(),
            });
        }
        let routed = m.routed();
        let profile_dim = if routed && m.profile_in_router && m.method == Method::Cuma {
            encoder_dim
        } else {
            0
        };
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let mut modules = Vec::new();
            let mut routers = Vec::new();
            let mut shared_qkv: Option<usize> = None;
            let mut per_layer: Option<(usize, usize)> = None; // (router, its input size)
            for &target in &m.targets {
                let (fan_in, fan_out) = target_dims(c, target);
                let path = n::target(i, target);
                let bank = ExpertBank::init(o, &mut Scoped::new(t, path.clone()), fan_in, fan_out, m)?;
                let dims = RouterDims {
                    token: fan_in,
                    profile: profile_dim,
                    hidden: m.router_hidden,
                    experts: m.experts,
                };
                let router = if !routed {
                    None
                } else if m.router_layout == RouterLayout::PerLayer {
                    match per_layer {
                        Some((r, size)) if size == fan_in => Some(r),
                        Some((_, size)) => {
                            return Err(crate::Error::Config {
                                field: "router_layout",
                                reason: format!("a per-layer router needs targets with one input size; {} reads {fan_in}, others {size}", target.module()),
                            })
                        }
                        None => {
                            let mut at = Scoped::new(t, n::layer(i).pp(ROUTER));
                            routers.push(Router::init(o, &mut at, dims, m.dropout)?);
                            per_layer = Some((routers.len() - 1, fan_in));
                            per_layer.map(|(r, _)| r)
                        }
                    }
                } else if m.router_layout == RouterLayout::SharedQkv && target.is_qkv() {
                    if shared_qkv.is_none() {
                        let mut at = Scoped::new(t, n::layer(i).pp(n::SELF_ATTN).pp("qkv").pp(ROUTER));
                        routers.push(Router::init(o, &mut at, dims, m.dropout)?);
                        shared_qkv = Some(routers.len() - 1);
                    }
                    shared_qkv
                } else {
                    routers.push(Router::init(o, &mut Scoped::new(t, path.pp(ROUTER)), dims, m.dropout)?);
                    Some(routers.len() - 1)
                };
                let magnitude = if m.method == Method::Dora {
                    let norms = super::row_norms(o, &decoder.projection(i, target)?.weight)?;
                    Some(t.param_from(o, &path.name("dora_magnitude"), &[fan_out], &norms)?)
                } else {
                    None
                };
                modules.push(ModuleAdapter {
                    target,
                    bank,
                    router,
                    magnitude,
                });
            }
            layers.push(LayerAdapters { modules, routers });
        }
        Ok(Self {
            method: m.clone(),
            profile_dim,
            layers,
        })
    }

    /// Every router's profile term `W_d d + b` for the profile vectors `profile` `[b, D]`,
    /// concatenated in the order of [`DecoderAdapters::router_names`]: `[b, 1, P]`, what
    /// [`crate::adapters::ProfileInput::Terms`] carries. The same [`super::Router::profile_part`]
    /// a forward from the vector runs, so both inputs give one result.
    pub fn profile_terms<O: Ops<T = T>>(&self, o: &mut O, profile: &T) -> Result<T> {
        if self.profile_dim == 0 {
            return Err(crate::Error::Config {
                field: "profile",
                reason: "these routers read no profile vector, so they have no profile terms".into(),
            });
        }
        let parts = self
            .layers
            .iter()
            .flat_map(|l| &l.routers)
            .map(|r| r.profile_part(o, Some(profile)))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&T> = parts.iter().collect();
        o.concat(&refs, -1)
    }

    /// P: the width of [`DecoderAdapters::profile_terms`] (every router's first-layer width).
    pub fn profile_terms_width(&self) -> usize {
        self.router_widths().sum()
    }

    /// Every router's first-layer width, in the order of the profile terms.
    fn router_widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers.iter().flat_map(|l| &l.routers).map(|r| r.width)
    }

    /// Every router's profile part, one list per layer in router order, what
    /// [`super::LayerRun::start`] takes: cut out of precomputed terms in one split (one node per
    /// step in a graph, not one per router), or computed from the vector as
    /// [`super::Router::profile_part`] does (also without a profile: the bias alone).
    ///
    /// # Shapes
    /// `profile`: a vector `[b, D]` or terms `[b, 1, P]`; each part `[b, 1, width]`.
    pub fn profile_parts<O: Ops<T = T>>(&self, o: &mut O, profile: Option<&ProfileInput<T>>) -> Result<Vec<Vec<T>>> {
        let routers = self.layers.iter().map(|l| &l.routers);
        match profile {
            Some(ProfileInput::Terms(terms)) => {
                let widths: Vec<usize> = self.router_widths().collect();
                let mut parts = o.split_last(terms, &widths)?.into_iter();
                Ok(routers.map(|rs| parts.by_ref().take(rs.len()).collect()).collect())
            }
            Some(ProfileInput::Vector(v)) => routers
                .map(|rs| rs.iter().map(|r| r.profile_part(o, Some(v))).collect())
                .collect(),
            None => routers
                .map(|rs| rs.iter().map(|r| r.profile_part(o, None)).collect())
                .collect(),
        }
    }

    /// A label for every router, in the order a forward pass reports their routing: the layer
    /// and the projections it gates, e.g. `L3.q_proj` or `L3.q_proj+k_proj+v_proj`.
    pub fn router_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for r in 0..layer.routers.len() {
                let modules: Vec<&str> = layer
                    .modules
                    .iter()
                    .filter(|m| m.router == Some(r))
                    .map(|m| m.target.module())
                    .collect();
                names.push(format!("L{i}.{}", modules.join("+")));
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParamCounter, ShapeOps, ShapeWeights};

    fn shapes(c: &DecoderConfig) -> Decoder<Vec<usize>> {
        Decoder::load(&mut ShapeOps, &mut ShapeWeights, c).expect("shape decoder")
    }

    fn count(m: &MethodConfig) -> (f64, f64) {
        let c = DecoderConfig::qwen3_8b();
        let mut counter = ParamCounter::default();
        DecoderAdapters::init(&mut ShapeOps, &mut counter, &shapes(&c), m, 1024).expect("builds");
        let millions = counter.total as f64 / 1e6;
        (millions, 100.0 * counter.total as f64 / c.parameter_count() as f64)
    }

    fn close(got: (f64, f64), want: (f64, f64)) -> bool {
        (got.0 - want.0).abs() < 0.05 && (got.1 - want.1).abs() < 0.005
    }

    #[test]
    fn spec_section_7_parameter_accounting_on_qwen3_8b() {
        let r8 = MethodConfig {
            rank: 8,
            alpha: 16.0,
            ..MethodConfig::default()
        };
        let r64 = MethodConfig {
            rank: 64,
            alpha: 128.0,
            ..MethodConfig::default()
        };
        assert!(close(count(&r8), (125.2, 1.53)), "CuMA r=8: {:?}", count(&r8));
        assert!(close(count(&r64), (339.9, 4.15)), "CuMA r=64: {:?}", count(&r64));
        assert!(
            close(count(&MethodConfig::lora(64)), (30.7, 0.37)),
            "LoRA r=64: {:?}",
            count(&MethodConfig::lora(64))
        );
    }

    #[test]
    fn mixlora_single_linear_router_per_layer() {
        let m = MethodConfig {
            method: Method::Mixlora,
            router_layout: RouterLayout::PerLayer,
            router_hidden: 0,
            profile_in_router: false,
            ..MethodConfig::default()
        };
        let c = DecoderConfig::qwen3_8b();
        let mut counter = ParamCounter::default();
        let a = DecoderAdapters::init(&mut ShapeOps, &mut counter, &shapes(&c), &m, 1024).expect("builds");
        assert_eq!(a.layers[0].routers.len(), 1);
        assert_eq!(a.profile_dim, 0);
        let experts = 8 * (8 * 4096 + 4096 * 8) + 8 * (8 * 4096 + 1024 * 8);
        assert_eq!(counter.total, 36 * (experts + 4096 * 8 + 8));
        let mixed = MethodConfig {
            targets: [Target::QProj, Target::DownProj].into_iter().collect(),
            ..m
        };
        assert!(DecoderAdapters::init(&mut ShapeOps, &mut ParamCounter::default(), &shapes(&c), &mixed, 1024).is_err());
    }

    #[test]
    fn shared_qkv_router_and_shared_a_cut_parameters() {
        let base = count(&MethodConfig::default()).0;
        let shared = count(&MethodConfig {
            router_layout: RouterLayout::SharedQkv,
            ..MethodConfig::default()
        })
        .0;
        let shared_a = count(&MethodConfig {
            expert_layout: crate::config::ExpertLayout::SharedA,
            ..MethodConfig::default()
        })
        .0;
        assert!(shared < base && shared_a < base);
    }
}
