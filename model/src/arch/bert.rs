//! BERT encoders (all-MiniLM-L6-v2): post-norm transformer with learned absolute positions.
//!
//! Follows Hugging Face `transformers/models/bert/modeling_bert.py` (eager attention, exact GELU).

use crate::config::BertConfig;
use crate::layers::{attend, AttentionMask, Heads, LayerNorm, Linear};
use crate::names::bert as n;
use crate::{Ops, Result, Scoped, Weights};

#[derive(Debug, Clone)]
struct BertLayer<T> {
    q: Linear<T>,
    k: Linear<T>,
    v: Linear<T>,
    attn_out: Linear<T>,
    attn_norm: LayerNorm<T>,
    intermediate: Linear<T>,
    output: Linear<T>,
    output_norm: LayerNorm<T>,
}

impl<T> BertLayer<T> {
    /// Loads from `w` seen under `encoder.layer.{i}`.
    fn load<O: Ops<T = T>, W: Weights<O>>(o: &mut O, w: &mut Scoped<'_, W>, c: &BertConfig) -> Result<Self> {
        let (h, m, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let (q, k, v, attn_out, attn_norm) = {
            let mut attention = w.pp("attention");
            let mut own = attention.pp("self");
            let q = Linear::load(o, &mut own.pp("query"), h, h, true)?;
            let k = Linear::load(o, &mut own.pp("key"), h, h, true)?;
            let v = Linear::load(o, &mut own.pp("value"), h, h, true)?;
            let mut out = attention.pp("output");
            let attn_out = Linear::load(o, &mut out.pp("dense"), h, h, true)?;
            let attn_norm = LayerNorm::load(o, &mut out.pp(n::NORM), h, eps)?;
            (q, k, v, attn_out, attn_norm)
        };
        let intermediate = Linear::load(o, &mut w.pp("intermediate").pp("dense"), h, m, true)?;
        let mut output = w.pp("output");
        Ok(Self {
            q,
            k,
            v,
            attn_out,
            attn_norm,
            intermediate,
            output: Linear::load(o, &mut output.pp("dense"), m, h, true)?,
            output_norm: LayerNorm::load(o, &mut output.pp(n::NORM), h, eps)?,
        })
    }

    fn forward<O: Ops<T = T>>(&self, o: &mut O, x: &T, mask: &AttentionMask<T>, heads: Heads) -> Result<T> {
        let split = |o: &mut O, t: &T| -> Result<T> {
            let t = o.reshape(t, &[0, 0, heads.heads as i64, heads.head_dim as i64])?;
            o.permute(&t, &[0, 2, 1, 3])
        };
        let q = self.q.forward(o, x)?;
        let q = split(o, &q)?;
        let k = self.k.forward(o, x)?;
        let k = split(o, &k)?;
        let v = self.v.forward(o, x)?;
        let v = split(o, &v)?;
        let attended = attend(o, &q, &k, &v, mask, heads)?;
        let attn = self.attn_out.forward(o, &attended)?;
        let attn = o.add(&attn, x)?;
        let x = self.attn_norm.forward(o, &attn)?;
        let m = self.intermediate.forward(o, &x)?;
        let m = o.gelu(&m)?;
        let m = self.output.forward(o, &m)?;
        let m = o.add(&m, &x)?;
        self.output_norm.forward(o, &m)
    }
}

/// A BERT encoder returning token states (pooling is the caller's choice).
#[derive(Debug, Clone)]
pub struct Bert<T> {
    pub config: BertConfig,
    word: T,
    position: T,
    token_type: T,
    embed_norm: LayerNorm<T>,
    layers: Vec<BertLayer<T>>,
}

impl<T> Bert<T> {
    /// Loads every weight by its Hugging Face name (without a `bert.` prefix).
    pub fn load<O: Ops<T = T>>(o: &mut O, w: &mut impl Weights<O>, config: &BertConfig) -> Result<Self> {
        let c = config;
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let (word, position, token_type, embed_norm) = {
            let mut e = w.pp(n::EMBEDDINGS);
            (
                e.pp(n::WORD_EMBED).get(o, "weight", &[c.vocab_size, h])?,
                e.pp(n::POSITION_EMBED)
                    .get(o, "weight", &[c.max_position_embeddings, h])?,
                e.pp(n::TOKEN_TYPE_EMBED).get(o, "weight", &[c.type_vocab_size, h])?,
                LayerNorm::load(o, &mut e.pp(n::NORM), h, eps)?,
            )
        };
        let mut encoder = w.pp(n::ENCODER);
        let mut layers = encoder.pp(n::LAYER);
        Ok(Self {
            config: config.clone(),
            word,
            position,
            token_type,
            embed_norm,
            layers: (0..c.num_layers)
                .map(|i| BertLayer::load(o, &mut layers.pp(i), c))
                .collect::<Result<_>>()?,
        })
    }

    /// Token states (all token types are 0, as for single sentences).
    ///
    /// # Shapes
    /// `ids`, `positions`: `[b, s]` (int64); `mask.additive`: `[b, 1, 1, s]`;
    /// returns `[b, s, hidden]`.
    pub fn forward<O: Ops<T = T>>(&self, o: &mut O, ids: &T, positions: &T, mask: &AttentionMask<T>) -> Result<T> {
        let c = &self.config;
        let words = o.embedding(&self.word, ids)?;
        let pos = o.embedding(&self.position, positions)?;
        let token_type = o.slice(&self.token_type, 0, 0, 1)?; // [1, hidden]
        let x = o.add(&words, &pos)?;
        let x = o.add(&x, &token_type)?;
        let mut x = self.embed_norm.forward(o, &x)?;
        let heads = Heads {
            heads: c.num_heads,
            kv_heads: c.num_heads,
            head_dim: c.hidden_size / c.num_heads,
        };
        for layer in &self.layers {
            x = layer.forward(o, &x, mask, heads)?;
        }
        Ok(x)
    }
}
