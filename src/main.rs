//! The `cuma` binary: parses the command line and dispatches to `commands`.

mod cli;
mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before the first tensor: a training step's freed activations stay in the process.
    cuma::memory::retain_freed_memory();
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Info(a) => commands::info::run(&a),
        cli::Command::Generate(a) => commands::generate::run(&a),
        cli::Command::Embed(a) => commands::embed::run(&a),
        cli::Command::Data(c) => commands::data::run(&c),
        cli::Command::Train(a) => commands::train::run(&a),
        cli::Command::Eval(a) => commands::eval::run(&a),
        cli::Command::Topology(a) => commands::topology::run(&a),
        cli::Command::Compare(a) => commands::compare::run(&a),
        cli::Command::Curve(a) => commands::curve::run(&a),
        cli::Command::Export(a) => commands::export::run(&a),
        cli::Command::Bench(c) => commands::bench::run(&c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
