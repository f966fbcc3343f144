//! Evaluation: the paper's metrics ([`metrics`]) over option probabilities ([`choice`]), the
//! few-shot baseline ([`fewshot`]), the routing analysis ([`routing`]), the zero-shot table
//! ([`heldout`]) and the routing topology picture ([`topology`]).

pub mod choice;
pub mod fewshot;
pub mod generation;
pub mod heldout;
pub mod judge;
pub mod metrics;
pub mod routing;
pub mod run;
pub mod topology;
