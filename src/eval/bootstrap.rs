//! Uncertainty of the metrics from `predictions.jsonl`: a bootstrap over respondents (each
//! resample draws respondents with replacement and keeps all of their items, so answers of one
//! person stay together), intervals for every run, and paired differences against a reference
//! run on the same resamples of the same items.
//!
//! The intervals are basic (pivotal) bootstrap intervals, `[2 t - q97.5, 2 t - q2.5]` around the
//! estimate `t`, not percentile ones: an EMD between a cell's answers and a prediction is biased
//! upwards by sampling noise, and a resample, which repeats some respondents and drops others,
//! has fewer distinct answers per cell and so more of that bias. On the WVS test split the
//! percentile interval of `emd_country` lies wholly above the estimate (0.2844 against
//! [0.3035, 0.3315] for the pooled table); the pivotal interval subtracts the shift instead.

use super::heldout;
use super::metrics::{summarize_refs, Scored, Summary};
use crate::data::clusters::ClusterMap;
use crate::sampling::Rng;
use crate::{Error, Result};
use std::collections::BTreeMap;

/// Resamples unless told otherwise.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// A metric read off a summary (`None` where it is undefined).
pub type Metric = fn(&Summary) -> Option<f64>;

/// The metrics the comparison reports, by name.
pub const METRICS: [(&str, Metric); 7] = [
    ("accuracy", |s| Some(s.accuracy)),
    ("macro_f1", |s| Some(s.macro_f1)),
    ("emd_prob", |s| Some(s.emd_prob)),
    ("emd_country", |s| Some(s.emd_country)),
    ("emd_cluster", |s| s.emd_cluster),
    ("emd_country_scale", |s| s.emd_country_scale),
    ("ece", |s| Some(s.ece)),
];

/// A point estimate on all items and its 95 % basic bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// A run's metric minus the reference's on the same resamples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Difference {
    pub interval: Interval,
    /// Two-sided bootstrap p-value, the smallest level at which the basic interval excludes 0:
    /// twice the smaller share of resampled differences on either side of twice the estimate
    /// (at most 1; below `2 / resamples` it shows as 0).
    pub p_value: f64,
}

/// One evaluated run: its test predictions and, where it has them, those on the held-out
/// profiles.
pub struct RunPredictions {
    pub name: String,
    pub test: Vec<super::run::Prediction>,
    pub heldout: Option<Vec<super::run::Prediction>>,
}

/// One run's row of the comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunReport {
    pub name: String,
    pub items: usize,
    pub metrics: BTreeMap<String, Interval>,
    /// Against the reference run (absent for the reference itself).
    pub versus_reference: BTreeMap<String, Difference>,
    /// The zero-shot gap (seen minus held-out accuracy, the macro over cultural clusters of
    /// `heldout.json`; positive: held-out profiles do worse) and its difference from the
    /// reference's, when both have held-out predictions.
    pub zero_shot_gap: Option<Interval>,
    pub zero_shot_gap_versus_reference: Option<Difference>,
}

/// The comparison of several runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub reference: String,
    pub resamples: usize,
    pub seed: u64,
    /// Test items every run scored (the others are left out so the pairs match).
    pub common_items: usize,
    pub dropped_items: usize,
    pub runs: Vec<RunReport>,
}

/// The item lists of one resample: item indices, drawn by respondent with replacement.
fn resample_plans(respondents: &[String], resamples: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut by_respondent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in respondents.iter().enumerate() {
        by_respondent.entry(r).or_default().push(i);
    }
    let groups: Vec<&Vec<usize>> = by_respondent.values().collect();
    (0..resamples)
        .map(|_| {
            let mut plan = Vec::with_capacity(respondents.len());
            for _ in 0..groups.len() {
                plan.extend_from_slice(groups[rng.below(groups.len())]);
            }
            plan
        })
        .collect()
}

/// The items of one resample plan.
fn refs<'a>(items: &'a [Scored], plan: &[usize]) -> Vec<&'a Scored> {
    plan.iter().map(|&i| &items[i]).collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(estimate: f64, mut draws: Vec<f64>) -> Interval {
    draws.retain(|x| x.is_finite());
    draws.sort_by(f64::total_cmp);
    Interval {
        estimate,
        low: 2.0 * estimate - percentile(&draws, 0.975),
        high: 2.0 * estimate - percentile(&draws, 0.025),
    }
}

fn difference(estimate: f64, draws: Vec<f64>) -> Difference {
    let finite: Vec<f64> = draws.iter().copied().filter(|x| x.is_finite()).collect();
    let n = finite.len().max(1) as f64;
    // The basic interval [2t - q(1 - a/2), 2t - q(a/2)] excludes 0 once fewer than a/2 of the
    // draws lie beyond 2t on one side.
    let pivot = 2.0 * estimate;
    let below = finite.iter().filter(|&&d| d <= pivot).count() as f64 / n;
    let above = finite.iter().filter(|&&d| d >= pivot).count() as f64 / n;
    Difference {
        interval: interval(estimate, finite),
        p_value: (2.0 * below.min(above)).min(1.0),
    }
}

/// Items in `order` of `items` (by id), or the ids that are missing.
fn align(ids: &[String], items: &BTreeMap<&str, usize>) -> Option<Vec<usize>> {
    ids.iter().map(|id| items.get(id.as_str()).copied()).collect()
}

/// Compares `runs` (the first `reference` is the baseline of the paired differences) on the
/// test items all of them scored, with `resamples` bootstrap resamples.
pub fn compare(
    runs: &[RunPredictions],
    reference: usize,
    resamples: usize,
    seed: u64,
    clusters: &ClusterMap,
) -> Result<Comparison> {
    let Some(RunPredictions {
        name: ref_name,
        test: ref_test,
        ..
    }) = runs.get(reference)
    else {
        return Err(Error::Invalid(format!("no run {reference} among {}", runs.len())));
    };
    if resamples == 0 {
        return Err(Error::Invalid("resamples must be at least 1".into()));
    }
    // The items every run scored, in the reference's order.
    let indices: Vec<BTreeMap<&str, usize>> = runs
        .iter()
        .map(|r| r.test.iter().enumerate().map(|(i, x)| (x.id.as_str(), i)).collect())
        .collect();
    let common: Vec<String> = ref_test
        .iter()
        .filter(|p| indices.iter().all(|m| m.contains_key(p.id.as_str())))
        .map(|p| p.id.clone())
        .collect();
    if common.is_empty() {
        return Err(Error::Invalid("the runs have no test item in common".into()));
    }
    let items_of = |preds: &[super::run::Prediction], order: &[usize]| -> Vec<Scored> {
        order.iter().map(|&i| preds[i].scored(Some(clusters))).collect()
    };
    let tests: Vec<Vec<Scored>> = runs
        .iter()
        .zip(&indices)
        .map(|(r, m)| items_of(&r.test, &align(&common, m).unwrap_or_default()))
        .collect();
    let respondents: Vec<String> = common
        .iter()
        .map(|id| ref_test[indices[reference][id.as_str()]].respondent.clone())
        .collect();
    let mut rng = Rng::new(seed);
    let plans = resample_plans(&respondents, resamples, &mut rng);
    // Held-out: the items every run with held-out predictions scored.
    let held_sets: Vec<Option<std::collections::BTreeSet<&str>>> = runs
        .iter()
        .map(|r| r.heldout.as_ref().map(|h| h.iter().map(|p| p.id.as_str()).collect()))
        .collect();
    let held_ids: Option<Vec<String>> = runs[reference].heldout.as_ref().map(|h| {
        h.iter()
            .filter(|p| held_sets.iter().flatten().all(|set| set.contains(p.id.as_str())))
            .map(|p| p.id.clone())
            .collect()
    });
    let helds: Vec<Option<Vec<Scored>>> = runs
        .iter()
        .map(|r| {
            let (h, ids) = (r.heldout.as_ref()?, held_ids.as_ref()?);
            let m: BTreeMap<&str, usize> = h.iter().enumerate().map(|(i, x)| (x.id.as_str(), i)).collect();
            Some(items_of(h, &align(ids, &m)?))
        })
        .collect();
    let held_plans: Option<Vec<Vec<usize>>> = match (&runs[reference].heldout, &held_ids) {
        (Some(h), Some(ids)) if !ids.is_empty() => {
            let m: BTreeMap<&str, &str> = h.iter().map(|x| (x.id.as_str(), x.respondent.as_str())).collect();
            let who: Vec<String> = ids.iter().map(|id| m[id.as_str()].to_string()).collect();
            Some(resample_plans(&who, resamples, &mut rng))
        }
        _ => None,
    };
    let gap = |test: &[&Scored], held: &[&Scored]| -> f64 {
        let own = |v: &[&Scored]| v.iter().map(|s| (*s).clone()).collect::<Vec<_>>();
        heldout::compare(&own(test), &own(held), clusters).macro_gap
    };

    // Every run's metrics on every resample (and on all items).
    let all: Vec<usize> = (0..common.len()).collect();
    let pick = |items: &[Scored], plan: &[usize]| summarize_refs(&refs(items, plan));
    let full: Vec<Summary> = tests.iter().map(|t| pick(t, &all)).collect();
    let draws: Vec<Vec<Summary>> = tests
        .iter()
        .map(|t| plans.iter().map(|plan| pick(t, plan)).collect())
        .collect();
    let gaps: Vec<Option<(f64, Vec<f64>)>> = tests
        .iter()
        .zip(&helds)
        .map(|(t, h)| {
            let (h, hp) = (h.as_ref()?, held_plans.as_ref()?);
            let whole = gap(&refs(t, &all), &refs(h, &(0..h.len()).collect::<Vec<_>>()));
            let d = plans
                .iter()
                .zip(hp)
                .map(|(p, q)| gap(&refs(t, p), &refs(h, q)))
                .collect();
            Some((whole, d))
        })
        .collect();

    let metric_draws =
        |run: usize, f: Metric| -> Vec<f64> { draws[run].iter().map(|s| f(s).unwrap_or(f64::NAN)).collect() };
    let reports = runs
        .iter()
        .enumerate()
        .map(|(r, run)| {
            let mut metrics = BTreeMap::new();
            let mut versus = BTreeMap::new();
            for (metric, f) in METRICS {
                let Some(estimate) = f(&full[r]) else { continue };
                metrics.insert(metric.to_string(), interval(estimate, metric_draws(r, f)));
                if r != reference {
                    if let Some(base) = f(&full[reference]) {
                        let d: Vec<f64> = metric_draws(r, f)
                            .iter()
                            .zip(metric_draws(reference, f))
                            .map(|(a, b)| a - b)
                            .collect();
                        versus.insert(metric.to_string(), difference(estimate - base, d));
                    }
                }
            }
            let zero_shot_gap = gaps[r].as_ref().map(|(w, d)| interval(*w, d.clone()));
            let zero_shot_gap_versus_reference = match (&gaps[r], &gaps[reference]) {
                (Some((w, d)), Some((bw, bd))) if r != reference => {
                    Some(difference(w - bw, d.iter().zip(bd).map(|(a, b)| a - b).collect()))
                }
                _ => None,
            };
            RunReport {
                name: run.name.clone(),
                items: common.len(),
                metrics,
                versus_reference: versus,
                zero_shot_gap,
                zero_shot_gap_versus_reference,
            }
        })
        .collect();
    Ok(Comparison {
        reference: ref_name.clone(),
        resamples,
        seed,
        common_items: common.len(),
        dropped_items: runs.iter().map(|r| r.test.len()).max().unwrap_or(0) - common.len(),
        runs: reports,
    })
}

/// The comparison as Markdown: one table of intervals, one of paired differences.
pub fn markdown(c: &Comparison) -> String {
    let shown: Vec<&str> = METRICS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| c.runs.iter().any(|r| r.metrics.contains_key(*m)))
        .collect();
    let has_gap = c.runs.iter().any(|r| r.zero_shot_gap.is_some());
    let cell = |i: Option<&Interval>| {
        i.map_or("n/a".into(), |i| {
            format!("{:.4} [{:.4}, {:.4}]", i.estimate, i.low, i.high)
        })
    };
    let mut s = format!(
        "{} test items, {} bootstrap resamples over respondents (seed {}); 95 % basic bootstrap intervals. An EMD's estimate includes the test cells' own sampling noise (it is biased upwards); its interval targets the noise-free value and may lie below the estimate.\n\n| run | {}{} |\n|---|{}{}\n",
        c.common_items,
        c.resamples,
        c.seed,
        shown.join(" | "),
        if has_gap { " | zero-shot gap" } else { "" },
        "---|".repeat(shown.len()),
        if has_gap { "---|" } else { "" },
    );
    for r in &c.runs {
        let cells: Vec<String> = shown.iter().map(|m| cell(r.metrics.get(*m))).collect();
        s.push_str(&format!("| {} | {}", r.name, cells.join(" | ")));
        if has_gap {
            s.push_str(&format!(" | {}", cell(r.zero_shot_gap.as_ref())));
        }
        s.push_str(" |\n");
    }
    let diff = |d: Option<&Difference>| {
        d.map_or("n/a".into(), |d| {
            format!(
                "{:+.4} [{:+.4}, {:+.4}] p={:.3}",
                d.interval.estimate, d.interval.low, d.interval.high, d.p_value
            )
        })
    };
    s.push_str(&format!(
        "\nPaired differences against {} (run minus reference, same resamples):\n\n| run | {}{} |\n|---|{}{}\n",
        c.reference,
        shown.join(" | "),
        if has_gap { " | zero-shot gap" } else { "" },
        "---|".repeat(shown.len()),
        if has_gap { "---|" } else { "" },
    ));
    for r in c.runs.iter().filter(|r| r.name != c.reference) {
        let cells: Vec<String> = shown.iter().map(|m| diff(r.versus_reference.get(*m))).collect();
        s.push_str(&format!("| {} | {}", r.name, cells.join(" | ")));
        if has_gap {
            s.push_str(&format!(" | {}", diff(r.zero_shot_gap_versus_reference.as_ref())));
        }
        s.push_str(" |\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::run::Prediction;

    fn prediction(id: usize, respondent: usize, answer: usize, probs: Vec<f64>) -> Prediction {
        let predicted = crate::eval::metrics::argmax(&probs);
        Prediction {
            id: id.to_string(),
            respondent: respondent.to_string(),
            question: format!("Q{}", id % 3),
            groups: [(
                "country".to_string(),
                if respondent % 2 == 0 { "DEU" } else { "THA" }.to_string(),
            )]
            .into(),
            probs,
            answer,
            predicted,
        }
    }

    #[test]
    fn intervals_are_pivoted_around_the_estimate() {
        // Draws all above the estimate (an upward-biased statistic): the interval is reflected
        // through it. Percentiles of (0.35, 0.4, 0.45): 0.3525 and 0.4475.
        let i = interval(0.3, vec![0.45, 0.35, 0.4, f64::NAN]);
        assert!((i.low - (0.6 - 0.4475)).abs() < 1e-12);
        assert!((i.high - (0.6 - 0.3525)).abs() < 1e-12);
        // A difference whose draws straddle twice the estimate is not significant.
        assert_eq!(difference(0.1, vec![0.1, 0.3]).p_value, 1.0);
    }

    #[test]
    fn resamples_keep_respondents_together() {
        let who: Vec<String> = ["a", "a", "b", "c", "c", "c"].iter().map(|s| s.to_string()).collect();
        let plans = resample_plans(&who, 50, &mut Rng::new(1));
        for plan in &plans {
            // Respondent c's three items come as a block.
            for (k, &i) in plan.iter().enumerate() {
                if i == 3 {
                    assert_eq!(&plan[k..k + 3], &[3, 4, 5]);
                }
            }
        }
        assert!(plans.iter().any(|p| p != &plans[0]), "resamples differ");
    }

    #[test]
    fn a_better_run_wins_the_paired_comparison_and_ties_do_not() {
        let clusters = ClusterMap::embedded().expect("cluster map");
        // 200 items of 100 respondents; the good run puts 0.9 on the answer, the weak one 0.4.
        let make = |right: f64| -> Vec<Prediction> {
            (0..200)
                .map(|i| {
                    let answer = i % 2;
                    let mut probs = [1.0 - right, 1.0 - right];
                    probs[answer] = right;
                    let sum: f64 = probs.iter().sum();
                    prediction(i, i / 2, answer, probs.iter().map(|p| p / sum).collect())
                })
                .collect()
        };
        let run = |name: &str, test| RunPredictions {
            name: name.into(),
            test,
            heldout: None,
        };
        let runs = [run("weak", make(0.4)), run("good", make(0.9)), run("same", make(0.4))];
        let c = compare(&runs, 0, 200, 7, &clusters).expect("comparison");
        assert_eq!(c.common_items, 200);
        let good = &c.runs[1].versus_reference["accuracy"];
        assert!(
            (good.interval.estimate - 1.0).abs() < 1e-12,
            "weak is always wrong, good always right"
        );
        assert!(good.p_value <= 2.0 / 200.0 + 1e-12);
        let same = &c.runs[2].versus_reference["emd_prob"];
        assert_eq!(same.interval.estimate, 0.0);
        assert_eq!(same.p_value, 1.0);
        let acc = &c.runs[1].metrics["accuracy"];
        assert!(acc.low <= acc.estimate && acc.estimate <= acc.high);
        assert!(markdown(&c).contains("| good |"));
    }

    #[test]
    fn runs_are_compared_on_their_common_items_only() {
        let clusters = ClusterMap::embedded().expect("cluster map");
        let all: Vec<Prediction> = (0..10).map(|i| prediction(i, i, 0, vec![0.6, 0.4])).collect();
        let fewer = all[..7].to_vec();
        let run = |name: &str, test| RunPredictions {
            name: name.into(),
            test,
            heldout: None,
        };
        let c = compare(&[run("a", all), run("b", fewer)], 0, 20, 0, &clusters).expect("comparison");
        assert_eq!((c.common_items, c.dropped_items), (7, 3));
        let none = compare(&[run("a", Vec::new())], 0, 20, 0, &clusters);
        assert!(none.is_err());
    }
}
