//! `cuma export --onnx`: writes the decoder graph of a checkpoint or bare backbone.

use crate::cli::{ExportArgs, ExportDtype};
use anyhow::Context;
use cuma::export::{write_bundle, ExportInput};
use cuma_export::StoreAs;

/// The file every bundle has; a directory holding it may be overwritten with --force.
const MODEL_FILE: &str = "model.onnx";

pub fn run(a: &ExportArgs) -> anyhow::Result<()> {
    let target = match a.onnx.clone().flatten() {
        Some(p) => p,
        None => cuma::defaults::backbone(None)?,
    };
    if a.out.exists() {
        let is_bundle = a.out.join(MODEL_FILE).is_file();
        let empty = a.out.read_dir().map(|mut d| d.next().is_none()).unwrap_or(false);
        match (is_bundle, empty, a.force) {
            (_, true, _) | (true, _, true) => {}
            (true, _, false) => anyhow::bail!(
                "{} already holds a bundle; pass --force to overwrite it",
                a.out.display()
            ),
            (false, false, _) => anyhow::bail!(
                "{} exists and is not a cuma bundle; refusing to write into it",
                a.out.display()
            ),
        }
    }
    let mut input =
        ExportInput::resolve(&target, a.model.as_deref()).with_context(|| format!("reading {}", target.display()))?;
    if a.merge && input.checkpoint.is_none() {
        anyhow::bail!("--merge needs a LoRA checkpoint; {} is a bare model", target.display());
    }
    input.merge = a.merge;
    let store_as = match a.dtype {
        ExportDtype::F32 => StoreAs::F32,
        ExportDtype::F16 => StoreAs::F16,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let report = write_bundle(&input, &a.out, store_as, a.external_data_above)?;
    for (file, size) in &report.sizes {
        eprintln!("  {file:<24} {:>10.1} MB", *size as f64 / 1e6);
    }
    let total: u64 = report.sizes.values().sum();
    eprintln!(
        "wrote the bundle {} ({:.1} MB, {} routers) in {:.1} s",
        a.out.display(),
        total as f64 / 1e6,
        report.routers,
        report.seconds
    );
    Ok(())
}
