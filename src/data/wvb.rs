//! WorldValuesBench layout -> canonical items: `{split}_demographic_qa.tsv` (one respondent per
//! row, `D_INTERVIEW` then demographic columns as text labels) joined on `D_INTERVIEW` with
//! `{split}_value_qa.tsv` (value columns as integer answers, already recoded by
//! `answer_adjustment.json`; empty when missing). Question wording, scales and option labels come
//! from `question_metadata.json` and `codebook.json` in a metadata directory.

use super::item::ChoiceItem;
use super::jsonl::{Loaded, REPORTED_LINES};
use super::profile::Profile;
use super::wvs::{item_for, SurveyMeta, PROFILE_COLUMNS};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

type Rows = (Vec<String>, Vec<(usize, csv::StringRecord)>);

fn read_tsv(path: &Path, report: &mut Loaded<()>) -> Result<Rows> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        match rec {
            Ok(rec) if rec.len() == header.len() => rows.push((i + 2, rec)),
            other => {
                report.skipped += 1;
                if report.first_skipped.len() < REPORTED_LINES {
                    let why = match other {
                        Ok(rec) => format!("{} fields, header has {}", rec.len(), header.len()),
                        Err(e) => e.to_string(),
                    };
                    report.first_skipped.push((i + 2, format!("{}: {why}", path.display())));
                }
            }
        }
    }
    Ok((header, rows))
}

/// Reads split `split` from `dir`, with metadata from `meta_dir`.
pub fn items(dir: &Path, split: &str, meta_dir: &Path) -> Result<(Vec<ChoiceItem>, Loaded<()>)> {
    let mut report = Loaded {
        rows: Vec::new(),
        skipped: 0,
        first_skipped: Vec::new(),
    };
    let (demo_header, demo_rows) = read_tsv(&dir.join(format!("{split}_demographic_qa.tsv")), &mut report)?;
    let (value_header, value_rows) = read_tsv(&dir.join(format!("{split}_value_qa.tsv")), &mut report)?;
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
            report.skipped += 1;
            if report.first_skipped.len() < REPORTED_LINES {
                report.first_skipped.push((
                    *line,
                    format!("value_qa: respondent {respondent} has no demographic row"),
                ));
            }
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
