//! Builds a byte-level BPE tokenizer from GGUF metadata (`tokenizer.ggml.*`): vocabulary, merges,
//! token types, and the pre-tokenizer named by `tokenizer.ggml.pre`.

use super::TextTokenizer;
use crate::weights::gguf::{GgufFile, MetaValue};
use crate::{Error, Result};
use serde_json::{json, Value};

const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre` names.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    Some(match pre {
        "smollm" => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        "llama-bpe" | "llama3" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level(false)]})
        }
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level(false)]}),
        _ => return None,
    })
}

fn strings<'a>(g: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let arr = g
        .get(key)
        .and_then(MetaValue::as_array)
        .ok_or_else(|| Error::Tokenizer {
            path: g.path.clone(),
            reason: format!("GGUF metadata has no `{key}` array"),
        })?;
    arr.iter()
        .map(|v| {
            v.as_str().ok_or_else(|| Error::Tokenizer {
                path: g.path.clone(),
                reason: format!("`{key}` holds a non-string"),
            })
        })
        .collect()
}

/// Builds the tokenizer stored in a GGUF file (`tokenizer.ggml.model` = `gpt2`).
pub fn from_gguf(g: &GgufFile) -> Result<TextTokenizer> {
    let fail = |reason: String| Error::Tokenizer {
        path: g.path.clone(),
        reason,
    };
    let model = g.get("tokenizer.ggml.model").and_then(MetaValue::as_str).unwrap_or("");
    if model != "gpt2" {
        return Err(fail(format!(
            "tokenizer model `{model}` is not supported (cuma builds byte-level BPE, `gpt2`)"
        )));
    }
    let pre_name = g
        .get("tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("default");
    let pre = pre_tokenizer(pre_name).ok_or_else(|| {
        fail(format!(
            "pre-tokenizer `{pre_name}` is not supported (known: smollm, gpt2, default, llama-bpe, qwen2)"
        ))
    })?;
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    let merges = strings(g, "tokenizer.ggml.merges")?;
    let types: Vec<u64> = g
        .get("tokenizer.ggml.token_type")
        .and_then(MetaValue::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();

    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let ty = types.get(i).copied().unwrap_or(1);
            (ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED).then(|| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": ty == TOKEN_CONTROL})
            })
        })
        .collect();
    let id_of = |key: &str| {
        g.get(key)
            .and_then(MetaValue::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    };
    let token_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize)).map(|s| s.to_string());
    let (bos_id, eos_id) = (
        id_of("tokenizer.ggml.bos_token_id"),
        id_of("tokenizer.ggml.eos_token_id"),
    );
    let add_bos = matches!(g.get("tokenizer.ggml.add_bos_token"), Some(MetaValue::Bool(true)));
    let post = match (add_bos, bos_id, token_of(bos_id)) {
        (true, Some(id), Some(tok)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok.clone(): {"id": tok, "ids": [id], "tokens": [tok]}}
        }),
        _ => Value::Null,
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let inner: tokenizers::Tokenizer = spec
        .to_string()
        .parse()
        .map_err(|e: tokenizers::Error| fail(e.to_string()))?;
    let eos_token = token_of(eos_id);
    let end_of_turn = TextTokenizer::find_end_of_turn(&inner, eos_token.as_deref(), eos_id);
    Ok(TextTokenizer {
        inner: TextTokenizer::wrap(inner, &g.path)?,
        source: g.path.clone(),
        end_of_turn,
        bos_token: token_of(bos_id),
        eos_token,
        chat_template: g
            .get("tokenizer.chat_template")
            .and_then(MetaValue::as_str)
            .map(str::to_string),
        kind: format!(
            "byte-level BPE from GGUF (pre-tokenizer `{pre_name}`, {} merges)",
            merges.len()
        ),
    })
}
