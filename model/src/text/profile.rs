//! Profiles (attribute -> value) and their text (spec section 2): linearised in a fixed,
//! configurable order, missing values omitted. The wording is part of the bundle contract: the
//! manifest names the style and order, and every runtime renders with this function.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A demographic profile.
pub type Profile = BTreeMap<String, String>;

/// The default attribute order (WorldValuesBench).
pub const DEFAULT_ORDER: [&str; 8] = [
    "country",
    "age",
    "gender",
    "education",
    "marital",
    "religion",
    "ethnicity",
    "employment",
];

/// How a profile becomes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ProfileStyle {
    /// `You are a person from {country}, age group: {age}, gender: {gender}, ...`
    #[default]
    Wvb,
    /// `Country: X, Age: Y, Gender: Z, ...`
    Prism,
}

/// How attributes without an explicit label are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LabelRule {
    /// The attribute name with `_` as spaces: `marital_status` -> `marital status`.
    Spaces,
    /// The same, first letter upper-cased: `marital_status` -> `Marital status`.
    Capitalized,
}

/// The wording of a profile text, as data (it is written into every bundle, so that another
/// runtime renders byte-identical profile texts). Rendering: take the attributes in `order`,
/// then the others alphabetically, and drop blank values. When `lead_attribute` is present it
/// opens the text as `lead` (`{value}` replaced); when it is absent or blank, `lead_missing`
/// opens it (if any). Every other attribute becomes `item` with `{label}` and `{value}`
/// replaced, the label from `labels` or else by `label_rule`. The parts are joined with
/// `separator` and `closing` is appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileWording {
    pub lead_attribute: Option<String>,
    pub lead: String,
    pub lead_missing: Option<String>,
    pub item: String,
    pub separator: String,
    pub closing: String,
    pub labels: BTreeMap<String, String>,
    pub label_rule: LabelRule,
}

impl ProfileStyle {
    /// The wording of this style.
    pub fn wording(self) -> ProfileWording {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match self {
            ProfileStyle::Wvb => ProfileWording {
                lead_attribute: Some("country".into()),
                lead: "You are a person from {value}".into(),
                lead_missing: Some("You are a person".into()),
                item: "{label}: {value}".into(),
                separator: ", ".into(),
                closing: ".".into(),
                labels: labels(&[("age", "age group"), ("marital", "marital status")]),
                label_rule: LabelRule::Spaces,
            },
            ProfileStyle::Prism => ProfileWording {
                lead_attribute: None,
                lead: String::new(),
                lead_missing: None,
                item: "{label}: {value}".into(),
                separator: ", ".into(),
                closing: String::new(),
                labels: BTreeMap::new(),
                label_rule: LabelRule::Capitalized,
            },
        }
    }
}

impl ProfileWording {
    fn label(&self, attr: &str) -> String {
        if let Some(l) = self.labels.get(attr) {
            return l.clone();
        }
        let spaced = attr.replace('_', " ");
        match self.label_rule {
            LabelRule::Spaces => spaced,
            LabelRule::Capitalized => {
                let mut c: Vec<char> = spaced.chars().collect();
                if let Some(f) = c.first_mut() {
                    *f = f.to_ascii_uppercase();
                }
                c.into_iter().collect()
            }
        }
    }

    /// Renders `profile` in `order` (attributes not in `order` follow alphabetically).
    pub fn render(&self, profile: &Profile, order: &[&str]) -> String {
        let mut attrs: Vec<(&str, &str)> = order
            .iter()
            .filter_map(|a| profile.get(*a).map(|v| (*a, v.as_str())))
            .collect();
        attrs.extend(
            profile
                .iter()
                .filter(|(k, _)| !order.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        attrs.retain(|(_, v)| !v.trim().is_empty());
        let lead = self.lead_attribute.as_deref();
        let mut parts: Vec<String> = Vec::with_capacity(attrs.len() + 1);
        match lead.and_then(|l| attrs.iter().find(|(k, _)| *k == l)) {
            Some((_, v)) => parts.push(fill(&self.lead, "", v)),
            None => parts.extend(self.lead_missing.clone()),
        }
        parts.extend(
            attrs
                .iter()
                .filter(|(k, _)| Some(*k) != lead)
                .map(|(k, v)| fill(&self.item, &self.label(k), v)),
        );
        format!("{}{}", parts.join(&self.separator), self.closing)
    }
}

/// `template` with `{label}` and `{value}` replaced in one pass (a value holding `{label}` stays
/// as it is).
fn fill(template: &str, label: &str, value: &str) -> String {
    template
        .split("{value}")
        .map(|piece| piece.replace("{label}", label))
        .collect::<Vec<_>>()
        .join(value)
}

/// Renders `profile` in `order` with the wording of `style` (attributes not in `order` follow
/// alphabetically).
pub fn render(profile: &Profile, order: &[&str], style: ProfileStyle) -> String {
    style.wording().render(profile, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Profile {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn wvb_wording_in_order_with_missing_values_omitted() {
        let prof = p(&[
            ("religion", "Buddhist"),
            ("country", "Thailand"),
            ("age", "55-64"),
            ("gender", "Female"),
        ]);
        assert_eq!(
            render(&prof, &DEFAULT_ORDER, ProfileStyle::Wvb),
            "You are a person from Thailand, age group: 55-64, gender: Female, religion: Buddhist."
        );
    }

    #[test]
    fn a_blank_country_still_gets_the_opening() {
        let blank = p(&[("country", "  "), ("age", "25-34")]);
        assert_eq!(
            render(&blank, &DEFAULT_ORDER, ProfileStyle::Wvb),
            "You are a person, age group: 25-34."
        );
        assert_eq!(
            render(&p(&[("age", "25-34")]), &DEFAULT_ORDER, ProfileStyle::Wvb),
            "You are a person, age group: 25-34."
        );
        assert_eq!(
            render(&p(&[("country", "")]), &DEFAULT_ORDER, ProfileStyle::Wvb),
            "You are a person."
        );
    }

    #[test]
    fn prism_wording_and_custom_order() {
        let prof = p(&[("country", "Nigeria"), ("age", "35-44"), ("gender", "Female")]);
        assert_eq!(
            render(&prof, &["gender", "country", "age"], ProfileStyle::Prism),
            "Gender: Female, Country: Nigeria, Age: 35-44"
        );
    }
}
