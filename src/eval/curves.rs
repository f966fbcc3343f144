//! Learning curves: one metric of every snapshot of each run (`RUN/curve/STEP/eval.json`, as
//! `scripts/experiment.sh` writes them from `cuma train --snapshot-every`) against training steps,
//! drawn as a PNG with the count baselines as horizontal reference lines.

use crate::{Error, Result};
use std::path::Path;

/// One run's curve: (step, metric) in step order.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// `metric` from an `eval.json` (`None` when it is absent or null).
pub fn metric_of(eval_json: &Path, metric: &str) -> Result<Option<f64>> {
    let text = std::fs::read_to_string(eval_json).map_err(crate::error::io(eval_json))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: eval_json.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(v.get(metric).and_then(serde_json::Value::as_f64))
}

/// The curve of `run`: every `curve/<step>/eval.json` under it whose directory name is a step.
pub fn read_run(run: &Path, name: &str, metric: &str) -> Result<Curve> {
    let dir = run.join("curve");
    let entries = std::fs::read_dir(&dir).map_err(crate::error::io(&dir))?;
    let mut points = Vec::new();
    for entry in entries {
        let entry = entry.map_err(crate::error::io(&dir))?;
        let Some(step) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let eval = entry.path().join("eval.json");
        if let Some(value) = eval.is_file().then(|| metric_of(&eval, metric)).transpose()?.flatten() {
            points.push((step as f64, value));
        }
    }
    if points.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no snapshot evaluation with `{metric}` (expected curve/<step>/eval.json)",
            dir.display()
        )));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Curve {
        name: name.to_string(),
        points,
    })
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing the curves: {e}"))
}

/// Draws `curves` (one colour each, points joined) and `references` (name, value: dashed-looking
/// grey lines across the plot) of `metric` into a PNG at `out`.
pub fn draw(curves: &[Curve], references: &[(String, f64)], metric: &str, font: &Path, out: &Path) -> Result<()> {
    use plotters::prelude::*;
    super::topology::use_font(font)?;
    let xs = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0));
    let ys = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .chain(references.iter().map(|r| r.1));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| (l.min(y), h.max(y)));
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Err(Error::Invalid("nothing to draw".into()));
    }
    let pad = ((y_hi - y_lo) * 0.08).max(1e-3);
    let x_hi = if x_hi > x_lo { x_hi } else { x_lo + 1.0 };
    let root = BitMapBackend::new(out, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{metric} against training steps"), ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, y_lo - pad..y_hi + pad)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(metric)
        .draw()
        .map_err(plot_err)?;
    const COLOURS: [(u8, u8, u8); 6] = [
        (31, 119, 180),
        (214, 39, 40),
        (44, 160, 44),
        (148, 103, 189),
        (255, 127, 14),
        (23, 190, 207),
    ];
    for (i, curve) in curves.iter().enumerate() {
        let (r, g, b) = COLOURS[i % COLOURS.len()];
        let colour = RGBColor(r, g, b);
        chart
            .draw_series(std::iter::once(PathElement::new(
                curve.points.clone(),
                colour.stroke_width(3),
            )))
            .map_err(plot_err)?
            .label(curve.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3)));
        chart
            .draw_series(curve.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(plot_err)?;
    }
    for (i, (name, value)) in references.iter().enumerate() {
        let grey = RGBColor(90, 90, 90).mix(0.5 + 0.5 * (i % 2) as f64);
        // Dashes: short segments across the plot.
        let width = x_hi - x_lo;
        let dashes = (0..40).map(|k| {
            let a = x_lo + width * k as f64 / 40.0;
            PathElement::new(vec![(a, *value), (a + width / 80.0, *value)], grey.stroke_width(2))
        });
        chart
            .draw_series(dashes)
            .map_err(plot_err)?
            .label(format!("{name} ({value:.4})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
    }
    super::topology::legend_and_save(&mut chart, &root, plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_curve_is_read_in_step_order_and_drawn() {
        let dir = std::env::temp_dir().join(format!("cuma-curves-{}", std::process::id()));
        for (step, value) in [("000500", 0.25), ("000250", 0.27), ("001000", 0.21)] {
            let d = dir.join("run/curve").join(step);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(
                d.join("eval.json"),
                format!("{{\"emd_cluster\": {value}, \"ece\": null}}"),
            )
            .expect("write");
        }
        std::fs::create_dir_all(dir.join("run/curve/notes")).expect("dir");
        let c = read_run(&dir.join("run"), "cuma", "emd_cluster").expect("curve");
        assert_eq!(c.points, vec![(250.0, 0.27), (500.0, 0.25), (1000.0, 0.21)]);
        assert!(
            read_run(&dir.join("run"), "cuma", "ece").is_err(),
            "null everywhere: no curve"
        );
        assert!(read_run(&dir.join("missing"), "x", "emd_cluster").is_err());
        let font = super::super::topology::find_font(None).expect("a system font (or set CUMA_FONT)");
        let png = dir.join("curve.png");
        draw(&[c], &[("pooled-table".into(), 0.14)], "emd_cluster", &font, &png).expect("draw");
        assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
