//! Model configuration: a tolerant mirror of Hugging Face `config.json` ([`hf`]) validated once
//! into the configs the architectures use ([`model`]).

pub mod hf;
pub mod method;
pub mod model;

pub use hf::HfConfig;
pub use method::{ExpertLayout, GateMode, Method, MethodConfig, RouterLayout, Target};
pub use model::{BertConfig, DecoderConfig, DecoderFamily, ModelConfig, RopeScaling};
