//! `cuma export --onnx`: writes the decoder graph of a checkpoint or bare backbone.

use crate::cli::{ExportArgs, ExportDtype};
use anyhow::Context;
use cuma::export::{export_decoder, ExportInput};
use cuma_export::{model_proto, write_model, StoreAs};

/// The file every bundle has; a directory holding it may be overwritten with --force.
const MODEL_FILE: &str = "model.onnx";

pub fn run(a: &ExportArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let target = match &a.onnx {
        Some(p) => p.clone(),
        None => cuma::defaults::backbone(None)?,
    };
    if a.out.exists() {
        let is_bundle = a.out.join(MODEL_FILE).is_file();
        let empty = a.out.read_dir().map(|mut d| d.next().is_none()).unwrap_or(false);
        match (is_bundle, empty, a.force) {
            (_, true, _) | (true, _, true) => {}
            (true, _, false) => anyhow::bail!("{} already holds a bundle; pass --force to overwrite it", a.out.display()),
            (false, false, _) => anyhow::bail!("{} exists and is not a cuma bundle; refusing to write into it", a.out.display()),
        }
    }
    let input = ExportInput::resolve(&target, a.model.as_deref()).with_context(|| format!("reading {}", target.display()))?;
    let store_as = match a.dtype {
        ExportDtype::F32 => StoreAs::F32,
        ExportDtype::F16 => StoreAs::F16,
    };
    let graph = export_decoder(&input, store_as)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let what = if input.checkpoint.is_some() { "backbone + adapters" } else { "backbone" };
    let bytes = write_model(&model_proto(graph.graph, &format!("cuma decoder ({what})")), &a.out.join(MODEL_FILE))?;
    eprintln!(
        "wrote {} ({:.1} MB, {} routers) in {:.1} s",
        a.out.join(MODEL_FILE).display(),
        bytes as f64 / 1e6,
        graph.routers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
