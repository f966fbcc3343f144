//! The routers' profile terms (`profile_terms.onnx`, contract point 4): for a profile vector,
//! every router's `W_d d + b`, computed once per distinct vector and cached, so that a decode
//! step reads them instead of recomputing them from the vector.

use crate::engine::Engine;
use crate::{HostTensor, RuntimeError};
use cuma_model::bundle::{io, GraphSpec};
use std::collections::HashMap;

/// At most this many profiles' terms are kept (SmolLM2 with 60 routers of width 256: 61 KB
/// each); past it the cache starts over.
pub const MAX_CACHED_PROFILES: usize = 256;

/// The loaded graph and its cache, keyed by the vector's bits.
pub struct ProfileTerms {
    engine: Box<dyn Engine>,
    /// D.
    dim: usize,
    /// P.
    width: usize,
    /// Where `profile_terms` sits among the graph's outputs.
    output: usize,
    cache: HashMap<Vec<u32>, Vec<f32>>,
    /// The last call's vectors and the input built for them: every decode step of a batch
    /// passes the same vectors, and gets this back without a lookup or a copy.
    last: Option<(Vec<f32>, HostTensor)>,
}

/// Equal bit for bit (as the cache keys are).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl ProfileTerms {
    /// The graph described by `spec` loaded as `engine`, for vectors of `dim` values and terms of
    /// `width` (the decoder's `profile_terms` input).
    pub fn new(engine: Box<dyn Engine>, spec: &GraphSpec, dim: usize, width: usize) -> Result<Self, RuntimeError> {
        let output = spec
            .outputs
            .iter()
            .position(|o| o.name == io::PROFILE_TERMS)
            .ok_or_else(|| RuntimeError::Manifest {
                path: "manifest.json".into(),
                reason: "graph `profile_terms` has no output `profile_terms`".into(),
            })?;
        Ok(Self {
            engine,
            dim,
            width,
            output,
            cache: HashMap::new(),
            last: None,
        })
    }

    /// P, the width of each row's terms.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Profiles whose terms are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The decoder's `profile_terms` input `[batch, 1, P]` for `vectors` `[batch * D]`: the last
    /// call's input when the vectors are the same, else cached rows copied and the others
    /// computed in one call of the graph.
    pub fn for_rows(&mut self, vectors: &[f32], batch: usize) -> Result<&HostTensor, RuntimeError> {
        let (d, p) = (self.dim, self.width);
        if vectors.len() != batch * d {
            return Err(RuntimeError::Input(format!(
                "{} profile values for a batch of {batch} and D = {d}",
                vectors.len()
            )));
        }
        if self.last.as_ref().is_some_and(|(v, _)| same_bits(v, vectors)) {
            return self
                .last
                .as_ref()
                .map(|(_, input)| input)
                .ok_or_else(|| RuntimeError::Backend {
                    graph: "profile_terms".into(),
                    reason: "the last input went missing".into(),
                });
        }
        let keys: Vec<Vec<u32>> = vectors
            .chunks(d)
            .map(|row| row.iter().map(|v| v.to_bits()).collect())
            .collect();
        let mut missing: Vec<usize> = Vec::new();
        for (r, key) in keys.iter().enumerate() {
            if !self.cache.contains_key(key) && !missing.iter().any(|&m| keys[m] == *key) {
                missing.push(r);
            }
        }
        if !missing.is_empty() {
            let rows = missing.len();
            let input = HostTensor::F32 {
                shape: vec![rows, d],
                data: missing
                    .iter()
                    .flat_map(|&r| &vectors[r * d..(r + 1) * d])
                    .copied()
                    .collect(),
            };
            let out = self.engine.run(&[(io::DEMOGRAPHIC, &input)])?;
            let terms = match out.into_iter().nth(self.output) {
                Some(HostTensor::F32 { shape, data }) if shape == [rows, 1, p] => data,
                other => {
                    return Err(RuntimeError::Backend {
                        graph: "profile_terms".into(),
                        reason: format!(
                            "expected float [{rows}, 1, {p}], got {:?}",
                            other.map(|t| t.shape().to_vec())
                        ),
                    })
                }
            };
            if self.cache.len() + rows > MAX_CACHED_PROFILES {
                self.cache.clear();
            }
            for (&r, row) in missing.iter().zip(terms.chunks(p)) {
                self.cache.insert(keys[r].clone(), row.to_vec());
            }
        }
        let mut data = Vec::with_capacity(batch * p);
        for key in &keys {
            let row = self.cache.get(key).ok_or_else(|| RuntimeError::Backend {
                graph: "profile_terms".into(),
                reason: "a profile's terms went missing from the cache".into(),
            })?;
            data.extend_from_slice(row);
        }
        let input = HostTensor::F32 {
            shape: vec![batch, 1, p],
            data,
        };
        Ok(&self.last.insert((vectors.to_vec(), input)).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuma_model::bundle::{ElementType, IoSpec};

    /// A stand-in graph: terms = [2 d0, 2 d1, d0 + d1] per row (P = 3), counting its calls.
    struct Doubling {
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Engine for Doubling {
        fn run(&mut self, inputs: &[(&str, &HostTensor)]) -> Result<Vec<HostTensor>, RuntimeError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let HostTensor::F32 { shape, data } = inputs[0].1 else {
                return Err(RuntimeError::Input("float input".into()));
            };
            let out = data
                .chunks(2)
                .flat_map(|r| [2.0 * r[0], 2.0 * r[1], r[0] + r[1]])
                .collect();
            Ok(vec![HostTensor::F32 {
                shape: vec![shape[0], 1, 3],
                data: out,
            }])
        }
    }

    fn terms() -> (ProfileTerms, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spec = GraphSpec {
            file: "profile_terms.onnx".into(),
            inputs: vec![IoSpec::new(io::DEMOGRAPHIC, ElementType::Float32, &["batch", "2"])],
            outputs: vec![IoSpec::new(
                io::PROFILE_TERMS,
                ElementType::Float32,
                &["batch", "1", "3"],
            )],
        };
        let engine = Box::new(Doubling { calls: calls.clone() });
        (ProfileTerms::new(engine, &spec, 2, 3).expect("terms"), calls)
    }

    #[test]
    fn each_distinct_profile_runs_the_graph_once() {
        let (mut t, calls) = terms();
        let batch = t.for_rows(&[1.0, 2.0, 1.0, 2.0, 3.0, 4.0], 3).expect("terms");
        assert_eq!(
            *batch,
            HostTensor::F32 {
                shape: vec![3, 1, 3],
                data: vec![2.0, 4.0, 3.0, 2.0, 4.0, 3.0, 6.0, 8.0, 7.0],
            }
        );
        assert_eq!((calls.load(std::sync::atomic::Ordering::SeqCst), t.cached()), (1, 2));
        // Every later step of these profiles reads the cache.
        let swapped = HostTensor::F32 {
            shape: vec![2, 1, 3],
            data: vec![6.0, 8.0, 7.0, 2.0, 4.0, 3.0],
        };
        for _ in 0..5 {
            assert_eq!(*t.for_rows(&[3.0, 4.0, 1.0, 2.0], 2).expect("terms"), swapped);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        t.for_rows(&[5.0, 6.0], 1).expect("terms");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let (mut t, _) = terms();
        assert!(matches!(t.for_rows(&[1.0, 2.0, 3.0], 2), Err(RuntimeError::Input(_))));
    }
}
