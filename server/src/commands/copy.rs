//! `amber copy`: snapshots of this repository copied into another one (disaster recovery:
//! another bucket or region, or a local directory), as `restic copy` does.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use amber_engine::id::SnapshotId;
use amber_engine::ops::copy::{COPIED_FROM_KEY, copy_snapshot, labels_of};
use amber_engine::repo::{OpenOptions, Repository};
use amber_engine::store::{StoreUrl, open_store};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cli::Global;
use crate::commands::EXIT_INCOMPLETE;
use crate::context::{self, Ask, passphrase};
use crate::output::emit;

/// Copies `names` (every snapshot when empty) into the repository at `to`.
///
/// # Errors
/// No target repository, a wrong passphrase, store errors.
pub fn run(
    g: &Global,
    names: &[String],
    to: &OsStr,
    pass_file: Option<&Path>,
    cache: Option<PathBuf>,
) -> Result<ExitCode> {
    let src = context::open_read(g)?;
    let dst = open_target(to, pass_file, cache)?;
    let origin_prefix = format!("{}:", src.config().vault_id.to_hex());
    let already: Vec<String> = dst
        .snapshots()?
        .into_iter()
        .filter_map(|(_, s)| {
            s.metadata
                .into_iter()
                .find(|(k, _)| k == COPIED_FROM_KEY)
                .map(|(_, v)| v)
        })
        .collect();
    let wanted: Vec<SnapshotId> = if names.is_empty() {
        src.snapshots()?.into_iter().map(|(id, _)| id).collect()
    } else {
        names
            .iter()
            .map(|n| src.resolve_snapshot(n, g.env.as_deref()).map(|(id, _)| id))
            .collect::<Result<_, _>>()?
    };
    let (mut copied, mut skipped, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for id in wanted {
        let origin = format!("{origin_prefix}{}", id.to_hex());
        if already.contains(&origin) {
            skipped.push(Value::String(id.to_hex()));
            continue;
        }
        let snap = src.load_snapshot(id)?;
        let labels = labels_of(&snap, Some((COPIED_FROM_KEY, origin)));
        match copy_snapshot(&src, &dst, id, &labels) {
            Ok((new, bytes)) => copied.push(json!({ "from": id.to_hex(), "to": new.to_hex(), "bytes": bytes })),
            Err(e) => {
                eprintln!("amber: snapshot {} not copied: {e}", &id.to_hex()[..8]);
                refused.push(json!({ "id": id.to_hex(), "error": e.to_string() }));
            }
        }
    }
    let incomplete = !refused.is_empty();
    let doc = json!({ "copied": copied, "skipped": skipped, "refused": refused });
    emit(g.json, &doc, || {
        format!(
            "copied {} snapshots to {}; {} already there; {} not copied",
            copied.len(),
            to.to_string_lossy(),
            skipped.len(),
            refused.len()
        )
    });
    Ok(if incomplete {
        ExitCode::from(EXIT_INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    })
}

fn open_target(to: &OsStr, pass_file: Option<&Path>, cache: Option<PathBuf>) -> Result<Repository> {
    let url = StoreUrl::parse(to)?;
    let store = open_store(&url, &context::s3_options()?)?;
    if store.head("config")?.is_none() {
        bail!("no repository at {url}: create the target with `amber init --repo {url}` first");
    }
    let pass = passphrase(
        pass_file,
        "AMBER_TO_PASSWORD",
        Ask::Once("enter the target repository's passphrase: "),
    )?;
    let cache = cache.unwrap_or_else(|| match &url {
        StoreUrl::Local(path) => path.join("cache"),
        StoreUrl::S3 { .. } => context::user_cache_dir(),
    });
    let say = |msg: &str| eprintln!("amber: {msg}");
    let opts = OpenOptions {
        on_wait: Some(&say),
        ..OpenOptions::default()
    };
    Repository::open_with(store, &cache, &pass, &opts).with_context(|| format!("cannot open the target {url}"))
}
