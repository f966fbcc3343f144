//! The few-shot baseline: before each question, answers of other respondents from the same
//! country, as earlier chat turns. Examples to the same question come first (they say most
//! about the country's answer distribution); other questions of the same country fill up.

use crate::data::ChoiceItem;
use crate::sampling::Rng;
use std::collections::HashMap;

/// Examples shown per question (the protocol).
pub const DEFAULT_SHOTS: usize = 3;

/// Example items indexed by country and by (country, question).
pub struct ShotPool {
    items: Vec<ChoiceItem>,
    by_country: HashMap<String, Vec<usize>>,
    by_country_question: HashMap<(String, String), Vec<usize>>,
}

fn country(item: &ChoiceItem) -> Option<&str> {
    item.groups
        .get("country")
        .or_else(|| item.profile.get("country"))
        .map(String::as_str)
}

/// A stable 64-bit hash of a string (FNV-1a), so picks do not depend on the process.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ShotPool {
    pub fn new(items: Vec<ChoiceItem>) -> Self {
        let mut by_country: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_country_question: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(c) = country(item) {
                by_country.entry(c.to_string()).or_default().push(i);
                by_country_question
                    .entry((c.to_string(), item.question_id.clone()))
                    .or_default()
                    .push(i);
            }
        }
        Self {
            items,
            by_country,
            by_country_question,
        }
    }

    /// Up to `n` examples for `item`: same country, never the same respondent, the same question
    /// first; chosen by a seeded shuffle keyed on the item id (the same every run).
    pub fn pick(&self, item: &ChoiceItem, n: usize, seed: u64) -> Vec<&ChoiceItem> {
        let Some(c) = country(item) else { return Vec::new() };
        let mut rng = Rng::new(seed ^ stable_hash(&item.id));
        let mut chosen: Vec<usize> = Vec::with_capacity(n);
        let same_question = self.by_country_question.get(&(c.to_string(), item.question_id.clone()));
        let same_country = self.by_country.get(c);
        for pool in [same_question, same_country].into_iter().flatten() {
            let mut candidates: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&i| {
                    self.items[i].respondent != item.respondent && self.items[i].id != item.id && !chosen.contains(&i)
                })
                .collect();
            rng.shuffle(&mut candidates);
            chosen.extend(candidates.into_iter().take(n - chosen.len()));
            if chosen.len() == n {
                break;
            }
        }
        chosen.into_iter().map(|i| &self.items[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, respondent: &str, country: &str, question: &str) -> ChoiceItem {
        serde_json::from_value(serde_json::json!({
            "id": id, "respondent": respondent, "question_id": question,
            "profile": {"country": country}, "question": "Q?", "options": ["a", "b"], "answer": 0
        }))
        .expect("item")
    }

    #[test]
    fn same_country_same_question_first_never_self() {
        let pool = ShotPool::new(vec![
            item("1/q1", "1", "Chile", "q1"),
            item("2/q1", "2", "Chile", "q1"),
            item("2/q2", "2", "Chile", "q2"),
            item("3/q2", "3", "Chile", "q2"),
            item("4/q1", "4", "Peru", "q1"),
        ]);
        let target = item("1/q1", "1", "Chile", "q1");
        let shots = pool.pick(&target, 3, 0);
        let ids: Vec<&str> = shots.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], "2/q1", "the only other Chilean answer to q1 comes first");
        assert!(ids.iter().all(|i| !i.starts_with("1/") && !i.starts_with("4/")));
        assert_eq!(pool.pick(&target, 3, 0).len(), 3);
        let again: Vec<&str> = pool.pick(&target, 3, 0).iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, again, "deterministic");
        assert!(pool.pick(&item("9/q1", "9", "Japan", "q1"), 3, 0).is_empty());
    }
}
