//! The multiple-choice user turn (spec section 6):
//! `{question} A. {opt1} B. {opt2} ... You can only choose one option.`
//! Its wording is data ([`ChoiceWording`]), written into every bundle so that another runtime
//! builds byte-identical turns.

use serde::{Deserialize, Serialize};

/// Option letters, in option order.
pub const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// How a question and its options become the user turn: the question (trimmed of surrounding
/// whitespace), then every option as `option` with `{letter}` and `{option}` replaced (letters
/// in order from `letters`), then `closing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChoiceWording {
    pub option: String,
    pub closing: String,
    /// One letter per option position: at most this many options can be asked.
    pub letters: Vec<String>,
}

impl Default for ChoiceWording {
    fn default() -> Self {
        Self {
            option: " {letter}. {option}".into(),
            closing: " You can only choose one option.".into(),
            letters: LETTERS.chars().map(String::from).collect(),
        }
    }
}

impl ChoiceWording {
    /// The user turn asking `question` with lettered `options` (options past the last letter
    /// are dropped; callers check the count first).
    pub fn user_prompt(&self, question: &str, options: &[String]) -> String {
        let mut s = question.trim().to_string();
        for (letter, opt) in self.letters.iter().zip(options) {
            s.push_str(
                &self
                    .option
                    .split("{option}")
                    .map(|piece| piece.replace("{letter}", letter))
                    .collect::<Vec<_>>()
                    .join(opt),
            );
        }
        s.push_str(&self.closing);
        s
    }
}

/// The user turn asking `question` with lettered `options`, in the default wording.
pub fn user_prompt(question: &str, options: &[String]) -> String {
    ChoiceWording::default().user_prompt(question, options)
}

/// The letter of option `index` (`?` past Z).
pub fn letter(index: usize) -> char {
    LETTERS.chars().nth(index).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_options_in_order() {
        let opts = vec!["Yes".to_string(), "No".to_string()];
        assert_eq!(
            user_prompt("  Do you agree? ", &opts),
            "Do you agree? A. Yes B. No You can only choose one option."
        );
        assert_eq!((letter(0), letter(25), letter(26)), ('A', 'Z', '?'));
        // An option holding `{letter}` stays as written.
        assert_eq!(
            user_prompt("Q", &["{letter}".to_string()]),
            "Q A. {letter} You can only choose one option."
        );
    }
}
