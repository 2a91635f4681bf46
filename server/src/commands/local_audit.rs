//! Commands run on a repository directly write their own audit records, as a server's
//! calls do (`format-spec/audit.md`): role `local`, the command as the call, one chain
//! per process. Only commands that change the vault, read data out of it or check it
//! are recorded; listings are not.

use std::process::ExitCode;

use amber_engine::format::audit::AuditEvent;
use amber_engine::repo::audit::AuditWriter;
use anyhow::Result;

use crate::cli::{Command, EnvCommand, IndexCommand, KeyCommand, RepairCommand, TierCommand};
use crate::commands::{EXIT_COLD, EXIT_INCOMPLETE};
use crate::context;
use crate::output::error_kind;

/// The audit call and target of a command line, when it is one that is recorded.
pub fn call(command: &Command) -> Option<(&'static str, String)> {
    Some(match command {
        Command::Snapshot(args) => ("amber snapshot", paths(&args.paths)),
        Command::Restore { snapshot, .. } => ("amber restore", snapshot.clone()),
        Command::Verify(_) => ("amber verify", String::new()),
        Command::Forget(args) if !args.dry_run => ("amber forget", String::new()),
        Command::Compact(args) if !args.dry_run => ("amber compact", String::new()),
        Command::Protect { snapshot } => ("amber protect", snapshot.clone()),
        Command::Unprotect { snapshot } => ("amber unprotect", snapshot.clone()),
        Command::Copy { to, .. } => ("amber copy", format!("to {}", to.to_string_lossy())),
        Command::Index(IndexCommand::Rebuild) => ("amber index rebuild", String::new()),
        Command::Repair(RepairCommand::Index { dry_run: false }) => ("amber repair index", String::new()),
        Command::Repair(RepairCommand::Snapshots {
            dry_run: false,
            snapshots,
        }) => ("amber repair snapshots", snapshots.join(" ")),
        Command::Key(KeyCommand::Add { .. }) => ("amber key add", String::new()),
        Command::Key(KeyCommand::Remove { .. }) => ("amber key remove", String::new()),
        Command::Tier(TierCommand::Apply { .. }) => ("amber tier apply", String::new()),
        Command::Env(EnvCommand::Snapshot(_)) => ("amber env snapshot", String::new()),
        Command::Env(EnvCommand::Restore { snapshot, .. }) => ("amber env restore", snapshot.clone()),
        _ => return None,
    })
}

fn paths(paths: &[std::path::PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(" ")
}

/// Appends the record of a finished command to the log of the repository it opened (if
/// it opened one). A failure to write it is said on stderr; the command's own result
/// stands.
pub fn record(call: &str, target: &str, result: &Result<ExitCode>) {
    let (Some(repo), noted) = context::take_audited() else {
        return;
    };
    let (result, detail) = match result {
        Ok(code) if *code == ExitCode::SUCCESS => ("ok".to_string(), String::new()),
        Ok(code) if *code == ExitCode::from(EXIT_INCOMPLETE) => ("incomplete".into(), String::new()),
        Ok(code) if *code == ExitCode::from(EXIT_COLD) => ("cold".into(), String::new()),
        Ok(_) => ("failed".into(), String::new()),
        Err(e) => (error_kind(e).to_string(), format!("{e:#}")),
    };
    let event = AuditEvent {
        role: "local".into(),
        call: call.into(),
        target: noted.unwrap_or_else(|| target.to_string()),
        result,
        detail,
        ..AuditEvent::default()
    };
    let written = AuditWriter::new(repo.backend().clone()).and_then(|w| w.append(&repo.keys().audit_key, &event));
    if let Err(e) = written {
        eprintln!("amber: warning: the audit record of `{call}` was not written: {e}");
    }
}
