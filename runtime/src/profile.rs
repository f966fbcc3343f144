//! A user's demographic profile: attribute -> value, built in code, parsed from
//! `key=value,key=value` text or from a JSON object, and rendered with the bundle's wording
//! ([`cuma_model::text::profile`], the same function training used).

use crate::RuntimeError;
use cuma_model::bundle::ProfileSpec;
#[cfg(test)]
use cuma_model::text::profile::ProfileStyle;
use std::collections::BTreeMap;

/// A demographic profile.
///
/// ```
/// use cuma_runtime::Profile;
/// let p = Profile::new().with("country", "Thailand").with("age", "55-64");
/// assert_eq!(p, Profile::parse("country=Thailand, age=55-64").unwrap());
/// assert_eq!(p, Profile::from_json(r#"{"country": "Thailand", "age": "55-64"}"#).unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Profile {
    attributes: BTreeMap<String, String>,
}

impl Profile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `attribute` to `value` (builder style).
    pub fn with(mut self, attribute: &str, value: &str) -> Self {
        self.attributes
            .insert(attribute.trim().to_string(), value.trim().to_string());
        self
    }

    /// Parses `key=value,key=value` (spaces around keys and values are ignored; a value may not
    /// contain a comma).
    pub fn parse(text: &str) -> Result<Self, RuntimeError> {
        let mut profile = Self::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| RuntimeError::Profile(format!("`{part}` is not key=value")))?;
            if k.trim().is_empty() {
                return Err(RuntimeError::Profile(format!("`{part}` has an empty attribute name")));
            }
            if profile.attributes.contains_key(k.trim()) {
                return Err(RuntimeError::Profile(format!("attribute `{}` given twice", k.trim())));
            }
            profile = profile.with(k, v);
        }
        Ok(profile)
    }

    /// Parses a JSON object of string (or number) values.
    pub fn from_json(text: &str) -> Result<Self, RuntimeError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| RuntimeError::Profile(format!("not JSON: {e}")))?;
        Self::from_json_value(&value)
    }

    /// A profile from an already parsed JSON object.
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self, RuntimeError> {
        let obj = value
            .as_object()
            .ok_or_else(|| RuntimeError::Profile("a profile must be a JSON object of attribute -> value".into()))?;
        let mut profile = Self::new();
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    return Err(RuntimeError::Profile(format!(
                        "attribute `{k}`: {other} is not a string"
                    )))
                }
            };
            profile = profile.with(k, &v);
        }
        Ok(profile)
    }

    /// The attributes, by name.
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    /// Attributes the bundle was not trained with (not in the manifest's attribute order).
    pub fn unknown_attributes(&self, spec: &ProfileSpec) -> Vec<String> {
        self.attributes
            .keys()
            .filter(|k| !spec.order.iter().any(|o| o == *k))
            .cloned()
            .collect()
    }

    /// Checks the attributes against the bundle: unknown ones are an error when `strict`, else
    /// dropped and returned as warnings.
    pub fn checked(&self, spec: &ProfileSpec, strict: bool) -> Result<(Self, Vec<String>), RuntimeError> {
        let unknown = self.unknown_attributes(spec);
        if unknown.is_empty() {
            return Ok((self.clone(), Vec::new()));
        }
        let known = spec.order.join(", ");
        if strict {
            return Err(RuntimeError::Profile(format!(
                "unknown attribute(s) {} (this bundle knows: {known})",
                unknown.join(", ")
            )));
        }
        let mut kept = self.clone();
        kept.attributes.retain(|k, _| !unknown.contains(k));
        let warnings = unknown
            .iter()
            .map(|u| format!("ignoring unknown profile attribute `{u}` (this bundle knows: {known})"))
            .collect();
        Ok((kept, warnings))
    }

    /// The profile's text in the bundle's style and attribute order.
    pub fn render(&self, spec: &ProfileSpec) -> Result<String, RuntimeError> {
        let order: Vec<&str> = spec.order.iter().map(String::as_str).collect();
        Ok(spec.wording.render(&self.attributes, &order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProfileSpec {
        ProfileSpec {
            wording: ProfileStyle::Wvb.wording(),
            order: vec!["country".into(), "age".into(), "religion".into()],
            in_prompt: true,
            neutral_system: "x".into(),
        }
    }

    #[test]
    fn parses_and_renders_in_bundle_order() {
        let p = Profile::parse("religion=Buddhist , country = Thailand,age=55-64").expect("parses");
        assert_eq!(
            p.render(&spec()).expect("renders"),
            "You are a person from Thailand, age group: 55-64, religion: Buddhist."
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in ["country", "=Chile", "country=Chile,country=Peru"] {
            assert!(matches!(Profile::parse(bad), Err(RuntimeError::Profile(_))), "{bad}");
        }
        assert!(Profile::from_json("[1, 2]").is_err());
        assert!(Profile::from_json(r#"{"country": ["a"]}"#).is_err());
    }

    #[test]
    fn unknown_attributes_warn_or_fail() {
        let p = Profile::parse("country=Chile,shoe_size=42").expect("parses");
        let (kept, warnings) = p.checked(&spec(), false).expect("lenient");
        assert_eq!(kept, Profile::new().with("country", "Chile"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("shoe_size"), "{warnings:?}");
        let err = p.checked(&spec(), true).expect_err("strict");
        assert!(err.to_string().contains("shoe_size"), "{err}");
    }
}
