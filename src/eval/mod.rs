//! Evaluation: the paper's metrics ([`metrics`]) over option probabilities.

pub mod choice;
pub mod metrics;
pub mod run;
