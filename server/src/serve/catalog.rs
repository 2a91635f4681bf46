//! The Catalog service: what a vault holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use amber_engine::format::snapshot::Snapshot;
use amber_engine::id::{SnapshotId, TreeId};
use amber_engine::ops::diff::{ChangeKind, diff_trees};
use amber_engine::ops::walk::{find_dir, walk};
use amber_engine::ops::{display_path, join_rel, trim_slashes};
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use amber_proto::v1::catalog_server::Catalog;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::serve::convert;
use crate::serve::reader::{Out, blocking, resolve, stream};
use crate::serve::state::{Access, Caller, State};
use crate::serve::status::from_engine;

/// Most entries or changes per streamed message.
const BATCH: usize = 1024;

/// The Catalog service.
pub struct CatalogService {
    state: Arc<State>,
}

impl CatalogService {
    /// A service over the server state.
    pub fn new(state: Arc<State>) -> Self {
        CatalogService { state }
    }

    async fn unary<T: Send + 'static>(
        &self,
        caller: Caller,
        target: String,
        work: impl FnOnce(&Repository) -> Result<T, Status> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let repo = caller.vault.repo.clone();
        let result = blocking(move || work(&repo)).await;
        match &result {
            Ok(_) => caller.finish_ok(&self.state, &target, ""),
            Err(status) => caller.finish(&self.state, &target, status),
        }
        result.map(Response::new)
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl Catalog for CatalogService {
    type ListEntriesStream = Stream<pb::ListEntriesResponse>;
    type DiffStream = Stream<pb::DiffResponse>;

    async fn get_vault(&self, req: Request<pb::GetVaultRequest>) -> Result<Response<pb::VaultInfo>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Catalog/GetVault", Access::Read, "")?;
        let name = caller.vault.name.clone();
        self.unary(caller, "vault".into(), move |repo| {
            let snapshots = repo.snapshots().map_err(|e| from_engine(&e))?.len() as u64;
            Ok(pb::VaultInfo {
                name,
                id: repo.config().vault_id.to_hex(),
                snapshots,
                block_size: repo.config().block_size,
            })
        })
        .await
    }

    async fn get_stats(&self, req: Request<pb::GetStatsRequest>) -> Result<Response<pb::VaultStats>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Catalog/GetStats", Access::Read, &req.get_ref().vault)?;
        self.unary(caller, "stats".into(), move |repo| {
            let stats = amber_engine::ops::stats::stats(repo).map_err(|e| from_engine(&e))?;
            Ok(stats_to_wire(&stats))
        })
        .await
    }

    async fn list_environments(
        &self,
        req: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Catalog/ListEnvironments",
            Access::Read,
            &req.get_ref().vault,
        )?;
        self.unary(caller, "environments".into(), |repo| {
            let all = repo.snapshots().map_err(|e| from_engine(&e))?;
            Ok(pb::ListEnvironmentsResponse {
                environments: environments(&all),
            })
        })
        .await
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Catalog/ListSnapshots",
            Access::Read,
            &req.get_ref().vault,
        )?;
        let r = req.into_inner();
        self.unary(caller, "snapshots".into(), move |repo| {
            let all = repo.snapshots().map_err(|e| from_engine(&e))?;
            let snapshots = all
                .iter()
                .filter(|(_, s)| selected(&r, s))
                .map(|(id, s)| convert::snapshot_info_in(repo, *id, s))
                .collect::<Result<_, _>>()
                .map_err(|e| from_engine(&e))?;
            Ok(pb::ListSnapshotsResponse { snapshots })
        })
        .await
    }

    async fn get_snapshot(&self, req: Request<pb::GetSnapshotRequest>) -> Result<Response<pb::SnapshotInfo>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Catalog/GetSnapshot",
            Access::Read,
            &req.get_ref().vault,
        )?;
        let pb::GetSnapshotRequest {
            snapshot: name,
            environment: env,
            ..
        } = req.into_inner();
        self.unary(caller, format!("snapshot {name}"), move |repo| {
            let (id, snap) = resolve(repo, &name, &env)?;
            convert::snapshot_info_in(repo, id, &snap).map_err(|e| from_engine(&e))
        })
        .await
    }

    async fn list_entries(
        &self,
        req: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<Self::ListEntriesStream>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Catalog/ListEntries",
            Access::Read,
            &req.get_ref().vault,
        )?;
        let r = req.into_inner();
        let repo = caller.vault.repo.clone();
        let target = format!("ls {} {}", r.snapshot, display_path(&r.path));
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            list_entries(&repo, &r, out)
        })))
    }

    async fn diff(&self, req: Request<pb::DiffRequest>) -> Result<Response<Self::DiffStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Catalog/Diff", Access::Read, &req.get_ref().vault)?;
        let r = req.into_inner();
        let repo = caller.vault.repo.clone();
        let target = format!("diff {} {}", r.from_snapshot, r.to_snapshot);
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            diff(&repo, &r, out)
        })))
    }
}

fn selected(r: &pb::ListSnapshotsRequest, s: &Snapshot) -> bool {
    let kind_ok = r.kind == 0 || r.kind == convert::source_kind(s.source) as i32;
    let env_ok = r.environment.as_ref().is_none_or(|e| *e == s.environment);
    let tag_ok = r.tag.as_ref().is_none_or(|t| s.tags.contains(t));
    kind_ok && env_ok && tag_ok
}

fn environments(all: &[(SnapshotId, Snapshot)]) -> Vec<pb::EnvironmentInfo> {
    let mut map: BTreeMap<&str, pb::EnvironmentInfo> = BTreeMap::new();
    for (id, s) in all {
        let e = map.entry(&s.environment).or_insert_with(|| pb::EnvironmentInfo {
            name: s.environment.clone(),
            ..Default::default()
        });
        e.snapshots += 1;
        if s.time_ns >= e.latest_time_unix_nanos {
            e.latest_time_unix_nanos = s.time_ns;
            e.latest_id = id.to_hex();
        }
    }
    map.into_values().collect()
}

fn list_entries(
    repo: &Repository,
    r: &pb::ListEntriesRequest,
    out: &Out<pb::ListEntriesResponse>,
) -> Result<(), Status> {
    let (id, snap) = resolve(repo, &r.snapshot, &r.environment)?;
    let prefix = trim_slashes(&r.path);
    let mut batch = Vec::new();
    let send = |batch: &mut Vec<pb::ListedEntry>| {
        let entries = std::mem::take(batch);
        if out.send(pb::ListEntriesResponse { entries }) {
            Ok(())
        } else {
            Err(amber_engine::error::Error::Pipeline("client gone".into()))
        }
    };
    let mut push = |path: &[u8], e: &amber_engine::format::tree::Entry| {
        batch.push(pb::ListedEntry {
            path: path.to_vec(),
            meta: Some(convert::meta(e)),
        });
        if batch.len() >= BATCH { send(&mut batch) } else { Ok(()) }
    };
    let listed = if snap.source == amber_engine::format::snapshot::SourceKind::TarLayer {
        // A layer's members, read from its layout.
        amber_engine::ops::members::for_each_member_below(repo, id, prefix, r.recursive, &mut push)
    } else if snap.source == amber_engine::format::snapshot::SourceKind::Image {
        // The image's files, and below each layer blob its members, as `amber ls` shows them.
        image_listing(repo, id, &snap, prefix, r.recursive, &mut push)
    } else {
        let dir = find_dir(repo, TreeId::new(snap.root), &r.path).map_err(|e| from_engine(&e))?;
        if r.recursive {
            walk(repo, dir, prefix, &mut push)
        } else {
            let node = repo.load_tree(dir).map_err(|e| from_engine(&e))?;
            node.entries()
                .iter()
                .try_for_each(|e| push(&join_rel(prefix, &e.name), e))
        }
    };
    listed.map_err(|e| from_engine(&e))?;
    send(&mut batch).map_err(|e| from_engine(&e))
}

fn image_listing(
    repo: &Repository,
    id: amber_engine::id::SnapshotId,
    snap: &amber_engine::format::snapshot::Snapshot,
    prefix: &[u8],
    recursive: bool,
    push: &mut dyn FnMut(&[u8], &amber_engine::format::tree::Entry) -> amber_engine::error::Result<()>,
) -> amber_engine::error::Result<()> {
    for (path, e) in amber_engine::ops::image::view::listing(repo, id, snap)? {
        let rest = if prefix.is_empty() {
            Some(path.as_slice())
        } else {
            path.strip_prefix(prefix).and_then(|r| r.strip_prefix(b"/"))
        };
        match rest {
            Some(rest) if recursive || !rest.contains(&b'/') => push(&path, &e)?,
            _ => {}
        }
    }
    Ok(())
}

/// Two images compare as their flattened file systems (the layer-by-layer view is local).
fn image_changes(
    repo: &Repository,
    a: (amber_engine::id::SnapshotId, &amber_engine::format::snapshot::Snapshot),
    b: (amber_engine::id::SnapshotId, &amber_engine::format::snapshot::Snapshot),
) -> amber_engine::error::Result<Vec<amber_engine::ops::diff::Change>> {
    use amber_engine::ops::image::view;
    let first = |(id, snap)| -> amber_engine::error::Result<view::ManifestView> {
        view::manifests(repo, id, snap)?
            .into_iter()
            .next()
            .ok_or_else(|| amber_engine::error::Error::InvalidArgument(format!("image {id} holds no manifest")))
    };
    let (ma, mb) = (first(a)?, first(b)?);
    Ok(view::diff_flattened(
        &view::flattened(repo, &ma)?,
        &view::flattened(repo, &mb)?,
    ))
}

fn diff(repo: &Repository, r: &pb::DiffRequest, out: &Out<pb::DiffResponse>) -> Result<(), Status> {
    let (ida, a) = resolve(repo, &r.from_snapshot, &r.environment)?;
    let (idb, b) = resolve(repo, &r.to_snapshot, &r.environment)?;
    let image = amber_engine::format::snapshot::SourceKind::Image;
    let changes = if a.source == image && b.source == image {
        image_changes(repo, (ida, &a), (idb, &b))
    } else {
        diff_trees(repo, TreeId::new(a.root), TreeId::new(b.root))
    }
    .map_err(|e| from_engine(&e))?;
    for batch in changes.chunks(BATCH) {
        let changes = batch
            .iter()
            .map(|c| pb::Change {
                kind: change_kind(c.kind) as i32,
                path: c.path.clone(),
                entry_kind: convert::wire_kind(c.entry_kind) as i32,
                size_before: c.size_before,
                size_after: c.size_after,
            })
            .collect();
        if !out.send(pb::DiffResponse { changes }) {
            return Err(Status::cancelled("the client went away"));
        }
    }
    Ok(())
}

fn change_kind(k: ChangeKind) -> pb::ChangeKind {
    match k {
        ChangeKind::Added => pb::ChangeKind::Added,
        ChangeKind::Removed => pb::ChangeKind::Removed,
        ChangeKind::Modified => pb::ChangeKind::Modified,
        ChangeKind::Metadata => pb::ChangeKind::Metadata,
        ChangeKind::TypeChanged => pb::ChangeKind::TypeChanged,
    }
}

/// The engine's counts in the wire's terms (the command line prints local counts through
/// this too).
pub fn stats_to_wire(s: &amber_engine::ops::stats::VaultStats) -> pb::VaultStats {
    let group = |name: &str, g: &amber_engine::ops::stats::Group| pb::StatsGroup {
        name: name.to_string(),
        snapshots: g.snapshots,
        restore_bytes: g.restore_bytes,
        chunks: g.chunks,
        unique_bytes: g.unique_bytes,
    };
    pb::VaultStats {
        total: Some(group("", &s.total)),
        by_kind: s.by_kind.iter().map(|(k, g)| group(k, g)).collect(),
        by_environment: s.by_environment.iter().map(|(k, g)| group(k, g)).collect(),
        packs: s.packs,
        stored_bytes: s.stored_bytes,
        unreadable_snapshots: s.unreadable_snapshots,
    }
}
