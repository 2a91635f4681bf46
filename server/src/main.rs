//! The `amber` binary: local repository commands, the gRPC server (`amber serve`) and its
//! client (`amber push`, and `--server` on the other commands).

mod cli;
mod client;
mod commands;
mod context;
mod output;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

/// Exit code of a command line that does not parse (clap's convention).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Two TLS crypto providers are linked in (ring for gRPC, aws-lc for S3): choose one
    // for the process, before any TLS is used. It fails only when one is already chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::print_error(json, &e, 1);
            ExitCode::from(1)
        }
    }
}

/// Help and version as clap prints them; a command line that does not parse as clap
/// reports it, and under `--json` also as an error document of kind `usage`.
fn usage(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let json = std::env::args_os().take_while(|a| a != "--").any(|a| a == "--json");
    if json {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        let value = serde_json::json!({ "error": { "message": message, "kind": "usage", "exit_code": EXIT_USAGE } });
        println!("{value}");
    }
    let _ = e.print();
    ExitCode::from(EXIT_USAGE)
}
