//! `cuma generate`: chat turns with a backbone through the serving core; one prompt is streamed
//! to stdout, a batch of prompts is generated together and printed in order.

use crate::cli::GenerateArgs;
use anyhow::Context;
use cuma::models::Backbone;
use cuma::sampling::SamplingConfig;
use cuma::serve::{generate, FinishReason, GenerateOptions};
use cuma::tokenizer::chat::{render, Message};
use std::io::Write;

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
    };
    let options = GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampling,
        stop: args.stop.clone(),
        trace_routing: false,
        logprobs: false,
    };
    options.validate()?;
    let device = cuma::device::parse_device(&args.device)?;
    let path = cuma::defaults::backbone(args.model.as_deref())?;
    let load = std::time::Instant::now();
    let model = Backbone::load(&path, device).with_context(|| format!("loading {}", path.display()))?;
    let load_s = load.elapsed().as_secs_f64();
    let prompts = args
        .prompt
        .iter()
        .map(|prompt| {
            let mut messages = Vec::new();
            if let Some(s) = &args.system {
                messages.push(Message::new("system", s));
            }
            messages.push(Message::new("user", prompt));
            Ok(model.tokenizer.encode(&render(&model.tokenizer, &messages)?, false)?)
        })
        .collect::<anyhow::Result<Vec<Vec<u32>>>>()?;
    let stream = prompts.len() == 1;
    let mut out = std::io::stdout().lock();
    let replies = generate(&model, &prompts, None, &options, |t| {
        if stream {
            let _ = write!(out, "{}", t.text);
            let _ = out.flush();
        }
    })?;
    for (i, g) in replies.iter().enumerate() {
        if stream {
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, "[{}] {}", i + 1, g.text);
        }
    }
    let _ = out.flush();
    if args.timings {
        let t = &replies[0].timings;
        let decode: f64 = t.decode_seconds.iter().sum();
        for (i, g) in replies.iter().enumerate() {
            let finish = match g.finish_reason {
                FinishReason::EndOfTurn => "end of turn",
                FinishReason::Stop => "stop sequence",
                FinishReason::Length => "token budget",
            };
            eprintln!(
                "[{}] prompt {} tokens, {} new tokens, stopped at {finish}",
                i + 1,
                g.prompt_tokens,
                g.token_ids.len()
            );
        }
        // The first token of every reply comes from the prefill; each decode step adds one more.
        let steps = t.decode_seconds.len();
        eprintln!(
            "[{device:?}] load {load_s:.2}s, prefill {:.3}s, {steps} decode steps in {decode:.2}s ({:.1} steps/s, batch {})",
            t.prefill_seconds,
            steps as f64 / decode.max(1e-9),
            replies.len()
        );
    }
    Ok(())
}
