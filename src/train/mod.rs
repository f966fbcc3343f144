//! Training: configuration ([`config`]), the optimiser ([`optim`]), the learning-rate schedule
//! ([`schedule`]), checkpoints ([`checkpoint`]), the training loop ([`sft`]: SFT, DPO and GRPO stages),
//! training examples ([`examples`]), the DPO loss ([`dpo`], its step: [`dpo_step`]) and GRPO's
//! objective and rewards ([`grpo`], its step: [`grpo_step`]).

pub mod checkpoint;
pub mod config;
pub mod dpo;
pub mod dpo_step;
pub mod examples;
pub mod grpo;
pub mod grpo_step;
pub mod optim;
pub mod schedule;
pub mod sft;
