//! Text generation with the KV cache: prefill the prompt once, then one token per step until an
//! end-of-turn token or the token budget. Tokens are reported as they come.

use crate::models::backbone::{Backbone, StepInput};
use crate::sampling::{Sampler, SamplingConfig};
use crate::tch_ops::TchOps;
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Options for [`generate`].
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub text: String,
    /// Whether an end-of-turn token stopped it (the token itself is not in `tokens`).
    pub stopped: bool,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

/// Logits of the last position as host f32 values.
pub fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let row = logits
        .f_select(0, 0)?
        .f_select(0, -1)?
        .f_to_kind(Kind::Float)?
        .f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<f32>::try_from(&row)?)
}

/// Generates from `prompt_ids`, with `profile` (`[1, D]`) for demographic routers. `on_text`
/// receives each new piece of decoded text.
pub fn generate(
    model: &Backbone,
    prompt_ids: &[u32],
    profile: Option<&Tensor>,
    opts: GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let max = model.config().max_position_embeddings;
    if prompt_ids.is_empty() {
        return Err(Error::Invalid("the prompt is empty".into()));
    }
    if prompt_ids.len() + opts.max_new_tokens > max {
        return Err(Error::PromptTooLong {
            tokens: prompt_ids.len(),
            max,
            new: opts.max_new_tokens,
        });
    }
    let _guard = tch::no_grad_guard();
    let device = model.device;
    let mut sampler = Sampler::new(opts.sampling);
    let ids: Vec<i64> = prompt_ids.iter().map(|&x| i64::from(x)).collect();
    let mut mask_len = ids.len() as i64;
    let start = std::time::Instant::now();
    let input = Tensor::f_from_slice(&ids)?.f_view([1, -1])?.f_to_device(device)?;
    let mask = Tensor::f_ones([1, mask_len], (Kind::Int64, device))?;
    let mut o = TchOps::new(device);
    let out = model.run(
        &mut o,
        &StepInput {
            ids: &input,
            attention_mask: &mask,
            past: None,
            profile,
        },
    )?;
    let (logits, mut cache) = (out.logits, out.presents);
    let mut row = last_logits(&logits)?;
    let prefill_seconds = start.elapsed().as_secs_f64();

    let start = std::time::Instant::now();
    let (mut tokens, mut printed, mut stopped) = (Vec::new(), String::new(), false);
    for step in 0..opts.max_new_tokens {
        let next = sampler.pick(&row) as u32;
        if model.tokenizer.end_of_turn.contains(&next) {
            stopped = true;
            break;
        }
        tokens.push(next);
        let text = model.tokenizer.decode(&tokens)?;
        // Hold back an incomplete UTF-8 sequence until its last byte arrives.
        if !text.ends_with('\u{FFFD}') && text.len() > printed.len() && text.starts_with(&printed) {
            on_text(&text[printed.len()..]);
            printed = text;
        }
        if step + 1 == opts.max_new_tokens {
            break;
        }
        mask_len += 1;
        let input = Tensor::f_from_slice(&[i64::from(next)])?
            .f_view([1, 1])?
            .f_to_device(device)?;
        let mask = Tensor::f_ones([1, mask_len], (Kind::Int64, device))?;
        let out = model.run(
            &mut o,
            &StepInput {
                ids: &input,
                attention_mask: &mask,
                past: Some(&cache),
                profile,
            },
        )?;
        cache = out.presents;
        row = last_logits(&out.logits)?;
    }
    let text = model.tokenizer.decode(&tokens)?;
    if text.len() > printed.len() && text.starts_with(&printed) {
        on_text(&text[printed.len()..]);
    }
    Ok(Generation {
        prompt_tokens: prompt_ids.len(),
        tokens,
        text,
        stopped,
        prefill_seconds,
        decode_seconds: start.elapsed().as_secs_f64(),
    })
}
