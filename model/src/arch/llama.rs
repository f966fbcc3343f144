//! Llama-family decoders: Llama 2/3.x and SmolLM2, Qwen2 (q/k/v biases) and Qwen3 (per-head
//! q/k RMSNorm), selected by [`DecoderConfig`] switches rather than copies.
//!
//! Follows Hugging Face `transformers/models/llama/modeling_llama.py`, `qwen2/modeling_qwen2.py`
//! and `qwen3/modeling_qwen3.py`.

use crate::adapters::{DecoderAdapters, LayerRun, ProfileInput, Routing};
use crate::config::{DecoderConfig, Target};
use crate::layers::{attend, AttentionMask, Heads, Linear, RmsNorm, Rope};
use crate::names::decoder as n;
use crate::{Ops, Result, Scoped, Weights};

/// Keys and values of one layer: `[b, kv_heads, t, head_dim]` each.
#[derive(Debug, Clone)]
pub struct KvPair<T> {
    pub key: T,
    pub value: T,
}

/// Per-forward inputs shared by every layer.
#[derive(Debug, Clone)]
pub struct DecoderCtx<T> {
    pub rope: Rope<T>,
    pub mask: AttentionMask<T>,
    /// What demographic-aware routers read: the profile vector `[b, D]`, or their terms
    /// computed from it ahead of the forward.
    pub profile: Option<ProfileInput<T>>,
    /// Router replay: recorded selections `[b, s, k]` (int64), one per router in the order of
    /// [`DecoderOutput::routing`]; the forward routes every token to these experts, with gates
    /// from the live routers.
    pub replay: Option<Vec<T>>,
}

/// What a decoder forward produces.
#[derive(Debug, Clone)]
pub struct DecoderOutput<T> {
    /// Final-normed hidden states `[b, s, hidden]`.
    pub hidden: T,
    /// Each layer's keys and values, past included.
    pub presents: Vec<KvPair<T>>,
    /// Every router's decision, layer by layer (empty without routed adapters).
    pub routing: Vec<Routing<T>>,
}

/// `linear(x)`, with the layer's adapter for `target` when one is attached.
fn project<O: Ops>(
    o: &mut O,
    run: &mut Option<LayerRun<'_, O::T>>,
    target: Target,
    x: &O::T,
    linear: &Linear<O::T>,
) -> Result<O::T> {
    match run {
        Some(r) => r.apply(o, target, x, linear),
        None => linear.forward(o, x),
    }
}

#[derive(Debug, Clone)]
struct SelfAttention<T> {
    q: Linear<T>,
    k: Linear<T>,
    v: Linear<T>,
    o: Linear<T>,
    q_norm: Option<RmsNorm<T>>,
    k_norm: Option<RmsNorm<T>>,
    heads: Heads,
}

impl<T> SelfAttention<T> {
    /// Loads from `w` seen under the layer's `self_attn`.
    fn load<O: Ops<T = T>, W: Weights<O>>(o: &mut O, w: &mut Scoped<'_, W>, c: &DecoderConfig) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (q_out, kv_out) = (c.num_heads * hd, c.num_kv_heads * hd);
        let mut qk_norm = |o: &mut O, part| -> Result<Option<RmsNorm<T>>> {
            if c.qk_norm {
                Ok(Some(RmsNorm::load(o, &mut w.pp(part), hd, c.rms_norm_eps)?))
            } else {
                Ok(None)
            }
        };
        let (q_norm, k_norm) = (qk_norm(o, n::Q_NORM)?, qk_norm(o, n::K_NORM)?);
        let mut proj = |o: &mut O, target: Target, (fan_in, fan_out), bias| {
            Linear::load(o, &mut w.pp(target.module()), fan_in, fan_out, bias)
        };
        Ok(Self {
            q: proj(o, Target::QProj, (h, q_out), c.qkv_bias)?,
            k: proj(o, Target::KProj, (h, kv_out), c.qkv_bias)?,
            v: proj(o, Target::VProj, (h, kv_out), c.qkv_bias)?,
            o: proj(o, Target::OProj, (q_out, h), false)?,
            q_norm,
            k_norm,
            heads: Heads {
                heads: c.num_heads,
                kv_heads: c.num_kv_heads,
                head_dim: hd,
            },
        })
    }

    /// Splits `[b, s, n * d]` into heads `[b, n, s, d]`, applying the optional per-head norm.
    fn heads_of<O: Ops<T = T>>(&self, o: &mut O, x: &T, n_heads: usize, norm: Option<&RmsNorm<T>>) -> Result<T> {
        let x = o.reshape(x, &[0, 0, n_heads as i64, self.heads.head_dim as i64])?;
        let x = match norm {
            Some(nm) => nm.forward(o, &x)?,
            None => x,
        };
        o.permute(&x, &[0, 2, 1, 3])
    }

    fn forward<O: Ops<T = T>>(
        &self,
        o: &mut O,
        x: &T,
        ctx: &DecoderCtx<T>,
        past: Option<&KvPair<T>>,
        run: &mut Option<LayerRun<'_, T>>,
    ) -> Result<(T, KvPair<T>)> {
        let hd = self.heads.head_dim;
        let q = project(o, run, Target::QProj, x, &self.q)?;
        let k = project(o, run, Target::KProj, x, &self.k)?;
        let v = project(o, run, Target::VProj, x, &self.v)?;
        let q = self.heads_of(o, &q, self.heads.heads, self.q_norm.as_ref())?;
        let k = self.heads_of(o, &k, self.heads.kv_heads, self.k_norm.as_ref())?;
        let v = self.heads_of(o, &v, self.heads.kv_heads, None)?;
        let q = ctx.rope.apply(o, &q, hd)?;
        let k = ctx.rope.apply(o, &k, hd)?;
        let (k, v) = match past {
            Some(p) => (o.concat(&[&p.key, &k], 2)?, o.concat(&[&p.value, &v], 2)?),
            None => (k, v),
        };
        let attended = attend(o, &q, &k, &v, &ctx.mask, self.heads)?;
        let out = project(o, run, Target::OProj, &attended, &self.o)?;
        Ok((out, KvPair { key: k, value: v }))
    }
}

#[derive(Debug, Clone)]
struct GatedMlp<T> {
    gate: Linear<T>,
    up: Linear<T>,
    down: Linear<T>,
}

impl<T> GatedMlp<T> {
    /// Loads from `w` seen under the layer's `mlp`.
    fn load<O: Ops<T = T>, W: Weights<O>>(o: &mut O, w: &mut Scoped<'_, W>, c: &DecoderConfig) -> Result<Self> {
        let (h, m) = (c.hidden_size, c.intermediate_size);
        let mut proj = |o: &mut O, target: Target, fan_in, fan_out| {
            Linear::load(o, &mut w.pp(target.module()), fan_in, fan_out, false)
        };
        Ok(Self {
            gate: proj(o, Target::GateProj, h, m)?,
            up: proj(o, Target::UpProj, h, m)?,
            down: proj(o, Target::DownProj, m, h)?,
        })
    }

    fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T, run: &mut Option<LayerRun<'_, T>>) -> Result<T> {
        let g = project(o, run, Target::GateProj, x, &self.gate)?;
        let g = o.silu(&g)?;
        let u = project(o, run, Target::UpProj, x, &self.up)?;
        let gu = o.mul(&g, &u)?;
        project(o, run, Target::DownProj, &gu, &self.down)
    }
}

#[derive(Debug, Clone)]
struct Block<T> {
    input_norm: RmsNorm<T>,
    attn: SelfAttention<T>,
    post_norm: RmsNorm<T>,
    mlp: GatedMlp<T>,
}

impl<T> Block<T> {
    /// Loads from `w` seen under `model.layers.{i}`.
    fn load<O: Ops<T = T>, W: Weights<O>>(o: &mut O, w: &mut Scoped<'_, W>, c: &DecoderConfig) -> Result<Self> {
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        Ok(Self {
            input_norm: RmsNorm::load(o, &mut w.pp(n::INPUT_NORM), h, eps)?,
            attn: SelfAttention::load(o, &mut w.pp(n::SELF_ATTN), c)?,
            post_norm: RmsNorm::load(o, &mut w.pp(n::POST_ATTENTION_NORM), h, eps)?,
            mlp: GatedMlp::load(o, &mut w.pp(n::MLP), c)?,
        })
    }

    fn forward<O: Ops<T = T>>(
        &self,
        o: &mut O,
        x: &T,
        ctx: &DecoderCtx<T>,
        past: Option<&KvPair<T>>,
        run: &mut Option<LayerRun<'_, T>>,
    ) -> Result<(T, KvPair<T>)> {
        let normed = self.input_norm.forward(o, x)?;
        let (attn, kv) = self.attn.forward(o, &normed, ctx, past, run)?;
        let x = o.add(x, &attn)?;
        let normed = self.post_norm.forward(o, &x)?;
        let mlp = self.mlp.forward(o, &normed, run)?;
        Ok((o.add(&x, &mlp)?, kv))
    }
}

/// A Llama / Qwen2 / Qwen3 decoder.
#[derive(Debug, Clone)]
pub struct Decoder<T> {
    pub config: DecoderConfig,
    embed: T,
    layers: Vec<Block<T>>,
    norm: RmsNorm<T>,
    lm_head: T,
    /// Adapters on the frozen projections, when attached.
    pub adapters: Option<DecoderAdapters<T>>,
}

impl<T> Decoder<T> {
    /// Loads every weight by its Hugging Face name; the output head is the embedding matrix
    /// when `tie_embeddings`.
    pub fn load<O: Ops<T = T>>(o: &mut O, w: &mut impl Weights<O>, config: &DecoderConfig) -> Result<Self> {
        let c = config;
        let (embed, layers, norm) = {
            let mut model = w.pp(n::MODEL);
            let embed = model.pp(n::EMBED).get(o, "weight", &[c.vocab_size, c.hidden_size])?;
            let layers = (0..c.num_layers)
                .map(|i| Block::load(o, &mut model.pp(n::LAYERS).pp(i), c))
                .collect::<Result<Vec<_>>>()?;
            let norm = RmsNorm::load(o, &mut model.pp(n::FINAL_NORM), c.hidden_size, c.rms_norm_eps)?;
            (embed, layers, norm)
        };
        let lm_head = if c.tie_embeddings {
            o.share(&embed)
        } else {
            w.pp(n::LM_HEAD).get(o, "weight", &[c.vocab_size, c.hidden_size])?
        };
        Ok(Self {
            config: config.clone(),
            embed,
            layers,
            norm,
            lm_head,
            adapters: None,
        })
    }

    /// Replaces every layer's projection weights by `f` of them: for example a bf16 copy made
    /// once, where a mixed-precision step would otherwise cast each weight at every product.
    pub fn map_projections(&mut self, mut f: impl FnMut(&T) -> Result<T>) -> Result<()> {
        for l in &mut self.layers {
            let (a, m) = (&mut l.attn, &mut l.mlp);
            for linear in [
                &mut a.q,
                &mut a.k,
                &mut a.v,
                &mut a.o,
                &mut m.gate,
                &mut m.up,
                &mut m.down,
            ] {
                linear.weight = f(&linear.weight)?;
            }
        }
        Ok(())
    }

    /// The frozen projection `target` of layer `layer`.
    pub fn projection(&self, layer: usize, target: Target) -> Result<&Linear<T>> {
        let l = self.layers.get(layer).ok_or_else(|| crate::Error::Config {
            field: "layer",
            reason: format!("{layer} >= {}", self.layers.len()),
        })?;
        Ok(match target {
            Target::QProj => &l.attn.q,
            Target::KProj => &l.attn.k,
            Target::VProj => &l.attn.v,
            Target::OProj => &l.attn.o,
            Target::GateProj => &l.mlp.gate,
            Target::UpProj => &l.mlp.up,
            Target::DownProj => &l.mlp.down,
        })
    }

    /// Rotary tables for float `positions` `[b, s]`.
    pub fn rope<O: Ops<T = T>>(&self, o: &mut O, positions: &T) -> Result<Rope<T>> {
        Rope::from_positions(o, positions, &self.config.rope_inv_freq())
    }

    /// Runs the layers (with the adapters, when attached); returns the final-normed hidden
    /// states, each layer's keys / values (past concatenated with the new ones) and the routing.
    ///
    /// # Shapes
    /// `ids`: `[b, s]` (int64); `past[i]`: `[b, kv_heads, p, head_dim]`; `ctx.profile`: `[b, D]` (terms `[b, 1, P]`);
    /// returns hidden `[b, s, hidden]` and `num_layers` pairs of `[b, kv_heads, p + s, head_dim]`.
    pub fn forward<O: Ops<T = T>>(
        &self,
        o: &mut O,
        ids: &T,
        ctx: &DecoderCtx<T>,
        past: Option<&[KvPair<T>]>,
    ) -> Result<DecoderOutput<T>> {
        let mut x = o.embedding(&self.embed, ids)?;
        let mut presents = Vec::with_capacity(self.layers.len());
        let mut routing = Vec::new();
        let mut replayed = 0;
        let mut profile_parts = match &self.adapters {
            Some(a) => a.profile_parts(o, ctx.profile.as_ref())?,
            None => Vec::new(),
        }
        .into_iter();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut run = match &self.adapters {
                Some(a) => {
                    let replay = match (&ctx.replay, a.layers.get(i)) {
                        (Some(all), Some(l)) => {
                            let n = l.routers.len();
                            let part = all.get(replayed..replayed + n).ok_or_else(|| crate::Error::Config {
                                field: "replay",
                                reason: format!("{} recorded selections for more routers", all.len()),
                            })?;
                            replayed += n;
                            Some(part)
                        }
                        _ => None,
                    };
                    let parts = profile_parts.next().unwrap_or_default();
                    Some(LayerRun::start(a, i, parts, replay)?)
                }
                None => None,
            };
            let (y, kv) = layer.forward(o, &x, ctx, past.and_then(|p| p.get(i)), &mut run)?;
            if let Some(r) = run {
                routing.extend(r.finish());
            }
            x = y;
            presents.push(kv);
        }
        Ok(DecoderOutput {
            hidden: self.norm.forward(o, &x)?,
            presents,
            routing,
        })
    }

    /// Labels of the routers whose decisions a forward reports, in that order (empty without
    /// routed adapters).
    pub fn router_labels(&self) -> Vec<String> {
        self.adapters
            .as_ref()
            .filter(|a| a.method.routed())
            .map(|a| a.router_names())
            .unwrap_or_default()
    }

    /// Next-token logits from hidden states.
    ///
    /// # Shapes
    /// `hidden`: `[b, s, hidden]` -> `[b, s, vocab]`.
    pub fn logits<O: Ops<T = T>>(&self, o: &mut O, hidden: &T) -> Result<T> {
        o.linear(hidden, &self.lm_head, None)
    }
}
