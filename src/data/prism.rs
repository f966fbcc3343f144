//! PRISM (Kirk et al. 2024; `HannahRoseKirk/prism-alignment`) -> canonical chat items, through
//! the rule of [`super::dialogue`]. Two files of the release are read:
//!
//! - `survey.jsonl`, one participant per line: `user_id` and the demographics that become the
//!   profile: `location.reside_country` (else `location.birth_country`) as `country`, `age`,
//!   `gender`, `education`, `employment_status` as `employment`, `marital_status` as `marital`,
//!   `religion.simplified` as `religion`, `ethnicity.simplified` as `ethnicity` (a nested field
//!   may also be a plain string); "Prefer not to say" and blanks are left out;
//! - `conversations.jsonl`, one conversation per line: `conversation_id`, `user_id` and
//!   `conversation_history`, a list of `{turn, role: "user" | "model", content, if_chosen}`; per
//!   turn, the model reply with `if_chosen` is the chosen one and every other reply of that turn
//!   a rejected one. A conversation stops at a turn without a user prompt or a chosen reply.
//!
//! The real files are not reachable from the machines this project is built on; the loader is
//! tested on small files written in the published layout.

use super::dialogue::{country_groups, is_missing, read_values, Converted, Dialogue, Turn};
use super::jsonl::Loaded;
use super::profile::Profile;
use crate::Result;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Survey fields -> profile attributes (`a.b`: field `b` of the object `a`).
const PROFILE_FIELDS: [(&str, &[&str]); 8] = [
    ("country", &["location.reside_country", "location.birth_country"]),
    ("age", &["age"]),
    ("gender", &["gender"]),
    ("education", &["education"]),
    ("employment", &["employment_status"]),
    ("marital", &["marital_status"]),
    ("religion", &["religion.simplified"]),
    ("ethnicity", &["ethnicity.simplified"]),
];

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    let mut cur = v;
    for (i, part) in path.split('.').enumerate() {
        match cur.get(part) {
            Some(next) => cur = next,
            // A nested field given as a plain string: the string itself.
            None if i > 0 && cur.is_string() => break,
            None => return None,
        }
    }
    cur.as_str()
}

fn id_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The profile of one survey row.
fn profile(row: &Value) -> Profile {
    PROFILE_FIELDS
        .iter()
        .filter_map(|(attr, paths)| {
            let value = paths.iter().find_map(|p| field(row, p).filter(|v| !is_missing(v)))?;
            Some((attr.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// What one turn of a history holds so far.
#[derive(Default)]
struct TurnParts {
    prompt: Option<String>,
    chosen: Option<String>,
    rejected: Vec<String>,
}

/// The turns of one `conversation_history`.
fn turns(history: &[Value]) -> Vec<Turn> {
    let mut by_turn: BTreeMap<i64, TurnParts> = BTreeMap::new();
    for entry in history {
        let (Some(turn), Some(role), Some(content)) = (
            entry.get("turn").and_then(Value::as_i64),
            entry.get("role").and_then(Value::as_str),
            entry.get("content").and_then(Value::as_str),
        ) else {
            continue;
        };
        let slot = by_turn.entry(turn).or_default();
        match role {
            "user" => slot.prompt = Some(content.to_string()),
            "model" | "assistant" if entry.get("if_chosen").and_then(Value::as_bool) == Some(true) => {
                slot.chosen = Some(content.to_string())
            }
            "model" | "assistant" => slot.rejected.push(content.to_string()),
            _ => {}
        }
    }
    by_turn
        .into_values()
        .map_while(|t| {
            Some(Turn {
                prompt: t.prompt?,
                chosen: t.chosen?,
                rejected: t.rejected,
            })
        })
        .collect()
}

/// Reads `dir/survey.jsonl` and `dir/conversations.jsonl`.
pub fn read(dir: &Path) -> Result<(Converted, Loaded<()>)> {
    let mut report = Loaded::empty();
    let survey_path = dir.join("survey.jsonl");
    let conversations_path = dir.join("conversations.jsonl");
    let mut profiles: HashMap<String, Profile> = HashMap::new();
    for (line, row) in read_values(&survey_path, &mut report)? {
        match id_of(&row, "user_id") {
            Some(user) => {
                profiles.insert(user, profile(&row));
            }
            None => report.skip(line, format!("{}: no user_id", survey_path.display())),
        }
    }
    let mut out = Converted::default();
    for (line, row) in read_values(&conversations_path, &mut report)? {
        let why = |r: &str| format!("{}: {r}", conversations_path.display());
        let (Some(id), Some(user)) = (id_of(&row, "conversation_id"), id_of(&row, "user_id")) else {
            report.skip(line, why("no conversation_id or user_id"));
            continue;
        };
        let Some(profile) = profiles.get(&user) else {
            report.skip(line, why(&format!("user {user} is not in survey.jsonl")));
            continue;
        };
        let turns = turns(
            row.get("conversation_history")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
        );
        if turns.is_empty() {
            report.skip(line, why("no turn with a user prompt and a chosen reply"));
            continue;
        }
        Dialogue {
            id: format!("prism/{id}"),
            respondent: format!("prism-{user}"),
            profile: profile.clone(),
            groups: country_groups(profile),
            turns,
        }
        .convert_into(&mut out);
    }
    out.require_some(dir, &report)?;
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVEY: &str = r#"{"user_id": "user1", "age": "25-34 years old", "gender": "Female", "education": "University Bachelors Degree", "employment_status": "Working full-time", "marital_status": "Never been married", "religion": {"self_described": "none", "categorised": "No Affiliation", "simplified": "No religion"}, "ethnicity": {"self_described": "white", "categorised": "White", "simplified": "White"}, "location": {"birth_country": "Chile", "reside_country": "Germany", "special_region": "Europe"}}
{"user_id": "user2", "age": "65+ years old", "gender": "Prefer not to say", "religion": "Christian", "location": {"birth_country": "Kenya"}}
not json
"#;

    const CONVERSATIONS: &str = r#"{"conversation_id": "c0", "user_id": "user1", "conversation_type": "values guided", "opening_prompt": "Is it OK to eat meat?", "conversation_history": [{"turn": 0, "role": "user", "content": "Is it OK to eat meat?"}, {"turn": 0, "role": "model", "content": "It depends on your values.", "model_name": "m1", "score": 80, "if_chosen": true, "within_turn_id": 0}, {"turn": 0, "role": "model", "content": "No.", "model_name": "m2", "score": 10, "if_chosen": false, "within_turn_id": 1}, {"turn": 0, "role": "model", "content": "Yes.", "model_name": "m3", "score": 30, "if_chosen": false, "within_turn_id": 2}, {"turn": 1, "role": "user", "content": "What do you think?"}, {"turn": 1, "role": "model", "content": "I have no diet.", "if_chosen": true, "within_turn_id": 0}, {"turn": 1, "role": "model", "content": "Meat is murder.", "if_chosen": false, "within_turn_id": 1}]}
{"conversation_id": "c1", "user_id": "user2", "conversation_history": [{"turn": 0, "role": "user", "content": "Hello"}, {"turn": 0, "role": "model", "content": "Hi there", "if_chosen": true}, {"turn": 0, "role": "model", "content": "What?", "if_chosen": false}, {"turn": 1, "role": "user", "content": "Bye"}]}
{"conversation_id": "c2", "user_id": "nobody", "conversation_history": []}
"#;

    fn dir() -> std::path::PathBuf {
        let d = crate::data::test_dir("prism");
        std::fs::write(d.join("survey.jsonl"), SURVEY).expect("write");
        std::fs::write(d.join("conversations.jsonl"), CONVERSATIONS).expect("write");
        d
    }

    #[test]
    fn a_pair_per_rejected_reply_and_an_sft_item_per_conversation() {
        let (out, report) = read(&dir()).expect("reads");
        assert_eq!(
            report.skipped,
            2,
            "the broken survey line and the unknown user: {}",
            report.summary()
        );
        assert_eq!(out.sft.len(), 2);
        assert_eq!(
            out.pairs.len(),
            4,
            "2 + 1 in c0, 1 in c1 (its second turn has no reply)"
        );
        let first = &out.sft[0];
        assert_eq!(first.respondent.as_deref(), Some("prism-user1"));
        assert_eq!(first.profile["country"], "Germany", "the country of residence");
        assert_eq!(first.profile["religion"], "No religion");
        assert_eq!(first.profile["marital"], "Never been married");
        assert_eq!(first.split_reply().expect("valid").1, "I have no diet.");
        let murder = out
            .pairs
            .iter()
            .find(|p| p.rejected.as_deref() == Some("Meat is murder."))
            .expect("pair");
        let p = murder.preference().expect("pair").expect("valid");
        assert_eq!(p.chosen, "I have no diet.");
        assert_eq!(p.context[1].content, "It depends on your values.");
        let second = &out.sft[1].profile;
        assert_eq!(second.get("gender"), None, "prefer not to say is left out");
        assert_eq!(second["religion"], "Christian", "a plain string for a nested field");
        assert_eq!(second["country"], "Kenya", "birth country when residence is missing");
    }

    #[test]
    fn a_folder_without_conversations_is_an_error_naming_it() {
        let d = crate::data::test_dir("prism-empty");
        std::fs::write(d.join("survey.jsonl"), SURVEY).expect("write");
        let err = read(&d).expect_err("no conversations file").to_string();
        assert!(err.contains("conversations.jsonl"), "{err}");
    }
}
