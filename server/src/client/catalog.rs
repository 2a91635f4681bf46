//! `snapshots`, `ls`, `diff`, `token` and `share` against a server.

use std::process::ExitCode;

use amber_engine::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use amber_engine::id::{Hash32, SnapshotId};
use amber_engine::ops::diff::{Change, ChangeKind};
use amber_proto::v1 as pb;
use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cli::{Global, TokenCommand};
use crate::client::{Remote, block_on, failed};
use crate::commands::inspect::{print_diff, print_entries, print_snapshots};
use crate::output::{emit, put_time};
use amber_server::serve::convert;

/// `amber snapshots --server`.
///
/// # Errors
/// Connection and server errors.
pub fn snapshots(g: &Global) -> Result<ExitCode> {
    let all = block_on(async {
        let remote = Remote::connect(g).await?;
        let list = list_snapshots(&remote, g.env.as_deref()).await?;
        list.iter().map(engine_snapshot).collect::<Result<Vec<_>>>()
    })?;
    print_snapshots(g, all)
}

/// Every snapshot of the vault (of `env` when given), oldest first, as the catalog
/// describes them.
///
/// # Errors
/// Connection and server errors.
pub async fn list_snapshots(remote: &Remote, env: Option<&str>) -> Result<Vec<pb::SnapshotInfo>> {
    let req = pb::ListSnapshotsRequest {
        vault: remote.vault.clone(),
        environment: env.map(str::to_string),
        ..Default::default()
    };
    let list = remote
        .catalog()
        .list_snapshots(remote.request(req))
        .await
        .map_err(|s| failed("cannot list snapshots", &s))?
        .into_inner();
    Ok(list.snapshots)
}

/// An engine snapshot from the catalog's description (without its root id).
pub fn engine_snapshot(i: &pb::SnapshotInfo) -> Result<(SnapshotId, Snapshot)> {
    let id = SnapshotId::from_hex(&i.id).context("the server sent a malformed id")?;
    let labels = i.labels.clone().unwrap_or_default();
    let stats = i.stats.unwrap_or_default();
    let source = match pb::SourceKind::try_from(i.kind) {
        Ok(pb::SourceKind::Tar) => SourceKind::TarLayer,
        Ok(pb::SourceKind::Volume) => SourceKind::BlockVolume,
        Ok(pb::SourceKind::Image) => SourceKind::Image,
        Ok(pb::SourceKind::Environment) => SourceKind::Environment,
        _ => SourceKind::Tree,
    };
    let snap = Snapshot {
        source,
        root: Hash32::default(),
        parent: SnapshotId::from_hex(&i.parent_id).ok(),
        time_ns: i.time_unix_nanos,
        environment: labels.environment,
        lab: labels.lab,
        researcher: labels.researcher,
        hostname: i.hostname.clone(),
        source_path: i.source_path.clone(),
        tags: labels.tags,
        metadata: labels.metadata.into_iter().map(|m| (m.key, m.value)).collect(),
        stats: SnapshotStats {
            files: stats.files,
            dirs: stats.dirs,
            bytes: stats.bytes,
            bytes_new: stats.bytes_new,
            blobs_new: stats.blobs_new,
        },
        skipped: i.skipped,
        skipped_paths: Vec::new(),
        root_entry: None,
    };
    Ok((id, snap))
}

/// `amber ls --server`.
///
/// # Errors
/// Connection and server errors.
pub fn ls(g: &Global, snapshot: &str, path: Option<&[u8]>) -> Result<ExitCode> {
    let items = block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::ListEntriesRequest {
            vault: remote.vault.clone(),
            snapshot: snapshot.to_string(),
            path: path.unwrap_or_default().to_vec(),
            recursive: true,
            environment: g.env.clone().unwrap_or_default(),
        };
        let mut stream = remote
            .catalog()
            .list_entries(remote.request(req))
            .await
            .map_err(|s| failed("cannot list entries", &s))?
            .into_inner();
        let mut items = Vec::new();
        while let Some(batch) = stream.message().await.map_err(|s| failed("listing failed", &s))? {
            for e in batch.entries {
                let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default().to_vec();
                let entry = convert::entry(name, e.meta.as_ref()).map_err(|s| failed("bad entry", &s))?;
                items.push((e.path, entry));
            }
        }
        Ok(items)
    })?;
    print_entries(g, &items)
}

/// `amber diff --server`.
///
/// # Errors
/// Connection and server errors.
pub fn diff(g: &Global, a: &str, b: &str) -> Result<ExitCode> {
    let (ida, idb, changes) = block_on(async {
        let remote = Remote::connect(g).await?;
        let resolve = |name: &str| {
            let remote = remote.clone();
            let req = pb::GetSnapshotRequest {
                vault: remote.vault.clone(),
                snapshot: name.to_string(),
                environment: g.env.clone().unwrap_or_default(),
            };
            async move {
                let info = remote
                    .catalog()
                    .get_snapshot(remote.request(req))
                    .await
                    .map_err(|s| failed("cannot find the snapshot", &s))?
                    .into_inner();
                SnapshotId::from_hex(&info.id).context("the server sent a malformed id")
            }
        };
        let (ida, idb) = (resolve(a).await?, resolve(b).await?);
        let req = pb::DiffRequest {
            vault: remote.vault.clone(),
            from_snapshot: ida.to_hex(),
            to_snapshot: idb.to_hex(),
            environment: String::new(),
        };
        let mut stream = remote
            .catalog()
            .diff(remote.request(req))
            .await
            .map_err(|s| failed("cannot diff", &s))?
            .into_inner();
        let mut changes = Vec::new();
        while let Some(batch) = stream.message().await.map_err(|s| failed("diff failed", &s))? {
            for c in batch.changes {
                changes.push(engine_change(&c)?);
            }
        }
        Ok((ida, idb, changes))
    })?;
    print_diff(g, &ida, &idb, &changes)
}

fn engine_change(c: &pb::Change) -> Result<Change> {
    let kind = match pb::ChangeKind::try_from(c.kind) {
        Ok(pb::ChangeKind::Added) => ChangeKind::Added,
        Ok(pb::ChangeKind::Removed) => ChangeKind::Removed,
        Ok(pb::ChangeKind::Modified) => ChangeKind::Modified,
        Ok(pb::ChangeKind::Metadata) => ChangeKind::Metadata,
        Ok(pb::ChangeKind::TypeChanged) => ChangeKind::TypeChanged,
        _ => bail!("the server sent an unknown change kind"),
    };
    Ok(Change {
        path: c.path.clone(),
        kind,
        entry_kind: convert::entry_kind(c.entry_kind).map_err(|s| failed("bad change", &s))?,
        size_before: c.size_before,
        size_after: c.size_after,
    })
}

fn role_name(r: i32) -> &'static str {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Sidecar) => "sidecar",
        Ok(pb::Role::Restore) => "restore",
        Ok(pb::Role::Admin) => "admin",
        _ => "?",
    }
}

/// A token as the `token` documents show it: times as RFC 3339 and `_unix_nanos`;
/// `revoked` and `revoked_unix_nanos` are null for an active token.
fn token_json(t: &pb::TokenInfo) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), json!(t.id));
    obj.insert("role".into(), json!(role_name(t.role)));
    obj.insert("name".into(), json!(t.name));
    put_time(&mut obj, "created", t.created_unix.saturating_mul(1_000_000_000));
    if t.revoked_unix == 0 {
        obj.insert("revoked".into(), serde_json::Value::Null);
        obj.insert("revoked_unix_nanos".into(), serde_json::Value::Null);
    } else {
        put_time(&mut obj, "revoked", t.revoked_unix.saturating_mul(1_000_000_000));
    }
    serde_json::Value::Object(obj)
}

/// `amber token create|list|revoke` (admin token of the vault).
///
/// # Errors
/// Connection and server errors.
pub fn token(g: &Global, cmd: &TokenCommand) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let mut admin = remote.admin();
        let vault = remote.vault.clone();
        match cmd {
            TokenCommand::Create { role, name } => {
                let role = match role.as_str() {
                    "sidecar" => pb::Role::Sidecar,
                    "restore" => pb::Role::Restore,
                    "admin" => pb::Role::Admin,
                    other => bail!("role {other:?}: use sidecar, restore or admin"),
                };
                let req = pb::CreateTokenRequest {
                    vault,
                    role: role as i32,
                    name: name.clone(),
                };
                let r = admin
                    .create_token(remote.request(req))
                    .await
                    .map_err(|s| failed("cannot create the token", &s))?;
                let r = r.into_inner();
                print_created(g, &r.token, &r.info.unwrap_or_default());
            }
            TokenCommand::List => {
                let req = pb::ListTokensRequest { vault };
                let r = admin
                    .list_tokens(remote.request(req))
                    .await
                    .map_err(|s| failed("cannot list tokens", &s))?;
                print_tokens(g, &r.into_inner().tokens);
            }
            TokenCommand::Revoke { id } => {
                let req = pb::RevokeTokenRequest { vault, id: id.clone() };
                admin
                    .revoke_token(remote.request(req))
                    .await
                    .map_err(|s| failed("cannot revoke the token", &s))?;
                print_revoked(g, id);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints a new token (shown once).
pub fn print_created(g: &Global, token: &str, info: &pb::TokenInfo) {
    let value = json!({"token": token, "info": token_json(info)});
    emit(g.json, &value, || {
        format!(
            "token: {token}\n(id {}, role {}; shown once)",
            info.id,
            role_name(info.role)
        )
    });
}

/// Prints a vault's tokens.
pub fn print_tokens(g: &Global, tokens: &[pb::TokenInfo]) {
    let value = json!(tokens.iter().map(token_json).collect::<Vec<_>>());
    emit(g.json, &value, || {
        tokens
            .iter()
            .map(|t| {
                let state = if t.revoked_unix == 0 { "active" } else { "revoked" };
                format!("{}  {:<8} {:<8} {}", t.id, role_name(t.role), state, t.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}

/// Prints a revocation.
pub fn print_revoked(g: &Global, id: &str) {
    emit(g.json, &json!({"revoked": id}), || format!("revoked token {id}"));
}

/// `amber share SNAPSHOT --to VAULT` (admin tokens of both vaults).
///
/// # Errors
/// Connection and server errors.
pub fn share(g: &Global, snapshot: &str, to: &str) -> Result<ExitCode> {
    let target_token =
        std::env::var("AMBER_TARGET_TOKEN").context("set AMBER_TARGET_TOKEN to an admin token of the target vault")?;
    block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::ShareSnapshotRequest {
            vault: remote.vault.clone(),
            snapshot: snapshot.to_string(),
            target_vault: to.to_string(),
            target_token: target_token.trim().to_string(),
            environment: g.env.clone().unwrap_or_default(),
        };
        let r = remote
            .admin()
            .share_snapshot(remote.request(req))
            .await
            .map_err(|s| failed("cannot share", &s))?
            .into_inner();
        let value = json!({"id": r.snapshot_id, "bytes": r.bytes, "vault": to});
        emit(g.json, &value, || {
            format!("shared as snapshot {} in vault {to}", r.snapshot_id)
        });
        Ok(ExitCode::SUCCESS)
    })
}
