//! The multiple-choice user turn (spec section 6):
//! `{question} A. {opt1} B. {opt2} ... You can only choose one option.`

/// Option letters, in option order.
pub const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The user turn asking `question` with lettered `options`.
pub fn user_prompt(question: &str, options: &[String]) -> String {
    let mut s = question.trim().to_string();
    for (letter, opt) in LETTERS.chars().zip(options) {
        s.push_str(&format!(" {letter}. {opt}"));
    }
    s.push_str(" You can only choose one option.");
    s
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
    }
}
