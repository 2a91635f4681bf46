//! `amber token` without `--server`: the server's token file edited directly, to recover
//! when every admin token of a vault is lost. Stop the server first: it reads the file
//! only when it starts, and writes its own copy back on its next token change.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::{Global, TokenCommand};
use crate::client::catalog::{print_created, print_revoked, print_tokens};
use amber_server::serve::admin::info;
use amber_server::serve::tokens::{Role, TokenStore};

/// Runs a token command on the data directory `--repo` (`AMBER_REPO`).
pub fn local(g: &Global, cmd: &TokenCommand) -> Result<ExitCode> {
    let vault = g.vault.clone().unwrap_or_else(|| "default".to_string());
    if !g.repo.join("vaults").join(&vault).join("config").exists() {
        bail!(
            "no vault {vault:?} under {}: point --repo (AMBER_REPO) at the server's data directory",
            g.repo.display()
        );
    }
    let store = TokenStore::open(&g.repo.join("server").join("tokens.json"))?;
    match cmd {
        TokenCommand::Create { role, name } => {
            let (token, created) = store.create(&vault, Role::parse(role)?, name)?;
            print_created(g, &token, &info(&created));
        }
        TokenCommand::List => print_tokens(g, &store.list(&vault).iter().map(info).collect::<Vec<_>>()),
        TokenCommand::Revoke { id } => {
            store.revoke(&vault, id)?;
            print_revoked(g, id);
        }
    }
    eprintln!("note: restart `amber serve` for it to see this change");
    Ok(ExitCode::SUCCESS)
}
