//! The `amber` binary: local repository commands, the gRPC server (`amber serve`) and its
//! client (`amber push`, and `--server` on the other commands).

mod cli;
mod client;
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
