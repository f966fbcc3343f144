//! Profiles in training and evaluation data. Their wording lives in
//! [`cuma_model::text::profile`] (shared with the runtime); this module indexes unique texts.

pub use cuma_model::text::profile::{render, Profile, ProfileStyle, DEFAULT_ORDER};

/// The profile texts of `profiles`, each unique text once, and every profile's row among them
/// (so each unique profile is embedded once).
pub fn index<'a>(
    profiles: impl IntoIterator<Item = &'a Profile>,
    order: &[&str],
    style: ProfileStyle,
) -> (Vec<String>, Vec<usize>) {
    let mut texts: Vec<String> = Vec::new();
    let mut row_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let rows = profiles
        .into_iter()
        .map(|p| {
            let text = render(p, order, style);
            *row_of.entry(text.clone()).or_insert_with(|| {
                texts.push(text);
                texts.len() - 1
            })
        })
        .collect();
    (texts, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Profile {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn index_embeds_each_unique_profile_once() {
        let a = p(&[("country", "Chile")]);
        let b = p(&[("country", "Peru")]);
        let (texts, rows) = index([&a, &b, &a], &DEFAULT_ORDER, ProfileStyle::Wvb);
        assert_eq!(texts.len(), 2);
        assert_eq!(rows, vec![0, 1, 0]);
    }
}
