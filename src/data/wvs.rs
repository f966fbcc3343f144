//! World Values Survey wave 7 -> canonical items: raw codes through `codebook.json` into text,
//! questions and scales from `question_metadata.json`, recodings from `answer_adjustment.json`
//! applied to answers and options alike, negative (missing) codes skipped.

use super::item::{ChoiceItem, Scale};
use super::profile::Profile;
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Profile attributes and the WVS columns they come from.
pub const PROFILE_COLUMNS: [(&str, &str); 8] = [
    ("country", "B_COUNTRY"),
    ("age", "X003R"),
    ("gender", "Q260"),
    ("education", "Q275R"),
    ("marital", "Q273"),
    ("religion", "Q289"),
    ("ethnicity", "Q290"),
    ("employment", "Q279"),
];

#[derive(Deserialize)]
struct CodebookEntry {
    #[serde(default)]
    choices: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Metadata {
    question: String,
    use_case: Option<String>,
    /// A number, or "" where the scale is not numeric.
    answer_scale_min: Option<serde_json::Value>,
    answer_scale_max: Option<serde_json::Value>,
    answer_data_type: Option<String>,
}

/// One value question, ready to turn codes into items.
#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    pub text: String,
    /// Adjusted code -> option index.
    pub index_of_code: BTreeMap<i64, usize>,
    pub options: Vec<String>,
    /// Original code -> adjusted code (`None`: the code is dropped).
    pub adjust: HashMap<i64, Option<i64>>,
    pub scale: Scale,
}

impl Question {
    /// The option index for a raw answer code; `None` for missing or dropped codes.
    pub fn option_for(&self, raw: i64) -> Option<usize> {
        if raw < 0 {
            return None;
        }
        let code = match self.adjust.get(&raw) {
            Some(None) => return None,
            Some(Some(c)) => *c,
            None => raw,
        };
        self.index_of_code.get(&code).copied()
    }
}

/// Survey metadata: the value questions (with adjusted options) and the codebook labels of the
/// profile columns. Shared by the raw WVS and the WorldValuesBench readers.
pub struct SurveyMeta {
    pub questions: Vec<Question>,
    labels: HashMap<String, BTreeMap<String, String>>,
}

/// The files of a WVS-7 directory.
pub struct WvsSource {
    pub csv: PathBuf,
    pub meta: SurveyMeta,
    country_alpha_column: &'static str,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.into(),
        reason: e.to_string(),
    })
}

fn code(s: &str) -> Option<i64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.fract() == 0.0)
        .map(|f| f as i64)
}

/// Builds the options of a question: non-negative codebook codes, adjusted, in numeric order.
fn build_question(
    id: &str,
    meta: &Metadata,
    choices: &BTreeMap<String, String>,
    adjust_raw: Option<&BTreeMap<String, String>>,
) -> Option<Question> {
    let adjust: HashMap<i64, Option<i64>> = adjust_raw
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((code(k)?, if v.is_empty() { None } else { Some(code(v)?) })))
                .collect()
        })
        .unwrap_or_default();
    let mut labels: BTreeMap<i64, String> = BTreeMap::new();
    let originals: BTreeMap<i64, &String> = choices
        .iter()
        .filter_map(|(k, v)| code(k).filter(|c| *c >= 0).map(|c| (c, v)))
        .collect();
    for (&c, label) in &originals {
        let target = match adjust.get(&c) {
            Some(None) => continue,
            Some(Some(t)) => *t,
            None => c,
        };
        // When two codes merge, the label of the code that keeps its number wins.
        let keeps_number = !adjust.contains_key(&c);
        if keeps_number || !labels.contains_key(&target) {
            labels.insert(target, (*label).clone());
        }
    }
    if labels.len() < 2 {
        return None;
    }
    let index_of_code = labels.keys().enumerate().map(|(i, c)| (*c, i)).collect();
    let options = labels.values().cloned().collect();
    let number = |v: &Option<serde_json::Value>| match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    // Without a numeric scale, the options' own code range stands in (EMD needs min < max).
    let (first, last) = (*labels.keys().next()? as f64, *labels.keys().last()? as f64);
    let (min, max) = match (number(&meta.answer_scale_min), number(&meta.answer_scale_max)) {
        (Some(a), Some(b)) if b > a => (a, b),
        _ => (first, last),
    };
    Some(Question {
        id: id.into(),
        text: meta.question.clone(),
        index_of_code,
        options,
        adjust,
        scale: Scale {
            min,
            max,
            ordinal: meta.answer_data_type.as_deref() == Some("ordinal"),
        },
    })
}

impl SurveyMeta {
    /// Reads `codebook.json`, `question_metadata.json` and (optionally) `answer_adjustment.json`
    /// from `dir`, keeping the value questions for which `has_column` is true.
    pub fn open(dir: &Path, has_column: impl Fn(&str) -> bool) -> Result<Self> {
        let codebook: HashMap<String, CodebookEntry> = read_json(&dir.join("codebook.json"))?;
        let metadata: BTreeMap<String, Metadata> = read_json(&dir.join("question_metadata.json"))?;
        let adjust_path = dir.join("answer_adjustment.json");
        let adjust: BTreeMap<String, BTreeMap<String, String>> = if adjust_path.is_file() {
            read_json(&adjust_path)?
        } else {
            BTreeMap::new()
        };
        let mut questions: Vec<Question> = metadata
            .iter()
            .filter(|(id, m)| m.use_case.as_deref() == Some("value") && has_column(id))
            .filter_map(|(id, m)| build_question(id, m, &codebook.get(id)?.choices, adjust.get(id)))
            .collect();
        questions.sort_by_key(|q| q.id.trim_start_matches('Q').parse::<u32>().unwrap_or(u32::MAX));
        let labels = PROFILE_COLUMNS
            .iter()
            .filter_map(|(_, col)| Some((col.to_string(), codebook.get(*col)?.choices.clone())))
            .collect();
        Ok(Self { questions, labels })
    }

    /// The text of a raw profile code; `None` for missing (negative) codes.
    pub fn label(&self, column: &str, raw: &str) -> Option<String> {
        let c = code(raw).filter(|c| *c >= 0)?;
        let label = self.labels.get(column)?.get(&c.to_string())?;
        Some(label.trim_end_matches(" years").to_string())
    }

    /// A profile value already written as text (WorldValuesBench); `None` for the labels of
    /// missing codes ("No answer", "Not asked", ...).
    pub fn text_value(&self, column: &str, text: &str) -> Option<String> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if let Some(choices) = self.labels.get(column) {
            let missing = choices.iter().any(|(k, v)| v == text && code(k).is_some_and(|c| c < 0));
            if missing {
                return None;
            }
        }
        Some(text.trim_end_matches(" years").to_string())
    }
}

/// The question-by-question item of one answer.
pub(crate) fn item_for(
    q: &Question,
    respondent: &str,
    option: usize,
    profile: &Profile,
    groups: &BTreeMap<String, String>,
) -> ChoiceItem {
    ChoiceItem {
        id: format!("{respondent}/{}", q.id),
        respondent: respondent.to_string(),
        question_id: q.id.clone(),
        profile: profile.clone(),
        question: q.text.clone(),
        options: q.options.clone(),
        answer: option,
        scale: Some(q.scale),
        groups: groups.clone(),
    }
}

impl WvsSource {
    /// Reads a directory laid out like `shared/data/wvs7`: one `WVS*.csv`, `codebook.json`,
    /// `question_metadata.json` and (optionally) `answer_adjustment.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let csv = std::fs::read_dir(dir)
            .map_err(crate::error::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|e| e == "csv")
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("WVS"))
            })
            .ok_or_else(|| Error::ModelPath {
                path: dir.into(),
                reason: "no WVS*.csv file here".into(),
            })?;
        let header: Vec<String> = {
            let mut r = csv::Reader::from_path(&csv).map_err(|e| Error::Invalid(format!("{}: {e}", csv.display())))?;
            r.headers()
                .map_err(|e| Error::Invalid(format!("{}: {e}", csv.display())))?
                .iter()
                .map(str::to_string)
                .collect()
        };
        let meta = SurveyMeta::open(dir, |id| header.iter().any(|h| h == id))?;
        Ok(Self {
            csv,
            meta,
            country_alpha_column: "B_COUNTRY_ALPHA",
        })
    }

    /// Every (respondent, question) answer as an item. Rows that cannot be read are skipped and
    /// counted in the returned report.
    pub fn items(&self, only: Option<&[String]>) -> Result<(Vec<ChoiceItem>, super::jsonl::Loaded<()>)> {
        let mut report = super::jsonl::Loaded::empty();
        let mut reader =
            csv::Reader::from_path(&self.csv).map_err(|e| Error::Invalid(format!("{}: {e}", self.csv.display())))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| Error::Invalid(format!("{}: {e}", self.csv.display())))?
            .iter()
            .map(str::to_string)
            .collect();
        let col = |name: &str| header.iter().position(|h| h == name);
        let id_col = col("D_INTERVIEW")
            .ok_or_else(|| Error::Invalid(format!("{}: no D_INTERVIEW column", self.csv.display())))?;
        let alpha_col = col(self.country_alpha_column);
        let profile_cols: Vec<(&str, &str, usize)> = PROFILE_COLUMNS
            .iter()
            .filter_map(|(a, c)| Some((*a, *c, col(c)?)))
            .collect();
        let questions: Vec<(&Question, usize)> = self
            .meta
            .questions
            .iter()
            .filter(|q| only.is_none_or(|o| o.contains(&q.id)))
            .filter_map(|q| Some((q, col(&q.id)?)))
            .collect();
        let mut items = Vec::new();
        for (line, record) in reader.records().enumerate() {
            let record = match record {
                Ok(r) if r.len() == header.len() => r,
                Ok(r) => {
                    report.skip(line + 2, format!("{} fields, header has {}", r.len(), header.len()));
                    continue;
                }
                Err(e) => {
                    report.skip(line + 2, e.to_string());
                    continue;
                }
            };
            let respondent = record[id_col].to_string();
            let mut profile: Profile = profile_cols
                .iter()
                .filter_map(|(a, c, i)| Some((a.to_string(), self.meta.label(c, &record[*i])?)))
                .collect();
            let mut groups = BTreeMap::new();
            if let Some(i) = alpha_col {
                let alpha = record[i].trim().to_string();
                // The codebook lacks a few countries (India, Uzbekistan): the ISO-3 code stands in.
                if !alpha.is_empty() {
                    profile.entry("country".to_string()).or_insert_with(|| alpha.clone());
                    groups.insert("country".to_string(), alpha);
                }
            }
            for (q, i) in &questions {
                let Some(answer) = code(&record[*i]).and_then(|c| q.option_for(c)) else {
                    continue;
                };
                items.push(item_for(q, &respondent, answer, &profile, &groups));
            }
            report.rows.push(());
        }
        if items.is_empty() {
            return Err(Error::Invalid(format!("{}: no usable answers", self.csv.display())));
        }
        Ok((items, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata {
            question: "Q?".into(),
            use_case: Some("value".into()),
            answer_scale_min: Some(1.into()),
            answer_scale_max: Some(4.into()),
            answer_data_type: Some("ordinal".into()),
        }
    }

    fn choices(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn swaps_apply_to_answers_and_options_alike() {
        let c = choices(&[("1", "one"), ("2", "two"), ("3", "three"), ("-1", "Don't know")]);
        let adj = choices(&[("2", "3"), ("3", "2")]);
        let q = build_question("Q56", &meta(), &c, Some(&adj)).expect("question");
        assert_eq!(q.options, vec!["one", "three", "two"]);
        // A respondent who chose raw code 2 ("two") still chose "two".
        assert_eq!(q.options[q.option_for(2).expect("valid")], "two");
        assert_eq!(q.options[q.option_for(3).expect("valid")], "three");
        assert_eq!(q.option_for(-1), None);
    }

    #[test]
    fn dropped_and_merged_codes() {
        let c = choices(&[("0", "zero"), ("1", "one"), ("2", "two"), ("3", "three")]);
        let adj = choices(&[("0", "1"), ("3", "")]);
        let q = build_question("Q241", &meta(), &c, Some(&adj)).expect("question");
        assert_eq!(q.options, vec!["one", "two"]);
        assert_eq!(q.option_for(0), Some(0));
        assert_eq!(q.option_for(3), None);
    }
}
