//! The `amber` binary: repository commands today; the gRPC server arrives later.

mod cli;
mod commands;
mod context;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("amber: {e:#}");
            ExitCode::from(1)
        }
    }
}
