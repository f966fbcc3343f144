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
pub enum ProfileStyle {
    /// `You are a person from {country}, age group: {age}, gender: {gender}, ...`
    #[default]
    Wvb,
    /// `Country: X, Age: Y, Gender: Z, ...`
    Prism,
}

fn wvb_label(attr: &str) -> String {
    match attr {
        "age" => "age group".into(),
        "marital" => "marital status".into(),
        other => other.replace('_', " "),
    }
}

fn title(attr: &str) -> String {
    let mut c = attr.replace('_', " ").chars().collect::<Vec<_>>();
    if let Some(f) = c.first_mut() {
        *f = f.to_ascii_uppercase();
    }
    c.into_iter().collect()
}

/// Renders `profile` in `order` (attributes not in `order` follow alphabetically).
pub fn render(profile: &Profile, order: &[&str], style: ProfileStyle) -> String {
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
    let attrs: Vec<(&str, &str)> = attrs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    match style {
        ProfileStyle::Prism => attrs
            .iter()
            .map(|(k, v)| format!("{}: {v}", title(k)))
            .collect::<Vec<_>>()
            .join(", "),
        ProfileStyle::Wvb => {
            let mut parts = Vec::new();
            for (k, v) in &attrs {
                if *k == "country" {
                    parts.insert(0, format!("You are a person from {v}"));
                } else {
                    parts.push(format!("{}: {v}", wvb_label(k)));
                }
            }
            // A blank country counts as none: the opening must not depend on an empty value.
            if !attrs.iter().any(|(k, _)| *k == "country") {
                parts.insert(0, "You are a person".into());
            }
            format!("{}.", parts.join(", "))
        }
    }
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
