//! Preference pairs from labelled multiple-choice items (`cuma data pairs`): the prompt is the
//! choice item's user turn, the chosen reply the respondent's own answer letter and the rejected
//! reply one other letter, picked by a documented rule:
//!
//! - on an ordinal scale, the option farthest from the answer (an answer in the middle of an odd
//!   scale has two; a seeded coin per item picks one);
//! - otherwise (nominal questions, two-option comparisons), one of the other options drawn
//!   uniformly with a seed per item.
//!
//! The pair keeps the item's respondent, profile and groups, so a split by respondent made before
//! (`cuma data split`) carries over to the pairs.

use super::item::{ChatItem, ChoiceItem};
use crate::sampling::Rng;
use cuma_model::text::Message;

/// The index of the rejected option for `item` under the rule above; deterministic for `seed`.
pub fn rejected_option(item: &ChoiceItem, seed: u64) -> usize {
    let n = item.options.len();
    let mut rng = Rng::new(seed ^ fnv1a(item.id.as_bytes()));
    if item.scale.is_some_and(|s| s.ordinal) {
        let (low, high) = (item.answer, n - 1 - item.answer);
        return match low.cmp(&high) {
            std::cmp::Ordering::Greater => 0,
            std::cmp::Ordering::Less => n - 1,
            std::cmp::Ordering::Equal if rng.next_u64() % 2 == 0 => 0,
            std::cmp::Ordering::Equal => n - 1,
        };
    }
    let other = (rng.next_u64() % (n as u64 - 1)) as usize;
    if other >= item.answer {
        other + 1
    } else {
        other
    }
}

/// The preference pair of one choice item (see the module docs).
pub fn choice_pair(item: &ChoiceItem, seed: u64) -> ChatItem {
    let rejected = rejected_option(item, seed);
    ChatItem {
        id: format!("{}/pair", item.id),
        respondent: Some(item.respondent.clone()),
        profile: item.profile.clone(),
        messages: vec![Message::new("user", &item.user_prompt())],
        chosen: Some(item.answer_letter().to_string()),
        rejected: Some(cuma_model::text::choice::letter(rejected).to_string()),
        groups: item.groups.clone(),
    }
}

/// FNV-1a: a stable per-item seed (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Scale;

    fn item(id: &str, n: usize, answer: usize, ordinal: Option<bool>) -> ChoiceItem {
        ChoiceItem {
            id: id.into(),
            respondent: "r1".into(),
            question_id: "Q".into(),
            profile: [("country".to_string(), "Chile".to_string())].into(),
            question: "How important is family?".into(),
            options: (0..n).map(|i| format!("option {i}")).collect(),
            answer,
            scale: ordinal.map(|ordinal| Scale {
                min: 1.0,
                max: n as f64,
                ordinal,
            }),
            groups: [("country".to_string(), "CHL".to_string())].into(),
        }
    }

    #[test]
    fn ordinal_items_reject_the_farthest_option() {
        assert_eq!(rejected_option(&item("a", 4, 0, Some(true)), 0), 3);
        assert_eq!(rejected_option(&item("a", 4, 3, Some(true)), 0), 0);
        assert_eq!(rejected_option(&item("a", 10, 6, Some(true)), 0), 0);
        // The middle of a 5-point scale: either end, both ends seen over items.
        let ends: std::collections::BTreeSet<usize> = (0..20)
            .map(|i| rejected_option(&item(&format!("m{i}"), 5, 2, Some(true)), 0))
            .collect();
        assert_eq!(ends, [0, 4].into());
    }

    #[test]
    fn nominal_items_reject_another_option_uniformly() {
        let mut counts = [0usize; 4];
        for i in 0..400 {
            let r = rejected_option(&item(&format!("n{i}"), 4, 1, Some(false)), 7);
            assert_ne!(r, 1, "never the answer");
            counts[r] += 1;
        }
        assert_eq!(counts[1], 0);
        for c in [counts[0], counts[2], counts[3]] {
            assert!((90..=177).contains(&c), "{counts:?}");
        }
        let two = item("t", 2, 0, None);
        assert_eq!(rejected_option(&two, 3), 1);
        assert_eq!(rejected_option(&two, 3), rejected_option(&two, 3), "seeded");
    }

    #[test]
    fn a_pair_keeps_who_answered_and_the_prompt() {
        let it = item("r1/Q", 4, 1, Some(true));
        let pair = choice_pair(&it, 0);
        assert_eq!(pair.chosen.as_deref(), Some("B"));
        assert_eq!(pair.rejected.as_deref(), Some("D"));
        assert_eq!(pair.respondent.as_deref(), Some("r1"));
        assert_eq!(pair.messages[0].content, it.user_prompt());
        assert_eq!(pair.groups, it.groups);
        let p = pair.preference().expect("a pair").expect("valid");
        assert_eq!((p.context.len(), p.chosen, p.rejected), (1, "B", "D"));
        assert_eq!(pair.validate(), Ok(()));
    }
}
