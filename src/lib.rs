//! `cuma`: CuMA (culturally pluralistic mixtures of LoRA experts) on libtorch.
//!
//! Loads real backbones (Llama / Qwen2 / Qwen3 from GGUF or safetensors) and sentence encoders
//! (BERT, Qwen3-Embedding-style decoders) into the one model definition of `cuma-model`, computed
//! eagerly by [`tch_ops::TchOps`].

pub mod bench;
pub mod data;
pub mod defaults;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod memory;
pub mod models;
pub mod sampling;
pub mod serve;
pub mod tch_ops;
pub mod tokenizer;
pub mod train;
pub mod trainables;
pub mod weights;

pub use error::{Error, Result};
