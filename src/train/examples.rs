//! Training examples: a choice item, a chat item or a preference pair rendered with the chat
//! template and tokenised, with the index of the first token that carries loss. One rule for
//! every stage: the profile (or the neutral text) as system message unless the item has its own,
//! the reply followed by the end-of-turn token.

use super::config::TrainConfig;
use crate::data::{ChatItem, ChoiceItem};
use crate::models::backbone::Backbone;
use crate::tokenizer::chat::render;
use crate::{Error, Result};
use cuma_model::serve::prompt;
use cuma_model::text::Message;

/// System prompt when the profile is kept out of the prompt (spec section 6).
pub use cuma_model::text::NEUTRAL_SYSTEM;

/// One tokenised training example.
#[derive(Debug, Clone)]
pub struct Example {
    pub ids: Vec<u32>,
    /// Index of the first token that carries loss (the answer letter).
    pub targets_from: usize,
    /// Row of the profile vector.
    pub profile: usize,
}

/// Renders and tokenises a chat item with the loss on its final reply (plus the end-of-turn
/// token); the profile becomes the system message unless the item has its own. `None` when
/// longer than `max_len`.
pub fn tokenize_chat(
    model: &Backbone,
    item: &ChatItem,
    profile_text: &str,
    cfg: &TrainConfig,
    profile_row: usize,
) -> Result<Option<Example>> {
    let (context, reply) = item
        .split_reply()
        .map_err(|e| Error::Invalid(format!("chat item {}: {e}", item.id)))?;
    let prompt = context_ids(model, context, profile_text, cfg)?;
    reply_example(model, prompt, reply, cfg, profile_row)
}

/// A preference pair: the chosen and the rejected reply after one shared context.
#[derive(Debug, Clone)]
pub struct Pair {
    pub chosen: Example,
    pub rejected: Example,
}

/// Tokenises a preference pair (a chat item with `rejected`); `Ok(None)` when either side is
/// longer than `max_len`.
pub fn tokenize_pair(
    model: &Backbone,
    item: &ChatItem,
    profile_text: &str,
    cfg: &TrainConfig,
    profile_row: usize,
) -> Result<Option<Pair>> {
    let pair = item
        .preference()
        .ok_or_else(|| Error::Invalid(format!("chat item {}: no `rejected` reply", item.id)))?
        .map_err(|e| Error::Invalid(format!("chat item {}: {e}", item.id)))?;
    let prompt = context_ids(model, pair.context, profile_text, cfg)?;
    let chosen = reply_example(model, prompt.clone(), pair.chosen, cfg, profile_row)?;
    let rejected = reply_example(model, prompt, pair.rejected, cfg, profile_row)?;
    Ok(chosen.zip(rejected).map(|(chosen, rejected)| Pair { chosen, rejected }))
}

/// The prompt tokens of a context: the profile (or the neutral text) as system message unless
/// the context has its own, the chat template, the assistant turn opened.
pub fn context_ids(model: &Backbone, context: &[Message], profile_text: &str, cfg: &TrainConfig) -> Result<Vec<u32>> {
    let system = prompt::system_text(profile_text, cfg.method.profile_in_prompt, NEUTRAL_SYSTEM);
    let messages = prompt::with_system(system, context);
    let prompt = render(&model.tokenizer, &messages)?;
    model.tokenizer.encode(&prompt, false)
}

/// `prompt` followed by `reply` and the end-of-turn token, the loss on the reply; `None` when
/// longer than `max_len` or the reply is empty.
fn reply_example(
    model: &Backbone,
    mut ids: Vec<u32>,
    reply: &str,
    cfg: &TrainConfig,
    profile_row: usize,
) -> Result<Option<Example>> {
    let targets_from = ids.len();
    ids.extend(model.tokenizer.encode(reply, false)?);
    ids.extend(model.tokenizer.end_of_turn.first());
    Ok(
        (ids.len() <= cfg.max_len && ids.len() > targets_from).then_some(Example {
            ids,
            targets_from,
            profile: profile_row,
        }),
    )
}

/// Renders and tokenises a multiple-choice item, after `shots` (answered examples shown as
/// earlier turns; empty in training); `None` when it is longer than `max_len`.
pub fn tokenize(
    model: &Backbone,
    item: &ChoiceItem,
    profile_text: &str,
    cfg: &TrainConfig,
    profile_row: usize,
    shots: &[&ChoiceItem],
) -> Result<Option<Example>> {
    let system = prompt::system_text(profile_text, cfg.method.profile_in_prompt, NEUTRAL_SYSTEM);
    let shots: Vec<prompt::Shot<'_>> = shots
        .iter()
        .map(|s| prompt::Shot {
            question: &s.question,
            options: &s.options,
            answer: s.answer,
        })
        .collect();
    let messages = prompt::choice_messages(&Default::default(), system, &shots, &item.question, &item.options);
    let prompt = render(&model.tokenizer, &messages)?;
    let mut ids = model.tokenizer.encode(&prompt, false)?;
    let targets_from = ids.len();
    let letter = model.tokenizer.encode(&item.answer_letter().to_string(), false)?;
    ids.extend(letter);
    if cfg.loss_on_end_of_turn {
        ids.extend(model.tokenizer.end_of_turn.first());
    }
    Ok((ids.len() <= cfg.max_len).then_some(Example {
        ids,
        targets_from,
        profile: profile_row,
    }))
}
