//! Train / test splits by respondent (one respondent's answers never sit on both sides), seeded.

use super::item::ChoiceItem;
use crate::sampling::Rng;
use std::collections::BTreeSet;

/// Splits `items` so that about one respondent in `ratio + 1` goes to the test side
/// (10 gives the 10:1 split). Deterministic for a seed.
pub fn by_respondent(items: Vec<ChoiceItem>, ratio: usize, seed: u64) -> (Vec<ChoiceItem>, Vec<ChoiceItem>) {
    by_key(items, |i| i.respondent.as_str(), ratio, seed)
}

/// [`by_respondent`] for any rows, `key` naming who each belongs to (for chat items:
/// [`super::Item::respondent`]).
pub fn by_key<T>(items: Vec<T>, key: impl Fn(&T) -> &str, ratio: usize, seed: u64) -> (Vec<T>, Vec<T>) {
    let respondents: BTreeSet<&str> = items.iter().map(&key).collect();
    let mut order: Vec<&str> = respondents.into_iter().collect();
    Rng::new(seed).shuffle(&mut order);
    let n_test = order.len() / (ratio + 1);
    let test: BTreeSet<String> = order[..n_test].iter().map(|s| s.to_string()).collect();
    items.into_iter().partition(|i| !test.contains(key(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(r: usize, q: usize) -> ChoiceItem {
        ChoiceItem {
            id: format!("{r}/{q}"),
            respondent: r.to_string(),
            question_id: q.to_string(),
            profile: Default::default(),
            question: "q".into(),
            options: vec!["a".into(), "b".into()],
            answer: 0,
            scale: None,
            groups: Default::default(),
        }
    }

    #[test]
    fn respondents_stay_on_one_side_and_ratio_holds() {
        let items: Vec<_> = (0..110).flat_map(|r| (0..3).map(move |q| item(r, q))).collect();
        let (train, test) = by_respondent(items.clone(), 10, 42);
        let tr: BTreeSet<_> = train.iter().map(|i| i.respondent.clone()).collect();
        let te: BTreeSet<_> = test.iter().map(|i| i.respondent.clone()).collect();
        assert!(tr.is_disjoint(&te));
        assert_eq!(te.len(), 10);
        assert_eq!(train.len() + test.len(), 330);
        let (_, test2) = by_respondent(items, 10, 42);
        assert_eq!(test, test2, "same seed, same split");
    }
}

/// The unique-profile key of the zero-shot protocol (spec section 9): country x age group x
/// gender x education.
pub fn profile_key(p: &super::Profile) -> String {
    ["country", "age", "gender", "education"]
        .iter()
        .map(|a| p.get(*a).map_or("", String::as_str))
        .collect::<Vec<_>>()
        .join("|")
}

/// A split with held-out profiles.
#[derive(Debug, Clone)]
pub struct HeldoutSplit {
    pub train: Vec<ChoiceItem>,
    pub test: Vec<ChoiceItem>,
    /// Every item of the held-out profiles (never trained on).
    pub heldout: Vec<ChoiceItem>,
    /// Held-out profiles per cluster: (held out, all).
    pub per_cluster: std::collections::BTreeMap<String, (usize, usize)>,
    /// Items whose country has no cluster (kept out of the held-out draw).
    pub unclustered: usize,
}

/// Holds out `fraction` of the unique profiles inside each cultural cluster (at least one where a
/// cluster has two or more), then splits the rest by respondent.
pub fn with_heldout(
    items: Vec<ChoiceItem>,
    ratio: usize,
    seed: u64,
    clusters: &super::clusters::ClusterMap,
    fraction: f64,
) -> HeldoutSplit {
    use std::collections::{BTreeMap, BTreeSet};
    let cluster_of = |i: &ChoiceItem| -> Option<String> {
        let country = i.groups.get("country").or_else(|| i.profile.get("country"))?;
        clusters
            .cluster_of(country)
            .or_else(|| clusters.cluster_of(i.profile.get("country")?))
            .map(str::to_string)
    };
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unclustered = 0;
    for i in &items {
        match cluster_of(i) {
            Some(c) => {
                keys.entry(c).or_default().insert(profile_key(&i.profile));
            }
            None => unclustered += 1,
        }
    }
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut per_cluster = BTreeMap::new();
    for (c, ks) in &keys {
        let mut ks: Vec<&String> = ks.iter().collect();
        let salt = c
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Rng::new(seed ^ salt).shuffle(&mut ks);
        let mut n = (fraction * ks.len() as f64).round() as usize;
        if n == 0 && fraction > 0.0 && ks.len() >= 2 {
            n = 1;
        }
        held.extend(ks[..n].iter().map(|k| (*k).clone()));
        per_cluster.insert(c.clone(), (n, ks.len()));
    }
    let (heldout, rest): (Vec<ChoiceItem>, Vec<ChoiceItem>) =
        items.into_iter().partition(|i| held.contains(&profile_key(&i.profile)));
    let (train, test) = by_respondent(rest, ratio, seed);
    HeldoutSplit {
        train,
        test,
        heldout,
        per_cluster,
        unclustered,
    }
}
