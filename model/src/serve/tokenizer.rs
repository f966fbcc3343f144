//! The one wrapper around a Hugging Face `tokenizer.json` (feature `tokenizer`), for training,
//! evaluation and the bundle runtime: padding and truncation switched off (lengths are the
//! caller's to check: a tokenizer that pads every text to a fixed length would hide real
//! lengths), encoding, decoding with special tokens skipped, and single-token look-ups.

/// Why a tokenizer could not be built or used; `source` names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer {source_name}: {reason}")]
pub struct TokenizerError {
    pub source_name: String,
    pub reason: String,
}

/// A loaded tokenizer and where it came from.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: String,
}

impl Tokenizer {
    /// Wraps `inner` (read from `source`, which names it in errors) with padding and truncation
    /// off.
    pub fn new(mut inner: tokenizers::Tokenizer, source: &str) -> Result<Self, TokenizerError> {
        let err = |e: &dyn std::fmt::Display| TokenizerError {
            source_name: source.to_string(),
            reason: e.to_string(),
        };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| err(&e))?;
        Ok(Self {
            inner,
            source: source.to_string(),
        })
    }

    /// The tokenizer in the JSON `bytes` (a `tokenizer.json`), named `source` in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError {
            source_name: source.to_string(),
            reason: e.to_string(),
        })?;
        Self::new(inner, source)
    }

    /// The same tokenizer cutting every encoding to `max_length` tokens, special tokens kept
    /// (Hugging Face tokenizers' truncation): the profile encoder's input, in training and in
    /// the bundle runtime alike.
    pub fn truncated(mut self, max_length: usize) -> Result<Self, TokenizerError> {
        let params = tokenizers::TruncationParams {
            max_length,
            ..Default::default()
        };
        match self.inner.with_truncation(Some(params)) {
            Ok(_) => Ok(self),
            Err(e) => Err(self.err(e)),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> TokenizerError {
        TokenizerError {
            source_name: self.source.clone(),
            reason: e.to_string(),
        }
    }

    /// The wrapped tokenizer (to write it out, or for vocabulary look-ups).
    pub fn raw(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`; `special` adds the tokenizer's own decoration (BOS, BERT's
    /// `[CLS]` / `[SEP]`).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, special).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, true).map_err(|e| self.err(e))
    }

    /// The id of `text` when it is exactly one token.
    pub fn single_token(&self, text: &str) -> Result<u32, TokenizerError> {
        match self.encode(text, false)?.as_slice() {
            [id] => Ok(*id),
            other => Err(self.err(format!(
                "`{text}` is {} tokens; option letters must be single tokens",
                other.len()
            ))),
        }
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
