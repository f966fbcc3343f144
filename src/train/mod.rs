//! Training: configuration ([`config`]), the optimiser ([`optim`]), the learning-rate schedule
//! ([`schedule`]), checkpoints ([`checkpoint`]) and the SFT loop ([`sft`]).

pub mod checkpoint;
pub mod config;
pub mod optim;
pub mod schedule;
pub mod sft;
