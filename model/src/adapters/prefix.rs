//! P-tuning v2 / prefix tuning (spec section 8): trainable virtual keys and values prepended to
//! every layer's attention, entering the decoder exactly as a KV-cache past would.

use crate::arch::KvPair;
use crate::config::DecoderConfig;
use crate::{Init, Ops, Result, Scoped, Trainables};

/// Standard deviation of the fresh virtual keys and values.
pub const PREFIX_INIT_STD: f64 = 0.02;

/// Virtual tokens for every layer: `[1, kv_heads, tokens, head_dim]` keys and values.
#[derive(Debug, Clone)]
pub struct Prefix<T> {
    pub layers: Vec<KvPair<T>>,
    pub tokens: usize,
}

impl<T> Prefix<T> {
    /// Fresh or restored prefixes named `model.layers.{i}.prefix.{key,value}`.
    pub fn init<O: Ops<T = T>>(
        o: &mut O,
        t: &mut impl Trainables<O>,
        c: &DecoderConfig,
        tokens: usize,
    ) -> Result<Self> {
        let shape = [1, c.num_kv_heads, tokens, c.head_dim];
        let init = Init::Normal { std: PREFIX_INIT_STD };
        let layers = (0..c.num_layers)
            .map(|i| {
                let mut at = Scoped::new(&mut *t, crate::names::decoder::layer(i).pp("prefix"));
                Ok(KvPair {
                    key: at.param(o, "key", &shape, init)?,
                    value: at.param(o, "value", &shape, init)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, tokens })
    }

    /// The prefixes broadcast to a batch, as the decoder's `past`.
    ///
    /// # Shapes
    /// `batch_ones`: `[b, 1, 1, 1]` of ones; returns pairs of `[b, kv_heads, tokens, head_dim]`.
    pub fn past<O: Ops<T = T>>(&self, o: &mut O, batch_ones: &T) -> Result<Vec<KvPair<T>>> {
        self.layers
            .iter()
            .map(|kv| {
                Ok(KvPair {
                    key: o.mul(&kv.key, batch_ones)?,
                    value: o.mul(&kv.value, batch_ones)?,
                })
            })
            .collect()
    }
}
