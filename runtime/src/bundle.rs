//! Opening a bundle: the manifest must be of the version this build reads, and the bundle must be
//! a closed folder. Every file it lists is a plain relative name inside the folder (no `..`, no
//! absolute path, no symbolic link on the way, a regular file), present with the recorded SHA-256;
//! every file a session opens - graphs, tokenizers, the graphs' external data - must be one of
//! them; external data must lie within its file; and the metadata must agree with itself and
//! with the graphs' signatures (`Manifest::validate`). Nothing outside the folder is opened,
//! hashed or named in an error.

use crate::external_data::{external_refs, ExternalRef};
use crate::RuntimeError;
use cuma_model::bundle::{GraphSpec, Manifest, BUNDLE_FORMAT_VERSION, MANIFEST_FILE};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The manifest and tokenizers are read whole into memory: larger ones are refused.
pub const MAX_TEXT_FILE_BYTES: u64 = 256 << 20;

/// A verified bundle directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256(path: &Path) -> Result<String, RuntimeError> {
    let mut file = std::fs::File::open(path).map_err(|reason| RuntimeError::Integrity {
        path: path.display().to_string(),
        reason: format!("missing or unreadable ({reason})"),
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|reason| RuntimeError::Io {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(format!("{:x}", h.finalize()))
}

/// `dir/name` when `name` is a plain relative path whose every component is an ordinary name,
/// no component on the way is a symbolic link, and it ends at a regular file. The error names
/// the manifest entry, never what lies outside the folder.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let refuse = |reason: &str| RuntimeError::Integrity {
        path: dir.join(MANIFEST_FILE).display().to_string(),
        reason: format!("file {name:?} {reason}"),
    };
    let relative = Path::new(name);
    if name.is_empty() || name.contains('\\') || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse(
            "is not a plain relative name inside the bundle (no `..`, `.`, `\\` or absolute paths)",
        ));
    }
    let mut path = dir.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(c) = components.next() {
        path.push(c);
        let meta = std::fs::symlink_metadata(&path).map_err(|reason| RuntimeError::Integrity {
            path: path.display().to_string(),
            reason: format!("missing or unreadable ({reason})"),
        })?;
        if meta.file_type().is_symlink() {
            return Err(refuse(
                "is or goes through a symbolic link; a bundle holds its files itself",
            ));
        }
        let last = components.peek().is_none();
        if last && !meta.is_file() {
            return Err(refuse("is not a regular file"));
        }
        if !last && !meta.is_dir() {
            return Err(refuse("goes through something that is not a folder"));
        }
    }
    Ok(path)
}

/// Reads a listed text file (a tokenizer) of at most [`MAX_TEXT_FILE_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    let io = |reason| RuntimeError::Io {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_TEXT_FILE_BYTES {
        return Err(RuntimeError::Integrity {
            path: path.display().to_string(),
            reason: format!("larger than {} MiB", MAX_TEXT_FILE_BYTES >> 20),
        });
    }
    Ok(bytes)
}

impl Bundle {
    /// Reads `dir/manifest.json`, checks that every listed file is inside the folder with its
    /// checksum, that every file the bundle refers to is listed, and that the graphs' external
    /// data lies in listed files.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RuntimeError> {
        let dir = dir.as_ref().to_path_buf();
        let path = inside(&dir, MANIFEST_FILE)?;
        let text = String::from_utf8(read_capped(&path)?).map_err(|e| RuntimeError::Manifest {
            path: path.display().to_string(),
            reason: format!("not UTF-8: {e}"),
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| RuntimeError::Manifest {
            path: path.display().to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        let version = value.get("format_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(BUNDLE_FORMAT_VERSION)) {
            return Err(RuntimeError::Manifest {
                path: path.display().to_string(),
                reason: match version {
                    Some(v) if v < u64::from(BUNDLE_FORMAT_VERSION) => format!(
                        "bundle format version {v} is older than this build reads ({BUNDLE_FORMAT_VERSION}); \
                         export the bundle again with this cuma (`cuma export --onnx RUN --out DIR`)"
                    ),
                    v => format!(
                        "bundle format version {} (this build reads {BUNDLE_FORMAT_VERSION})",
                        v.map_or("missing".to_string(), |v| v.to_string())
                    ),
                },
            });
        }
        // The error names the field at fault (`adapter.method: unknown variant ...`).
        let manifest: Manifest = serde_path_to_error::deserialize(value).map_err(|e| RuntimeError::Manifest {
            path: path.display().to_string(),
            reason: format!("`{}`: {}", e.path(), e.inner()),
        })?;
        manifest.validate().map_err(|reason| RuntimeError::Manifest {
            path: path.display().to_string(),
            reason,
        })?;
        if manifest.files.contains_key(MANIFEST_FILE) {
            return Err(RuntimeError::Manifest {
                path: path.display().to_string(),
                reason: format!("`files` lists {MANIFEST_FILE} itself"),
            });
        }
        let graph_files: std::collections::BTreeSet<&str> = manifest.graphs.values().map(|g| g.file.as_str()).collect();
        let mut external: Vec<(String, ExternalRef)> = Vec::new();
        for (file, want) in &manifest.files {
            let p = inside(&dir, file)?;
            let got = if graph_files.contains(file.as_str()) {
                // Graphs are read once: hashed, and scanned for external-data references.
                let bytes = std::fs::read(&p).map_err(|reason| RuntimeError::Io {
                    path: p.display().to_string(),
                    reason,
                })?;
                let refs = external_refs(&bytes).map_err(|e| RuntimeError::Integrity {
                    path: p.display().to_string(),
                    reason: format!("not a readable ONNX model: {}", e.0),
                })?;
                external.extend(refs.into_iter().map(|r| (file.clone(), r)));
                format!("{:x}", Sha256::digest(&bytes))
            } else {
                sha256(&p)?
            };
            if &got != want {
                return Err(RuntimeError::Integrity {
                    path: p.display().to_string(),
                    reason: format!("SHA-256 {got} differs from the manifest's {want} (altered or corrupt)"),
                });
            }
        }
        let bundle = Self { dir, manifest };
        bundle.check_references(&external)?;
        Ok(bundle)
    }

    /// Every file the manifest names is listed in `files` (so verified above); every
    /// external-data reference of a graph names a listed file and lies within it.
    fn check_references(&self, external: &[(String, ExternalRef)]) -> Result<(), RuntimeError> {
        let m = &self.manifest;
        let mut named: Vec<(&str, &str)> = m
            .graphs
            .iter()
            .map(|(g, spec)| (g.as_str(), spec.file.as_str()))
            .collect();
        named.push(("backbone.tokenizer", m.backbone.tokenizer.as_str()));
        if let Some(e) = &m.encoder {
            named.push(("encoder.tokenizer", e.tokenizer.as_str()));
        }
        for &(what, file) in &named {
            self.file(file).map_err(|e| match e {
                RuntimeError::Manifest { path, reason } => RuntimeError::Manifest {
                    path,
                    reason: format!("{what}: {reason}"),
                },
                other => other,
            })?;
        }
        for (graph, r) in external {
            // ONNX resolves `location` against the graph file's folder.
            let name = match graph.rsplit_once('/') {
                Some((folder, _)) => format!("{folder}/{}", r.location),
                None => r.location.clone(),
            };
            let graph_path = self.dir.join(graph);
            let data = self.file(&name).map_err(|e| RuntimeError::Integrity {
                path: graph_path.display().to_string(),
                reason: format!("tensor {}: external data: {e}", r.tensor),
            })?;
            let size = std::fs::metadata(&data)
                .map_err(|reason| RuntimeError::Io {
                    path: data.display().to_string(),
                    reason,
                })?
                .len();
            let end = r.length.map_or(Some(size), |l| r.offset.checked_add(l));
            if r.offset > size || end.is_none_or(|e| e > size) {
                return Err(RuntimeError::Integrity {
                    path: data.display().to_string(),
                    reason: format!(
                        "tensor {} wants bytes {}..{} of a {size}-byte file (truncated or wrong offsets)",
                        r.tensor,
                        r.offset,
                        end.map_or("overflow".into(), |e| e.to_string())
                    ),
                });
            }
        }
        Ok(())
    }

    /// The path of the bundle file `name`, which must be listed (and so verified) in `files`.
    pub fn file(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        if !self.manifest.files.contains_key(name) {
            return Err(RuntimeError::Manifest {
                path: self.dir.join(MANIFEST_FILE).display().to_string(),
                reason: format!("{name:?} is not listed in `files`, so its checksum cannot be verified"),
            });
        }
        inside(&self.dir, name)
    }

    /// The bytes of the listed text file `name` (a tokenizer), at most [`MAX_TEXT_FILE_BYTES`].
    pub fn read_text_file(&self, name: &str) -> Result<Vec<u8>, RuntimeError> {
        read_capped(&self.file(name)?)
    }

    /// Graph `name`'s interface (`model` or `encoder`).
    pub fn graph_spec(&self, name: &str) -> Result<&GraphSpec, RuntimeError> {
        self.manifest.graphs.get(name).ok_or_else(|| RuntimeError::Manifest {
            path: self.dir.join(MANIFEST_FILE).display().to_string(),
            reason: format!("no `{name}` graph in this bundle"),
        })
    }

    /// The path of graph `name` (`model` or `encoder`).
    pub fn graph_path(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        self.file(&self.graph_spec(name)?.file)
    }
}
