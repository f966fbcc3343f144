//! Tokenizers (from `tokenizer.json`, or built from GGUF vocabulary and merges) and chat
//! templates rendered from the model's own template string.

pub mod chat;
pub mod gguf_bpe;

use crate::{Error, Result};
use cuma_model::serve::tokenizer::{Tokenizer as WrappedTokenizer, TokenizerError};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A tokenizer (the serving core's one wrapper) plus the special tokens and chat template that
/// come with a model.
#[derive(Clone)]
pub struct TextTokenizer {
    pub inner: WrappedTokenizer,
    /// Where it was read from (for messages).
    pub source: PathBuf,
    /// Token ids that end an assistant turn.
    pub end_of_turn: Vec<u32>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// The Jinja chat template, when the model ships one.
    pub chat_template: Option<String>,
    /// A short description of the tokenizer model (for `cuma info`).
    pub kind: String,
}

/// Tokens that end an assistant turn in the chat formats cuma knows.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
];

impl TextTokenizer {
    /// Token ids of `text`. `special` adds the tokenizer's own BOS/EOS decoration.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.inner.encode(text, special).map_err(|e| self.err(e))
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids).map_err(|e| self.err(e))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn err(&self, e: TokenizerError) -> Error {
        Error::Tokenizer {
            path: self.source.clone(),
            reason: e.reason,
        }
    }

    /// Wraps `raw` (read from `source`) in the core's tokenizer, padding and truncation off.
    pub(crate) fn wrap(raw: Tokenizer, source: &Path) -> Result<WrappedTokenizer> {
        WrappedTokenizer::new(raw, &source.display().to_string()).map_err(|e| Error::Tokenizer {
            path: source.to_path_buf(),
            reason: e.reason,
        })
    }

    /// Collects end-of-turn ids: the EOS token plus every known end-of-turn marker present.
    fn find_end_of_turn(inner: &Tokenizer, eos: Option<&str>, eos_id: Option<u32>) -> Vec<u32> {
        let mut ids: Vec<u32> = eos_id.into_iter().collect();
        for t in eos.into_iter().chain(END_OF_TURN_TOKENS.iter().copied()) {
            if let Some(id) = inner.token_to_id(t) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// A tokenizer with an empty vocabulary, for backbones with random weights (benchmarks at a
    /// model's shape), which are fed token ids and never text: encoding gives no tokens.
    pub fn without_vocabulary() -> Result<Self> {
        let source = PathBuf::from("(no vocabulary)");
        let raw = Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
        Ok(Self {
            inner: Self::wrap(raw, &source)?,
            source,
            end_of_turn: Vec::new(),
            bos_token: None,
            eos_token: None,
            chat_template: None,
            kind: "none (random-weight backbone)".into(),
        })
    }

    /// Loads `dir/tokenizer.json`, with the chat template and special tokens from
    /// `tokenizer_config.json` when present.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                reason: "missing (a Hugging Face model directory needs tokenizer.json)".into(),
            });
        }
        let raw = Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let inner = Self::wrap(raw, &path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Json {
                path: config_path.clone(),
                reason: e.to_string(),
            })?,
            Err(_) => serde_json::Value::Null,
        };
        let token_str = |key: &str| -> Option<String> {
            match config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let eos_token = token_str("eos_token");
        let bos_token = token_str("bos_token");
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        let end_of_turn = Self::find_end_of_turn(inner.raw(), eos_token.as_deref(), None);
        let kind = match inner.raw().get_model() {
            tokenizers::ModelWrapper::BPE(_) => "BPE",
            tokenizers::ModelWrapper::WordPiece(_) => "WordPiece",
            tokenizers::ModelWrapper::Unigram(_) => "Unigram",
            tokenizers::ModelWrapper::WordLevel(_) => "WordLevel",
        };
        Ok(Self {
            inner,
            source: path,
            end_of_turn,
            bos_token,
            eos_token,
            chat_template,
            kind: format!("{kind} (tokenizer.json)"),
        })
    }
}
