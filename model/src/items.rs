//! The canonical JSONL items: a multiple-choice survey answer of one respondent ([`ChoiceItem`]), or a
//! chat conversation ([`ChatItem`]), each with the profile of who answered.
//!
//! ```json
//! {"id": "20070033/Q1", "respondent": "20070033", "question_id": "Q1",
//!  "profile": {"country": "Andorra", "age": "65 and over", "gender": "Male"},
//!  "question": "How important is family in your life?",
//!  "options": ["Very important", "Rather important", "Not very important", "Not at all important"],
//!  "answer": 0, "scale": {"min": 1, "max": 4, "ordinal": true}, "groups": {"country": "AND"}}
//! ```

use crate::text::profile::Profile;
use crate::text::Message;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The answer scale of a question, for EMD (answers min-max normalised to [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub min: f64,
    pub max: f64,
    pub ordinal: bool,
}

/// One multiple-choice item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceItem {
    pub id: String,
    /// Who answered (splits keep one respondent on one side).
    pub respondent: String,
    pub question_id: String,
    pub profile: Profile,
    pub question: String,
    /// Options in scale order, lettered A, B, C, ...
    pub options: Vec<String>,
    /// Index into `options`.
    pub answer: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// Group ids for per-group metrics (e.g. `country` -> ISO-3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
}

pub use crate::text::choice::LETTERS;

impl ChoiceItem {
    /// Checks the fields fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.options.len() < 2 {
            return Err(format!("{} options (at least 2 needed)", self.options.len()));
        }
        if self.options.len() > LETTERS.len() {
            return Err(format!(
                "{} options (at most {} letters)",
                self.options.len(),
                LETTERS.len()
            ));
        }
        if self.answer >= self.options.len() {
            return Err(format!(
                "answer {} is out of range for {} options",
                self.answer,
                self.options.len()
            ));
        }
        if self.question.trim().is_empty() {
            return Err("empty question".into());
        }
        Ok(())
    }

    /// The user turn (spec section 6): `{question} A. {opt1} B. {opt2} ... You can only choose one option.`
    pub fn user_prompt(&self) -> String {
        crate::text::choice::user_prompt(&self.question, &self.options)
    }

    /// The answer letter.
    pub fn answer_letter(&self) -> char {
        crate::text::choice::letter(self.answer)
    }
}

/// One chat item: a conversation whose final assistant reply is the training target.
///
/// ```json
/// {"id": "c1", "profile": {"country": "Chile"},
///  "messages": [{"role": "user", "content": "What matters in a good life?"},
///               {"role": "assistant", "content": "Family, mostly."}],
///  "chosen": "Family, mostly.", "rejected": "Money."}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatItem {
    pub id: String,
    /// Who wrote or rated it, when known (splits keep one person on one side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respondent: Option<String>,
    pub profile: Profile,
    pub messages: Vec<Message>,
    /// Preferred final reply (preference data); used as the target when the messages end with
    /// the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
}

/// The two replies of a preference pair after their shared context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preference<'a> {
    pub context: &'a [Message],
    pub chosen: &'a str,
    pub rejected: &'a str,
}

impl ChatItem {
    /// The context (every message before the final reply) and the final reply.
    pub fn split_reply(&self) -> Result<(&[Message], &str), String> {
        match self.messages.split_last() {
            Some((last, context)) if last.role == "assistant" => Ok((context, &last.content)),
            Some((last, _)) if last.role == "user" => {
                let reply = self
                    .chosen
                    .as_deref()
                    .ok_or("the messages end with the user and there is no `chosen` reply")?;
                Ok((&self.messages, reply))
            }
            Some((last, _)) => Err(format!("the last message has role `{}`", last.role)),
            None => Err("no messages".into()),
        }
    }

    /// A preference pair: the context, the chosen reply and the rejected one. The chosen reply
    /// is `chosen`, or else the final assistant message (which then leaves the context).
    /// `None` without a `rejected` reply.
    pub fn preference(&self) -> Option<Result<Preference<'_>, String>> {
        let rejected = self.rejected.as_deref()?;
        Some(self.split_reply().map(|(context, chosen)| Preference {
            context,
            chosen,
            rejected,
        }))
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, reply) in [("chosen", &self.chosen), ("rejected", &self.rejected)] {
            if reply.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(format!("`{name}` is empty"));
            }
        }
        if let Some(Ok(p)) = self.preference() {
            if p.chosen == p.rejected {
                return Err("the chosen and the rejected reply are the same".into());
            }
        }
        for m in &self.messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(format!("unknown role `{}`", m.role));
            }
        }
        self.split_reply().map(|_| ())
    }
}

/// Either kind of item; a line with `messages` is a chat item, otherwise a multiple-choice one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Item {
    Choice(ChoiceItem),
    Chat(ChatItem),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let is_chat = v.get("messages").is_some();
        let item = if is_chat {
            serde_json::from_value(v).map(Item::Chat)
        } else {
            serde_json::from_value(v).map(Item::Choice)
        };
        item.map_err(serde::de::Error::custom)
    }
}

impl Item {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Item::Choice(c) => c.validate(),
            Item::Chat(c) => c.validate(),
        }
    }

    /// Who answered or wrote the item: a choice item's respondent, a chat item's (its id when
    /// it names none).
    pub fn respondent(&self) -> &str {
        match self {
            Item::Choice(c) => &c.respondent,
            Item::Chat(c) => c.respondent.as_deref().unwrap_or(&c.id),
        }
    }

    pub fn profile(&self) -> &Profile {
        match self {
            Item::Choice(c) => &c.profile,
            Item::Chat(c) => &c.profile,
        }
    }
}

/// Parses one JSONL line: `Ok(None)` for a blank line, `Err(reason)` for one that is not UTF-8,
/// not JSON of the row type, or that `check` rejects. Never panics, whatever the bytes.
pub fn parse_row<T: DeserializeOwned>(
    line: &[u8],
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Option<T>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "invalid UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let row = serde_json::from_str::<T>(text).map_err(|e| e.to_string())?;
    check(&row)?;
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_told_apart_by_their_fields() {
        let chat: Item = serde_json::from_str(r#"{"id":"c","profile":{},"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#).expect("chat");
        assert!(matches!(chat, Item::Chat(_)));
        assert_eq!(chat.validate(), Ok(()));
        let choice: Item = serde_json::from_str(r#"{"id":"1","respondent":"r","question_id":"Q","profile":{},"question":"q?","options":["a","b"],"answer":0}"#).expect("choice");
        assert!(matches!(choice, Item::Choice(_)));
        let open: Item = serde_json::from_str(r#"{"id":"c","profile":{},"messages":[{"role":"user","content":"hi"}]}"#)
            .expect("parses");
        assert!(open.validate().expect_err("no reply").contains("chosen"));
        let pair = |chosen: &str, rejected: &str| -> Item {
            serde_json::from_value(
                serde_json::json!({"id": "p", "profile": {}, "messages": [{"role": "user", "content": "hi"}],
                "chosen": chosen, "rejected": rejected}),
            )
            .expect("parses")
        };
        assert_eq!(pair("yes", "no").validate(), Ok(()));
        assert!(pair("yes", "yes")
            .validate()
            .expect_err("same")
            .contains("are the same"));
        assert!(pair("yes", " ")
            .validate()
            .expect_err("blank")
            .contains("`rejected` is empty"));
        let err = serde_json::from_str::<Item>(r#"{"id":"c","profile":{},"messages":[],"extra":1}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
