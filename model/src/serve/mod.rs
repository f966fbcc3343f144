//! The serving core: everything between "a request" and "a decoder forward", written once for
//! every backend. A backend implements [`DecoderStep`] (one forward: token ids + mask + profile
//! vectors + past -> last-position logits + present + routing) and [`TokenText`] (decoding ids,
//! end-of-turn ids); the core does the rest:
//!
//! - [`prompt`]: the system turn (profile or neutral text), earlier turns, the multiple-choice
//!   user turn;
//! - [`padding`]: left padding, so every row's last prompt token sits at the last position (and
//!   right padding, for training);
//! - [`choice`]: option-letter probabilities of multiple-choice prompts, in one padded batch;
//! - [`generate`]: batched generation with per-request samplers, end of turn, stop sequences
//!   (held back while streaming until they are ruled out), finish reasons, routing traces and
//!   the context rule below;
//! - [`batching`]: continuous batching (sequences join the running batch at step boundaries,
//!   leave when done, and prefill in chunks), for servers;
//! - [`routing`]: per-token routing traces;
//! - `tokenizer` (feature `tokenizer`): the one `tokenizer.json` wrapper.
//!
//! `BackboneStep` (libtorch's `Backbone`, crate `cuma`) and `GraphDecoder` (a bundle's decoder
//! graph, crate `cuma-runtime`) implement [`DecoderStep`]; the two crates' tokenizers implement
//! [`TokenText`]. `cuma generate`, `cuma eval`, training's prompt assembly and `cuma-run` all go
//! through here.
//!
//! **The context rule.** A prompt must leave room for at least one new token (its length is below
//! the model's context), or the request is refused. The token budget of a batch is
//! `min(max_new_tokens, context - longest prompt)`; a request that reaches it ends with
//! [`FinishReason::Length`].

pub mod batching;
pub mod choice;
pub mod generate;
pub mod padding;
pub mod prompt;
pub mod routing;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;

pub use generate::{FinishReason, GenerateOptions, Generation, Timings, TokenEvent};
pub use routing::{RoutingTrace, StepRouting, TokenRouting};

/// Errors the core raises itself; a backend's error type wraps them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    /// A request the core cannot serve (empty prompt, prompt over the context, bad options).
    #[error("{0}")]
    Input(String),
    /// The backend returned results of the wrong size.
    #[error("decoder step: {0}")]
    Backend(String),
    /// Decoding token ids to text failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// One decoder call's inputs.
pub struct StepInput<'a, C> {
    /// `[batch][seq]` new token ids, every row the same length.
    pub ids: &'a [Vec<u32>],
    /// `[batch, past + seq]` row-major, 1 for real tokens and 0 for padding (past included).
    pub mask: &'a [i64],
    /// `[batch * D]` profile vectors, for routers that read them.
    pub profiles: Option<&'a [f32]>,
    /// The cache the previous step returned (`None`: no past).
    pub past: Option<C>,
    /// Whether to return the routing.
    pub routing: bool,
}

/// One decoder call's results, on the host.
pub struct StepOutput<C> {
    /// `[batch, vocab]` row-major: the logits of each row's last position.
    pub last_logits: Vec<f32>,
    /// Keys and values of the past and the new tokens, for the next step.
    pub cache: C,
    /// Every router's choice, when asked for and the model has routers.
    pub routing: Option<RoutingOutput>,
}

/// A step's routing: `[routers, batch, seq, k]` row-major experts (strongest first) and their
/// gates; backends that have them (libtorch) add every expert's gate.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingOutput {
    pub experts: Vec<i64>,
    pub gates: Vec<f32>,
    /// `[routers, batch, seq, E]`: all gates (the bundle graphs export only the top k).
    pub dense_gates: Option<(Vec<f32>, usize)>,
}

impl RoutingOutput {
    /// The `[routers, batch, seq, k]` view of a step over `batch` rows of `seq` positions.
    pub fn view(&self, batch: usize, seq: usize) -> StepRouting<'_> {
        StepRouting {
            experts: &self.experts,
            gates: &self.gates,
            batch,
            seq,
        }
    }
}

/// A decoder a request can be served on.
pub trait DecoderStep {
    /// The KV cache, opaque to the core.
    type Cache;
    /// The backend's error; the core's own errors convert into it.
    type Error: From<ServeError>;

    /// Length of a logits row.
    fn vocab(&self) -> usize;
    /// Positions the model attends over: prompt plus generated tokens.
    fn context(&self) -> usize;
    /// Router labels, in the order of the routing's first axis (empty without routers).
    fn routers(&self) -> Vec<String>;
    /// One forward over `input.ids` after `input.past`.
    fn step(&mut self, input: StepInput<'_, Self::Cache>) -> Result<StepOutput<Self::Cache>, Self::Error>;
}

/// The text side of generation.
pub trait TokenText {
    /// Text of `ids`, special tokens skipped.
    fn decode(&self, ids: &[u32]) -> Result<String, ServeError>;
    /// Token ids that end an assistant turn (the first also pads finished rows).
    fn end_of_turn(&self) -> &[u32];
}

/// Checks a step's logits: `[batch, vocab]`.
pub(crate) fn check_logits(logits: &[f32], batch: usize, vocab: usize) -> Result<(), ServeError> {
    if logits.len() != batch * vocab {
        return Err(ServeError::Backend(format!(
            "{} logits for a batch of {batch} and a vocabulary of {vocab}",
            logits.len()
        )));
    }
    Ok(())
}

/// Softmax of `logits` in f64 (max subtracted first).
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}
