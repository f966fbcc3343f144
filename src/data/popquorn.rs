//! POPQUORN offensiveness ratings (`offensiveness.csv`: `instance_id`, `user_id`, `text`,
//! `offensiveness` 1 to 5, and the annotator's `gender`, `race`, `age`, `occupation`,
//! `education`) -> canonical choice items of two kinds, both with the annotator as respondent and
//! their demographics as profile and groups:
//!
//! - **ratings**: `How offensive do you find this comment?` with the comment quoted and five
//!   ordinal options (`Not offensive at all` ... `Extremely offensive`; the wording is cuma's, the
//!   five points are the release's), answer = the annotator's rating;
//! - **comparisons**: for one annotator, two comments they rated differently, `Which of these two
//!   comments is less offensive to you?`, the two comments as options A and B in a seeded order,
//!   answer = the one they rated lower. Up to `pairs_per_annotator` per annotator, drawn with a
//!   seed from all their differently-rated pairs.
//!
//! `cuma data pairs` turns either kind into preference pairs; `cuma data split` splits by
//! annotator.

use super::item::{ChoiceItem, Scale};
use super::jsonl::Loaded;
use super::profile::Profile;
use super::table;
use crate::sampling::Rng;
use crate::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// The demographic columns, which become profile attributes of the same names.
pub const PROFILE_COLUMNS: [&str; 5] = ["gender", "race", "age", "occupation", "education"];

/// The rating options, in scale order (1 to 5).
pub const RATING_OPTIONS: [&str; 5] = [
    "Not offensive at all",
    "Slightly offensive",
    "Moderately offensive",
    "Very offensive",
    "Extremely offensive",
];

/// The question of a rating item.
pub const RATING_QUESTION: &str = "How offensive do you find this comment?";
/// The question of a comparison item.
pub const COMPARISON_QUESTION: &str = "Which of these two comments is less offensive to you?";

/// One rating as read.
struct Rating {
    instance: String,
    annotator: String,
    text: String,
    /// 0-based: the rating minus one.
    value: usize,
    profile: Profile,
}

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct PopquornOptions {
    pub ratings: bool,
    /// Comparison items per annotator (0: none).
    pub pairs_per_annotator: usize,
    pub seed: u64,
}

/// Reads `dir/offensiveness.csv` (or `dir` itself when it is the file).
pub fn items(path: &Path, opts: PopquornOptions) -> Result<(Vec<ChoiceItem>, Loaded<()>)> {
    let file = if path.is_dir() {
        path.join("offensiveness.csv")
    } else {
        path.to_path_buf()
    };
    let mut report = Loaded::empty();
    let t = table::read(&file, b',', &mut report)?;
    let (instance, user, text, rating) = (
        t.column("instance_id", &file)?,
        t.column("user_id", &file)?,
        t.column("text", &file)?,
        t.column("offensiveness", &file)?,
    );
    let profile_cols: Vec<(&str, usize)> = PROFILE_COLUMNS
        .iter()
        .map(|c| Ok((*c, t.column(c, &file)?)))
        .collect::<Result<_>>()?;
    let mut ratings = Vec::new();
    for (line, rec) in &t.rows {
        let value = match rec[rating].trim().parse::<f64>() {
            Ok(v) if (1.0..=5.0).contains(&v) && v.fract() == 0.0 => v as usize - 1,
            _ => {
                report.skip(
                    *line,
                    format!("offensiveness `{}` is not a whole number from 1 to 5", &rec[rating]),
                );
                continue;
            }
        };
        if rec[text].trim().is_empty() {
            report.skip(*line, "empty comment text");
            continue;
        }
        ratings.push(Rating {
            instance: rec[instance].trim().to_string(),
            annotator: rec[user].trim().to_string(),
            text: rec[text].trim().to_string(),
            value,
            profile: profile_cols
                .iter()
                .filter(|(_, i)| !rec[*i].trim().is_empty())
                .map(|(c, i)| (c.to_string(), rec[*i].trim().to_string()))
                .collect(),
        });
    }
    let mut out = Vec::new();
    if opts.ratings {
        out.extend(ratings.iter().map(rating_item));
    }
    if opts.pairs_per_annotator > 0 {
        let mut by_annotator: BTreeMap<&str, Vec<&Rating>> = BTreeMap::new();
        for r in &ratings {
            by_annotator.entry(&r.annotator).or_default().push(r);
        }
        for (annotator, rated) in by_annotator {
            let mut candidates: Vec<(usize, usize)> = (0..rated.len())
                .flat_map(|a| (a + 1..rated.len()).map(move |b| (a, b)))
                .filter(|&(a, b)| rated[a].value != rated[b].value)
                .collect();
            let mut rng = Rng::new(opts.seed ^ annotator.bytes().fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(b)));
            rng.shuffle(&mut candidates);
            for &(a, b) in candidates.iter().take(opts.pairs_per_annotator) {
                let swap = rng.next_u64() % 2 == 1;
                out.push(comparison_item(rated[a], rated[b], swap));
            }
        }
    }
    Ok((out, report))
}

fn respondent(r: &Rating) -> String {
    format!("popquorn-{}", r.annotator)
}

fn groups(r: &Rating) -> BTreeMap<String, String> {
    r.profile.clone()
}

fn rating_item(r: &Rating) -> ChoiceItem {
    ChoiceItem {
        id: format!("{}/offensiveness/{}", respondent(r), r.instance),
        respondent: respondent(r),
        question_id: format!("offensiveness/{}", r.instance),
        profile: r.profile.clone(),
        question: format!("{RATING_QUESTION}\n\"{}\"", r.text),
        options: RATING_OPTIONS.iter().map(|s| s.to_string()).collect(),
        answer: r.value,
        scale: Some(Scale {
            min: 1.0,
            max: 5.0,
            ordinal: true,
        }),
        groups: groups(r),
    }
}

/// `a` and `b` are one annotator's ratings of two comments with different values; `swap` puts
/// `b` first.
fn comparison_item(a: &Rating, b: &Rating, swap: bool) -> ChoiceItem {
    let (first, second) = if swap { (b, a) } else { (a, b) };
    ChoiceItem {
        id: format!(
            "{}/less-offensive/{}-{}",
            respondent(a),
            first.instance,
            second.instance
        ),
        respondent: respondent(a),
        question_id: format!("less-offensive/{}-{}", first.instance, second.instance),
        profile: a.profile.clone(),
        question: COMPARISON_QUESTION.into(),
        options: vec![first.text.clone(), second.text.clone()],
        answer: usize::from(second.value < first.value),
        scale: None,
        groups: groups(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "instance_id,user_id,text,offensiveness,gender,race,age,occupation,education\n\
        1,7,\"A calm, friendly remark\",1.0,Woman,Black or African American,25-29,Student,College degree\n\
        2,7,You are an idiot,4.0,Woman,Black or African American,25-29,Student,College degree\n\
        3,7,Mildly rude,2.0,Woman,Black or African American,25-29,Student,College degree\n\
        4,7,Also calm,1.0,Woman,Black or African American,25-29,Student,College degree\n\
        1,8,\"A calm, friendly remark\",2.5,Man,White,>65,Retired,High school\n\
        2,8,You are an idiot,5.0,Man,White\n\
        3,8,Mildly rude,3.0,Man,White,>65,Retired,High school\n";

    fn read(opts: PopquornOptions) -> (Vec<ChoiceItem>, Loaded<()>) {
        let dir = crate::data::test_dir("popquorn");
        std::fs::write(dir.join("offensiveness.csv"), CSV).expect("write");
        items(&dir, opts).expect("reads")
    }

    #[test]
    fn ratings_become_ordinal_items_and_bad_rows_are_reported() {
        let (items, report) = read(PopquornOptions {
            ratings: true,
            pairs_per_annotator: 0,
            seed: 0,
        });
        assert_eq!(items.len(), 5, "two bad rows skipped");
        assert_eq!(report.skipped, 2);
        assert!(
            report.first_skipped.iter().any(|(l, r)| *l == 6 && r.contains("2.5")),
            "{:?}",
            report.first_skipped
        );
        assert!(report.first_skipped.iter().any(|(l, _)| *l == 7));
        let idiot = items
            .iter()
            .find(|i| i.id == "popquorn-7/offensiveness/2")
            .expect("item");
        assert_eq!(idiot.answer, 3);
        assert_eq!(idiot.options[idiot.answer], "Very offensive");
        assert!(idiot.question.contains("You are an idiot"));
        assert_eq!(idiot.profile["race"], "Black or African American");
        assert_eq!(idiot.groups["age"], "25-29");
        assert!(items.iter().all(|i| i.validate().is_ok()));
    }

    #[test]
    fn comparisons_pair_differently_rated_comments_of_one_annotator() {
        let opts = PopquornOptions {
            ratings: false,
            pairs_per_annotator: 10,
            seed: 3,
        };
        let (items, _) = read(opts);
        // Annotator 7: values 1, 4, 2, 1 -> 5 of 6 pairs differ; annotator 8 keeps one rating
        // (the others are malformed) -> none.
        assert_eq!(items.len(), 5);
        for it in &items {
            assert_eq!(it.respondent, "popquorn-7");
            let value = |t: &str| match t {
                "A calm, friendly remark" | "Also calm" => 1,
                "Mildly rude" => 2,
                "You are an idiot" => 4,
                other => panic!("unexpected option {other}"),
            };
            assert!(
                value(&it.options[it.answer]) < value(&it.options[1 - it.answer]),
                "{it:?}"
            );
        }
        assert!(
            items.iter().any(|i| i.answer == 0) && items.iter().any(|i| i.answer == 1),
            "both positions used"
        );
        let (again, _) = read(opts);
        assert_eq!(items, again, "seeded");
        let (fewer, _) = read(PopquornOptions {
            pairs_per_annotator: 2,
            ..opts
        });
        assert_eq!(fewer.len(), 2);
    }
}
