//! Building blocks shared by the architectures.

pub mod attention;
pub mod inputs;
pub mod linear;
pub mod norm;
pub mod pooling;
pub mod rope;

pub use attention::{attend, AttentionMask, Heads};
pub use inputs::{decoder_inputs, encoder_inputs, PreparedInputs};
pub use linear::Linear;
pub use norm::{LayerNorm, RmsNorm};
pub use pooling::{pool, Pooling};
pub use rope::Rope;
