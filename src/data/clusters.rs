//! Country -> cultural cluster (the Inglehart-Welzel zones; `data/cultural_clusters.csv`,
//! compiled in), looked up by country name or ISO-3 code.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

const EMBEDDED: &str = include_str!("../../data/cultural_clusters.csv");

/// A map from country (name or ISO-3) to cluster.
#[derive(Debug, Clone)]
pub struct ClusterMap {
    by_key: HashMap<String, String>,
}

impl ClusterMap {
    /// The map shipped with cuma (every WVS-7 country).
    pub fn embedded() -> Result<Self> {
        Self::parse(EMBEDDED, Path::new("data/cultural_clusters.csv"))
    }

    /// A CSV with columns `iso3,country,cluster`.
    pub fn from_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut by_key = HashMap::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [iso, country, cluster] = cols.as_slice() else {
                return Err(Error::Invalid(format!(
                    "{} line {}: expected iso3,country,cluster",
                    path.display(),
                    i + 1
                )));
            };
            by_key.insert(iso.to_ascii_uppercase(), cluster.to_string());
            by_key.insert(country.to_lowercase(), cluster.to_string());
        }
        Ok(Self { by_key })
    }

    /// The cluster of a country given by name or ISO-3 code.
    pub fn cluster_of(&self, country: &str) -> Option<&str> {
        let c = country.trim();
        self.by_key
            .get(&c.to_ascii_uppercase())
            .or_else(|| self.by_key.get(&c.to_lowercase()))
            .map(String::as_str)
    }
}
