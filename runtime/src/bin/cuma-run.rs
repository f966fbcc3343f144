//! `cuma-run`: answers with an exported cuma bundle for a given profile, on ONNX Runtime or tract.
//! See `cuma-run --help` and [`cuma_runtime::cli`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cuma_runtime::cli::Args::parse();
    cuma_runtime::cli::run(args, &mut std::io::stdin().lock(), &mut std::io::stdout().lock())
}
