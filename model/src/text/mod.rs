//! The text side of a request, shared by training (tch) and the portable runtime so both build
//! byte-identical prompts: profile wording ([`profile`]), the multiple-choice user turn
//! ([`choice`]) and, with feature `chat`, chat templates ([`chat`]).

#[cfg(feature = "chat")]
pub mod chat;
pub mod choice;
pub mod profile;

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The system prompt of methods that keep the profile out of the prompt.
pub const NEUTRAL_SYSTEM: &str = "You are a helpful assistant that answers survey questions honestly.";
