//! `cuma generate`: one chat turn with a backbone, streamed to stdout.

use crate::cli::GenerateArgs;
use anyhow::Context;
use cuma::generate::{generate, GenerateOptions};
use cuma::models::Backbone;
use cuma::sampling::SamplingConfig;
use cuma::tokenizer::chat::{render, Message};
use std::io::Write;

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let sampling = SamplingConfig {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
    };
    sampling.validate()?;
    let device = cuma::device::parse_device(&args.device)?;
    let path = cuma::defaults::backbone(args.model.as_deref())?;
    let load = std::time::Instant::now();
    let model = Backbone::load(&path, device).with_context(|| format!("loading {}", path.display()))?;
    let load_s = load.elapsed().as_secs_f64();
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", &args.prompt));
    let prompt = render(&model.tokenizer, &messages)?;
    let ids = model.tokenizer.encode(&prompt, false)?;
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        sampling,
    };
    let mut out = std::io::stdout().lock();
    let g = generate(&model, &ids, None, opts, |piece| {
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    let _ = writeln!(out);
    let _ = out.flush();
    if args.timings {
        let n = g.tokens.len();
        eprintln!(
            "[{device:?}] load {load_s:.2}s, prompt {} tokens in {:.3}s, {n} new tokens in {:.2}s ({:.1} tok/s){}",
            g.prompt_tokens,
            g.prefill_seconds,
            g.decode_seconds,
            n as f64 / g.decode_seconds.max(1e-9),
            if g.stopped { ", stopped at end of turn" } else { "" }
        );
    }
    Ok(())
}
