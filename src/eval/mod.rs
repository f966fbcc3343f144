//! Evaluation: the paper's metrics ([`metrics`]) over option probabilities ([`choice`]), the
//! few-shot baseline ([`fewshot`]), the routing analysis ([`routing`]), the zero-shot table
//! ([`heldout`]), the routing topology picture ([`topology`]), the count baselines
//! ([`tables`]), bootstrap intervals and paired comparisons ([`bootstrap`]) and the ranking of
//! questions by how much countries disagree ([`disagreement`]), and learning curves
//! ([`curves`]).

pub mod bootstrap;
pub mod choice;
pub mod curves;
pub mod disagreement;
pub mod fewshot;
pub mod generation;
pub mod heldout;
pub mod judge;
pub mod metrics;
pub mod routing;
pub mod run;
pub mod tables;
pub mod topology;
