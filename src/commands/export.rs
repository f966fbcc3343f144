//! `cuma export --onnx`: writes the decoder graph of a checkpoint or bare backbone.

use crate::cli::{ExportArgs, ExportDtype, ExportQuant};
use anyhow::Context;
use cuma::export::{write_bundle, ExportInput};
use cuma_export::{QuantBits, StoreAs, WeightFormat};

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
    input.profile_terms = !a.no_profile_terms;
    let store_as = match a.dtype {
        ExportDtype::F32 => StoreAs::F32,
        ExportDtype::F16 => StoreAs::F16,
    };
    let format = WeightFormat {
        store_as,
        quant: a.quant.map(|q| match q {
            ExportQuant::Int4 => QuantBits::Int4,
            ExportQuant::Int8 => QuantBits::Int8,
        }),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let external_data_above = a.external_data_above.unwrap_or(if a.quant.is_some() {
        cuma_export::QUANT_EXTERNAL_DATA_ABOVE
    } else {
        cuma_export::DEFAULT_EXTERNAL_DATA_ABOVE
    });
    let report = write_bundle(&input, &a.out, format, external_data_above)?;
    for (file, size) in &report.sizes {
        eprintln!("  {file:<24} {:>10.1} MB", *size as f64 / 1e6);
    }
    let q = &report.quant;
    if format.quant.is_some() {
        eprintln!(
            "quantized {} weight tensors to 4 bits and {} to 8 bits; {} of {} blocks carried over exactly",
            q.int4_tensors, q.int8_tensors, q.exact_blocks, q.blocks
        );
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
