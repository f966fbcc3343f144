//! The WVS-7 converter on the real survey data in `../shared/data/wvs7`.

use cuma::data::{split, wvs::WvsSource};
use std::collections::BTreeSet;

fn wvs_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wvs7")
}

#[test]
fn converts_the_real_survey_into_items() {
    let src = WvsSource::open(&wvs_dir()).expect("shared/data/wvs7 beside the repository");
    let (items, report) = src.items(None).expect("items");
    assert_eq!(report.skipped, 0);
    let questions: BTreeSet<&str> = items.iter().map(|i| i.question_id.as_str()).collect();
    assert_eq!(questions.len(), 80, "the WorldValuesBench value questions present in the file");
    assert!((150_000..165_000).contains(&items.len()), "{} items", items.len());
    assert!(items.iter().all(|i| i.validate().is_ok()));
    // Q56 swaps codes 2 and 3 in answer_adjustment.json: options follow the answers.
    let q56 = items.iter().find(|i| i.question_id == "Q56").expect("Q56");
    assert_eq!(q56.options.len(), 3);
    // Every item carries its country in the profile and as a group id.
    assert!(items.iter().all(|i| i.profile.contains_key("country") && i.groups.contains_key("country")));
    let (train, test) = split::by_respondent(items, 10, 0);
    let tr: BTreeSet<_> = train.iter().map(|i| &i.respondent).collect();
    let te: BTreeSet<_> = test.iter().map(|i| &i.respondent).collect();
    assert!(tr.is_disjoint(&te));
    let ratio = train.len() as f64 / test.len() as f64;
    assert!((8.0..12.5).contains(&ratio), "train/test ratio {ratio}");
}
