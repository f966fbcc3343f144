//! The decoder graph's KV cache on the host (`present.{l}.key` / `.value`, each
//! `[batch, kv heads, positions, head dim]` f32), with the row and position operations continuous
//! batching needs ([`KvCache`]): keep rows, join two batches, add or cut front positions.

use crate::HostTensor;
use cuma_model::serve::batching::KvCache;
use cuma_model::serve::ServeError;

/// Every layer's keys and values, in the graph's `past.*` input order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostKvCache(pub Vec<HostTensor>);

/// One cache tensor's dimensions: `(batch, heads, positions, head dim)`.
fn dims(t: &HostTensor) -> Result<(usize, usize, usize, usize, &[f32]), ServeError> {
    match t {
        HostTensor::F32 { shape, data } if shape.len() == 4 && shape.iter().product::<usize>() == data.len() => {
            Ok((shape[0], shape[1], shape[2], shape[3], data))
        }
        other => Err(ServeError::Backend(format!(
            "a KV cache tensor must be float [batch, heads, positions, head dim], not {:?}",
            other.shape()
        ))),
    }
}

/// Rebuilds every tensor with `f(batch, heads, positions, head dim, data) -> (shape, data)`.
fn map(
    cache: HostKvCache,
    f: impl Fn(usize, usize, usize, usize, &[f32]) -> Result<(Vec<usize>, Vec<f32>), ServeError>,
) -> Result<HostKvCache, ServeError> {
    cache
        .0
        .iter()
        .map(|t| {
            let (b, h, p, d, data) = dims(t)?;
            let (shape, data) = f(b, h, p, d, data)?;
            Ok(HostTensor::F32 { shape, data })
        })
        .collect::<Result<_, _>>()
        .map(HostKvCache)
}

impl KvCache for HostKvCache {
    fn positions(&self) -> usize {
        self.0.first().map_or(0, |t| t.shape().get(2).copied().unwrap_or(0))
    }

    fn select_rows(self, rows: &[usize]) -> Result<Self, ServeError> {
        map(self, |b, h, p, d, data| {
            let row = h * p * d;
            let mut out = Vec::with_capacity(rows.len() * row);
            for &r in rows {
                if r >= b {
                    return Err(ServeError::Backend(format!("cache row {r} of {b}")));
                }
                out.extend_from_slice(&data[r * row..(r + 1) * row]);
            }
            Ok((vec![rows.len(), h, p, d], out))
        })
    }

    fn pad_front(self, n: usize) -> Result<Self, ServeError> {
        map(self, |b, h, p, d, data| {
            if p * d == 0 {
                return Ok((vec![b, h, p + n, d], vec![0.0; b * h * (p + n) * d]));
            }
            let mut out = Vec::with_capacity(b * h * (p + n) * d);
            for head in data.chunks(p * d) {
                out.extend(std::iter::repeat_n(0.0, n * d));
                out.extend_from_slice(head);
            }
            Ok((vec![b, h, p + n, d], out))
        })
    }

    fn drop_front(self, n: usize) -> Result<Self, ServeError> {
        map(self, |b, h, p, d, data| {
            if n > p {
                return Err(ServeError::Backend(format!("cannot drop {n} of {p} cached positions")));
            }
            if p * d == 0 {
                return Ok((vec![b, h, p - n, d], Vec::new()));
            }
            let out = data.chunks(p * d).flat_map(|head| head[n * d..].to_vec()).collect();
            Ok((vec![b, h, p - n, d], out))
        })
    }

    fn append_rows(self, other: Self) -> Result<Self, ServeError> {
        if self.0.len() != other.0.len() {
            return Err(ServeError::Backend(format!(
                "joining caches of {} and {} tensors",
                self.0.len(),
                other.0.len()
            )));
        }
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| {
                let (ba, ha, pa, da, xa) = dims(a)?;
                let (bb, hb, pb, db, xb) = dims(b)?;
                if (ha, pa, da) != (hb, pb, db) {
                    return Err(ServeError::Backend(format!(
                        "joining cache rows of [{ha}, {pa}, {da}] and [{hb}, {pb}, {db}]"
                    )));
                }
                Ok(HostTensor::F32 {
                    shape: vec![ba + bb, ha, pa, da],
                    data: [xa, xb].concat(),
                })
            })
            .collect::<Result<_, _>>()
            .map(HostKvCache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[b, 1, p, 1]` with value row * 10 + position.
    fn cache(b: usize, p: usize) -> HostKvCache {
        let data = (0..b).flat_map(|r| (0..p).map(move |q| (r * 10 + q) as f32)).collect();
        HostKvCache(vec![HostTensor::F32 {
            shape: vec![b, 1, p, 1],
            data,
        }])
    }

    fn values(c: &HostKvCache) -> (Vec<usize>, Vec<f32>) {
        match &c.0[0] {
            HostTensor::F32 { shape, data } => (shape.clone(), data.clone()),
            HostTensor::I64 { .. } => unreachable!(),
        }
    }

    #[test]
    fn rows_and_positions_move_as_batching_needs() {
        let c = cache(3, 2).select_rows(&[2, 0]).expect("select");
        assert_eq!(values(&c), (vec![2, 1, 2, 1], vec![20.0, 21.0, 0.0, 1.0]));
        let c = c.pad_front(1).expect("pad");
        assert_eq!(values(&c), (vec![2, 1, 3, 1], vec![0.0, 20.0, 21.0, 0.0, 0.0, 1.0]));
        assert_eq!(c.positions(), 3);
        let c = c.drop_front(2).expect("drop");
        assert_eq!(values(&c), (vec![2, 1, 1, 1], vec![21.0, 1.0]));
        let joined = c.append_rows(cache(1, 1)).expect("join");
        assert_eq!(values(&joined), (vec![3, 1, 1, 1], vec![21.0, 1.0, 0.0]));
        assert!(joined.clone().append_rows(cache(1, 2)).is_err(), "positions must agree");
        assert!(joined.clone().select_rows(&[3]).is_err());
        assert!(joined.drop_front(2).is_err());
        // An empty cache padded: all zeros.
        assert_eq!(values(&cache(2, 0).pad_front(2).expect("pad")).1, vec![0.0; 4]);
    }
}
