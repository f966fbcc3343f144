//! Count baselines: no model, only the training answers. The pooled table predicts each
//! question's training distribution for everyone (the best a model that ignores the profile can
//! do on `emd_prob`); the per-country table predicts the distribution of the item's own country
//! in training, shrunk towards the pooled one by a number of pseudo-counts. A trained method that
//! does not beat the per-country table has not learned what the profile says about the answer.

use crate::data::ChoiceItem;
use std::collections::BTreeMap;

/// Answer counts per question and per (question, country) over a set of answered items.
#[derive(Debug, Clone, Default)]
pub struct AnswerTable {
    pooled: BTreeMap<String, Vec<f64>>,
    by_country: BTreeMap<(String, String), Vec<f64>>,
}

/// Which table predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TableKind {
    /// The question's training distribution, for every respondent.
    Pooled,
    /// The item's country's training distribution, with `pseudo_counts` of the pooled one
    /// mixed in: `(counts + m * pooled) / (n + m)`. A country never seen on the question gets
    /// the pooled distribution.
    Country { pseudo_counts: f64 },
}

impl AnswerTable {
    /// Counts the answers of `items` (for example the training split); an item whose answer is
    /// not one of its options counts nowhere.
    pub fn count<'a>(items: impl IntoIterator<Item = &'a ChoiceItem>) -> Self {
        let mut t = Self::default();
        for item in items.into_iter().filter(|i| i.answer < i.options.len()) {
            let n = item.options.len();
            let add = |counts: &mut Vec<f64>| {
                if counts.len() < n {
                    counts.resize(n, 0.0);
                }
                counts[item.answer] += 1.0;
            };
            add(t.pooled.entry(item.question_id.clone()).or_default());
            add(t
                .by_country
                .entry((item.question_id.clone(), super::run::country_of(item)))
                .or_default());
        }
        t
    }

    /// The predicted option distribution for `item` (uniform when its question was never
    /// answered in the counted items).
    pub fn predict(&self, item: &ChoiceItem, kind: TableKind) -> Vec<f64> {
        let n = item.options.len();
        let normalised = |counts: &[f64]| -> Option<Vec<f64>> {
            let total: f64 = counts.iter().take(n).sum();
            (total > 0.0).then(|| (0..n).map(|j| counts.get(j).copied().unwrap_or(0.0) / total).collect())
        };
        let pooled = self
            .pooled
            .get(&item.question_id)
            .and_then(|c| normalised(c))
            .unwrap_or_else(|| vec![1.0 / n as f64; n]);
        let TableKind::Country { pseudo_counts } = kind else {
            return pooled;
        };
        let key = (item.question_id.clone(), super::run::country_of(item));
        let Some(counts) = self.by_country.get(&key) else {
            return pooled;
        };
        let total: f64 = counts.iter().take(n).sum::<f64>() + pseudo_counts;
        if total <= 0.0 {
            return pooled;
        }
        (0..n)
            .map(|j| (counts.get(j).copied().unwrap_or(0.0) + pseudo_counts * pooled[j]) / total)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(country: &str, answer: usize) -> ChoiceItem {
        ChoiceItem {
            id: format!("{country}/{answer}"),
            respondent: country.into(),
            question_id: "Q1".into(),
            profile: Default::default(),
            question: "q".into(),
            options: vec!["a".into(), "b".into()],
            answer,
            scale: None,
            groups: [("country".to_string(), country.to_string())].into(),
        }
    }

    #[test]
    fn pooled_country_and_shrunk_tables() {
        // A answers 0 three times; B answers 1 once.
        let train = [item("A", 0), item("A", 0), item("A", 0), item("B", 1)];
        let t = AnswerTable::count(&train);
        assert_eq!(t.predict(&item("B", 0), TableKind::Pooled), vec![0.75, 0.25]);
        let raw = TableKind::Country { pseudo_counts: 0.0 };
        assert_eq!(t.predict(&item("A", 1), raw), vec![1.0, 0.0]);
        assert_eq!(t.predict(&item("B", 0), raw), vec![0.0, 1.0]);
        // Two pseudo-counts of (0.75, 0.25) for B's one answer: (1.5, 0.5 + 1) / 3.
        let shrunk = t.predict(&item("B", 0), TableKind::Country { pseudo_counts: 2.0 });
        assert!((shrunk[0] - 0.5).abs() < 1e-12 && (shrunk[1] - 0.5).abs() < 1e-12);
        // An answer outside the options is not counted.
        let bad = ChoiceItem {
            answer: 5,
            ..item("A", 0)
        };
        let with_bad = AnswerTable::count([&train[0], &bad]);
        assert_eq!(with_bad.predict(&item("A", 0), TableKind::Pooled), vec![1.0, 0.0]);
        // An unseen country gets the pooled table; an unseen question the uniform one.
        assert_eq!(t.predict(&item("C", 0), raw), vec![0.75, 0.25]);
        let other = ChoiceItem {
            question_id: "Q2".into(),
            ..item("A", 0)
        };
        assert_eq!(t.predict(&other, raw), vec![0.5, 0.5]);
    }
}
