//! Community Alignment (Meta, 2025) -> canonical items, through the rule of
//! [`super::dialogue`], from the released columns (a CSV file, or JSONL with the same keys):
//!
//! - `annotator_id` (the respondent) and every other `annotator_*` column as a profile attribute
//!   (the prefix dropped, `education_level` read as `education`); blanks and "Prefer not to say"
//!   left out;
//! - `conversation_id` (else the row number) and, per turn `first`, `second`, `third`, `fourth`:
//!   `{turn}_turn_prompt`, `{turn}_turn_response_{a..d}` (later turns may have fewer) and
//!   `{turn}_turn_preferred_response` (`a`..`d`, also written `A` or `response_a`). A turn without
//!   a prompt or a valid preferred response ends the conversation.
//!
//! Besides the SFT items and pairs, each conversation's first turn with at least two responses
//! is a **discrimination** choice item: the prompt and its responses as options A to D, answer =
//! the preferred one, so `cuma eval` reports discrimination accuracy and macro-F1.
//!
//! The real file is not reachable from the machines this project is built on; the loader is
//! tested on small files written in the published layout.

use super::dialogue::{country_groups, is_missing, read_values, Converted, Dialogue, Turn};
use super::item::ChoiceItem;
use super::jsonl::Loaded;
use super::profile::Profile;
use super::table;
use crate::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// The turn prefixes, in order.
pub const TURNS: [&str; 4] = ["first", "second", "third", "fourth"];
/// The response letters.
const RESPONSES: [char; 4] = ['a', 'b', 'c', 'd'];
/// The question of a discrimination item (the prompt follows, quoted).
pub const DISCRIMINATION_QUESTION: &str = "Which response to this message would you prefer?";

/// What a Community Alignment file becomes.
#[derive(Debug, Default)]
pub struct CaItems {
    pub conversations: Converted,
    pub discrimination: Vec<ChoiceItem>,
}

/// Reads the rows of `path` as column -> value maps.
fn rows(path: &Path, report: &mut Loaded<()>) -> Result<Vec<(usize, BTreeMap<String, String>)>> {
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
    if !is_jsonl {
        let t = table::read(path, b',', report)?;
        return Ok(t
            .rows
            .iter()
            .map(|(line, rec)| {
                (
                    *line,
                    t.header.iter().cloned().zip(rec.iter().map(str::to_string)).collect(),
                )
            })
            .collect());
    }
    let mut out = Vec::new();
    for (line, v) in read_values(path, report)? {
        let Some(map) = v.as_object() else {
            report.skip(line, format!("{}: not a JSON object", path.display()));
            continue;
        };
        let fields = map
            .iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect();
        out.push((line, fields));
    }
    Ok(out)
}

/// `a`, `A`, `response_a`, `Response A` -> 0.
fn preferred_index(value: &str) -> Option<usize> {
    let v = value.trim().to_ascii_lowercase();
    let letter = v
        .strip_prefix("response")
        .map_or(v.as_str(), |r| r.trim_start_matches(['_', ' ']));
    let mut chars = letter.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => RESPONSES.iter().position(|&r| r == c),
        _ => None,
    }
}

fn profile(row: &BTreeMap<String, String>) -> Profile {
    row.iter()
        .filter_map(|(k, v)| {
            let attr = k.strip_prefix("annotator_")?;
            if attr == "id" || is_missing(v) {
                return None;
            }
            let attr = if attr == "education_level" { "education" } else { attr };
            Some((attr.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Reads a Community Alignment file.
pub fn read(path: &Path) -> Result<(CaItems, Loaded<()>)> {
    let mut report = Loaded::empty();
    let mut out = CaItems::default();
    for (line, row) in rows(path, &mut report)? {
        let get = |k: &str| row.get(k).map(String::as_str).filter(|v| !v.trim().is_empty());
        let Some(annotator) = get("annotator_id") else {
            report.skip(line, format!("{}: no annotator_id", path.display()));
            continue;
        };
        let id = get("conversation_id").map_or_else(|| format!("row{line}"), str::to_string);
        let mut turns = Vec::new();
        let mut first_turn_options = None;
        for name in TURNS {
            let Some(prompt) = get(&format!("{name}_turn_prompt")) else {
                break;
            };
            let responses: Vec<Option<&str>> = RESPONSES
                .iter()
                .map(|r| get(&format!("{name}_turn_response_{r}")))
                .collect();
            let Some(chosen) = get(&format!("{name}_turn_preferred_response"))
                .and_then(preferred_index)
                .and_then(|i| Some((i, responses[i]?)))
            else {
                break;
            };
            if turns.is_empty() {
                first_turn_options = Some((prompt.to_string(), responses.clone(), chosen.0));
            }
            turns.push(Turn {
                prompt: prompt.to_string(),
                chosen: chosen.1.to_string(),
                rejected: responses
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != chosen.0)
                    .filter_map(|(_, r)| r.map(str::to_string))
                    .collect(),
            });
        }
        if turns.is_empty() {
            report.skip(
                line,
                format!(
                    "{}: no turn with a prompt and a valid preferred response",
                    path.display()
                ),
            );
            continue;
        }
        let profile = profile(&row);
        let respondent = format!("ca-{annotator}");
        let groups = country_groups(&profile);
        if let Some((prompt, responses, preferred)) = first_turn_options {
            // Options are the responses present, in letter order; the answer is re-indexed.
            let present: Vec<(usize, &str)> = responses
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, (*r)?)))
                .collect();
            if present.len() >= 2 {
                out.discrimination.push(ChoiceItem {
                    id: format!("ca/{id}/discrimination"),
                    respondent: respondent.clone(),
                    question_id: format!("ca-discrimination/{id}"),
                    profile: profile.clone(),
                    question: format!("{DISCRIMINATION_QUESTION}\n\"{prompt}\""),
                    options: present.iter().map(|(_, r)| r.to_string()).collect(),
                    answer: present.iter().position(|(i, _)| *i == preferred).unwrap_or_default(),
                    scale: None,
                    groups: groups.clone(),
                });
            }
        }
        Dialogue {
            id: format!("ca/{id}"),
            respondent,
            profile,
            groups,
            turns,
        }
        .convert_into(&mut out.conversations);
    }
    out.conversations.require_some(path, &report)?;
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "conversation_id,annotator_id,annotator_age,annotator_gender,annotator_education_level,annotator_country,first_turn_prompt,first_turn_response_a,first_turn_response_b,first_turn_response_c,first_turn_response_d,first_turn_preferred_response,second_turn_prompt,second_turn_response_a,second_turn_response_b,second_turn_preferred_response\n\
        conv1,ann7,25-34,Woman,Bachelor's degree,Brazil,Should I move abroad?,Yes go,Stay with family,Think it over,Ask a friend,b,Why family?,They support you,Whatever,response_a\n\
        conv2,ann8,65+,Prefer not to say,,India,Best food?,Rice,Bread,,,A,,,,\n\
        conv3,,18-24,Man,,USA,Hi,Hello,Hey,,,a,,,,\n\
        conv4,ann9,18-24,Man,,USA,Hi,Hello,Hey,,,e,,,,\n";

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let d = crate::data::test_dir("ca");
        let p = d.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn turns_pairs_and_discrimination_items_from_the_released_columns() {
        let (out, report) = read(&file("ca.csv", CSV)).expect("reads");
        assert_eq!(
            report.skipped,
            2,
            "no annotator; an invalid preferred letter: {}",
            report.summary()
        );
        let c = &out.conversations;
        assert_eq!(c.sft.len(), 2);
        assert_eq!(c.pairs.len(), 3 + 1 + 1, "conv1: 3 + 1, conv2: 1");
        let sft = &c.sft[0];
        assert_eq!(sft.respondent.as_deref(), Some("ca-ann7"));
        assert_eq!(sft.profile["education"], "Bachelor's degree");
        assert_eq!(sft.profile["country"], "Brazil");
        let (context, reply) = sft.split_reply().expect("valid");
        assert_eq!(reply, "They support you");
        assert_eq!(
            context[1].content, "Stay with family",
            "history grows with the chosen reply"
        );
        assert_eq!(c.sft[1].profile.get("gender"), None);
        let d = &out.discrimination;
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].options.len(), 4);
        assert_eq!(d[0].answer, 1);
        assert_eq!(d[1].options, ["Rice", "Bread"]);
        assert_eq!(d[1].answer, 0);
        assert!(d.iter().all(|i| i.validate().is_ok()));
    }

    #[test]
    fn jsonl_rows_read_the_same_as_csv() {
        let line = r#"{"conversation_id": "conv1", "annotator_id": 7, "annotator_country": "Brazil", "first_turn_prompt": "Hi", "first_turn_response_a": "Hello", "first_turn_response_b": "Go away", "first_turn_preferred_response": "response_a"}"#;
        let (out, _) = read(&file("ca.jsonl", &format!("{line}\n"))).expect("reads");
        assert_eq!(out.conversations.pairs.len(), 1);
        assert_eq!(out.conversations.pairs[0].rejected.as_deref(), Some("Go away"));
        assert_eq!(out.conversations.sft[0].respondent.as_deref(), Some("ca-7"));
        assert!(preferred_index("Response B") == Some(1) && preferred_index("z").is_none());
    }
}
