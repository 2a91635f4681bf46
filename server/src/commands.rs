//! One module per group of commands.

mod admin;
mod audit;
mod compact;
mod copy;
mod dump;
pub mod env;
mod find;
mod forget;
pub mod inspect;
mod local_audit;
mod repair;
pub mod restore;
pub mod snapshot;
mod stats;
pub mod tier;
mod tokens;
mod verify;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Exit code when a snapshot skipped unreadable files or a restore failed on some paths.
pub const EXIT_INCOMPLETE: u8 = 3;
/// Exit status of a restore that needs data still in an archive class.
pub const EXIT_COLD: u8 = 4;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    if g.server.is_some() {
        return remote(cli);
    }
    let audited = local_audit::call(&cli.command);
    let result = local(g, cli.command);
    if let Some((call, target)) = audited {
        local_audit::record(call, &target, &result);
    }
    result
}

/// Runs a command on the repository.
fn local(g: &crate::cli::Global, command: Command) -> Result<ExitCode> {
    match command {
        Command::Init { kdf, block_size_kib } => admin::init(g, &kdf, block_size_kib),
        Command::Snapshot(args) => snapshot::run(g, &args),
        Command::Snapshots => inspect::snapshots(g),
        Command::Ls { snapshot, path } => inspect::ls(g, &snapshot, path.as_ref().map(|p| p.as_encoded_bytes())),
        Command::Restore {
            snapshot,
            dest,
            include,
            block,
            seed,
            tar,
            apply_whiteouts,
            image,
            format,
            cold,
        } => {
            include_needs_dest(&include, block.is_none() && tar.is_none() && image.is_none())?;
            if let Some(code) = tier::cold_gate(g, &snapshot, &cold)? {
                return Ok(code);
            }
            if let Some(out) = image {
                return restore::image(g, &snapshot, &out, format.as_deref());
            }
            match (dest, block, tar) {
                (_, Some(out), _) => restore::block(g, &snapshot, &out, seed),
                (_, _, Some(out)) => restore::tar(g, &snapshot, &out),
                (Some(dest), None, None) => restore::run(g, &snapshot, &dest, include, apply_whiteouts),
                (None, None, None) => anyhow::bail!("give a target directory, --block OUT or --tar OUT"),
            }
        }
        Command::Diff { a, b } => inspect::diff(g, &a, &b),
        Command::Find { pattern, snapshots } => find::local(g, &pattern, &snapshots),
        Command::Dump { snapshot, path } => dump::local(g, &snapshot, path.as_encoded_bytes()),
        Command::Index(cmd) => admin::index(g, &cmd),
        Command::Repair(cmd) => repair::run(g, &cmd),
        Command::Key(cmd) => admin::key(g, cmd),
        Command::Tier(cmd) => tier::run(g, &cmd),
        Command::Verify(args) => verify::run(g, &args),
        Command::Stats => stats::run(g),
        Command::Forget(args) => forget::run(g, &args),
        Command::Compact(args) => compact::run(g, &args),
        Command::Protect { snapshot } => forget::protect(g, &snapshot, true),
        Command::Unprotect { snapshot } => forget::protect(g, &snapshot, false),
        Command::Copy {
            snapshots,
            to,
            to_password_file,
            to_cache_dir,
        } => copy::run(g, &snapshots, &to, to_password_file.as_deref(), to_cache_dir),
        Command::Serve { listen, config } => {
            amber_server::serve::run(&amber_server::serve::ServeArgs { listen, config })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(cmd) => tokens::local(g, &cmd),
        Command::Audit { since } => audit::run(g, since.as_deref()),
        Command::Env(cmd) => env::local(g, &cmd),
        Command::Envs => env::list(g),
        Command::Push(_) | Command::Share { .. } => {
            anyhow::bail!("this command talks to a server: pass --server URL or set AMBER_SERVER")
        }
    }
}

/// Runs a command against `--server`.
fn remote(cli: Cli) -> Result<ExitCode> {
    use crate::client;
    let g = &cli.global;
    match cli.command {
        Command::Push(args) => client::push::run(g, &args),
        Command::Snapshot(_) => anyhow::bail!("use `amber push` to snapshot to a server"),
        Command::Snapshots => client::catalog::snapshots(g),
        Command::Env(cmd) => client::push_env::run(g, &cmd),
        Command::Envs => client::pull_env::list(g),
        Command::Ls { snapshot, path } => {
            client::catalog::ls(g, &snapshot, path.as_ref().map(|p| p.as_encoded_bytes()))
        }
        Command::Diff { a, b } => client::catalog::diff(g, &a, &b),
        Command::Token(cmd) => client::catalog::token(g, &cmd),
        Command::Forget(args) => forget::run(g, &args),
        Command::Compact(args) => compact::run(g, &args),
        Command::Protect { snapshot } => forget::protect(g, &snapshot, true),
        Command::Unprotect { snapshot } => forget::protect(g, &snapshot, false),
        Command::Stats => stats::run(g),
        Command::Verify(args) => verify::run(g, &args),
        Command::Audit { since } => audit::run(g, since.as_deref()),
        Command::Share { snapshot, to } => client::catalog::share(g, &snapshot, &to),
        Command::Find { pattern, snapshots } => find::remote(g, &pattern, &snapshots),
        Command::Dump { snapshot, path } => dump::remote(g, &snapshot, path.as_encoded_bytes()),
        Command::Restore {
            snapshot,
            dest,
            block,
            seed,
            tar,
            include,
            apply_whiteouts,
            image,
            format,
            cold,
        } => {
            include_needs_dest(&include, block.is_none() && tar.is_none() && image.is_none())?;
            if let Some(code) = client::cold::gate(g, &snapshot, &cold)? {
                return Ok(code);
            }
            if let Some(out) = image {
                return client::pull_image::run(g, &snapshot, &out, format.as_deref());
            }
            if apply_whiteouts {
                client::local_only("--apply-whiteouts (extracting a layer)")?;
            }
            match tar {
                Some(out) => client::pull_tar::run(g, &snapshot, &out),
                None => client::pull::run(
                    g,
                    &client::pull::PullArgs {
                        snapshot: &snapshot,
                        dest: dest.as_deref(),
                        block: block.as_deref(),
                        seed: seed.as_deref(),
                        include: &include,
                    },
                ),
            }
        }
        Command::Serve { .. } => anyhow::bail!("`amber serve` runs a server; drop --server / AMBER_SERVER"),
        Command::Repair(cmd) => repair::run(g, &cmd),
        Command::Init { .. } | Command::Index(_) | Command::Key(_) | Command::Tier(_) | Command::Copy { .. } => {
            anyhow::bail!("this command works on a local repository only; drop --server / AMBER_SERVER")
        }
    }
}

/// Refuses `--include` with `--tar` or `--block`, in both modes.
fn include_needs_dest(include: &[String], into_directory: bool) -> Result<()> {
    if !include.is_empty() && !into_directory {
        anyhow::bail!(
            "--include selects paths of a tree restored into a directory; it does not apply to --tar or --block"
        );
    }
    Ok(())
}
