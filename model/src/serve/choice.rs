//! Option-letter probabilities (spec section 9): the softmax over the logits of the option
//! letters A, B, ... right after each prompt, for a batch of prompts in one left-padded step.

use super::padding::left_pad;
use super::{check_logits, softmax, DecoderStep, RoutingOutput, ServeError, StepInput};

/// One prompt to score: its token ids (ending right before the answer letter) and the token id
/// of each option's letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoicePrompt {
    pub ids: Vec<u32>,
    pub letters: Vec<u32>,
}

/// What one scoring step gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceScores {
    /// Per prompt, the probability of each option.
    pub probabilities: Vec<Vec<f64>>,
    /// The batch's routing (left-padded, `width` positions), when asked for.
    pub routing: Option<RoutingOutput>,
    /// The padded width (each prompt's tokens are its last `ids.len()` positions).
    pub width: usize,
}

/// Scores `prompts` in one step, with `profiles` `[batch * D]` for routers that read them.
pub fn option_probabilities<S: DecoderStep>(
    model: &mut S,
    prompts: &[ChoicePrompt],
    profiles: Option<&[f32]>,
    routing: bool,
) -> Result<ChoiceScores, S::Error> {
    if prompts.is_empty() {
        return Ok(ChoiceScores {
            probabilities: Vec::new(),
            routing: None,
            width: 0,
        });
    }
    if let Some(p) = prompts.iter().find(|p| p.ids.is_empty() || p.letters.is_empty()) {
        return Err(ServeError::Input(format!(
            "a prompt with {} tokens and {} options cannot be scored",
            p.ids.len(),
            p.letters.len()
        ))
        .into());
    }
    let (vocab, context) = (model.vocab(), model.context());
    if let Some(p) = prompts.iter().find(|p| p.ids.len() > context) {
        return Err(ServeError::Input(format!(
            "the prompt is {} tokens; the model's context is {context}",
            p.ids.len()
        ))
        .into());
    }
    // A tokenizer whose letter ids lie past the graph's vocabulary is a broken model, not a panic.
    if let Some(&l) = prompts.iter().flat_map(|p| &p.letters).find(|&&l| l as usize >= vocab) {
        return Err(ServeError::Input(format!(
            "option letter token {l} is outside the vocabulary of {vocab} (tokenizer and model disagree)"
        ))
        .into());
    }
    let seqs: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let padded = left_pad(&seqs, 0);
    let out = model.step(StepInput {
        ids: &padded.ids,
        mask: &padded.mask,
        profiles,
        past: None,
        routing,
    })?;
    check_logits(&out.last_logits, prompts.len(), vocab)?;
    let probabilities = prompts
        .iter()
        .zip(out.last_logits.chunks(vocab))
        .map(|(p, row)| {
            let picked: Vec<f64> = p.letters.iter().map(|&l| f64::from(row[l as usize])).collect();
            softmax(&picked)
        })
        .collect();
    Ok(ChoiceScores {
        probabilities,
        routing: out.routing,
        width: padded.width,
    })
}
