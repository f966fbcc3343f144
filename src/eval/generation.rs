//! Replies to chat items for judging (`cuma eval --generate`): each item's context after the
//! profile (as training renders it: the system prompt when the run keeps the profile in the
//! prompt, and the routers' profile vector), sampled with the paper's settings by default
//! (temperature 0.7, top-p 0.9, seeded), in batches through the serving core. Distinct-2 and the
//! word entropy of the replies measure their diversity.

use super::run::Evaluator;
use crate::data::{profile, ChatItem};
use crate::sampling::SamplingConfig;
use crate::serve::{generate, GenerateOptions};
use crate::Result;
use cuma_model::text::Message;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One generated reply, a line of `replies.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub profile_text: String,
    pub context: Vec<Message>,
    pub reply: String,
    /// The item's own preferred reply, when it has one (a survey answer letter for pairs made
    /// from choice items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Diversity of a set of replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diversity {
    pub replies: usize,
    /// |unique word bigrams| / |word bigrams| over all replies (spec section 9).
    pub distinct_2: f64,
    /// Shannon entropy (nats) of the word distribution over all replies.
    pub word_entropy: f64,
    pub mean_words: f64,
}

/// Distinct-2 and word entropy of `replies` (words: whitespace-separated, lower-cased).
pub fn diversity(replies: &[&str]) -> Diversity {
    let mut bigrams = 0usize;
    let mut unique = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut words_total = 0usize;
    for r in replies {
        let words: Vec<String> = r.split_whitespace().map(str::to_lowercase).collect();
        words_total += words.len();
        for w in words.windows(2) {
            bigrams += 1;
            unique.insert((w[0].clone(), w[1].clone()));
        }
        for w in words {
            *counts.entry(w).or_default() += 1;
        }
    }
    let entropy = counts
        .values()
        .map(|&c| {
            let p = c as f64 / words_total.max(1) as f64;
            -p * p.ln()
        })
        .sum();
    Diversity {
        replies: replies.len(),
        distinct_2: if bigrams == 0 {
            0.0
        } else {
            unique.len() as f64 / bigrams as f64
        },
        word_entropy: entropy,
        mean_words: words_total as f64 / replies.len().max(1) as f64,
    }
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub batch: usize,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.7,
            top_p: 0.9,
            seed: 0,
            batch: 8,
        }
    }
}

/// Replies of `e` to `items` (their final reply, if any, is left out of the context and kept as
/// the reference). `on_batch` gets the number of items done.
pub fn replies(
    e: &Evaluator,
    items: &[ChatItem],
    opts: &GenerationOptions,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<Reply>> {
    let order: Vec<&str> = e.config.profile_order.iter().map(String::as_str).collect();
    let routed = e.model.decoder.adapters.as_ref().is_some_and(|a| a.profile_dim > 0);
    let mut out = Vec::with_capacity(items.len());
    for (b, chunk) in items.chunks(opts.batch.max(1)).enumerate() {
        let mut prompts = Vec::new();
        let mut texts = Vec::new();
        let mut contexts = Vec::new();
        for item in chunk {
            let (context, reference) = match item.split_reply() {
                Ok((c, r)) => (c.to_vec(), Some(r.to_string())),
                Err(_) => (item.messages.clone(), None),
            };
            let text = profile::render(&item.profile, &order, e.config.profile_style);
            prompts.push(crate::train::examples::context_ids(
                &e.model, &context, &text, &e.config,
            )?);
            texts.push(text);
            contexts.push((context, reference));
        }
        let profiles = if routed {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Some(e.encoder.embed(&refs)?)
        } else {
            None
        };
        let options = GenerateOptions {
            max_new_tokens: opts.max_new_tokens,
            sampling: SamplingConfig {
                temperature: opts.temperature,
                top_p: opts.top_p,
                top_k: 0,
                // One seed per batch position stream, fixed by the batch index.
                seed: opts.seed.wrapping_add(b as u64),
            },
            stop: Vec::new(),
            trace_routing: false,
            logprobs: false,
        };
        let generated = generate(&e.model, &prompts, profiles.as_ref(), &options, |_| {})?;
        for ((item, (context, reference)), (g, text)) in
            chunk.iter().zip(contexts).zip(generated.into_iter().zip(texts))
        {
            out.push(Reply {
                id: item.id.clone(),
                profile_text: text,
                context,
                reply: g.text.trim().to_string(),
                reference,
            });
        }
        on_batch(out.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_2_and_entropy_by_hand() {
        let d = diversity(&["the cat sat", "the cat ran"]);
        // Bigrams: (the cat) (cat sat) (the cat) (cat ran): 3 unique of 4.
        assert!((d.distinct_2 - 0.75).abs() < 1e-12);
        // Words: the 2, cat 2, sat 1, ran 1 of 6.
        let h = -(2.0 * (2.0 / 6.0f64) * (2.0f64 / 6.0).ln() + 2.0 * (1.0 / 6.0f64) * (1.0f64 / 6.0).ln());
        assert!((d.word_entropy - h).abs() < 1e-12);
        assert_eq!(d.mean_words, 3.0);
        assert_eq!(diversity(&["one"]).distinct_2, 0.0);
    }
}
