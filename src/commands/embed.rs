//! `cuma embed`: vectors of texts from a sentence encoder.

use crate::cli::EmbedArgs;
use anyhow::Context;
use cuma::models::ProfileEncoder;

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let device = cuma::device::parse_device(&args.device)?;
    let path = cuma::defaults::encoder(args.encoder.as_deref())?;
    let enc = ProfileEncoder::load(&path, device).with_context(|| format!("loading {}", path.display()))?;
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let vectors = enc.embed(&texts)?.f_to_device(tch::Device::Cpu)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&vectors)?;
    if args.json {
        let items: Vec<_> = texts
            .iter()
            .zip(&rows)
            .map(|(t, v)| serde_json::json!({"text": t, "embedding": v}))
            .collect();
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({"dim": enc.dim, "pooling": enc.pooling, "normalized": enc.normalize, "items": items})
            )?
        );
        return Ok(());
    }
    println!(
        "encoder: {} (dim {}, {:?} pooling{})",
        enc.source_path.display(),
        enc.dim,
        enc.pooling,
        if enc.normalize { ", L2-normalised" } else { "" }
    );
    for (t, v) in texts.iter().zip(&rows) {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let head: Vec<String> = v.iter().take(args.show).map(|x| format!("{x:+.4}")).collect();
        println!("{t:?}\n  norm {norm:.4}  [{} ...]", head.join(", "));
    }
    Ok(())
}
