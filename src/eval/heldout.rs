//! The zero-shot protocol's table (the paper's Table 2): per cultural cluster, accuracy and
//! `emd_country` on profiles seen in training against profiles held out of it, and the macro gap.

use super::metrics::{summarize, Scored};
use crate::data::clusters::ClusterMap;
use std::collections::BTreeMap;

/// One cluster's row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterRow {
    pub cluster: String,
    pub seen_items: usize,
    pub heldout_items: usize,
    pub seen_accuracy: f64,
    pub heldout_accuracy: f64,
    pub seen_emd: f64,
    pub heldout_emd: f64,
    /// `seen_accuracy - heldout_accuracy`.
    pub gap: f64,
}

/// The table and its macro averages (each cluster with items on both sides counts once).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldoutReport {
    pub clusters: Vec<ClusterRow>,
    pub macro_seen_accuracy: f64,
    pub macro_heldout_accuracy: f64,
    pub macro_gap: f64,
    /// Countries no cluster is known for (left out of the table).
    pub unmapped_countries: Vec<String>,
}

/// Compares `seen` (test items of profiles in training) with `heldout`, cluster by cluster;
/// items are assigned by their `group` (the country).
pub fn compare(seen: &[Scored], heldout: &[Scored], clusters: &ClusterMap) -> HeldoutReport {
    let mut unmapped = std::collections::BTreeSet::new();
    let mut split = |items: &[Scored]| -> BTreeMap<String, Vec<Scored>> {
        let mut by: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
        for s in items {
            match clusters.cluster_of(&s.group) {
                Some(c) => by.entry(c.to_string()).or_default().push(s.clone()),
                None => {
                    unmapped.insert(s.group.clone());
                }
            }
        }
        by
    };
    let (seen_by, held_by) = (split(seen), split(heldout));
    let rows: Vec<ClusterRow> = seen_by
        .iter()
        .filter_map(|(cluster, s)| {
            let h = held_by.get(cluster)?;
            let (a, b) = (summarize(s), summarize(h));
            Some(ClusterRow {
                cluster: cluster.clone(),
                seen_items: a.items,
                heldout_items: b.items,
                seen_accuracy: a.accuracy,
                heldout_accuracy: b.accuracy,
                seen_emd: a.emd_country,
                heldout_emd: b.emd_country,
                gap: a.accuracy - b.accuracy,
            })
        })
        .collect();
    let mean = |f: fn(&ClusterRow) -> f64| {
        if rows.is_empty() {
            0.0
        } else {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        }
    };
    HeldoutReport {
        macro_seen_accuracy: mean(|r| r.seen_accuracy),
        macro_heldout_accuracy: mean(|r| r.heldout_accuracy),
        macro_gap: mean(|r| r.gap),
        clusters: rows,
        unmapped_countries: unmapped.into_iter().collect(),
    }
}

/// The table as Markdown.
pub fn markdown(r: &HeldoutReport) -> String {
    let mut s = String::from("| cluster | seen items | held-out items | seen acc | held-out acc | gap | seen emd_country | held-out emd_country |\n|---|---|---|---|---|---|---|---|\n");
    for c in &r.clusters {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:+.4} | {:.4} | {:.4} |\n",
            c.cluster,
            c.seen_items,
            c.heldout_items,
            c.seen_accuracy,
            c.heldout_accuracy,
            c.gap,
            c.seen_emd,
            c.heldout_emd
        ));
    }
    s.push_str(&format!(
        "| **macro** | | | {:.4} | {:.4} | {:+.4} | | |\n",
        r.macro_seen_accuracy, r.macro_heldout_accuracy, r.macro_gap
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(country: &str, right: bool) -> Scored {
        Scored {
            question: "q".into(),
            group: country.into(),
            cluster: None,
            truth: usize::from(!right),
            probs: vec![0.8, 0.2],
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn per_cluster_gap_and_macro() {
        let clusters = ClusterMap::embedded().expect("map");
        // Chile (Latin America): seen 3/4, held out 1/4. Japan (Confucian): seen 1/2, held out 1/2.
        let seen = [
            scored("CHL", true),
            scored("CHL", true),
            scored("CHL", true),
            scored("CHL", false),
            scored("JPN", true),
            scored("JPN", false),
            scored("XXX", true),
        ];
        let held = [
            scored("CHL", true),
            scored("CHL", false),
            scored("CHL", false),
            scored("CHL", false),
            scored("JPN", false),
            scored("JPN", true),
        ];
        let r = compare(&seen, &held, &clusters);
        assert_eq!(r.clusters.len(), 2);
        let latin = r.clusters.iter().find(|c| c.cluster == "Latin America").expect("row");
        assert_eq!(
            (latin.seen_accuracy, latin.heldout_accuracy, latin.gap),
            (0.75, 0.25, 0.5)
        );
        assert!((r.macro_gap - 0.25).abs() < 1e-12);
        assert_eq!(r.unmapped_countries, vec!["XXX".to_string()]);
        assert!(markdown(&r).contains("| **macro** | | | 0.6250 | 0.3750 | +0.2500 |"));
    }
}
