//! `Weights` and `Trainables`: where a model definition gets its named tensors from, and
//! [`TensorPath`] / [`Scoped`], which compose those names one segment at a time.

use crate::{Ops, Result};

/// A source of named tensors for backend `O`: an in-memory store of loaded weights (tch), a set
/// of ONNX initializers (export), or shapes only.
pub trait Weights<O: Ops> {
    /// The tensor called `name`, which must have exactly `shape`.
    ///
    /// Errors: [`crate::Error::MissingTensor`] when absent, [`crate::Error::Shape`] when the
    /// stored shape differs.
    fn get(&mut self, o: &mut O, name: &str, shape: &[usize]) -> Result<O::T>;
    /// Whether a tensor called `name` exists (used for optional tensors such as biases).
    fn contains(&self, name: &str) -> bool;

    /// This store seen under `segment`: `w.pp("model").pp("layers").pp(3)` asks for
    /// `model.layers.3.*`.
    fn pp(&mut self, segment: impl std::fmt::Display) -> Scoped<'_, Self>
    where
        Self: Sized,
    {
        Scoped::new(self, TensorPath::root().pp(segment))
    }
}

/// How a fresh trainable tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// Normal(0, std^2).
    Normal {
        std: f64,
    },
    /// Uniform(-bound, bound) (PyTorch's `nn.Linear` default uses 1 / sqrt(fan_in)).
    Uniform {
        bound: f64,
    },
}

/// A store of trainable tensors (adapters, routers): created fresh with `init`, or restored
/// from a checkpoint by name.
pub trait Trainables<O: Ops> {
    /// The trainable tensor called `name` with exactly `shape`.
    fn param(&mut self, o: &mut O, name: &str, shape: &[usize], init: Init) -> Result<O::T>;
    /// The trainable tensor called `name`, starting from a copy of `value` when fresh (DoRA's
    /// magnitude starts as the frozen weight's row norms). `shape` is `value`'s shape.
    fn param_from(&mut self, o: &mut O, name: &str, shape: &[usize], value: &O::T) -> Result<O::T>;

    /// This store seen under `segment` (see [`Weights::pp`]).
    fn pp(&mut self, segment: impl std::fmt::Display) -> Scoped<'_, Self>
    where
        Self: Sized,
    {
        Scoped::new(self, TensorPath::root().pp(segment))
    }
}

/// A dotted tensor name built one segment at a time: `TensorPath::root().pp("model").pp("layers")
/// .pp(3)` is `model.layers.3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TensorPath(String);

impl TensorPath {
    /// The empty path.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by `segment`.
    pub fn pp(&self, segment: impl std::fmt::Display) -> Self {
        if self.0.is_empty() {
            Self(segment.to_string())
        } else {
            Self(format!("{}.{segment}", self.0))
        }
    }

    /// The full name of the tensor `leaf` under this path.
    pub fn name(&self, leaf: &str) -> String {
        self.pp(leaf).0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TensorPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A view of a tensor store under a path: names asked of it are looked up as `path.name`. Made
/// by `pp` on [`Weights`] or [`Trainables`] (as candle's `VarBuilder::pp`), and narrowed further
/// by its own [`Scoped::pp`].
pub struct Scoped<'a, S> {
    store: &'a mut S,
    path: TensorPath,
}

impl<'a, S> Scoped<'a, S> {
    /// `store` seen under `path`.
    pub fn new(store: &'a mut S, path: TensorPath) -> Self {
        Self { store, path }
    }

    /// This view narrowed by `segment`: a reborrow of the same store, so views never nest. A
    /// chain (`w.pp("a").pp("b")`) lives for one expression; to keep a view, bind each step, or
    /// build the path first and use [`Scoped::new`].
    pub fn pp(&mut self, segment: impl std::fmt::Display) -> Scoped<'_, S> {
        Scoped {
            store: &mut *self.store,
            path: self.path.pp(segment),
        }
    }

    /// Where this view points.
    pub fn path(&self) -> &TensorPath {
        &self.path
    }
}

impl<O: Ops, W: Weights<O>> Weights<O> for Scoped<'_, W> {
    fn get(&mut self, o: &mut O, name: &str, shape: &[usize]) -> Result<O::T> {
        self.store.get(o, &self.path.name(name), shape)
    }
    fn contains(&self, name: &str) -> bool {
        self.store.contains(&self.path.name(name))
    }
}

impl<O: Ops, T: Trainables<O>> Trainables<O> for Scoped<'_, T> {
    fn param(&mut self, o: &mut O, name: &str, shape: &[usize], init: Init) -> Result<O::T> {
        self.store.param(o, &self.path.name(name), shape, init)
    }
    fn param_from(&mut self, o: &mut O, name: &str, shape: &[usize], value: &O::T) -> Result<O::T> {
        self.store.param_from(o, &self.path.name(name), shape, value)
    }
}

/// A shape-only store that remembers every name asked of it, in order (tests of naming).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder(pub Vec<String>);

#[cfg(test)]
impl Weights<crate::ShapeOps> for Recorder {
    fn get(&mut self, _o: &mut crate::ShapeOps, name: &str, shape: &[usize]) -> Result<Vec<usize>> {
        self.0.push(name.to_string());
        Ok(shape.to_vec())
    }
    /// Everything under `model.` exists, nothing else.
    fn contains(&self, name: &str) -> bool {
        name.starts_with("model.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ShapeOps, ShapeWeights};

    #[test]
    fn paths_join_segments_with_dots() {
        let p = TensorPath::root().pp("model").pp("layers").pp(3);
        assert_eq!(p.as_str(), "model.layers.3");
        assert_eq!(p.name("weight"), "model.layers.3.weight");
        assert_eq!(TensorPath::root().name("lm_head"), "lm_head");
    }

    #[test]
    fn scoped_views_prefix_every_name_they_are_asked() {
        let (mut o, mut names) = (ShapeOps, Recorder::default());
        {
            let mut model = names.pp("model");
            model.get(&mut o, "norm", &[2]).expect("get");
            let mut layers = model.pp("layers");
            let mut layer = layers.pp(0);
            layer.pp("q_proj").get(&mut o, "weight", &[2, 2]).expect("get");
            assert!(layer.pp("q_proj").contains("bias"));
            assert_eq!(layer.path().as_str(), "model.layers.0");
        }
        assert!(!names.contains("bias"), "the same name outside the view");
        names.get(&mut o, "lm_head.weight", &[2, 2]).expect("get");
        assert_eq!(
            names.0,
            ["model.norm", "model.layers.0.q_proj.weight", "lm_head.weight"]
        );
        // Shape checks still apply through a view.
        assert_eq!(ShapeWeights.pp("x").get(&mut o, "y", &[3]).expect("get"), vec![3]);
    }
}
