//! Loading real models onto libtorch: where a model lives ([`source`]), decoder backbones
//! ([`backbone`]), sentence encoders ([`encoder`]) and the per-forward attention inputs
//! ([`inputs`]) both share.

pub mod backbone;
pub mod encoder;
pub mod inputs;
pub mod source;

pub use backbone::Backbone;
pub use encoder::{Pooling, ProfileEncoder};
pub use source::ModelSource;
