//! `cuma eval`: metrics of a checkpoint or a baseline, printed and written as JSON + Markdown;
//! optionally the routing analysis and the seen vs held-out table.

use crate::cli::EvalArgs;
use anyhow::Context;
use cuma::data::clusters::ClusterMap;
use cuma::data::ChoiceItem;
use cuma::eval::fewshot::ShotPool;
use cuma::eval::run::{markdown, read_items, EvalMethod, EvalOptions, Evaluation, Evaluator};
use cuma::eval::{heldout, routing};
use std::path::Path;

pub fn run(a: &EvalArgs) -> anyhow::Result<()> {
    let device = cuma::device::parse_device(&a.device)?;
    if a.routing && a.method != EvalMethod::Checkpoint {
        anyhow::bail!("--routing needs a trained checkpoint with routers (--method checkpoint)");
    }
    let (evaluator, name, default_out) = match a.method {
        EvalMethod::Checkpoint => {
            let given = a
                .checkpoint
                .as_ref()
                .context("--method checkpoint needs --checkpoint <run dir>")?;
            let dir = if given.join(cuma::train::checkpoint::MANIFEST_FILE).is_file() {
                given.clone()
            } else {
                given.join(cuma::train::sft::CHECKPOINT_DIR)
            };
            let e = Evaluator::from_checkpoint(&dir, device).with_context(|| format!("loading {}", dir.display()))?;
            let name = format!("{:?}", e.config.method.method).to_lowercase();
            (e, name, given.clone())
        }
        m => {
            let backbone = cuma::defaults::backbone(a.model.as_deref())?;
            let encoder = cuma::defaults::encoder(a.encoder.as_deref())?;
            (
                Evaluator::baseline(&backbone, &encoder, m, device)?,
                format!("{m:?}").to_lowercase(),
                std::path::PathBuf::from("."),
            )
        }
    };
    let pool = match (a.method, &a.examples) {
        (EvalMethod::Fewshot, Some(path)) => Some(ShotPool::new(
            read_items(path, 0).with_context(|| format!("reading examples {}", path.display()))?,
        )),
        (EvalMethod::Fewshot, None) => {
            anyhow::bail!("--method fewshot needs --examples <answered items, e.g. train.jsonl>")
        }
        _ => None,
    };
    let opts = EvalOptions {
        batch: a.batch_size,
        routing: a.routing,
        shots: pool.as_ref().map(|p| (p, a.shots)),
        seed: a.seed,
        strict: a.strict,
    };
    let out = a.out.clone().unwrap_or(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let items = read_items(&a.data, a.max_items)?;
    let seen = evaluate(&evaluator, &items, opts, "evaluating")?;
    write(
        &out,
        "eval",
        &serde_json::to_string_pretty(&seen.summary)?,
        &markdown(&name, &seen.summary),
    )?;
    print!("{}", markdown(&name, &seen.summary));
    if let Some(report) = &seen.routing {
        write(
            &out,
            "routing",
            &serde_json::to_string_pretty(report)?,
            &routing::markdown(report),
        )?;
        let collapsed: Vec<&str> = report
            .routers
            .iter()
            .filter(|r| r.collapsed)
            .map(|r| r.router.as_str())
            .collect();
        println!(
            "\nrouting: {} routers, {} collapsed{}; overlap between profiles on the same question {:.3}; signatures for {} countries",
            report.routers.len(),
            collapsed.len(),
            if collapsed.is_empty() { String::new() } else { format!(" ({})", collapsed.join(", ")) },
            report.overlap,
            report.signatures.len()
        );
    }
    if let Some(path) = &a.heldout {
        let clusters = match &a.clusters {
            Some(p) => ClusterMap::from_csv(p)?,
            None => ClusterMap::embedded()?,
        };
        let held_items = read_items(path, a.max_items)?;
        let held = evaluate(
            &evaluator,
            &held_items,
            EvalOptions { routing: false, ..opts },
            "held-out profiles",
        )?;
        let report = heldout::compare(&seen.scored, &held.scored, &clusters);
        let table = heldout::markdown(&report);
        write(&out, "heldout", &serde_json::to_string_pretty(&report)?, &table)?;
        println!("\nseen vs held-out profiles per cultural cluster:\n{table}");
        if !report.unmapped_countries.is_empty() {
            eprintln!(
                "warning: no cluster for {} (left out of the table)",
                report.unmapped_countries.join(", ")
            );
        }
    }
    eprintln!(
        "wrote eval.json / eval.md{} to {}",
        if seen.routing.is_some() {
            ", routing.json / routing.md"
        } else {
            ""
        },
        out.display()
    );
    Ok(())
}

fn evaluate(
    evaluator: &Evaluator,
    items: &[ChoiceItem],
    opts: EvalOptions<'_>,
    what: &str,
) -> anyhow::Result<Evaluation> {
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ETA {eta}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    let result = evaluator.evaluate(items, opts, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    if let Some((id, why)) = result.skipped.first() {
        eprintln!("warning: {what}: skipped {} of {} items that cannot be scored (first: item {id}: {why}); --strict refuses them instead", result.skipped.len(), items.len());
    }
    Ok(result)
}

fn write(dir: &Path, stem: &str, json: &str, md: &str) -> anyhow::Result<()> {
    for (ext, text) in [("json", json), ("md", md)] {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
