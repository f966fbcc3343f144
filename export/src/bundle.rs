//! Finishing a bundle: every file written into it hashed (SHA-256) into the manifest, the
//! manifest checked with the same [`Manifest::validate`] the runtime applies, then written. The
//! one place a bundle's `manifest.json` is produced.

use crate::{write_new_file, ExportError};
use cuma_model::bundle::{Manifest, BUNDLE_FORMAT_VERSION, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The SHA-256 of the file at `path`, hex.
pub fn sha256_file(path: &Path) -> Result<String, ExportError> {
    let io = |reason| ExportError::Io {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Records `files` (names inside `dir`, as written) with their hashes in `manifest`, checks it,
/// and writes `dir/manifest.json`. Returns each file's size in bytes.
pub fn finish_bundle(
    dir: &Path,
    mut manifest: Manifest,
    files: &[String],
) -> Result<BTreeMap<String, u64>, ExportError> {
    let mut sizes = BTreeMap::new();
    manifest.files.clear();
    for name in files {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).map_err(|reason| ExportError::Io {
            path: path.display().to_string(),
            reason,
        })?;
        sizes.insert(name.clone(), meta.len());
        manifest.files.insert(name.clone(), sha256_file(&path)?);
    }
    manifest.format_version = BUNDLE_FORMAT_VERSION;
    manifest.validate().map_err(ExportError::Manifest)?;
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| ExportError::Manifest(e.to_string()))?;
    write_new_file(&dir.join(MANIFEST_FILE), text.as_bytes())?;
    Ok(sizes)
}
