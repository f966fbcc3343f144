//! `ShapeOps`: runs any model definition on shapes alone (no data), to check wiring and count
//! parameters cheaply. Dimensions are concrete numbers.

use crate::{Error, Ops, Result};

/// The shape-only backend: a tensor is its shape.
#[derive(Debug, Default, Clone)]
pub struct ShapeOps;

fn err(op: &str, detail: String) -> Error {
    Error::Backend(format!("{op}: {detail}"))
}

fn broadcast(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (a2, b2) = (pad(a), pad(b));
    a2.iter()
        .zip(&b2)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(err(op, format!("cannot broadcast {a:?} with {b:?}"))),
        })
        .collect()
}

fn axis(op: &str, dim: i64, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as i64 } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(err(op, format!("axis {dim} out of range for rank {rank}")));
    }
    Ok(d as usize)
}

impl Ops for ShapeOps {
    type T = Vec<usize>;

    fn share(&mut self, x: &Vec<usize>) -> Vec<usize> {
        x.clone()
    }

    fn matmul(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        if a.len() < 2 || b.len() < 2 || a[a.len() - 1] != b[b.len() - 2] {
            return Err(err("matmul", format!("{a:?} @ {b:?}")));
        }
        let mut out = broadcast("matmul", &a[..a.len() - 2], &b[..b.len() - 2])?;
        out.extend([a[a.len() - 2], b[b.len() - 1]]);
        Ok(out)
    }
    fn linear(&mut self, x: &Vec<usize>, w: &Vec<usize>, _b: Option<&Vec<usize>>) -> Result<Vec<usize>> {
        if w.len() != 2 || x.last() != Some(&w[1]) {
            return Err(err("linear", format!("{x:?} x {w:?}^T")));
        }
        let mut out = x.clone();
        if let Some(last) = out.last_mut() {
            *last = w[0];
        }
        Ok(out)
    }
    fn add(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("add", a, b)
    }
    fn sub(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("sub", a, b)
    }
    fn mul(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("mul", a, b)
    }
    fn div(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("div", a, b)
    }
    fn scale(&mut self, x: &Vec<usize>, _s: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn add_scalar(&mut self, x: &Vec<usize>, _s: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn clamp_min(&mut self, x: &Vec<usize>, _s: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn sqrt(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn exp(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn erf(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn sigmoid(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn relu(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn cos(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn sin(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn softmax_last(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn mean_keepdim(&mut self, x: &Vec<usize>, dim: i64) -> Result<Vec<usize>> {
        let mut out = x.clone();
        out[axis("mean", dim, x.len())?] = 1;
        Ok(out)
    }
    fn sum_keepdim(&mut self, x: &Vec<usize>, dim: i64) -> Result<Vec<usize>> {
        self.mean_keepdim(x, dim)
    }
    fn reshape(&mut self, x: &Vec<usize>, shape: &[i64]) -> Result<Vec<usize>> {
        let total: usize = x.iter().product();
        let mut out = Vec::with_capacity(shape.len());
        let mut infer = None;
        for (i, &s) in shape.iter().enumerate() {
            match s {
                0 => out.push(
                    *x.get(i)
                        .ok_or_else(|| err("reshape", format!("0 at {i} beyond rank of {x:?}")))?,
                ),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                s if s > 0 => out.push(s as usize),
                _ => return Err(err("reshape", format!("bad target {shape:?}"))),
            }
        }
        let known: usize = out.iter().product();
        if let Some(i) = infer {
            if known == 0 || total % known != 0 {
                return Err(err("reshape", format!("{x:?} -> {shape:?}")));
            }
            out[i] = total / known;
        }
        if out.iter().product::<usize>() != total {
            return Err(err("reshape", format!("{x:?} -> {shape:?}")));
        }
        Ok(out)
    }
    fn permute(&mut self, x: &Vec<usize>, perm: &[usize]) -> Result<Vec<usize>> {
        if perm.len() != x.len() {
            return Err(err("permute", format!("{perm:?} on {x:?}")));
        }
        perm.iter()
            .map(|&p| {
                x.get(p)
                    .copied()
                    .ok_or_else(|| err("permute", format!("{perm:?} on {x:?}")))
            })
            .collect()
    }
    fn unsqueeze(&mut self, x: &Vec<usize>, dim: i64) -> Result<Vec<usize>> {
        let d = axis("unsqueeze", dim, x.len() + 1)?;
        let mut out = x.clone();
        out.insert(d, 1);
        Ok(out)
    }
    fn concat(&mut self, xs: &[&Vec<usize>], dim: i64) -> Result<Vec<usize>> {
        let first = xs.first().ok_or_else(|| err("concat", "no inputs".into()))?;
        let d = axis("concat", dim, first.len())?;
        let mut out = (*first).clone();
        for x in &xs[1..] {
            if x.len() != first.len() {
                return Err(err("concat", format!("rank mismatch {first:?} / {x:?}")));
            }
            out[d] += x[d];
        }
        Ok(out)
    }
    fn slice(&mut self, x: &Vec<usize>, dim: i64, start: i64, end: i64) -> Result<Vec<usize>> {
        let d = axis("slice", dim, x.len())?;
        let n = x[d] as i64;
        let clampi = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
        let mut out = x.clone();
        out[d] = (clampi(end) - clampi(start)).max(0) as usize;
        Ok(out)
    }
    fn split_last(&mut self, x: &Vec<usize>, widths: &[usize]) -> Result<Vec<Vec<usize>>> {
        let last = *x.last().ok_or_else(|| err("split", "scalar".into()))?;
        if widths.iter().sum::<usize>() != last {
            return Err(err(
                "split",
                format!("parts {widths:?} of a last axis of {last} ({x:?})"),
            ));
        }
        Ok(widths
            .iter()
            .map(|&w| {
                let mut part = x[..x.len() - 1].to_vec();
                part.push(w);
                part
            })
            .collect())
    }
    fn embedding(&mut self, table: &Vec<usize>, ids: &Vec<usize>) -> Result<Vec<usize>> {
        if table.len() != 2 {
            return Err(err("embedding", format!("table {table:?}")));
        }
        let mut out = ids.clone();
        out.push(table[1]);
        Ok(out)
    }
    fn argmax_last(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        let mut out = x.clone();
        *out.last_mut().ok_or_else(|| err("argmax", "scalar".into()))? = 1;
        Ok(out)
    }
    fn one_hot(&mut self, idx: &Vec<usize>, depth: usize) -> Result<Vec<usize>> {
        if idx.last() != Some(&1) {
            return Err(err("one_hot", format!("indices {idx:?} need a last axis of 1")));
        }
        let mut out = idx.clone();
        *out.last_mut().ok_or_else(|| err("one_hot", "scalar".into()))? = depth;
        Ok(out)
    }
    fn cumsum(&mut self, x: &Vec<usize>, dim: i64) -> Result<Vec<usize>> {
        axis("cumsum", dim, x.len())?;
        Ok(x.clone())
    }
    fn cast_f32(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn arange_like(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        if x.len() != 1 {
            return Err(err("arange_like", format!("needs a 1-D input, got {x:?}")));
        }
        Ok(x.clone())
    }
    fn slice_after(&mut self, x: &Vec<usize>, dim: i64, other: &Vec<usize>, other_dim: i64) -> Result<Vec<usize>> {
        let (d, od) = (
            axis("slice_after", dim, x.len())?,
            axis("slice_after", other_dim, other.len())?,
        );
        let mut out = x.clone();
        out[d] = x[d].saturating_sub(other[od]);
        Ok(out)
    }
    fn less_equal(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("less_equal", a, b)
    }
    fn eq_scalar(&mut self, x: &Vec<usize>, _v: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn and(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        broadcast("and", a, b)
    }
    fn where_scalars(&mut self, cond: &Vec<usize>, _yes: f64, _no: f64) -> Result<Vec<usize>> {
        Ok(cond.clone())
    }
    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Result<Vec<usize>> {
        if values.len() != shape.iter().product::<usize>() {
            return Err(err("constant", format!("{} values for {shape:?}", values.len())));
        }
        Ok(shape.to_vec())
    }
}

/// Weights for [`ShapeOps`]: every tensor exists with exactly the shape asked for.
#[derive(Debug, Default, Clone)]
pub struct ShapeWeights;

impl crate::Weights<ShapeOps> for ShapeWeights {
    fn get(&mut self, _o: &mut ShapeOps, _name: &str, shape: &[usize]) -> Result<Vec<usize>> {
        Ok(shape.to_vec())
    }
    fn contains(&self, _name: &str) -> bool {
        true
    }
}

/// Trainables for [`ShapeOps`] that count the values they create (parameter accounting).
#[derive(Debug, Default, Clone)]
pub struct ParamCounter {
    pub total: usize,
}

impl crate::Trainables<ShapeOps> for ParamCounter {
    fn param(&mut self, _o: &mut ShapeOps, _name: &str, shape: &[usize], _init: crate::Init) -> Result<Vec<usize>> {
        self.total += shape.iter().product::<usize>();
        Ok(shape.to_vec())
    }
    fn param_from(
        &mut self,
        _o: &mut ShapeOps,
        _name: &str,
        shape: &[usize],
        value: &Vec<usize>,
    ) -> Result<Vec<usize>> {
        if value.as_slice() != shape {
            return Err(err("param_from", format!("value {value:?} for shape {shape:?}")));
        }
        self.total += shape.iter().product::<usize>();
        Ok(shape.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Bert, Decoder, DecoderCtx, KvPair};
    use crate::config::{BertConfig, DecoderConfig, DecoderFamily};
    use crate::layers::AttentionMask;

    fn smollm2(family: DecoderFamily) -> DecoderConfig {
        DecoderConfig {
            family,
            num_layers: 3,
            qkv_bias: family == DecoderFamily::Qwen2,
            qk_norm: family == DecoderFamily::Qwen3,
            ..DecoderConfig::smollm2_135m()
        }
    }

    #[test]
    fn decoder_forward_with_cache_has_the_documented_shapes() {
        for family in [DecoderFamily::Llama, DecoderFamily::Qwen2, DecoderFamily::Qwen3] {
            let (mut o, cfg) = (ShapeOps, smollm2(family));
            let dec = Decoder::load(&mut o, &mut ShapeWeights, &cfg).expect("loads");
            let rope = dec.rope(&mut o, &vec![2, 5]).expect("rope");
            assert_eq!(rope.cos, vec![2, 1, 5, 64]);
            let ctx = DecoderCtx {
                rope,
                mask: AttentionMask {
                    additive: vec![2, 1, 5, 8],
                },
                profile: None,
                replay: None,
            };
            let past: Vec<KvPair<Vec<usize>>> = (0..3)
                .map(|_| KvPair {
                    key: vec![2, 3, 3, 64],
                    value: vec![2, 3, 3, 64],
                })
                .collect();
            let out = dec.forward(&mut o, &vec![2, 5], &ctx, Some(&past)).expect("forward");
            let (hidden, presents) = (out.hidden, out.presents);
            assert_eq!(hidden, vec![2, 5, 576]);
            assert_eq!(presents.len(), 3);
            assert_eq!(presents[0].key, vec![2, 3, 8, 64]);
            assert_eq!(dec.logits(&mut o, &hidden).expect("logits"), vec![2, 5, 49152]);
        }
    }

    #[test]
    fn precomputed_profile_terms_stand_in_for_the_profile_vector() {
        use crate::adapters::{DecoderAdapters, ProfileInput};
        use crate::config::MethodConfig;
        let (mut o, cfg) = (ShapeOps, smollm2(DecoderFamily::Llama));
        let mut dec = Decoder::load(&mut o, &mut ShapeWeights, &cfg).expect("loads");
        let method = MethodConfig::default();
        let adapters =
            DecoderAdapters::init(&mut o, &mut crate::ParamCounter::default(), &dec, &method, 384).expect("adapters");
        let terms = adapters.profile_terms(&mut o, &vec![2, 384]).expect("terms");
        let routers = adapters.router_names().len();
        assert_eq!(terms, vec![2, 1, routers * method.router_hidden]);
        assert_eq!(adapters.profile_terms_width(), routers * method.router_hidden);
        dec.adapters = Some(adapters);
        let rope = dec.rope(&mut o, &vec![2, 5]).expect("rope");
        let ctx = |profile| DecoderCtx {
            rope: rope.clone(),
            mask: AttentionMask {
                additive: vec![2, 1, 5, 5],
            },
            profile: Some(profile),
            replay: None,
        };
        let from_vector = dec
            .forward(&mut o, &vec![2, 5], &ctx(ProfileInput::Vector(vec![2, 384])), None)
            .expect("vector");
        let from_terms = dec
            .forward(&mut o, &vec![2, 5], &ctx(ProfileInput::Terms(terms.clone())), None)
            .expect("terms");
        assert_eq!(from_vector.hidden, from_terms.hidden);
        assert_eq!(from_vector.routing.len(), from_terms.routing.len());
        // Terms one router short cannot be split into every router's part.
        let short = vec![2, 1, terms[2] - method.router_hidden];
        assert!(dec
            .forward(&mut o, &vec![2, 5], &ctx(ProfileInput::Terms(short)), None)
            .is_err());
    }

    #[test]
    fn mismatched_mask_is_a_shape_error() {
        let (mut o, cfg) = (ShapeOps, smollm2(DecoderFamily::Llama));
        let dec = Decoder::load(&mut o, &mut ShapeWeights, &cfg).expect("loads");
        let rope = dec.rope(&mut o, &vec![1, 4]).expect("rope");
        let ctx = DecoderCtx {
            rope,
            mask: AttentionMask {
                additive: vec![1, 1, 4, 7],
            },
            profile: None,
            replay: None,
        };
        assert!(dec.forward(&mut o, &vec![1, 4], &ctx, None).is_err());
    }

    #[test]
    fn bert_forward_shapes() {
        let cfg = BertConfig {
            vocab_size: 30522,
            hidden_size: 384,
            intermediate_size: 1536,
            num_layers: 2,
            num_heads: 12,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        };
        let mut o = ShapeOps;
        let bert = Bert::load(&mut o, &mut ShapeWeights, &cfg).expect("loads");
        let out = bert
            .forward(
                &mut o,
                &vec![3, 7],
                &vec![3, 7],
                &AttentionMask {
                    additive: vec![3, 1, 1, 7],
                },
            )
            .expect("forward");
        assert_eq!(out, vec![3, 7, 384]);
    }
}
