//! `cuma-runtime`: serves an exported cuma bundle without libtorch or Python.
//!
//! [`Bundle::open`] reads and verifies a bundle (manifest version, every file's SHA-256). A
//! [`Session`] loads its graphs on a [`Backend`]: ONNX Runtime (feature `ort`, CPU or CUDA with
//! feature `cuda`) or tract (feature `tract`, pure Rust). A session answers multiple-choice
//! questions ([`Session::choice_distribution`]) and chats ([`Session::generate`], KV cache,
//! sampling, streaming, batches with different profiles) for a [`Profile`], and reports which
//! experts every token was routed to ([`RoutingTrace`]).
//!
//! ```no_run
//! use cuma_runtime::{Backend, Bundle, Device, EngineOptions, Profile, Session, SessionOptions};
//! let bundle = Bundle::open("runs/demo/bundle")?;
//! let engine = EngineOptions { backend: Backend::Ort { device: Device::Cpu }, threads: Some(4), ..Default::default() };
//! let mut session = Session::new(bundle, SessionOptions { engine, strict_profiles: true })?;
//! let profile = Profile::new().with("country", "Germany").with("age", "25-34");
//! let options = ["Yes".to_string(), "No".to_string()];
//! let answer = session.choice_distribution(&profile, "Is divorce justifiable?", &options, true)?;
//! println!("{:?}", answer.probabilities);
//! # Ok::<(), cuma_runtime::RuntimeError>(())
//! ```

pub mod bundle;
#[cfg(feature = "cli")]
pub mod cli;
pub mod decoder;
pub mod engine;
pub mod error;
pub mod external_data;
pub mod kv_cache;
pub mod profile;
pub mod profile_terms;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
pub mod tensor;
pub mod text;

pub use bundle::Bundle;
pub use cuma_model as model;
pub use cuma_model::serve::{generate, routing};
pub use cuma_model::serve::{FinishReason, GenerateOptions, Generation, Timings, TokenEvent};
pub use engine::{Backend, Device, EngineOptions, QuantCompute};
pub use error::RuntimeError;
pub use profile::Profile;
pub use routing::RoutingTrace;
pub use session::{ChoiceDistribution, GenerateRequest, ProfileCacheStats, Session, SessionOptions};
pub use tensor::HostTensor;
