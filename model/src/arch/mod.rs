//! The architectures: decoders ([`llama`]: Llama, Qwen2, Qwen3) and encoders ([`bert`]).

pub mod bert;
pub mod llama;

pub use bert::Bert;
pub use llama::{Decoder, DecoderCtx, DecoderOutput, KvPair};
