//! One module per group of commands.

mod admin;
mod inspect;
mod restore;
mod snapshot;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Exit code when a snapshot skipped unreadable files or a restore failed on some paths.
pub const EXIT_INCOMPLETE: u8 = 3;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Init { kdf, block_size_kib } => admin::init(g, &kdf, block_size_kib),
        Command::Snapshot(args) => snapshot::run(g, &args),
        Command::Snapshots => inspect::snapshots(g),
        Command::Ls { snapshot, path } => inspect::ls(g, &snapshot, path.as_deref()),
        Command::Restore {
            snapshot,
            dest,
            include,
            block,
            seed,
            tar,
            apply_whiteouts,
        } => match (dest, block, tar) {
            (_, Some(out), _) => restore::block(g, &snapshot, &out, seed),
            (_, _, Some(out)) => restore::tar(g, &snapshot, &out),
            (Some(dest), None, None) => restore::run(g, &snapshot, &dest, include, apply_whiteouts),
            (None, None, None) => anyhow::bail!("give a target directory, --block OUT or --tar OUT"),
        },
        Command::Diff { a, b } => inspect::diff(g, &a, &b),
        Command::Index(cmd) => admin::index(g, &cmd),
        Command::Key(cmd) => admin::key(g, cmd),
    }
}
