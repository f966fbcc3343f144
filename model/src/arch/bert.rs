//! BERT encoders (all-MiniLM-L6-v2): post-norm transformer with learned absolute positions.
//!
//! Follows Hugging Face `transformers/models/bert/modeling_bert.py` (eager attention, exact GELU).

use crate::config::BertConfig;
use crate::layers::{attend, AttentionMask, Heads, LayerNorm, Linear};
use crate::names::bert as n;
use crate::{Ops, Result, Weights};

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
    fn load<O: Ops<T = T>>(o: &mut O, w: &mut impl Weights<O>, i: usize, c: &BertConfig) -> Result<Self> {
        let (h, m, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let p = n::layer(i);
        Ok(Self {
            q: Linear::load(o, w, &format!("{p}.attention.self.query"), h, h, true)?,
            k: Linear::load(o, w, &format!("{p}.attention.self.key"), h, h, true)?,
            v: Linear::load(o, w, &format!("{p}.attention.self.value"), h, h, true)?,
            attn_out: Linear::load(o, w, &format!("{p}.attention.output.dense"), h, h, true)?,
            attn_norm: LayerNorm::load(o, w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
            intermediate: Linear::load(o, w, &format!("{p}.intermediate.dense"), h, m, true)?,
            output: Linear::load(o, w, &format!("{p}.output.dense"), m, h, true)?,
            output_norm: LayerNorm::load(o, w, &format!("{p}.output.LayerNorm"), h, eps)?,
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
        Ok(Self {
            config: config.clone(),
            word: w.get(o, n::WORD_EMBED, &[c.vocab_size, c.hidden_size])?,
            position: w.get(o, n::POSITION_EMBED, &[c.max_position_embeddings, c.hidden_size])?,
            token_type: w.get(o, n::TOKEN_TYPE_EMBED, &[c.type_vocab_size, c.hidden_size])?,
            embed_norm: LayerNorm::load(o, w, n::EMBED_NORM, c.hidden_size, c.layer_norm_eps)?,
            layers: (0..c.num_layers)
                .map(|i| BertLayer::load(o, w, i, c))
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
