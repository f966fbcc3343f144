//! A synthetic "culturally sparse" benchmark with known answers: clusters of countries that prefer
//! opposite ends of every scale, so a model that collapses to the mean is visibly wrong per
//! country while looking fine on the pooled distribution.

use super::item::{ChoiceItem, Scale};
use super::profile::Profile;
use crate::sampling::Rng;
use serde::Serialize;
use std::collections::BTreeMap;

/// Sizes of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    pub clusters: usize,
    pub countries_per_cluster: usize,
    pub questions: usize,
    pub options: usize,
    /// Respondents per unique profile (country x age group x gender).
    pub respondents_per_profile: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            clusters: 4,
            countries_per_cluster: 2,
            questions: 6,
            options: 4,
            respondents_per_profile: 3,
            seed: 0,
        }
    }
}

const AGES: [&str; 3] = ["18-34", "35-54", "55 and over"];
const GENDERS: [&str; 2] = ["Female", "Male"];

/// The ground truth written beside the items.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    /// Country -> cluster.
    pub clusters: BTreeMap<String, String>,
    /// question -> cluster -> distribution over options.
    pub per_cluster: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// question -> profile key (`country|age|gender`) -> distribution.
    pub per_profile: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

/// A distribution leaning towards option 0 with strength `tilt` in [0, 1); `flip` mirrors it.
fn leaning(n: usize, tilt: f64, flip: bool) -> Vec<f64> {
    let raw: Vec<f64> = (0..n).map(|j| tilt.powi(j as i32).max(1e-3)).collect();
    let z: f64 = raw.iter().sum();
    let mut p: Vec<f64> = raw.iter().map(|x| x / z).collect();
    if flip {
        p.reverse();
    }
    p
}

/// Cluster c prefers the low end of question q when c + q is even, the high end otherwise; older
/// respondents lean a little further the same way.
pub fn distribution(cluster: usize, question: usize, age: usize, n: usize) -> Vec<f64> {
    let tilt = 0.35 - 0.05 * age as f64;
    leaning(n, tilt, (cluster + question) % 2 == 1)
}

fn draw(p: &[f64], rng: &mut Rng) -> usize {
    let r = rng.next_f64();
    let mut acc = 0.0;
    for (j, &x) in p.iter().enumerate() {
        acc += x;
        if r < acc {
            return j;
        }
    }
    p.len() - 1
}

/// Generates the items and their truth.
pub fn generate(c: &SynthConfig) -> (Vec<ChoiceItem>, Truth) {
    let mut rng = Rng::new(c.seed);
    let mut items = Vec::new();
    let mut truth = Truth {
        clusters: BTreeMap::new(),
        per_cluster: BTreeMap::new(),
        per_profile: BTreeMap::new(),
    };
    let options: Vec<String> = (0..c.options).map(|j| format!("Level {}", j + 1)).collect();
    let mut respondent = 0usize;
    for k in 0..c.clusters {
        let cluster = format!("Cluster {}", k + 1);
        for q in 0..c.questions {
            truth
                .per_cluster
                .entry(format!("S{}", q + 1))
                .or_default()
                .insert(cluster.clone(), distribution(k, q, 1, c.options));
        }
        for i in 0..c.countries_per_cluster {
            let country = format!("Country {}{}", (b'A' + k as u8) as char, i + 1);
            truth.clusters.insert(country.clone(), cluster.clone());
            for (a, age) in AGES.iter().enumerate() {
                for gender in GENDERS {
                    let profile: Profile = [("country", country.as_str()), ("age", age), ("gender", gender)]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let key = format!("{country}|{age}|{gender}");
                    for q in 0..c.questions {
                        truth
                            .per_profile
                            .entry(format!("S{}", q + 1))
                            .or_default()
                            .insert(key.clone(), distribution(k, q, a, c.options));
                    }
                    for _ in 0..c.respondents_per_profile {
                        respondent += 1;
                        for q in 0..c.questions {
                            let p = distribution(k, q, a, c.options);
                            let qid = format!("S{}", q + 1);
                            items.push(ChoiceItem {
                                id: format!("synth{respondent}/{qid}"),
                                respondent: format!("synth{respondent}"),
                                question_id: qid.clone(),
                                profile: profile.clone(),
                                question: format!("Statement {}: how strongly do you agree?", q + 1),
                                options: options.clone(),
                                answer: draw(&p, &mut rng),
                                scale: Some(Scale {
                                    min: 1.0,
                                    max: c.options as f64,
                                    ordinal: true,
                                }),
                                groups: [("country".to_string(), country.clone())].into_iter().collect(),
                            });
                        }
                    }
                }
            }
        }
    }
    (items, truth)
}

/// The country -> cluster map as `iso3,country,cluster` CSV (the synthetic name stands for both).
pub fn clusters_csv(truth: &Truth) -> String {
    let mut s = String::from("iso3,country,cluster\n");
    for (country, cluster) in &truth.clusters {
        s.push_str(&format!("{},{country},{cluster}\n", country.replace(' ', "_")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::{emd, histogram};

    #[test]
    fn clusters_prefer_opposite_ends_and_samples_follow_the_truth() {
        let cfg = SynthConfig {
            respondents_per_profile: 60,
            ..SynthConfig::default()
        };
        let (items, truth) = generate(&cfg);
        assert_eq!(items.len(), 4 * 2 * 3 * 2 * 60 * 6);
        assert!(items.iter().all(|i| i.validate().is_ok()));
        let a = &truth.per_cluster["S1"]["Cluster 1"];
        let b = &truth.per_cluster["S1"]["Cluster 2"];
        assert!(a[0] > 0.5 && b[3] > 0.5, "{a:?} {b:?}");
        assert!(emd(a, b) > 0.5, "the clusters sit far apart");
        // The empirical answers of cluster 1 on S1 follow its distribution.
        let answers = items
            .iter()
            .filter(|i| i.question_id == "S1" && truth.clusters[&i.groups["country"]] == "Cluster 1")
            .map(|i| i.answer);
        let h = histogram(answers, 4);
        assert!(emd(&h, a) < 0.05, "{h:?} vs {a:?}");
        // Same seed, same data.
        let (again, _) = generate(&cfg);
        assert_eq!(items, again);
    }

    #[test]
    fn the_pooled_distribution_hides_the_split() {
        let (_, truth) = generate(&SynthConfig::default());
        let d = &truth.per_cluster["S1"];
        let pooled: Vec<f64> = (0..4)
            .map(|j| d.values().map(|p| p[j]).sum::<f64>() / d.len() as f64)
            .collect();
        // Pooled mass is symmetric: a collapsed model matching it is far from every cluster.
        assert!((pooled[0] - pooled[3]).abs() < 1e-12);
        assert!(d.values().all(|p| emd(p, &pooled) > 0.25));
    }
}
