//! WorldValuesBench layout -> canonical items: `{split}_demographic_qa.tsv` (one respondent per
//! row, `D_INTERVIEW` then demographic columns as text labels) joined on `D_INTERVIEW` with
//! `{split}_value_qa.tsv` (value columns as integer answers, already recoded by
//! `answer_adjustment.json`; empty when missing). Question wording, scales and option labels come
//! from `question_metadata.json` and `codebook.json` in a metadata directory.

use super::item::ChoiceItem;
use super::jsonl::Loaded;
use super::profile::Profile;
use super::table;
use super::wvs::{item_for, SurveyMeta, PROFILE_COLUMNS};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Reads split `split` from `dir`, with metadata from `meta_dir`.
pub fn items(dir: &Path, split: &str, meta_dir: &Path) -> Result<(Vec<ChoiceItem>, Loaded<()>)> {
    let mut report = Loaded::empty();
    let demo = table::read(&dir.join(format!("{split}_demographic_qa.tsv")), b'\t', &mut report)?;
    let value = table::read(&dir.join(format!("{split}_value_qa.tsv")), b'\t', &mut report)?;
    let (demo_header, demo_rows) = (demo.header, demo.rows);
    let (value_header, value_rows) = (value.header, value.rows);
    let id_of = |h: &[String], file: &str| {
        h.iter()
            .position(|c| c == "D_INTERVIEW")
            .ok_or_else(|| Error::Invalid(format!("{}: no D_INTERVIEW column", dir.join(file).display())))
    };
    let (demo_id, value_id) = (
        id_of(&demo_header, "demographic_qa.tsv")?,
        id_of(&value_header, "value_qa.tsv")?,
    );
    let meta = SurveyMeta::open(meta_dir, |q| value_header.iter().any(|h| h == q))?;

    let mut profiles: HashMap<String, Profile> = HashMap::new();
    for (_, rec) in &demo_rows {
        let profile: Profile = PROFILE_COLUMNS
            .iter()
            .filter_map(|(attr, col)| {
                let i = demo_header.iter().position(|h| h == col)?;
                Some((attr.to_string(), meta.text_value(col, &rec[i])?))
            })
            .collect();
        profiles.insert(rec[demo_id].trim().to_string(), profile);
    }
    let columns: Vec<(usize, &super::wvs::Question)> = meta
        .questions
        .iter()
        .filter_map(|q| Some((value_header.iter().position(|h| h == &q.id)?, q)))
        .collect();
    let mut items = Vec::new();
    let groups = BTreeMap::new();
    for (line, rec) in &value_rows {
        let respondent = rec[value_id].trim().to_string();
        let Some(profile) = profiles.get(&respondent) else {
            report.skip(
                *line,
                format!("value_qa: respondent {respondent} has no demographic row"),
            );
            continue;
        };
        let mut groups = groups.clone();
        if let Some(c) = profile.get("country") {
            groups.insert("country".to_string(), c.clone());
        }
        for (i, q) in &columns {
            let Some(code) = rec[*i].trim().parse::<f64>().ok().filter(|f| f.fract() == 0.0) else {
                continue;
            };
            let Some(&option) = q.index_of_code.get(&(code as i64)) else {
                continue;
            };
            items.push(item_for(q, &respondent, option, profile, &groups));
        }
        report.rows.push(());
    }
    if items.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no usable answers in split `{split}`",
            dir.display()
        )));
    }
    Ok((items, report))
}
