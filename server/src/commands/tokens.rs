//! `amber token` without `--server`: the tokens in the server's store edited directly, to
//! recover when every admin token of a vault is lost. The change is compare-and-swap, like
//! a server's own, so servers may keep running; they see it within `refresh_seconds`.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::{Global, TokenCommand};
use crate::client::catalog::{print_created, print_revoked, print_tokens};
use amber_server::serve::admin::info;
use amber_server::serve::tokens::{Role, TokenStore};

/// Runs a token command on the server store `--repo` (`AMBER_REPO`).
pub fn local(g: &Global, cmd: &TokenCommand) -> Result<ExitCode> {
    let vault = g.vault.clone().unwrap_or_else(|| "default".to_string());
    let root = crate::context::backend(g)?;
    amber_server::serve::config::validate_vault_name(&vault)?;
    if root.head(&format!("vaults/{vault}/config"))?.is_none() {
        bail!(
            "no vault {vault:?} in {}: point --repo (AMBER_REPO) at the server's store (its data directory, or \
             the store URL of its configuration)",
            crate::context::store_url(g)?
        );
    }
    let store = TokenStore::open_in(amber_engine::store::sub_store(&root, "server")?, "tokens.json")?;
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
    eprintln!("note: running servers see this change within their refresh_seconds (10 by default)");
    Ok(ExitCode::SUCCESS)
}
