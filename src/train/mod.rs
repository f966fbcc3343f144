//! Training: configuration ([`config`]), the optimiser ([`optim`]), the learning-rate schedule
//! ([`schedule`]), checkpoints ([`checkpoint`]), the training loop ([`sft`]: SFT, DPO and GRPO stages),
//! the DPO loss ([`dpo`]) and GRPO's objective and rewards ([`grpo`]; its step: `grpo_step`).

pub mod checkpoint;
pub mod config;
pub mod dpo;
pub mod grpo;
pub mod grpo_step;
pub mod optim;
pub mod schedule;
pub mod sft;
