//! Training: configuration ([`config`]), the optimiser ([`optim`]), the learning-rate schedule
//! ([`schedule`]), checkpoints ([`checkpoint`]), the training loop ([`sft`]: SFT and DPO stages)
//! and the DPO loss ([`dpo`]).

pub mod checkpoint;
pub mod config;
pub mod dpo;
pub mod optim;
pub mod schedule;
pub mod sft;
