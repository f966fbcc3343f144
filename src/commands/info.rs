//! `cuma info`: what a model is, without loading it onto a device.

use crate::cli::InfoArgs;
use anyhow::Context;
use cuma::models::backbone::tokenizer_for;
use cuma::models::source::{Format, ModelSource};
use cuma_model::config::ModelConfig;

fn millions(n: usize) -> String {
    format!("{:.1} M ({n})", n as f64 / 1e6)
}

pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let path = cuma::defaults::backbone(args.model.as_deref())?;
    let source = ModelSource::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let format = match source.format {
        Format::Gguf => "GGUF",
        Format::Safetensors => "safetensors",
    };
    println!("model:          {}", source.path.display());
    println!("format:         {format}");
    match &source.config {
        ModelConfig::Decoder(c) => {
            println!("architecture:   {} (decoder)", c.family.model_type());
            println!("layers:         {}", c.num_layers);
            println!("hidden:         {}", c.hidden_size);
            println!("intermediate:   {}", c.intermediate_size);
            println!(
                "heads:          {} ({} KV heads, head dim {})",
                c.num_heads, c.num_kv_heads, c.head_dim
            );
            println!("vocab:          {}", c.vocab_size);
            println!("context:        {}", c.max_position_embeddings);
            println!("rope theta:     {}", c.rope_theta);
            println!("tied embedding: {}", c.tie_embeddings);
            println!("parameters:     {}", millions(c.parameter_count()));
        }
        ModelConfig::Bert(c) => {
            println!("architecture:   bert (encoder)");
            println!("layers:         {}", c.num_layers);
            println!("hidden:         {}", c.hidden_size);
            println!("intermediate:   {}", c.intermediate_size);
            println!("heads:          {}", c.num_heads);
            println!("vocab:          {}", c.vocab_size);
            println!("max positions:  {}", c.max_position_embeddings);
            println!("parameters:     {}", millions(c.parameter_count()));
        }
    }
    if let Some(d) = source.weights.dominant_dtype() {
        println!("dtype:          {} (stored; computed in f32)", d.name());
    }
    let tok = tokenizer_for(&source).with_context(|| format!("building the tokenizer of {}", path.display()))?;
    println!("tokenizer:      {}, {} tokens", tok.kind, tok.vocab_size());
    let eot: Vec<String> = tok
        .end_of_turn
        .iter()
        .map(|&id| format!("{} ({id})", tok.inner.raw().id_to_token(id).unwrap_or_default()))
        .collect();
    println!("end of turn:    {}", eot.join(", "));
    match &tok.chat_template {
        None => println!("chat template:  none"),
        Some(t) => {
            println!("chat template:  {} characters", t.len());
            let lines: Vec<&str> = t.lines().collect();
            let shown = if args.full_template {
                lines.len()
            } else {
                lines.len().min(6)
            };
            for l in &lines[..shown] {
                println!("  | {l}");
            }
            if shown < lines.len() {
                println!(
                    "  | ... ({} more lines; --full-template shows all)",
                    lines.len() - shown
                );
            }
        }
    }
    Ok(())
}
