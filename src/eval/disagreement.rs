//! Which questions divide the groups (countries): per question, the mean EMD between the
//! answer histograms of every pair of groups with enough answers, and the same after shuffling
//! the group labels among the question's answers (what sampling noise alone gives at these group
//! sizes). Questions are ranked by the excess of the first over the second, so a 10-point scale
//! answered by 20 people per country does not rank high for its noise.

use super::metrics::{emd, histogram};
use crate::data::ChoiceItem;
use crate::sampling::Rng;
use std::collections::BTreeMap;

/// Label shuffles averaged for the noise level.
pub const SHUFFLES: usize = 20;

/// One question's spread across groups.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuestionSpread {
    pub question: String,
    /// The question's text (of its first item).
    pub text: String,
    pub options: usize,
    /// Groups with at least the minimum number of answers (the others are left out).
    pub groups: usize,
    /// Answers of those groups.
    pub answers: usize,
    /// Mean EMD over every pair of those groups.
    pub mean_pairwise_emd: f64,
    /// The same with the group labels shuffled among the answers ([`SHUFFLES`] times).
    pub shuffled_emd: f64,
    /// `mean_pairwise_emd - shuffled_emd`: the part that is not sampling noise.
    pub excess: f64,
}

/// Mean EMD between the histograms of every pair of `groups` (answer lists) over `n` options.
fn mean_pairwise(groups: &[Vec<usize>], n: usize) -> f64 {
    let hists: Vec<Vec<f64>> = groups.iter().map(|g| histogram(g.iter().copied(), n)).collect();
    let (mut total, mut pairs) = (0.0, 0usize);
    for i in 0..hists.len() {
        for j in i + 1..hists.len() {
            total += emd(&hists[i], &hists[j]);
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        total / pairs as f64
    }
}

/// Every question of `items` with at least two groups of `min_answers` answers (grouped by
/// `group`, e.g. `country` from the item's groups or profile), ranked by [`QuestionSpread::excess`],
/// largest first (ties by question id).
pub fn rank(items: &[ChoiceItem], group: &str, min_answers: usize, seed: u64) -> Vec<QuestionSpread> {
    let mut by_question: BTreeMap<&str, (BTreeMap<String, Vec<usize>>, &ChoiceItem)> = BTreeMap::new();
    for item in items {
        let g = item
            .groups
            .get(group)
            .or_else(|| item.profile.get(group))
            .cloned()
            .unwrap_or_default();
        by_question
            .entry(&item.question_id)
            .or_insert_with(|| (BTreeMap::new(), item))
            .0
            .entry(g)
            .or_default()
            .push(item.answer);
    }
    let mut rng = Rng::new(seed);
    let mut ranked: Vec<QuestionSpread> = by_question
        .into_iter()
        .filter_map(|(question, (by_group, first))| {
            let kept: Vec<Vec<usize>> = by_group
                .into_iter()
                .filter(|(g, a)| !g.is_empty() && a.len() >= min_answers)
                .map(|(_, a)| a)
                .collect();
            if kept.len() < 2 {
                return None;
            }
            let n = first.options.len();
            let observed = mean_pairwise(&kept, n);
            let mut pooled: Vec<usize> = kept.iter().flatten().copied().collect();
            let mut shuffled = 0.0;
            for _ in 0..SHUFFLES {
                rng.shuffle(&mut pooled);
                let mut rest = pooled.as_slice();
                let regrouped: Vec<Vec<usize>> = kept
                    .iter()
                    .map(|g| {
                        let (head, tail) = rest.split_at(g.len());
                        rest = tail;
                        head.to_vec()
                    })
                    .collect();
                shuffled += mean_pairwise(&regrouped, n) / SHUFFLES as f64;
            }
            Some(QuestionSpread {
                question: question.to_string(),
                text: first.question.clone(),
                options: n,
                groups: kept.len(),
                answers: pooled.len(),
                mean_pairwise_emd: observed,
                shuffled_emd: shuffled,
                excess: observed - shuffled,
            })
        })
        .collect();
    ranked.sort_by(|a, b| b.excess.total_cmp(&a.excess).then_with(|| a.question.cmp(&b.question)));
    ranked
}

/// The ranking as a Markdown table.
pub fn markdown(ranked: &[QuestionSpread], group: &str) -> String {
    let mut s = format!(
        "| rank | question | options | {group} groups | answers | mean pairwise EMD | shuffled | excess | text |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, q) in ranked.iter().enumerate() {
        let text: String = q.text.chars().take(90).collect();
        let ellipsis = if q.text.chars().count() > 90 { "..." } else { "" };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {}{} |\n",
            i + 1,
            q.question,
            q.options,
            q.groups,
            q.answers,
            q.mean_pairwise_emd,
            q.shuffled_emd,
            q.excess,
            text.replace('|', "/").replace('\n', " "),
            ellipsis
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(q: &str, country: &str, answer: usize) -> ChoiceItem {
        ChoiceItem {
            id: format!("{q}/{country}/{answer}"),
            respondent: country.into(),
            question_id: q.into(),
            profile: Default::default(),
            question: format!("question {q}"),
            options: vec!["a".into(), "b".into()],
            answer,
            scale: None,
            groups: [("country".to_string(), country.to_string())].into(),
        }
    }

    #[test]
    fn a_dividing_question_ranks_above_a_shared_one() {
        let mut items = Vec::new();
        for i in 0..30 {
            // "split": A always answers 0, B always 1. "shared": both answer half and half.
            items.push(item("split", "A", 0));
            items.push(item("split", "B", 1));
            items.push(item("shared", "A", i % 2));
            items.push(item("shared", "B", (i + 1) % 2));
        }
        // "tiny": only 3 answers per country, below the minimum.
        for _ in 0..3 {
            items.push(item("tiny", "A", 0));
            items.push(item("tiny", "B", 1));
        }
        let ranked = rank(&items, "country", 10, 0);
        assert_eq!(ranked.len(), 2, "the tiny question is left out");
        assert_eq!(ranked[0].question, "split");
        assert!((ranked[0].mean_pairwise_emd - 1.0).abs() < 1e-12);
        assert!(ranked[0].shuffled_emd < 0.5, "shuffled labels mix the two answers");
        assert_eq!(ranked[1].mean_pairwise_emd, 0.0);
        assert!(ranked[1].excess <= 0.0);
        assert!(markdown(&ranked, "country").contains("| 1 | split | 2 | 2 | 60 |"));
    }
}
