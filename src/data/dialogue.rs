//! Multi-turn preference conversations (PRISM, Community Alignment) -> canonical chat items, one
//! rule for both sources: each turn has the user's prompt, the reply they preferred and the
//! replies they did not. The history a turn sees is every earlier prompt with its *preferred*
//! reply. Each rejected reply of a turn makes one preference pair (that turn's history and prompt,
//! chosen vs rejected); the whole conversation makes one SFT item whose target is the last
//! turn's preferred reply.

use super::item::ChatItem;
use super::profile::Profile;
use cuma_model::text::Message;
use std::collections::BTreeMap;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub prompt: String,
    pub chosen: String,
    pub rejected: Vec<String>,
}

/// A rated conversation of one person.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialogue {
    pub id: String,
    pub respondent: String,
    pub profile: Profile,
    pub groups: BTreeMap<String, String>,
    pub turns: Vec<Turn>,
}

/// What a set of conversations becomes.
#[derive(Debug, Default)]
pub struct Converted {
    /// One per conversation: the final preferred reply as target.
    pub sft: Vec<ChatItem>,
    /// One per rejected reply per turn.
    pub pairs: Vec<ChatItem>,
}

impl Dialogue {
    fn item(&self, id: String, messages: Vec<Message>, chosen: &str, rejected: Option<&str>) -> ChatItem {
        ChatItem {
            id,
            respondent: Some(self.respondent.clone()),
            profile: self.profile.clone(),
            messages,
            chosen: Some(chosen.to_string()),
            rejected: rejected.map(str::to_string),
            groups: self.groups.clone(),
        }
    }

    /// Adds this conversation's SFT item and pairs to `out`. Replies equal to the chosen one
    /// (duplicates in the source) make no pair.
    pub fn convert_into(&self, out: &mut Converted) {
        let mut history = Vec::new();
        for (t, turn) in self.turns.iter().enumerate() {
            history.push(Message::new("user", &turn.prompt));
            for (r, rejected) in turn.rejected.iter().enumerate() {
                if rejected != &turn.chosen && !rejected.trim().is_empty() {
                    let id = format!("{}/turn{}/pair{}", self.id, t + 1, r + 1);
                    out.pairs
                        .push(self.item(id, history.clone(), &turn.chosen, Some(rejected)));
                }
            }
            if t + 1 == self.turns.len() {
                out.sft
                    .push(self.item(self.id.clone(), history.clone(), &turn.chosen, None));
            }
            history.push(Message::new("assistant", &turn.chosen));
        }
    }
}

impl Converted {
    /// An error naming `source` when no conversation came out of it.
    pub fn require_some(&self, source: &std::path::Path, report: &super::jsonl::Loaded<()>) -> crate::Result<()> {
        if self.sft.is_empty() {
            return Err(crate::Error::Invalid(format!(
                "{}: no usable conversation ({})",
                source.display(),
                report.summary()
            )));
        }
        Ok(())
    }
}

/// The metric groups of a conversation: its country, when the profile has one.
pub fn country_groups(profile: &Profile) -> BTreeMap<String, String> {
    profile
        .get("country")
        .map(|c| ("country".to_string(), c.clone()))
        .into_iter()
        .collect()
}

/// The JSON values of a JSONL file with their line numbers; unparsable lines go to `report`.
pub fn read_values(
    path: &std::path::Path,
    report: &mut super::jsonl::Loaded<()>,
) -> crate::Result<Vec<(usize, serde_json::Value)>> {
    let text = std::fs::read(path).map_err(crate::error::io(path))?;
    let mut rows = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        match cuma_model::items::parse_row::<serde_json::Value>(line, |_| Ok(())) {
            Ok(Some(v)) => rows.push((i + 1, v)),
            Ok(None) => {}
            Err(e) => report.skip(i + 1, format!("{}: {e}", path.display())),
        }
    }
    Ok(rows)
}

/// Profile values that mean "not given".
pub fn is_missing(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || ["prefer not to say", "nan", "none", "null", "unknown"].contains(&v.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_grows_with_the_preferred_reply_and_each_rejection_is_a_pair() {
        let d = Dialogue {
            id: "c1".into(),
            respondent: "u1".into(),
            profile: [("country".to_string(), "Chile".to_string())].into(),
            groups: BTreeMap::new(),
            turns: vec![
                Turn {
                    prompt: "Hi".into(),
                    chosen: "Hello!".into(),
                    rejected: vec!["Go away.".into(), "Hello!".into(), "Hey.".into()],
                },
                Turn {
                    prompt: "Advice on family?".into(),
                    chosen: "Call them often.".into(),
                    rejected: vec!["Ignore them.".into()],
                },
            ],
        };
        let mut out = Converted::default();
        d.convert_into(&mut out);
        assert_eq!(out.pairs.len(), 3, "the duplicate of the chosen reply makes no pair");
        let last = &out.pairs[2];
        let roles: Vec<&str> = last.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(last.messages[1].content, "Hello!", "history carries the chosen reply");
        assert_eq!(
            last.preference().expect("pair").expect("valid").rejected,
            "Ignore them."
        );
        assert_eq!(out.sft.len(), 1);
        let (context, reply) = out.sft[0].split_reply().expect("valid");
        assert_eq!((context.len(), reply), (3, "Call them often."));
        assert!(out.pairs.iter().chain(&out.sft).all(|i| i.validate().is_ok()));
    }
}
