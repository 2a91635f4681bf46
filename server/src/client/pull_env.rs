//! `env restore --server` and `envs --server`: the parts fetched from the server into the
//! layout `env restore` writes locally, then the same validation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::SnapshotId;
use amber_engine::ops::environment::{Part, PartKind};
use amber_proto::v1 as pb;
use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::catalog::engine_snapshot;
use super::pull_tar::get_snapshot;
use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::commands::env::validate::{Facts, Report};
use crate::commands::env::{env_info_json, finish_restore, mounted_at, print_envs};

fn parts_of(info: &pb::SnapshotInfo) -> Result<Vec<Part>> {
    info.parts
        .iter()
        .map(|p| {
            Ok(Part {
                kind: PartKind::parse(&p.kind)?,
                snapshot: SnapshotId::from_hex(&p.snapshot_id).context("the server sent a malformed part id")?,
                mount: p.mount.clone(),
            })
        })
        .collect()
}

async fn environments(remote: &Remote, env: Option<&str>) -> Result<Vec<pb::SnapshotInfo>> {
    let all = super::catalog::list_snapshots(remote, env).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.kind == pb::SourceKind::Environment as i32)
        .collect())
}

/// `envs --server`.
///
/// # Errors
/// Connection and server errors.
pub fn list(g: &Global) -> Result<ExitCode> {
    let docs = block_on(async {
        let remote = Remote::connect(g).await?;
        let mut docs = Vec::new();
        for info in environments(&remote, g.env.as_deref()).await? {
            let (id, snap) = engine_snapshot(&info)?;
            docs.push(env_info_json(&id, &snap, &parts_of(&info)?));
        }
        Ok::<_, anyhow::Error>(docs)
    })?;
    print_envs(g, docs);
    Ok(ExitCode::SUCCESS)
}

/// `env restore --server SNAP --into DIR`.
///
/// # Errors
/// Connection and server errors; a failed part or check is reported, exit status 3.
pub fn restore(g: &Global, name: &str, into: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    block_on(async {
        let remote = Remote::connect(g).await?;
        let info = if name == "latest" {
            environments(&remote, g.env.as_deref())
                .await?
                .into_iter()
                .max_by_key(|s| s.time_unix_nanos)
                .context("no environment snapshot")?
        } else {
            get_snapshot(&remote, name, g.env.as_deref()).await?
        };
        let (id, snap) = engine_snapshot(&info)?;
        if snap.source != SourceKind::Environment {
            bail!("snapshot {id} is a {} snapshot, not an environment", snap.source.name());
        }
        if into.exists() && std::fs::read_dir(into)?.next().is_some() {
            bail!("{} is not empty", into.display());
        }
        let parts = parts_of(&info)?;
        let mut report = Report::default();
        for part in &parts {
            let done = restore_part(&remote, part, into).await;
            report.step(part, "restore", done.map(|detail| (detail, Value::Null)));
        }
        let facts = facts(&remote, &parts).await?;
        crate::commands::env::validate::all(&facts, &snap, &parts, into, &mut report);
        finish_restore(g, &id.to_hex(), &snap, into, &report, started)
    })
}

async fn restore_part(remote: &Remote, part: &Part, into: &Path) -> Result<String> {
    let id = part.snapshot.to_hex();
    match part.kind {
        PartKind::Image => {
            let out = into.join("image");
            let (layout, fetched) = super::pull_image::fetch(remote, &id, &out, None).await?;
            Ok(format!(
                "{} ({fetched} bytes fetched) into {}",
                if layout { "an OCI layout" } else { "a docker archive" },
                out.display()
            ))
        }
        PartKind::Tree => {
            let dest = mounted_at(into, "trees", &part.mount);
            super::pull::fetch_part(remote, &id, Some(&dest), None).await
        }
        PartKind::Volume => {
            let out = PathBuf::from(format!("{}.img", mounted_at(into, "volumes", &part.mount).display()));
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            super::pull::fetch_part(remote, &id, None, Some(&out)).await
        }
    }
}

/// File counts from the catalog; the image's `*.dist-info` names from its listing.
async fn facts(remote: &Remote, parts: &[Part]) -> Result<Facts> {
    let mut facts = Facts::default();
    for part in parts {
        let info = get_snapshot(remote, &part.snapshot.to_hex(), None).await?;
        facts.files.insert(part.snapshot, info.stats.unwrap_or_default().files);
        if part.kind == PartKind::Image {
            let req = pb::ListEntriesRequest {
                vault: remote.vault.clone(),
                snapshot: part.snapshot.to_hex(),
                recursive: true,
                ..Default::default()
            };
            let mut stream = remote
                .catalog()
                .list_entries(remote.request(req))
                .await
                .map_err(|s| failed("cannot list the image", &s))?
                .into_inner();
            while let Some(batch) = stream
                .message()
                .await
                .map_err(|s| failed("listing the image failed", &s))?
            {
                for e in batch.entries {
                    let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                    if name.ends_with(b".dist-info") {
                        facts.image_dist_infos.push(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
        }
    }
    Ok(facts)
}
