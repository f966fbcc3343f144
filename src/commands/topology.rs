//! `cuma topology`: the countries' routing signatures in 2-D, as a PNG.

use crate::cli::{SignatureKind, TopologyArgs};
use anyhow::Context;
use cuma::data::clusters::ClusterMap;
use cuma::eval::topology::{draw, find_font, project, usable_perplexity, Point, Projection};

pub fn run(a: &TopologyArgs) -> anyhow::Result<()> {
    let path = if a.run.is_dir() {
        a.run.join("routing.json")
    } else {
        a.run.clone()
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run `cuma eval --routing` on the run first)",
            path.display()
        )
    })?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let experts = report["experts"].as_u64().context("routing.json has no `experts`")? as usize;
    let signatures: std::collections::BTreeMap<String, Vec<f64>> = serde_json::from_value(report["signatures"].clone())
        .with_context(|| format!("{}: `signatures` must map countries to numbers", path.display()))?;
    if signatures.len() < 3 {
        anyhow::bail!(
            "{}: {} country signatures; a topology needs at least 3",
            path.display(),
            signatures.len()
        );
    }
    let clusters = match &a.clusters {
        Some(p) => ClusterMap::from_csv(p)?,
        None => ClusterMap::embedded()?,
    };
    let vectors: Vec<Vec<f64>> = signatures
        .values()
        .map(|v| match a.signature {
            SignatureKind::Routers => v.clone(),
            SignatureKind::Mean => {
                let routers = (v.len() / experts.max(1)).max(1) as f64;
                (0..experts)
                    .map(|e| v.iter().skip(e).step_by(experts).sum::<f64>() / routers)
                    .collect()
            }
        })
        .collect();
    let projection = if a.pca {
        Projection::Pca
    } else {
        Projection::Tsne {
            perplexity: a.perplexity,
            seed: a.seed,
        }
    };
    let xy = project(&vectors, projection);
    let points: Vec<Point> = signatures
        .keys()
        .zip(xy)
        .map(|(country, xy)| Point {
            label: country.clone(),
            cluster: clusters.cluster_of(country).unwrap_or("unmapped").to_string(),
            xy,
        })
        .collect();
    let method = if a.pca {
        "PCA".to_string()
    } else {
        format!("t-SNE, perplexity {:.0}", usable_perplexity(a.perplexity, points.len()))
    };
    let signature = match a.signature {
        SignatureKind::Routers => "per-router mean gates",
        SignatureKind::Mean => "mean gate vector over routers",
    };
    let title = format!("Routing topology of {} countries ({method}; {signature})", points.len());
    let font = find_font(a.font.as_deref())?;
    draw(&points, &title, &font, &a.out)?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
