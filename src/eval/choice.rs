//! Option probabilities for multiple-choice items (spec section 9): the softmax over the
//! option-letter logits at the answer position, in padded batches. Prompts are built exactly as
//! in training ([`crate::train::sft::tokenize`]).

use super::routing::ItemRouting;
use crate::models::backbone::{Backbone, StepInput};
use crate::models::inputs::pad_batch;
use crate::tch_ops::TchOps;
use crate::{Error, Result};
use cuma_model::adapters::Routing;
use tch::{Kind, Tensor};

/// Where a batch's padding goes. Both must give the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Left,
    Right,
}

/// One prompt to score: its token ids (ending right before the answer letter), the number of
/// options, and the profile vector row (for demographic routers).
#[derive(Debug, Clone)]
pub struct ChoicePrompt {
    pub ids: Vec<u32>,
    pub options: usize,
    pub profile: usize,
}

/// Token ids of the option letters A, B, C, ... (each must be a single token).
pub fn letter_ids(model: &Backbone, n: usize) -> Result<Vec<i64>> {
    crate::data::item::LETTERS
        .chars()
        .take(n)
        .map(|l| match model.tokenizer.encode(&l.to_string(), false)?.as_slice() {
            [id] => Ok(i64::from(*id)),
            other => Err(Error::Invalid(format!(
                "option letter {l} is {} tokens in this tokenizer",
                other.len()
            ))),
        })
        .collect()
}

/// Option probabilities of `prompts` in one padded batch.
pub fn option_probs(
    model: &Backbone,
    prompts: &[ChoicePrompt],
    profiles: Option<&Tensor>,
    padding: Padding,
) -> Result<Vec<Vec<f64>>> {
    Ok(score(model, prompts, profiles, padding, false)?.0)
}

/// Option probabilities of `prompts` in one padded batch, and, when `record_routing` is set and
/// the model has routers, every prompt's routing (padding left out).
pub fn score(
    model: &Backbone,
    prompts: &[ChoicePrompt],
    profiles: Option<&Tensor>,
    padding: Padding,
    record_routing: bool,
) -> Result<(Vec<Vec<f64>>, Vec<ItemRouting>)> {
    if prompts.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if let Some(p) = prompts.iter().find(|p| p.ids.is_empty() || p.options == 0) {
        return Err(Error::Invalid(format!(
            "a prompt with {} tokens and {} options cannot be scored",
            p.ids.len(),
            p.options
        )));
    }
    let _guard = tch::no_grad_guard();
    let device = model.device;
    let max_options = prompts.iter().map(|p| p.options).max().unwrap_or(0);
    let letters = letter_ids(model, max_options)?;
    let seqs: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let (ids_t, mask_t) = pad_batch(&seqs, 0, padding == Padding::Left, device)?;
    let s = ids_t.size()[1] as usize;
    // The answer position: each row's last real token.
    let last: Vec<i64> = prompts
        .iter()
        .enumerate()
        .map(|(r, p)| {
            (r * s
                + if padding == Padding::Left {
                    s - 1
                } else {
                    p.ids.len() - 1
                }) as i64
        })
        .collect();
    let rows: Vec<i64> = prompts.iter().map(|p| p.profile as i64).collect();
    let profile = match profiles {
        Some(all) => Some(all.f_index_select(0, &Tensor::f_from_slice(&rows)?.f_to_device(device)?)?),
        None => None,
    };
    let mut o = TchOps::new(device);
    let out = model.run_hidden(
        &mut o,
        &StepInput {
            ids: &ids_t,
            attention_mask: &mask_t,
            past: None,
            profile: profile.as_ref(),
        },
    )?;
    let hidden = out.hidden.f_view([-1, model.config().hidden_size as i64])?;
    let at_answer = hidden.f_index_select(0, &Tensor::f_from_slice(&last)?.f_to_device(device)?)?;
    let routing = if record_routing && !out.routing.is_empty() {
        let lens: Vec<usize> = prompts.iter().map(|p| p.ids.len()).collect();
        per_prompt_routing(&out.routing, &lens, padding)?
    } else {
        Vec::new()
    };
    let logits = model.decoder.logits(&mut o, &at_answer)?; // [b, vocab]
    let letter_logits = logits
        .f_index_select(1, &Tensor::f_from_slice(&letters)?.f_to_device(device)?)?
        .f_to_kind(Kind::Double)?
        .f_to_device(tch::Device::Cpu)?;
    let rows: Vec<Vec<f64>> = Vec::try_from(&letter_logits)?;
    let probs = prompts
        .iter()
        .zip(rows)
        .map(|(p, row)| {
            let row = &row[..p.options];
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = exp.iter().sum();
            exp.into_iter().map(|e| e / z).collect()
        })
        .collect();
    Ok((probs, routing))
}

/// Splits a batch's routing (`gates` `[b, s, E]` and `experts` `[b, s, k]` per router) into one
/// [`ItemRouting`] per prompt, over its real tokens only.
fn per_prompt_routing(routing: &[Routing<Tensor>], lens: &[usize], padding: Padding) -> Result<Vec<ItemRouting>> {
    let to_cpu = |ts: Vec<&Tensor>, kind: Kind| -> Result<Tensor> {
        Ok(Tensor::f_stack(&ts, 0)?
            .f_to_kind(kind)?
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?)
    };
    let gates = to_cpu(routing.iter().map(|r| &r.gates).collect(), Kind::Float)?; // [R, b, s, E]
    let experts = to_cpu(routing.iter().map(|r| &r.experts).collect(), Kind::Int64)?; // [R, b, s, k]
    let size = |t: &Tensor| t.size().iter().map(|&d| d as usize).collect::<Vec<_>>();
    let (gs, es) = (size(&gates), size(&experts));
    let [routers, b, s, e] = gs[..] else {
        return Err(Error::Invalid(format!("routing gates of shape {gs:?}")));
    };
    let k = es.last().copied().unwrap_or(0);
    if e > usize::from(u8::MAX) + 1 {
        return Err(Error::Invalid(format!(
            "routing analysis stores expert ids in a byte; {e} experts is too many"
        )));
    }
    let gates: Vec<f32> = Vec::try_from(gates.f_view([-1])?)?;
    let experts: Vec<i64> = Vec::try_from(experts.f_view([-1])?)?;
    Ok((0..b.min(lens.len()))
        .map(|row| {
            let len = lens[row].min(s);
            let first = if padding == Padding::Left { s - len } else { 0 };
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
