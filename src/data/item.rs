//! The canonical multiple-choice item: one survey answer of one respondent, with the profile.
//!
//! ```json
//! {"id": "20070033/Q1", "respondent": "20070033", "question_id": "Q1",
//!  "profile": {"country": "Andorra", "age": "65 and over", "gender": "Male"},
//!  "question": "How important is family in your life?",
//!  "options": ["Very important", "Rather important", "Not very important", "Not at all important"],
//!  "answer": 0, "scale": {"min": 1, "max": 4, "ordinal": true}, "groups": {"country": "AND"}}
//! ```

use super::profile::Profile;
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

/// Option letters.
pub const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl ChoiceItem {
    /// Checks the fields fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.options.len() < 2 {
            return Err(format!("{} options (at least 2 needed)", self.options.len()));
        }
        if self.options.len() > LETTERS.len() {
            return Err(format!("{} options (at most {} letters)", self.options.len(), LETTERS.len()));
        }
        if self.answer >= self.options.len() {
            return Err(format!("answer {} is out of range for {} options", self.answer, self.options.len()));
        }
        if self.question.trim().is_empty() {
            return Err("empty question".into());
        }
        Ok(())
    }

    /// The user turn (spec section 6): `{question} A. {opt1} B. {opt2} ... You can only choose one option.`
    pub fn user_prompt(&self) -> String {
        let mut s = self.question.trim().to_string();
        for (letter, opt) in LETTERS.chars().zip(&self.options) {
            s.push_str(&format!(" {letter}. {opt}"));
        }
        s.push_str(" You can only choose one option.");
        s
    }

    /// The answer letter.
    pub fn answer_letter(&self) -> char {
        LETTERS.chars().nth(self.answer).unwrap_or('?')
    }
}
