//! The wire format: request bodies parsed and checked into what the scheduler runs, and the
//! OpenAI-shaped responses and stream chunks. Every problem with a body becomes an
//! [`ApiError`] naming the field.

use super::error::ApiError;
use crate::{FinishReason, GenerateOptions, Generation, Profile};
use cuma_model::sampling::SamplingConfig;
use cuma_model::text::Message;
use serde::Deserialize;
use serde_json::{json, Value};

/// Limits the server applies to every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest `max_tokens` a request may ask for; also the default.
    pub max_tokens_cap: usize,
    /// Most profiles one `/v1/choice` request may carry.
    pub max_profiles: usize,
    /// Most options of one question.
    pub max_options: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<MessageBody>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    profile: Option<Value>,
    #[serde(default)]
    profile_text: Option<String>,
    #[serde(default)]
    cuma: Option<CumaOptions>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CumaOptions {
    #[serde(default)]
    trace_routing: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    role: String,
    content: Content,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// A checked chat request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub profile: Profile,
    pub messages: Vec<Message>,
    pub options: GenerateOptions,
    pub stream: bool,
    pub include_usage: bool,
    pub model: Option<String>,
}

/// A checked `/v1/choice` request.
#[derive(Debug, Clone)]
pub struct ChoiceRequest {
    pub profiles: Vec<Profile>,
    pub question: String,
    pub options: Vec<String>,
    pub trace_routing: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    profile: Option<Value>,
    #[serde(default)]
    profiles: Option<Vec<Value>>,
    question: String,
    options: Vec<String>,
    #[serde(default)]
    cuma: Option<CumaOptions>,
}

/// Parses `bytes` as JSON into `T`, naming the field at fault.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::invalid("the body is not valid UTF-8"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            // Where the text broke off says nothing about which field is wrong.
            return ApiError::invalid(format!("the body is not valid JSON: {inner}"));
        }
        let err = ApiError::invalid(format!("{path}: {inner}"));
        if path == "." {
            err
        } else {
            err.param(path)
        }
    })
}

/// A profile from an object of attributes or from `key=value` text.
fn profile_of(object: Option<&Value>, text: Option<&str>, param: &str) -> Result<Profile, ApiError> {
    let bad = |e: crate::RuntimeError| ApiError::invalid(e.to_string()).param(param);
    match (object, text) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give `profile` or `profile_text`, not both").param(param)),
        (Some(Value::Null), None) | (None, None) => Ok(Profile::new()),
        (Some(v), None) => Profile::from_json_value(v).map_err(bad),
        (None, Some(t)) => Profile::parse(t).map_err(bad),
    }
}

fn text_of(content: Content, at: usize) -> Result<String, ApiError> {
    match content {
        Content::Text(t) => Ok(t),
        Content::Parts(parts) => {
            let mut text = String::new();
            for (k, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid(format!(
                            "content part of type `{kind}` is not supported (text only)"
                        ))
                        .param(format!("messages[{at}].content[{k}]")))
                    }
                }
            }
            Ok(text)
        }
    }
}

/// Parses and checks a `/v1/chat/completions` body.
pub fn chat_request(bytes: &[u8], limits: &Limits, default_seed: u64) -> Result<ChatRequest, ApiError> {
    let body: ChatBody = parse(bytes)?;
    if body.messages.is_empty() {
        return Err(ApiError::invalid("`messages` is empty").param("messages"));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(format!(
                    "role `{other}` is not supported (system, developer, user, assistant)"
                ))
                .param(format!("messages[{i}].role")))
            }
        };
        if role == "system" && i > 0 {
            return Err(ApiError::invalid("a system message may only come first").param(format!("messages[{i}].role")));
        }
        messages.push(Message::new(role, &text_of(m.content, i)?));
    }
    if messages.last().is_some_and(|m| m.role == "assistant") {
        return Err(ApiError::invalid("the last message must not be the assistant's").param("messages"));
    }
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("only n = 1 is supported").param("n"));
    }
    let (max, param) = match (body.max_completion_tokens, body.max_tokens) {
        (Some(m), _) => (Some(m), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    let max_new_tokens = match max {
        None => limits.max_tokens_cap,
        Some(0) => return Err(ApiError::invalid(format!("`{param}` must be at least 1")).param(param)),
        Some(m) if m > limits.max_tokens_cap as u64 => {
            return Err(ApiError::invalid(format!(
                "`{param}` is {m}; this server allows at most {}",
                limits.max_tokens_cap
            ))
            .param(param))
        }
        Some(m) => m as usize,
    };
    let stop = match body.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("`stop` takes up to 4 non-empty sequences").param("stop"));
    }
    let sampling = SamplingConfig {
        temperature: body.temperature.unwrap_or(1.0),
        top_p: body.top_p.unwrap_or(1.0),
        top_k: 0,
        seed: body.seed.unwrap_or(default_seed),
    };
    if let Err(e) = sampling.validate() {
        let param = if e.to_string().contains("top") {
            "top_p"
        } else {
            "temperature"
        };
        return Err(ApiError::invalid(e.to_string()).param(param));
    }
    let cuma = body.cuma.unwrap_or_default();
    Ok(ChatRequest {
        profile: profile_of(body.profile.as_ref(), body.profile_text.as_deref(), "profile")?,
        messages,
        options: GenerateOptions {
            max_new_tokens,
            sampling,
            stop,
            trace_routing: cuma.trace_routing,
            logprobs: false,
        },
        stream: body.stream.unwrap_or(false),
        include_usage: body.stream_options.is_some_and(|o| o.include_usage),
        model: body.model,
    })
}

/// Parses and checks a `/v1/choice` body.
pub fn choice_request(bytes: &[u8], limits: &Limits) -> Result<ChoiceRequest, ApiError> {
    let body: ChoiceBody = parse(bytes)?;
    let _ = body.model;
    let profiles = match (body.profile, body.profiles) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give `profile` or `profiles`, not both")),
        (Some(p), None) => vec![profile_of(Some(&p), None, "profile")?],
        (None, Some(ps)) => ps
            .iter()
            .enumerate()
            .map(|(i, p)| profile_of(Some(p), None, &format!("profiles[{i}]")))
            .collect::<Result<_, _>>()?,
        (None, None) => vec![Profile::new()],
    };
    if profiles.is_empty() || profiles.len() > limits.max_profiles {
        return Err(ApiError::invalid(format!(
            "{} profiles; one request takes 1 to {}",
            profiles.len(),
            limits.max_profiles
        ))
        .param("profiles"));
    }
    if body.question.trim().is_empty() {
        return Err(ApiError::invalid("`question` is empty").param("question"));
    }
    if body.options.is_empty() || body.options.len() > limits.max_options {
        return Err(ApiError::invalid(format!(
            "{} options; a question takes 1 to {}",
            body.options.len(),
            limits.max_options
        ))
        .param("options"));
    }
    Ok(ChoiceRequest {
        profiles,
        question: body.question,
        options: body.options,
        trace_routing: body.cuma.unwrap_or_default().trace_routing,
    })
}

/// OpenAI's finish reasons: a turn that ended or a stop sequence is `stop`.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::EndOfTurn | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// What every chat response and chunk shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// The non-streaming `chat.completion` body.
pub fn completion(meta: &ResponseMeta, g: &Generation, warnings: &[String]) -> Value {
    let mut body = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": g.text},
            "finish_reason": finish_reason(g.finish_reason),
        }],
        "usage": usage(g.prompt_tokens, g.token_ids.len()),
    });
    let mut cuma = serde_json::Map::new();
    if let Some(trace) = &g.routing {
        cuma.insert("routing".into(), json!(trace));
    }
    if !warnings.is_empty() {
        cuma.insert("warnings".into(), json!(warnings));
    }
    if !cuma.is_empty() {
        body["cuma"] = Value::Object(cuma);
    }
    body
}

/// One `chat.completion.chunk`: a delta, or (with `finish`) the last chunk.
pub fn chunk(meta: &ResponseMeta, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// The usage chunk that ends a stream when `stream_options.include_usage` is set.
pub fn usage_chunk(meta: &ResponseMeta, g: &Generation) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "usage": usage(g.prompt_tokens, g.token_ids.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_tokens_cap: 64,
        max_profiles: 4,
        max_options: 10,
    };

    fn chat(body: &str) -> Result<ChatRequest, ApiError> {
        chat_request(body.as_bytes(), &LIMITS, 7)
    }

    #[test]
    fn a_full_request_parses() {
        let r = chat(
            r#"{"model": "m", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 5,
            "temperature": 0, "stop": "\n", "stream": true, "stream_options": {"include_usage": true},
            "profile": {"country": "Chile"}, "cuma": {"trace_routing": true}}"#,
        )
        .expect("valid");
        assert_eq!(r.messages[1].content, "Hi");
        assert_eq!(r.options.max_new_tokens, 5);
        assert_eq!(r.options.stop, vec!["\n".to_string()]);
        assert_eq!(r.options.sampling.seed, 7, "the default seed");
        assert!(r.stream && r.include_usage && r.options.trace_routing);
        assert_eq!(r.profile, Profile::new().with("country", "Chile"));
    }

    #[test]
    fn bad_requests_name_their_field() {
        for (body, param) in [
            (r#"{"messages": []}"#, Some("messages")),
            (
                r#"{"messages": [{"role": "user", "content": 3}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"messages": [{"role": "tool", "content": "x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000000}"#,
                Some("max_tokens"),
            ),
            (r#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#, Some("n")),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "temperature": -1}"#,
                Some("temperature"),
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 1}"#,
                Some("frequency_penalty"),
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "profile": [1]}"#,
                Some("profile"),
            ),
            (
                r#"{"messages": [{"role": "user", "content": "x"}], "stop": [""]}"#,
                Some("stop"),
            ),
            (r#"{"messages": "#, None),
        ] {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
        let e =
            chat(r#"{"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 1}"#).expect_err("unknown");
        assert!(e.message.contains("frequency_penalty"), "{}", e.message);
        let e = chat_request(b"{\"messages\": \"\xff\"}", &LIMITS, 0).expect_err("utf8");
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn choice_requests_carry_many_profiles_within_limits() {
        let r = choice_request(
            br#"{"profiles": [{"country": "Chile"}, {"country": "Japan"}], "question": "Q?", "options": ["Yes", "No"]}"#,
            &LIMITS,
        )
        .expect("valid");
        assert_eq!(r.profiles.len(), 2);
        let five = r#"{"profiles": [{}, {}, {}, {}, {}], "question": "Q?", "options": ["Yes"]}"#;
        assert_eq!(
            choice_request(five.as_bytes(), &LIMITS)
                .expect_err("too many")
                .param
                .as_deref(),
            Some("profiles")
        );
        let empty = r#"{"question": " ", "options": ["Yes"]}"#;
        assert!(choice_request(empty.as_bytes(), &LIMITS).is_err());
    }
}
