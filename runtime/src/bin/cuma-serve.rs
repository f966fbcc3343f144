//! `cuma-serve`: an OpenAI-compatible HTTP server for an exported cuma bundle. See
//! `cuma-serve --help` and [`cuma_runtime::server`].

use clap::Parser;

fn main() -> anyhow::Result<()> {
    cuma_runtime::server::cli::run(cuma_runtime::server::cli::Args::parse())
}
