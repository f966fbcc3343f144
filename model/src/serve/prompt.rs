//! Prompt assembly, once for training, evaluation and serving (spec section 6): the system turn
//! (the rendered profile, or the neutral system text when the method keeps the profile out of
//! the prompt), earlier turns, and the multiple-choice user turn. Rendering the messages with the
//! chat template and tokenising them is the backend's (both use [`crate::text::chat::render`]).

use crate::text::choice::ChoiceWording;
use crate::text::Message;

/// The system text: `profile_text` when the profile goes into the prompt, else `neutral`.
pub fn system_text<'a>(profile_text: &'a str, in_prompt: bool, neutral: &'a str) -> &'a str {
    if in_prompt {
        profile_text
    } else {
        neutral
    }
}

/// `turns` after a system turn of `system`, unless they start with their own.
pub fn with_system(system: &str, turns: &[Message]) -> Vec<Message> {
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if turns.first().is_none_or(|m| m.role != "system") {
        messages.push(Message::new("system", system));
    }
    messages.extend(turns.iter().cloned());
    messages
}

/// An answered example shown before the question (few-shot evaluation).
#[derive(Debug, Clone, Copy)]
pub struct Shot<'a> {
    pub question: &'a str,
    pub options: &'a [String],
    pub answer: usize,
}

/// The messages of a multiple-choice prompt in `wording`: the system turn, each shot as a user
/// turn answered by its letter, then `question` with its lettered `options`. The answer letter
/// follows the rendered prompt directly.
pub fn choice_messages(
    wording: &ChoiceWording,
    system: &str,
    shots: &[Shot<'_>],
    question: &str,
    options: &[String],
) -> Vec<Message> {
    let mut messages = vec![Message::new("system", system)];
    for shot in shots {
        messages.push(Message::new("user", &wording.user_prompt(shot.question, shot.options)));
        let letter = wording.letters.get(shot.answer).map_or("?", String::as_str);
        messages.push(Message::new("assistant", letter));
    }
    messages.push(Message::new("user", &wording.user_prompt(question, options)));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_turn_is_added_unless_present() {
        let user = [Message::new("user", "hi")];
        assert_eq!(with_system("sys", &user)[0], Message::new("system", "sys"));
        let own = [Message::new("system", "mine"), Message::new("user", "hi")];
        assert_eq!(with_system("sys", &own), own.to_vec());
        assert_eq!(system_text("You are a person from Chile.", false, "neutral"), "neutral");
    }

    #[test]
    fn shots_are_answered_turns_before_the_question() {
        let opts = vec!["Yes".to_string(), "No".to_string()];
        let shot = Shot {
            question: "Q1?",
            options: &opts,
            answer: 1,
        };
        let m = choice_messages(&ChoiceWording::default(), "sys", &[shot], "Q2?", &opts);
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(m[2].content, "B");
        assert_eq!(m[3].content, "Q2? A. Yes B. No You can only choose one option.");
    }
}
