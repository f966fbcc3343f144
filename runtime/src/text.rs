//! A bundle's tokenizers and chat prompt: `tokenizer.json` (+ the manifest's chat template and
//! special tokens) for the decoder, `encoder.tokenizer.json` for the profile encoder.

use crate::RuntimeError;
use cuma_model::bundle::BackboneSpec;
use cuma_model::text::chat::{render, SpecialTokens};
use cuma_model::text::Message;

/// A bundle's `tokenizer.json`: the serving core's one wrapper.
pub use cuma_model::serve::tokenizer::Tokenizer as TextTokenizer;

impl From<cuma_model::serve::tokenizer::TokenizerError> for RuntimeError {
    fn from(e: cuma_model::serve::tokenizer::TokenizerError) -> Self {
        RuntimeError::Tokenizer {
            path: e.source_name,
            reason: e.reason,
        }
    }
}

/// Renders `messages` with the backbone's chat template, ending with the assistant prompt.
pub fn chat_prompt(backbone: &BackboneSpec, messages: &[Message]) -> Result<String, RuntimeError> {
    let template = backbone
        .chat_template
        .as_deref()
        .ok_or_else(|| RuntimeError::Unsupported("the bundle's backbone has no chat template".into()))?;
    let special = SpecialTokens {
        bos: backbone.bos_token.as_deref(),
        eos: backbone.eos_token.as_deref(),
    };
    render(template, messages, &special).map_err(|e| RuntimeError::Input(format!("chat template: {e}")))
}
