//! `cuma eval`: metrics of a checkpoint or a baseline, printed and written as JSON + Markdown.

use crate::cli::EvalArgs;
use anyhow::Context;
use cuma::eval::run::{markdown, read_items, EvalMethod, Evaluator};

pub fn run(a: &EvalArgs) -> anyhow::Result<()> {
    let device = cuma::device::parse_device(&a.device)?;
    let (evaluator, name, default_out) = match a.method {
        EvalMethod::Checkpoint => {
            let given = a.checkpoint.as_ref().context("--method checkpoint needs --checkpoint <run dir>")?;
            let dir = if given.join(cuma::train::checkpoint::MANIFEST_FILE).is_file() { given.clone() } else { given.join(cuma::train::sft::CHECKPOINT_DIR) };
            let e = Evaluator::from_checkpoint(&dir, device).with_context(|| format!("loading {}", dir.display()))?;
            let name = format!("{:?}", e.config.method.method).to_lowercase();
            (e, name, given.clone())
        }
        m => {
            let backbone = cuma::defaults::backbone(a.model.as_deref())?;
            let encoder = cuma::defaults::encoder(a.encoder.as_deref())?;
            (Evaluator::baseline(&backbone, &encoder, m, device)?, format!("{m:?}").to_lowercase(), std::path::PathBuf::from("."))
        }
    };
    let items = read_items(&a.data, a.max_items)?;
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    let (_, summary) = evaluator.evaluate(&items, a.batch_size, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let out = a.out.clone().unwrap_or(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("eval.json"), serde_json::to_string_pretty(&summary)?)?;
    let table = markdown(&name, &summary);
    std::fs::write(out.join("eval.md"), &table)?;
    print!("{table}");
    eprintln!("wrote {} and {}", out.join("eval.json").display(), out.join("eval.md").display());
    Ok(())
}
