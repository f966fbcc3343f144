//! Opening a bundle: the manifest must be of the version this build reads, and every file it
//! lists must be present with the recorded SHA-256.

use crate::RuntimeError;
use cuma_model::bundle::{GraphSpec, Manifest, BUNDLE_FORMAT_VERSION, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A verified bundle directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256(path: &Path) -> Result<String, RuntimeError> {
    let mut file = std::fs::File::open(path).map_err(|reason| RuntimeError::Integrity { path: path.display().to_string(), reason: format!("missing or unreadable ({reason})") })?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|reason| RuntimeError::Io { path: path.display().to_string(), reason })?;
    Ok(format!("{:x}", h.finalize()))
}

impl Bundle {
    /// Reads `dir/manifest.json` and checks every file's checksum.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|reason| RuntimeError::Io { path: path.display().to_string(), reason })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| RuntimeError::Manifest { path: path.display().to_string(), reason: format!("not JSON: {e}") })?;
        let version = value.get("format_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(BUNDLE_FORMAT_VERSION)) {
            return Err(RuntimeError::Manifest {
                path: path.display().to_string(),
                reason: format!("bundle format version {} (this build reads {BUNDLE_FORMAT_VERSION})", version.map_or("missing".to_string(), |v| v.to_string())),
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| RuntimeError::Manifest { path: path.display().to_string(), reason: e.to_string() })?;
        for (file, want) in &manifest.files {
            let p = dir.join(file);
            let got = sha256(&p)?;
            if &got != want {
                return Err(RuntimeError::Integrity { path: p.display().to_string(), reason: format!("SHA-256 {got} differs from the manifest's {want} (altered or corrupt)") });
            }
        }
        Ok(Self { dir, manifest })
    }

    /// Graph `name`'s interface (`model` or `encoder`).
    pub fn graph_spec(&self, name: &str) -> Result<&GraphSpec, RuntimeError> {
        self.manifest.graphs.get(name).ok_or_else(|| RuntimeError::Manifest { path: self.dir.join(MANIFEST_FILE).display().to_string(), reason: format!("no `{name}` graph in this bundle") })
    }

    /// The path of graph `name` (`model` or `encoder`).
    pub fn graph_path(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.dir.join(&self.graph_spec(name)?.file))
    }
}
