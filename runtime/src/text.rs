//! A bundle's tokenizers and chat prompt: `tokenizer.json` (+ the manifest's chat template and
//! special tokens) for the decoder, `encoder.tokenizer.json` for the profile encoder.

use crate::RuntimeError;
use cuma_model::bundle::BackboneSpec;
use cuma_model::text::chat::{render, SpecialTokens};
use cuma_model::text::Message;
use tokenizers::Tokenizer;

/// A loaded `tokenizer.json`.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: String,
}

impl TextTokenizer {
    /// The tokenizer in the JSON `bytes` (a bundle's `tokenizer.json`), named `label` in errors;
    /// padding and truncation off: lengths are the runtime's to check.
    pub fn from_bytes(bytes: &[u8], label: &str) -> Result<Self, RuntimeError> {
        let label = label.to_string();
        let err = |e: &dyn std::fmt::Display| RuntimeError::Tokenizer {
            path: label.clone(),
            reason: e.to_string(),
        };
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| err(&e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| err(&e))?;
        Ok(Self { inner, path: label })
    }

    /// Token ids of `text`; `special` adds the tokenizer's own decoration (BERT's [CLS] / [SEP]).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, RuntimeError> {
        let enc = self.inner.encode(text, special).map_err(|e| RuntimeError::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, RuntimeError> {
        self.inner.decode(ids, true).map_err(|e| RuntimeError::Tokenizer {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The id of one token's text, when it is a single token of the vocabulary.
    pub fn single_token(&self, text: &str) -> Result<u32, RuntimeError> {
        match self.encode(text, false)?.as_slice() {
            [id] => Ok(*id),
            other => Err(RuntimeError::Unsupported(format!(
                "`{text}` is {} tokens in {}; option letters must be single tokens",
                other.len(),
                self.path
            ))),
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
