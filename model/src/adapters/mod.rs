//! Adapters on frozen projections: the stacked LoRA expert bank ([`experts`]), the
//! demographic-aware router ([`router`]), gating ([`gate`]) and the load-balancing loss
//! ([`balance`]), and the LoRA merge / DoRA row norms ([`merge`]). Spec: `shared/spec/method.md` sections 3-5.

pub mod balance;
pub mod experts;
pub mod gate;
pub mod merge;
pub mod prefix;
pub mod router;
pub mod run;
pub mod set;

pub use balance::balance_loss;
pub use experts::ExpertBank;
pub use gate::{route, Routing};
pub use merge::{merged_weight, row_norms};
pub use prefix::Prefix;
pub use router::{ProfileInput, Router, RouterDims};
pub use run::LayerRun;
pub use set::{DecoderAdapters, LayerAdapters, ModuleAdapter};
