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
    assert_eq!(
        questions.len(),
        80,
        "the WorldValuesBench value questions present in the file"
    );
    assert!((150_000..165_000).contains(&items.len()), "{} items", items.len());
    assert!(items.iter().all(|i| i.validate().is_ok()));
    // Q56 swaps codes 2 and 3 in answer_adjustment.json: options follow the answers.
    let q56 = items.iter().find(|i| i.question_id == "Q56").expect("Q56");
    assert_eq!(q56.options.len(), 3);
    // Every item carries its country in the profile and as a group id.
    assert!(items
        .iter()
        .all(|i| i.profile.contains_key("country") && i.groups.contains_key("country")));
    let (train, test) = split::by_respondent(items, 10, 0);
    let tr: BTreeSet<_> = train.iter().map(|i| &i.respondent).collect();
    let te: BTreeSet<_> = test.iter().map(|i| &i.respondent).collect();
    assert!(tr.is_disjoint(&te));
    let ratio = train.len() as f64 / test.len() as f64;
    assert!((8.0..12.5).contains(&ratio), "train/test ratio {ratio}");
}

#[test]
fn reads_the_worldvaluesbench_tsv_layout() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wvb");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Text demographics (as WorldValuesBench writes them), integer answers already recoded,
    // empty cells for missing answers, one value row without a demographic row, one short row.
    std::fs::write(
        dir.join("test_demographic_qa.tsv"),
        "D_INTERVIEW\tB_COUNTRY\tQ260\tX003R\tQ289\n\
         156070594\tChina\tFemale\t25-34 years\tDo not belong to a denomination\n\
         840070001\tUnited States\tMale\t65 and over\tNo answer/refused\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("test_value_qa.tsv"),
        "D_INTERVIEW\tQ1\tQ56\tQ2\n156070594\t1.0\t3.0\t\n840070001\t4\t2\t2\n999070001\t1\t1\t1\n840070001\t1\n",
    )
    .expect("write");
    let (items, report) = cuma::data::wvb::items(&dir, "test", &wvs_dir()).expect("reads");
    assert_eq!(report.skipped, 2, "{}", report.summary());
    assert_eq!(items.len(), 5);
    let first = &items[0];
    assert_eq!(first.question_id, "Q1");
    assert_eq!(first.answer, 0);
    assert_eq!(first.profile["country"], "China");
    assert_eq!(first.profile["age"], "25-34");
    // Q56 values are already recoded: 3 is the third option of the adjusted scale.
    let q56 = items
        .iter()
        .find(|i| i.question_id == "Q56" && i.respondent == "156070594")
        .expect("Q56");
    assert_eq!(q56.answer, 2);
    // "No answer/refused" is the label of a missing code: the attribute is omitted.
    let us = items.iter().find(|i| i.respondent == "840070001").expect("US");
    assert!(!us.profile.contains_key("religion"));
}

#[test]
fn zero_shot_split_holds_out_profiles_in_every_cluster() {
    use cuma::data::clusters::ClusterMap;
    let src = WvsSource::open(&wvs_dir()).expect("data");
    let (items, _) = src.items(Some(&["Q1".to_string(), "Q2".to_string()])).expect("items");
    let map = ClusterMap::embedded().expect("map");
    for i in &items {
        assert!(
            map.cluster_of(&i.groups["country"]).is_some(),
            "{} has no cluster",
            i.groups["country"]
        );
    }
    let n = items.len();
    let s = split::with_heldout(items, 10, 0, &map, 0.1);
    assert_eq!(s.unclustered, 0);
    assert_eq!(s.train.len() + s.test.len() + s.heldout.len(), n);
    assert!(s.per_cluster.len() >= 8, "{:?}", s.per_cluster);
    assert!(s.per_cluster.values().all(|(held, all)| *held >= 1 && held < all));
    let held: BTreeSet<String> = s.heldout.iter().map(|i| split::profile_key(&i.profile)).collect();
    assert!(
        s.train
            .iter()
            .chain(&s.test)
            .all(|i| !held.contains(&split::profile_key(&i.profile))),
        "a held-out profile leaked"
    );
}
