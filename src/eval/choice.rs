//! Option probabilities for multiple-choice items (spec section 9): the softmax over the
//! option-letter logits at the answer position, in left-padded batches, computed by the serving
//! core ([`cuma_model::serve::choice`], the same code the bundle runtime runs). Prompts are built
//! exactly as in training ([`crate::train::examples::tokenize`]).

use super::routing::ItemRouting;
use crate::models::backbone::Backbone;
use crate::serve::BackboneStep;
use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};
use cuma_model::serve::choice::{option_probabilities, ChoicePrompt as Scored};
use cuma_model::serve::RoutingOutput;
use tch::{Kind, Tensor};

/// One prompt to score: its token ids (ending right before the answer letter), the number of
/// options, and the profile vector row (for demographic routers).
#[derive(Debug, Clone)]
pub struct ChoicePrompt {
    pub ids: Vec<u32>,
    pub options: usize,
    pub profile: usize,
}

/// Token ids of the first `n` option letters A, B, C, ... (each must be a single token).
pub fn letter_ids(tokenizer: &TextTokenizer, n: usize) -> Result<Vec<u32>> {
    crate::data::item::LETTERS
        .chars()
        .take(n)
        .map(|l| match tokenizer.encode(&l.to_string(), false)?.as_slice() {
            [id] => Ok(*id),
            other => Err(Error::Invalid(format!(
                "option letter {l} is {} tokens in this tokenizer",
                other.len()
            ))),
        })
        .collect()
}

/// Option probabilities of `prompts` in one padded batch.
pub fn option_probs(model: &Backbone, prompts: &[ChoicePrompt], profiles: Option<&Tensor>) -> Result<Vec<Vec<f64>>> {
    Ok(score(model, prompts, profiles, false)?.0)
}

/// Option probabilities of `prompts` in one padded batch, and, when `record_routing` is set and
/// the model has routers, every prompt's routing (padding left out).
pub fn score(
    model: &Backbone,
    prompts: &[ChoicePrompt],
    profiles: Option<&Tensor>,
    record_routing: bool,
) -> Result<(Vec<Vec<f64>>, Vec<ItemRouting>)> {
    let max_options = prompts.iter().map(|p| p.options).max().unwrap_or(0);
    let letters = letter_ids(&model.tokenizer, max_options)?;
    let scored: Vec<Scored> = prompts
        .iter()
        .map(|p| Scored {
            ids: p.ids.clone(),
            letters: letters[..p.options].to_vec(),
        })
        .collect();
    let rows = match profiles {
        Some(all) => {
            let rows: Vec<i64> = prompts.iter().map(|p| p.profile as i64).collect();
            let picked = all
                .f_index_select(0, &Tensor::f_from_slice(&rows)?.f_to_device(all.device())?)?
                .f_to_kind(Kind::Float)?
                .f_to_device(tch::Device::Cpu)?
                .f_contiguous()?;
            Some(Vec::<f32>::try_from(&picked.f_view([-1])?)?)
        }
        None => None,
    };
    let out = option_probabilities(&mut BackboneStep::new(model), &scored, rows.as_deref(), record_routing)?;
    let routing = match &out.routing {
        Some(r) if record_routing => {
            let lens: Vec<usize> = prompts.iter().map(|p| p.ids.len()).collect();
            per_prompt_routing(r, &lens, prompts.len(), out.width)?
        }
        _ => Vec::new(),
    };
    Ok((out.probabilities, routing))
}

/// Splits a left-padded batch's routing (`[routers, b, s, E]` gates and `[routers, b, s, k]`
/// experts) into one [`ItemRouting`] per prompt, over its real tokens only.
fn per_prompt_routing(routing: &RoutingOutput, lens: &[usize], b: usize, s: usize) -> Result<Vec<ItemRouting>> {
    let Some((gates, e)) = &routing.dense_gates else {
        return Err(Error::Invalid("routing analysis needs every expert's gate".into()));
    };
    let e = *e;
    let experts = &routing.experts;
    let cells = b * s;
    if cells == 0 || e == 0 || gates.len() % (cells * e) != 0 || experts.len() % cells != 0 {
        return Err(Error::Invalid(format!(
            "routing of {} gates and {} experts does not fit a batch of {b} x {s}",
            gates.len(),
            experts.len()
        )));
    }
    let routers = gates.len() / (cells * e);
    let k = experts.len() / (cells * routers.max(1));
    if e > usize::from(u8::MAX) + 1 {
        return Err(Error::Invalid(format!(
            "routing analysis stores expert ids in a byte; {e} experts is too many"
        )));
    }
    Ok((0..b.min(lens.len()))
        .map(|row| {
            let len = lens[row].min(s);
            let first = s - len;
            let mut mean_gates = vec![0f32; routers * e];
            let mut picked = Vec::with_capacity(routers * len * k);
            for r in 0..routers {
                for pos in first..first + len {
                    let g = ((r * b + row) * s + pos) * e;
                    for (acc, &v) in mean_gates[r * e..(r + 1) * e].iter_mut().zip(&gates[g..g + e]) {
                        *acc += v / len as f32;
                    }
                    let x = ((r * b + row) * s + pos) * k;
                    picked.extend(experts[x..x + k].iter().map(|&i| i as u8));
                }
            }
            ItemRouting {
                mean_gates,
                experts: picked,
                tokens: len,
                top_k: k,
            }
        })
        .collect())
}
