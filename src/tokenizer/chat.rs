//! Chat prompts for a loaded model: its tokenizer's template rendered by
//! [`cuma_model::text::chat`] (the same code the portable runtime uses).

use super::TextTokenizer;
use crate::{Error, Result};
use cuma_model::text::chat::SpecialTokens;
pub use cuma_model::text::Message;

/// Renders `messages` with the tokenizer's chat template, ending with the assistant prompt.
pub fn render(tok: &TextTokenizer, messages: &[Message]) -> Result<String> {
    let template = tok.chat_template.as_deref().ok_or_else(|| {
        Error::ChatTemplate(format!(
            "{} has no chat template; use a chat-tuned model",
            tok.source.display()
        ))
    })?;
    let special = SpecialTokens {
        bos: tok.bos_token.as_deref(),
        eos: tok.eos_token.as_deref(),
    };
    cuma_model::text::chat::render(template, messages, &special).map_err(Error::ChatTemplate)
}
