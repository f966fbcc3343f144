//! Train / test splits by respondent (one respondent's answers never sit on both sides), seeded.

use super::item::ChoiceItem;
use crate::sampling::Rng;
use std::collections::BTreeSet;

/// Splits `items` so that about one respondent in `ratio + 1` goes to the test side
/// (10 gives the 10:1 split). Deterministic for a seed.
pub fn by_respondent(items: Vec<ChoiceItem>, ratio: usize, seed: u64) -> (Vec<ChoiceItem>, Vec<ChoiceItem>) {
    let respondents: BTreeSet<&str> = items.iter().map(|i| i.respondent.as_str()).collect();
    let mut order: Vec<&str> = respondents.into_iter().collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let n_test = order.len() / (ratio + 1);
    let test: BTreeSet<String> = order[..n_test].iter().map(|s| s.to_string()).collect();
    items.into_iter().partition(|i| !test.contains(&i.respondent))
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
