//! The metrics of spec section 9, as plain functions over option distributions. Options are in
//! scale order; option j of n sits at j / (n - 1) on the normalised [0, 1] scale.

use std::collections::BTreeMap;

/// Index of the most likely option (ties: the lowest index).
pub fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

/// Wasserstein-1 distance between two distributions over the same n ordered options placed at
/// j / (n - 1): the area between their cumulative distributions.
pub fn emd(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (mut ca, mut cb, mut total) = (0.0, 0.0, 0.0);
    for j in 0..n - 1 {
        ca += a[j];
        cb += b[j];
        total += (ca - cb).abs();
    }
    total / (n - 1) as f64
}

/// The empirical distribution of `answers` over `n` options.
pub fn histogram(answers: impl IntoIterator<Item = usize>, n: usize) -> Vec<f64> {
    let mut h = vec![0.0; n];
    let mut count = 0.0;
    for a in answers {
        if a < n {
            h[a] += 1.0;
            count += 1.0;
        }
    }
    if count > 0.0 {
        h.iter_mut().for_each(|x| *x /= count);
    }
    h
}

/// Shannon entropy in nats.
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.ln()).sum::<f64>()
}

/// Macro-F1 over the classes that occur in the truth or the predictions (a class never
/// predicted, or never true, scores 0).
pub fn macro_f1(truth: &[usize], predicted: &[usize]) -> f64 {
    let mut classes: Vec<usize> = truth.iter().chain(predicted).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return 0.0;
    }
    let f1s: Vec<f64> = classes
        .iter()
        .map(|&c| {
            let tp = truth
                .iter()
                .zip(predicted)
                .filter(|(t, p)| **t == c && **p == c)
                .count() as f64;
            let fp = truth
                .iter()
                .zip(predicted)
                .filter(|(t, p)| **t != c && **p == c)
                .count() as f64;
            let fn_ = truth
                .iter()
                .zip(predicted)
                .filter(|(t, p)| **t == c && **p != c)
                .count() as f64;
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            }
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len() as f64
}

/// Routing overlap of two profiles on the same tokens: |S_a ∩ S_b| / k per (router, token),
/// averaged.
pub fn routing_overlap(a: &[Vec<usize>], b: &[Vec<usize>]) -> f64 {
    let pairs: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(x, _)| !x.is_empty())
        .map(|(x, y)| x.iter().filter(|e| y.contains(e)).count() as f64 / x.len() as f64)
        .collect();
    if pairs.is_empty() {
        0.0
    } else {
        pairs.iter().sum::<f64>() / pairs.len() as f64
    }
}

/// One evaluated item.
#[derive(Debug, Clone)]
pub struct Scored {
    pub question: String,
    /// Group (e.g. country) for `emd_country`.
    pub group: String,
    /// The group's cultural cluster, where one is known, for `emd_cluster`.
    pub cluster: Option<String>,
    pub truth: usize,
    /// Option probabilities.
    pub probs: Vec<f64>,
    /// Demographic attributes of who answered (attribute -> value), for subgroup spreads.
    pub attributes: BTreeMap<String, String>,
}

/// Subgroups with fewer items than this are left out of [`Spread`] (their accuracy is noise).
pub const MIN_SUBGROUP_ITEMS: usize = 20;

/// Cells (question x cluster, country x scale) with fewer items than this are left out of
/// `emd_cluster` and `emd_country_scale`: with 3 items a cell's histogram is mostly noise.
pub const MIN_CELL_ITEMS: usize = 10;

/// Confidence bins of the expected calibration error.
pub const CALIBRATION_BINS: usize = 10;

/// How far apart the accuracies of the subgroups of one attribute (e.g. every age band) lie.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Subgroups with at least [`MIN_SUBGROUP_ITEMS`] items.
    pub subgroups: usize,
    pub min_accuracy: f64,
    pub max_accuracy: f64,
    /// `max_accuracy - min_accuracy`.
    pub spread: f64,
    /// Population standard deviation of the subgroup accuracies.
    pub std: f64,
}

/// The headline numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub items: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub emd_argmax: f64,
    pub emd_prob: f64,
    pub emd_country: f64,
    /// The (question, country) cells `emd_country` averages over, whatever their size.
    pub emd_country_cells: usize,
    /// `emd_country` over (question, cultural cluster) cells of at least [`MIN_CELL_ITEMS`]
    /// items; `None` when no item has a cluster or no cell is large enough.
    pub emd_cluster: Option<f64>,
    pub emd_cluster_cells: usize,
    /// The EMD per (country, scale length) cell, the country's answers and the model's mean
    /// probabilities pooled over every question with that many options; cells of at least
    /// [`MIN_CELL_ITEMS`] items.
    pub emd_country_scale: Option<f64>,
    pub emd_country_scale_cells: usize,
    /// Expected calibration error of the most probable option: over [`CALIBRATION_BINS`]
    /// equal-width bins of its probability, the item-weighted mean of |accuracy - confidence|.
    pub ece: f64,
    pub entropy: f64,
    /// Accuracy per group (country).
    pub group_accuracy: BTreeMap<String, f64>,
    /// The mean of `group_accuracy` (each country counts once).
    pub mean_group_accuracy: f64,
    /// Per demographic attribute, the spread of its subgroups' accuracies.
    pub subgroup_spread: BTreeMap<String, Spread>,
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Computes every metric of spec section 9 over `scored`.
pub fn summarize(scored: &[Scored]) -> Summary {
    summarize_refs(&scored.iter().collect::<Vec<_>>())
}

/// [`summarize`] over borrowed items (a bootstrap resample lists some items several times).
pub fn summarize_refs(scored: &[&Scored]) -> Summary {
    let truth: Vec<usize> = scored.iter().map(|s| s.truth).collect();
    let predicted: Vec<usize> = scored.iter().map(|s| argmax(&s.probs)).collect();
    let accuracy = mean(
        &truth
            .iter()
            .zip(&predicted)
            .map(|(t, p)| f64::from(u8::from(t == p)))
            .collect::<Vec<_>>(),
    );
    let mut by_question: BTreeMap<&str, Vec<&Scored>> = BTreeMap::new();
    let mut by_group: BTreeMap<(&str, &str), Vec<&Scored>> = BTreeMap::new();
    let mut by_cluster: BTreeMap<(&str, &str), Vec<&Scored>> = BTreeMap::new();
    let mut by_scale: BTreeMap<(&str, usize), Vec<&Scored>> = BTreeMap::new();
    for &s in scored {
        by_question.entry(&s.question).or_default().push(s);
        by_group.entry((&s.question, &s.group)).or_default().push(s);
        if let Some(c) = &s.cluster {
            by_cluster.entry((&s.question, c)).or_default().push(s);
        }
        by_scale.entry((&s.group, s.probs.len())).or_default().push(s);
    }
    let (emd_cluster, emd_cluster_cells) = large_cell_emd(&by_cluster);
    let (emd_country_scale, emd_country_scale_cells) = large_cell_emd(&by_scale);
    let group_accuracy: BTreeMap<String, f64> = {
        let mut hits: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (s, p) in scored.iter().zip(&predicted) {
            let e = hits.entry(&s.group).or_default();
            e.0 += f64::from(u8::from(s.truth == *p));
            e.1 += 1.0;
        }
        hits.into_iter().map(|(g, (h, n))| (g.to_string(), h / n)).collect()
    };
    let mean_group_accuracy = mean(&group_accuracy.values().copied().collect::<Vec<_>>());
    let subgroup_spread = subgroup_spreads(scored, &predicted);
    Summary {
        subgroup_spread,
        group_accuracy,
        mean_group_accuracy,
        items: scored.len(),
        accuracy,
        macro_f1: macro_f1(&truth, &predicted),
        emd_argmax: mean(&by_question.values().map(|v| cell_emd(v, true)).collect::<Vec<_>>()),
        emd_prob: mean(&by_question.values().map(|v| cell_emd(v, false)).collect::<Vec<_>>()),
        emd_country: mean(&by_group.values().map(|v| cell_emd(v, false)).collect::<Vec<_>>()),
        emd_country_cells: by_group.len(),
        emd_cluster,
        emd_cluster_cells,
        emd_country_scale,
        emd_country_scale_cells,
        ece: expected_calibration_error(scored, &predicted),
        entropy: mean(&scored.iter().map(|s| entropy(&s.probs)).collect::<Vec<_>>()),
    }
}

/// The EMD between the answers in one cell of items and the model's prediction for it: its
/// mean option probabilities, or (`hard`) the histogram of its most probable options.
fn cell_emd(items: &[&Scored], hard: bool) -> f64 {
    let n = items.iter().map(|s| s.probs.len()).max().unwrap_or(0);
    let truth = histogram(items.iter().map(|s| s.truth), n);
    let model = if hard {
        histogram(items.iter().map(|s| argmax(&s.probs)), n)
    } else {
        let mut m = vec![0.0; n];
        for s in items {
            for (j, p) in s.probs.iter().enumerate() {
                m[j] += p / items.len() as f64;
            }
        }
        m
    };
    emd(&model, &truth)
}

/// The mean [`cell_emd`] over the cells of at least [`MIN_CELL_ITEMS`] items (`None` if there
/// are none), and how many there are.
fn large_cell_emd<K>(cells: &BTreeMap<K, Vec<&Scored>>) -> (Option<f64>, usize) {
    let emds: Vec<f64> = cells
        .values()
        .filter(|v| v.len() >= MIN_CELL_ITEMS)
        .map(|v| cell_emd(v, false))
        .collect();
    (if emds.is_empty() { None } else { Some(mean(&emds)) }, emds.len())
}

/// Expected calibration error of the top option (see [`Summary::ece`]).
fn expected_calibration_error(scored: &[&Scored], predicted: &[usize]) -> f64 {
    // Per bin: hits and summed confidence; |hits - confidence| / N is the bin's share of
    // (n_bin / N) |accuracy_bin - confidence_bin|.
    let mut bins = [(0.0f64, 0.0f64); CALIBRATION_BINS];
    for (s, &p) in scored.iter().zip(predicted) {
        let confidence = s.probs.get(p).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        let bin = ((confidence * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        bins[bin].0 += f64::from(u8::from(s.truth == p));
        bins[bin].1 += confidence;
    }
    if scored.is_empty() {
        return 0.0;
    }
    bins.iter()
        .map(|&(hits, conf)| (hits - conf).abs() / scored.len() as f64)
        .sum()
}

/// Accuracy per (attribute, value), then the spread per attribute over subgroups large enough.
fn subgroup_spreads(scored: &[&Scored], predicted: &[usize]) -> BTreeMap<String, Spread> {
    let mut hits: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for (s, p) in scored.iter().zip(predicted) {
        for (attr, value) in &s.attributes {
            let e = hits.entry((attr, value)).or_default();
            e.0 += usize::from(s.truth == *p);
            e.1 += 1;
        }
    }
    let mut by_attr: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ((attr, _), (h, n)) in hits {
        if n >= MIN_SUBGROUP_ITEMS {
            by_attr.entry(attr).or_default().push(h as f64 / n as f64);
        }
    }
    by_attr
        .into_iter()
        .filter(|(_, accs)| accs.len() >= 2)
        .map(|(attr, accs)| {
            let (lo, hi) = accs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                (lo.min(a), hi.max(a))
            });
            let m = mean(&accs);
            let std = (accs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / accs.len() as f64).sqrt();
            (
                attr.to_string(),
                Spread {
                    subgroups: accs.len(),
                    min_accuracy: lo,
                    max_accuracy: hi,
                    spread: hi - lo,
                    std,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emd_on_a_four_point_scale() {
        // All mass on the first vs the last option: the whole normalised scale apart.
        assert!((emd(&[1.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 1.0]) - 1.0).abs() < 1e-12);
        // One step of three: 1/3.
        assert!((emd(&[1.0, 0.0, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
        // Half the mass moved two steps: 0.5 * 2/3.
        assert!((emd(&[0.5, 0.0, 0.5, 0.0], &[0.5, 0.0, 0.0, 0.5]) - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(emd(&[0.25; 4], &[0.25; 4]), 0.0);
    }

    #[test]
    fn entropy_of_uniform_over_four_is_ln_4() {
        assert!((entropy(&[0.25; 4]) - 4f64.ln()).abs() < 1e-12);
        assert_eq!(entropy(&[1.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn macro_f1_with_a_missing_class() {
        // Class 2 is true once but never predicted: its F1 is 0.
        let truth = [0, 0, 1, 2];
        let pred = [0, 0, 1, 1];
        // F1(0) = 1, F1(1) = 2*1/(2+1+0) = 2/3, F1(2) = 0.
        assert!((macro_f1(&truth, &pred) - (1.0 + 2.0 / 3.0 + 0.0) / 3.0).abs() < 1e-12);
        assert_eq!(macro_f1(&[1, 1], &[1, 1]), 1.0);
    }

    #[test]
    fn overlap_of_identical_and_disjoint_expert_sets() {
        let a = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(routing_overlap(&a, &a), 1.0);
        assert_eq!(routing_overlap(&a, &[vec![4, 5], vec![6, 7]]), 0.0);
        assert_eq!(routing_overlap(&a, &[vec![1, 7], vec![3, 2]]), 0.75);
    }

    #[test]
    fn mean_collapse_shows_in_emd_country_not_in_emd_prob() {
        // Two countries answer opposite ends; a collapsed model predicts the pooled mix for both.
        let item = |q: &str, g: &str, truth: usize, probs: Vec<f64>| Scored {
            question: q.into(),
            group: g.into(),
            cluster: None,
            truth,
            probs,
            attributes: BTreeMap::new(),
        };
        let collapsed: Vec<Scored> = (0..10)
            .flat_map(|_| {
                [
                    item("q", "A", 0, vec![0.5, 0.0, 0.0, 0.5]),
                    item("q", "B", 3, vec![0.5, 0.0, 0.0, 0.5]),
                ]
            })
            .collect();
        let s = summarize(&collapsed);
        assert!(s.emd_prob < 1e-12, "pooled distributions match");
        assert!((s.emd_country - 0.5).abs() < 1e-12, "each country is half a scale off");
        assert!((s.entropy - 2f64.ln()).abs() < 1e-12);
        assert_eq!(s.accuracy, 0.5);
        // argmax of (0.5, 0, 0, 0.5) is option 0: country A always right, B always wrong.
        assert_eq!(s.group_accuracy["A"], 1.0);
        assert_eq!(s.group_accuracy["B"], 0.0);
        assert_eq!(s.mean_group_accuracy, 0.5);
    }

    #[test]
    fn subgroup_spread_per_attribute() {
        let item = |age: &str, right: bool| Scored {
            question: "q".into(),
            group: "X".into(),
            cluster: None,
            truth: usize::from(!right),
            probs: vec![0.9, 0.1],
            attributes: [
                ("age".to_string(), age.to_string()),
                ("gender".to_string(), "F".to_string()),
            ]
            .into(),
        };
        // Young: 30 items, 24 right (0.8); old: 20 items, 5 right (0.25); tiny: 3 items (left out).
        let mut all: Vec<Scored> = (0..30).map(|i| item("young", i < 24)).collect();
        all.extend((0..20).map(|i| item("old", i < 5)));
        all.extend((0..3).map(|_| item("tiny", true)));
        let s = summarize(&all);
        let age = &s.subgroup_spread["age"];
        assert_eq!(age.subgroups, 2);
        assert!((age.spread - 0.55).abs() < 1e-12 && (age.min_accuracy - 0.25).abs() < 1e-12);
        assert!((age.std - 0.275).abs() < 1e-12);
        // One gender value: no spread to report.
        assert!(!s.subgroup_spread.contains_key("gender"));
    }

    fn cell_item(question: &str, country: &str, cluster: Option<&str>, truth: usize, probs: Vec<f64>) -> Scored {
        Scored {
            question: question.into(),
            group: country.into(),
            cluster: cluster.map(str::to_string),
            truth,
            probs,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn large_cell_emds_skip_small_cells_and_pool_by_scale() {
        // Country A (cluster X): 10 answers to each of two 2-option questions, all option 0,
        // predicted (0.5, 0.5). Country B (cluster X): 3 answers to q1, option 1, predicted
        // (0, 1) exactly.
        let mut all = Vec::new();
        for q in ["q1", "q2"] {
            all.extend((0..10).map(|_| cell_item(q, "A", Some("X"), 0, vec![0.5, 0.5])));
        }
        all.extend((0..3).map(|_| cell_item("q1", "B", Some("X"), 1, vec![0.0, 1.0])));
        let s = summarize(&all);
        // Per (question, country): A/q1 0.5, A/q2 0.5, B/q1 0 -> 1/3; every cell counts.
        assert_eq!(s.emd_country_cells, 3);
        assert!((s.emd_country - 1.0 / 3.0).abs() < 1e-12);
        // Per (question, cluster): X/q1 has 13 items (truth 10/13 on option 0, model
        // mean 5/13 + 3/13 * 0 ... on option 0), X/q2 has 10 (0.5 off).
        assert_eq!(s.emd_cluster_cells, 2);
        let q1 = (10.0f64 / 13.0 - 5.0 / 13.0).abs();
        assert!((s.emd_cluster.expect("large cells") - (q1 + 0.5) / 2.0).abs() < 1e-12);
        // Per (country, 2 options): A pools 20 items (0.5 off); B's 3 items are too few.
        assert_eq!(s.emd_country_scale_cells, 1);
        assert!((s.emd_country_scale.expect("large cells") - 0.5).abs() < 1e-12);
        // Without clusters there is no emd_cluster.
        let unclustered: Vec<Scored> = all.iter().cloned().map(|s| Scored { cluster: None, ..s }).collect();
        assert_eq!(summarize(&unclustered).emd_cluster, None);
    }

    #[test]
    fn calibration_error_of_over_and_well_calibrated_models() {
        // Always 0.9 sure, right half the time: ECE 0.4. Right 9 times in 10 at 0.9: ECE 0.
        let over: Vec<Scored> = (0..10)
            .map(|i| cell_item("q", "A", None, usize::from(i % 2 == 1), vec![0.9, 0.1]))
            .collect();
        assert!((summarize(&over).ece - 0.4).abs() < 1e-12);
        let calibrated: Vec<Scored> = (0..10)
            .map(|i| cell_item("q", "A", None, usize::from(i == 0), vec![0.9, 0.1]))
            .collect();
        assert!(summarize(&calibrated).ece < 1e-12);
        // Two bins: 0.55 sure and right (gap 0.45), 0.95 sure and wrong (gap 0.95): mean 0.7.
        let two = [
            cell_item("q", "A", None, 0, vec![0.55, 0.45]),
            cell_item("q", "A", None, 1, vec![0.95, 0.05]),
        ];
        assert!((summarize(&two).ece - 0.7).abs() < 1e-12);
    }
}
