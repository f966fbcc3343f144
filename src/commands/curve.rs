//! `cuma curve`: learning curves of evaluated snapshots as a PNG.

use crate::cli::CurveArgs;
use anyhow::Context;
use cuma::eval::curves::{draw, metric_of, read_run};
use cuma::eval::topology::find_font;
use std::path::Path;

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map_or(dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

pub fn run(a: &CurveArgs) -> anyhow::Result<()> {
    let curves = a
        .runs
        .iter()
        .map(|r| read_run(r, &name_of(r), &a.metric).with_context(|| format!("reading the curve of {}", r.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut references = Vec::new();
    for b in &a.baseline {
        let eval = b.join("eval.json");
        match metric_of(&eval, &a.metric)? {
            Some(v) => references.push((name_of(b), v)),
            None => anyhow::bail!("{}: no `{}`", eval.display(), a.metric),
        }
    }
    let font = find_font(a.font.as_deref())?;
    draw(&curves, &references, &a.metric, &font, &a.out)?;
    for c in &curves {
        let (first, last) = (c.points[0], c.points[c.points.len() - 1]);
        println!(
            "{}: {} {:.4} at step {} -> {:.4} at step {} ({} snapshots)",
            c.name,
            a.metric,
            first.1,
            first.0,
            last.1,
            last.0,
            c.points.len()
        );
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
