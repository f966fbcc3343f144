//! `cuma compare`: bootstrap intervals and paired differences over the predictions of several
//! evaluated runs.

use crate::cli::CompareArgs;
use anyhow::Context;
use cuma::data::clusters::ClusterMap;
use cuma::eval::bootstrap;
use cuma::eval::run::Prediction;
use std::path::{Path, PathBuf};

/// A run's test predictions file, and the held-out one beside it if there is one.
fn prediction_files(given: &Path) -> (PathBuf, Option<PathBuf>) {
    let test = if given.is_dir() {
        given.join("predictions.jsonl")
    } else {
        given.to_path_buf()
    };
    let held = test.with_file_name("heldout_predictions.jsonl");
    (test, held.is_file().then_some(held))
}

fn read(path: &Path) -> anyhow::Result<Vec<Prediction>> {
    let loaded = cuma::data::jsonl::read::<Prediction>(path, |p| {
        if p.probs.is_empty() || p.answer >= p.probs.len() {
            return Err(format!("answer {} outside its {} options", p.answer, p.probs.len()));
        }
        Ok(())
    })
    .with_context(|| format!("reading {}", path.display()))?;
    if loaded.skipped > 0 {
        eprintln!("warning: {}: {}", path.display(), loaded.summary());
    }
    Ok(loaded.rows)
}

pub fn run(a: &CompareArgs) -> anyhow::Result<()> {
    if !a.names.is_empty() && a.names.len() != a.runs.len() {
        anyhow::bail!("--names gives {} names for {} runs", a.names.len(), a.runs.len());
    }
    let mut runs = Vec::with_capacity(a.runs.len());
    for (i, given) in a.runs.iter().enumerate() {
        let (test, held) = prediction_files(given);
        let name = match a.names.get(i) {
            Some(n) => n.clone(),
            None => {
                let dir = if given.is_dir() {
                    given.as_path()
                } else {
                    given.parent().unwrap_or(given)
                };
                dir.file_name()
                    .map_or(given.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
        };
        let held = held.map(|h| read(&h)).transpose()?;
        runs.push(bootstrap::RunPredictions {
            name,
            test: read(&test)?,
            heldout: held,
        });
    }
    let reference = match &a.reference {
        None => 0,
        Some(r) => runs
            .iter()
            .position(|run| run.name == *r)
            .with_context(|| format!("--reference {r} is not one of the runs' names"))?,
    };
    let clusters = match &a.clusters {
        Some(p) => ClusterMap::from_csv(p)?,
        None => ClusterMap::embedded()?,
    };
    eprintln!("{} bootstrap resamples over respondents ...", a.resamples);
    let c = bootstrap::compare(&runs, reference, a.resamples, a.seed, &clusters)?;
    if c.dropped_items > 0 {
        eprintln!(
            "warning: {} test items are not in every run's predictions; the comparison uses the {} common ones",
            c.dropped_items, c.common_items
        );
    }
    let table = bootstrap::markdown(&c);
    print!("{table}");
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, text) in [
            ("compare.json", serde_json::to_string_pretty(&c)?),
            ("compare.md", table),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("wrote compare.json and compare.md to {}", dir.display());
    }
    Ok(())
}
