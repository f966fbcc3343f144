//! Generation with the KV cache for a batch of prompts (each with its own profile vector):
//! left-padded prefill, then one token per request per step. Each request samples with its own
//! [`Sampler`] from the same seed, so a request's text does not depend on its batch-mates.
//! Finished rows keep stepping on a masked pad token so the batch's shapes stay equal.

use super::padding::{grow_mask, left_pad};
use super::routing::RoutingTrace;
use super::{check_logits, DecoderStep, ServeError, StepInput, TokenText};
use crate::sampling::{Sampler, SamplingConfig};
use serde::Serialize;
use std::time::Instant;

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Greedy when `temperature` is 0; see [`SamplingConfig`].
    pub sampling: SamplingConfig,
    /// Generation stops when the text contains any of these (they are cut from the text).
    pub stop: Vec<String>,
    /// Record every token's routing.
    pub trace_routing: bool,
    /// Record the log-probability of every sampled token under the sampling temperature
    /// (`log_softmax(logits / T)`, before top-k / top-p; the raw logits when greedy), as RL
    /// needs for its importance ratios.
    pub logprobs: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: SamplingConfig::default(),
            stop: Vec::new(),
            trace_routing: false,
            logprobs: false,
        }
    }
}

impl GenerateOptions {
    /// Checks the options before any work: sampling parameters in range
    /// ([`SamplingConfig::validate`]) and no empty stop sequence (it would match at once).
    pub fn validate(&self) -> Result<(), ServeError> {
        self.sampling.validate().map_err(|e| ServeError::Input(e.to_string()))?;
        if self.stop.iter().any(String::is_empty) {
            return Err(ServeError::Input(
                "an empty stop sequence would end every reply before it starts".into(),
            ));
        }
        Ok(())
    }
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    /// The model ended its turn.
    EndOfTurn,
    /// A stop sequence appeared.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
}

/// Seconds spent per phase (the batch's, shared by its requests).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub encoder_seconds: f64,
    pub prefill_seconds: f64,
    /// One entry per decode step after the first token.
    pub decode_seconds: Vec<f64>,
}

impl Timings {
    /// Mean decode seconds per step (0 without decode steps).
    pub fn mean_decode_seconds(&self) -> f64 {
        if self.decode_seconds.is_empty() {
            0.0
        } else {
            self.decode_seconds.iter().sum::<f64>() / self.decode_seconds.len() as f64
        }
    }
}

/// One request's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    /// The end-of-turn token that ended the reply (not in `token_ids` or `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_token: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingTrace>,
    /// With [`GenerateOptions::logprobs`]: one per sampled token, the end-of-turn token included
    /// when the reply ended with it (so one more than `token_ids` then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f32>,
    pub timings: Timings,
}

/// A token streamed to the caller: the request's index in the batch and the new text.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    pub request: usize,
    pub token: u32,
    pub text: &'a str,
}

/// One reply being decoded: its sampler, tokens, text, what of it has been streamed, and why it
/// ended. Batched generation here and continuous batching ([`super::batching`]) both advance
/// replies through [`Reply::accept`], so sampling, end of turn, stop sequences and streaming are
/// written once.
pub(crate) struct Reply {
    ids: Vec<u32>,
    emitted: usize,
    text: String,
    sampler: Sampler,
    done: Option<FinishReason>,
    pub(crate) trace: Option<RoutingTrace>,
    logprobs: Vec<f32>,
    end_token: Option<u32>,
}

/// What [`Reply::accept`] did with one row of logits.
pub(crate) struct Accepted {
    /// The sampled token (an end-of-turn token included).
    pub token: u32,
    /// Text that became safe to stream, if any.
    pub piece: Option<String>,
}

impl Reply {
    /// A reply sampled with `sampling` (its own seed), tracing routing over `routers` if given.
    pub(crate) fn new(sampling: SamplingConfig, routers: Option<Vec<String>>) -> Self {
        Self {
            ids: Vec::new(),
            emitted: 0,
            text: String::new(),
            sampler: Sampler::new(sampling),
            done: None,
            trace: routers.map(|routers| RoutingTrace {
                routers,
                tokens: Vec::new(),
            }),
            logprobs: Vec::new(),
            end_token: None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Tokens generated so far (the end-of-turn token excluded).
    pub(crate) fn generated(&self) -> usize {
        self.ids.len()
    }

    /// Ends the reply (if it has not ended) with `reason`.
    pub(crate) fn finish(&mut self, reason: FinishReason) {
        self.done.get_or_insert(reason);
    }

    /// Samples the next token from `logits` and updates the text: end of turn, stop sequences
    /// (cut from the text), and the piece that became safe to stream.
    pub(crate) fn accept<T: TokenText + ?Sized>(
        &mut self,
        logits: &[f32],
        text: &T,
        options: &GenerateOptions,
    ) -> Result<Accepted, ServeError> {
        let token = self.sampler.pick(logits) as u32;
        if options.logprobs {
            self.logprobs
                .push(token_logprob(logits, token as usize, options.sampling.temperature));
        }
        if text.end_of_turn().contains(&token) {
            self.done = Some(FinishReason::EndOfTurn);
            self.end_token = Some(token);
            return Ok(Accepted { token, piece: None });
        }
        self.ids.push(token);
        self.text = text.decode(&self.ids)?;
        if let Some(cut) = options.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.done = Some(FinishReason::Stop);
        }
        let stable = if self.done.is_some() {
            self.text.as_str()
        } else {
            streamable(&self.text, &options.stop)
        };
        let mut piece = None;
        if stable.len() > self.emitted && stable.is_char_boundary(self.emitted) {
            piece = Some(stable[self.emitted..].to_string());
            self.emitted = stable.len();
        }
        Ok(Accepted { token, piece })
    }

    /// The text not streamed yet (a held-back tail when the reply ends), marked as streamed.
    pub(crate) fn flush(&mut self) -> Option<String> {
        if self.emitted < self.text.len() && self.text.is_char_boundary(self.emitted) {
            let rest = self.text[self.emitted..].to_string();
            self.emitted = self.text.len();
            return Some(rest);
        }
        None
    }

    /// The last token generated, or `fallback`.
    pub(crate) fn last_token(&self, fallback: u32) -> u32 {
        self.ids.last().copied().unwrap_or(fallback)
    }

    /// The finished result (a reply that never ended ran out of budget).
    pub(crate) fn into_generation(self, prompt_tokens: usize, timings: Timings) -> Generation {
        Generation {
            text: self.text,
            token_ids: self.ids,
            prompt_tokens,
            finish_reason: self.done.unwrap_or(FinishReason::Length),
            end_token: self.end_token,
            routing: self.trace,
            logprobs: self.logprobs,
            timings,
        }
    }
}

/// `log_softmax(logits / temperature)[token]` (temperature 0 counts as 1).
pub fn token_logprob(logits: &[f32], token: usize, temperature: f64) -> f32 {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = logits.iter().map(|&l| ((l as f64 - max) / t).exp()).sum();
    ((logits[token] as f64 - max) / t - total.ln()) as f32
}

/// Text decoded so far that is safe to stream: everything but a trailing partial character and
/// any tail that could be the start of a stop sequence (it is streamed once the next tokens show
/// it is not one, or cut with the stop sequence when it is).
fn streamable<'t>(text: &'t str, stop: &[String]) -> &'t str {
    let text = text.trim_end_matches('\u{FFFD}');
    let held = stop
        .iter()
        .flat_map(|s| s.char_indices().skip(1).map(move |(k, _)| &s[..k]))
        .filter(|start| text.ends_with(start))
        .map(str::len)
        .max()
        .unwrap_or(0);
    &text[..text.len() - held]
}

/// Generates replies to `prompts` (token ids, each below the context; see the module docs of
/// [`super`] for the budget), with `profiles` `[batch * D]` for routers that read them, calling
/// `on_token` for every streamed piece of text. `timings` carries the encoder time the caller
/// spent.
pub fn generate<S: DecoderStep, T: TokenText + ?Sized>(
    model: &mut S,
    text: &T,
    prompts: &[Vec<u32>],
    profiles: Option<&[f32]>,
    options: &GenerateOptions,
    mut timings: Timings,
    mut on_token: impl FnMut(TokenEvent<'_>),
) -> Result<Vec<Generation>, S::Error> {
    options.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(ServeError::Input("an empty prompt".into()).into());
    }
    let (vocab, context) = (model.vocab(), model.context());
    if let Some(long) = prompts.iter().find(|p| p.len() >= context) {
        return Err(ServeError::Input(format!(
            "the prompt is {} tokens; the model's context is {context}",
            long.len()
        ))
        .into());
    }
    let b = prompts.len();
    let pad = text.end_of_turn().first().copied().unwrap_or(0);
    let padded = left_pad(prompts, pad);
    let budget = options.max_new_tokens.min(context - padded.width);
    let routers = options.trace_routing.then(|| model.routers());
    // Row r samples with seed + r: one seed gives every row its own stream (and row 0 the seed's).
    let mut rows: Vec<Reply> = (0..b)
        .map(|r| {
            let sampling = SamplingConfig {
                seed: options.sampling.seed.wrapping_add(r as u64),
                ..options.sampling
            };
            Reply::new(sampling, routers.clone())
        })
        .collect();
    let t1 = Instant::now();
    let mut out = model.step(StepInput {
        ids: &padded.ids,
        mask: &padded.mask,
        profiles,
        past: None,
        routing: options.trace_routing,
    })?;
    timings.prefill_seconds = t1.elapsed().as_secs_f64();
    if let Some(routing) = &out.routing {
        let step = routing.view(b, padded.width);
        for (r, row) in rows.iter_mut().enumerate() {
            if let Some(trace) = row.trace.as_mut() {
                trace.append(&step, r, &prompts[r])?;
            }
        }
    }
    let (mut mask, mut width) = (padded.mask, padded.width);
    for step in 0..budget {
        check_logits(&out.last_logits, b, vocab)?;
        let mut next = Vec::with_capacity(b);
        for (r, row) in rows.iter_mut().enumerate() {
            if row.is_done() {
                next.push(vec![pad]);
                continue;
            }
            let accepted = row.accept(&out.last_logits[r * vocab..(r + 1) * vocab], text, options)?;
            next.push(vec![accepted.token]);
            if let Some(piece) = &accepted.piece {
                on_token(TokenEvent {
                    request: r,
                    token: accepted.token,
                    text: piece,
                });
            }
        }
        if rows.iter().all(Reply::is_done) || step + 1 == budget {
            break;
        }
        mask = grow_mask(&mask, width, rows.iter().map(|r| !r.is_done()));
        width += 1;
        let t = Instant::now();
        out = model.step(StepInput {
            ids: &next,
            mask: &mask,
            profiles,
            past: Some(out.cache),
            routing: options.trace_routing,
        })?;
        timings.decode_seconds.push(t.elapsed().as_secs_f64());
        if let Some(routing) = &out.routing {
            let step = routing.view(b, 1);
            for (r, row) in rows.iter_mut().enumerate() {
                if row.is_done() {
                    continue;
                }
                if let Some(trace) = row.trace.as_mut() {
                    trace.append(&step, r, &next[r])?;
                }
            }
        }
    }
    Ok(rows
        .into_iter()
        .zip(prompts)
        .enumerate()
        .map(|(r, (mut row, p))| {
            if let Some(rest) = row.flush() {
                on_token(TokenEvent {
                    request: r,
                    token: row.last_token(pad),
                    text: &rest,
                });
            }
            row.into_generation(p.len(), timings.clone())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::streamable;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_possible_start_of_a_stop_sequence_is_held_back() {
        let stop = stops(&["\n\nUser:", "END"]);
        assert_eq!(streamable("Yes.\n\nUs", &stop), "Yes.");
        assert_eq!(streamable("Yes. E", &stop), "Yes. ");
        assert_eq!(streamable("Yes. EN", &stop), "Yes. ");
        // Once the tail can no longer become a stop sequence, it streams.
        assert_eq!(streamable("Yes. ENd", &stop), "Yes. ENd");
        assert_eq!(streamable("Yes.\n\nUsed", &stop), "Yes.\n\nUsed");
    }

    #[test]
    fn without_stop_sequences_only_a_partial_character_is_held() {
        assert_eq!(streamable("caf\u{FFFD}", &[]), "caf");
        assert_eq!(streamable("café", &[]), "café");
        // Multi-byte stop sequences are matched on character boundaries.
        assert_eq!(streamable("voilà «", &stops(&["«»"])), "voilà ");
    }
}
