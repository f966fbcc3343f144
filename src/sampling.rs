//! Next-token choice, shared with the portable runtime: see [`cuma_model::sampling`].

pub use cuma_model::sampling::*;
