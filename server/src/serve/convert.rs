//! Conversions between wire messages and engine types. Used by the server and the client.

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::format::tree::{Entry, EntryKind, Timestamp};
use amber_engine::id::SnapshotId;
use amber_engine::ops::Labels;
use amber_proto::v1 as pb;
use tonic::Status;

/// Most extended attributes per entry.
const MAX_XATTRS: usize = 1024;
/// Longest user or group name.
const MAX_OWNER_NAME: usize = 255;

/// The wire kind of a snapshot source.
pub fn source_kind(kind: SourceKind) -> pb::SourceKind {
    match kind {
        SourceKind::Tree => pb::SourceKind::Tree,
        SourceKind::TarLayer => pb::SourceKind::Tar,
        SourceKind::BlockVolume => pb::SourceKind::Volume,
        SourceKind::Image => pb::SourceKind::Image,
        SourceKind::Environment => pb::SourceKind::Environment,
    }
}

/// The engine's entry kind for a wire kind.
///
/// # Errors
/// INVALID_ARGUMENT when unset or unknown.
pub fn entry_kind(kind: i32) -> Result<EntryKind, Status> {
    Ok(match pb::EntryKind::try_from(kind) {
        Ok(pb::EntryKind::File) => EntryKind::File,
        Ok(pb::EntryKind::Dir) => EntryKind::Dir,
        Ok(pb::EntryKind::Symlink) => EntryKind::Symlink,
        Ok(pb::EntryKind::Fifo) => EntryKind::Fifo,
        Ok(pb::EntryKind::CharDevice) => EntryKind::CharDevice,
        Ok(pb::EntryKind::BlockDevice) => EntryKind::BlockDevice,
        Ok(pb::EntryKind::Socket) => EntryKind::Socket,
        _ => return Err(Status::invalid_argument(format!("entry kind {kind} is not valid"))),
    })
}

/// The wire kind of an entry.
pub fn wire_kind(kind: EntryKind) -> pb::EntryKind {
    match kind {
        EntryKind::File => pb::EntryKind::File,
        EntryKind::Dir => pb::EntryKind::Dir,
        EntryKind::Symlink => pb::EntryKind::Symlink,
        EntryKind::Fifo => pb::EntryKind::Fifo,
        EntryKind::CharDevice => pb::EntryKind::CharDevice,
        EntryKind::BlockDevice => pb::EntryKind::BlockDevice,
        EntryKind::Socket => pb::EntryKind::Socket,
    }
}

fn time(t: Option<&pb::Timestamp>) -> Result<Timestamp, Status> {
    let t = t.copied().unwrap_or_default();
    if t.nsec >= 1_000_000_000 {
        return Err(Status::invalid_argument(format!(
            "a timestamp with {} nanoseconds",
            t.nsec
        )));
    }
    Ok(Timestamp {
        sec: t.sec,
        nsec: t.nsec,
    })
}

fn wire_time(t: Timestamp) -> pb::Timestamp {
    pb::Timestamp {
        sec: t.sec,
        nsec: t.nsec,
    }
}

/// An engine entry named `name` from wire metadata. The name itself is checked by the
/// engine when the entry is added.
///
/// # Errors
/// INVALID_ARGUMENT for a missing or malformed field.
pub fn entry(name: Vec<u8>, meta: Option<&pb::EntryMeta>) -> Result<Entry, Status> {
    let meta = meta.ok_or_else(|| Status::invalid_argument("an entry without metadata"))?;
    if meta.user.len() > MAX_OWNER_NAME || meta.group.len() > MAX_OWNER_NAME {
        return Err(Status::invalid_argument("a user or group name over 255 bytes"));
    }
    if meta.xattrs.len() > MAX_XATTRS || meta.link_target.len() > usize::from(u16::MAX) {
        return Err(Status::invalid_argument(
            "too many extended attributes or a symlink target too long",
        ));
    }
    let mut e = Entry::new(name, entry_kind(meta.kind)?);
    e.mode = meta.mode & 0o7777;
    e.uid = meta.uid;
    e.gid = meta.gid;
    e.user.clone_from(&meta.user);
    e.group.clone_from(&meta.group);
    e.mtime = time(meta.mtime.as_ref())?;
    e.ctime = time(meta.ctime.as_ref())?;
    e.inode = meta.inode;
    e.device = meta.device;
    e.nlink = meta.nlink;
    e.rdev = meta.rdev;
    e.size = meta.size;
    e.link_target.clone_from(&meta.link_target);
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = meta.xattrs.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
    xattrs.sort();
    e.xattrs = xattrs;
    Ok(e)
}

/// Wire metadata of an engine entry.
pub fn meta(e: &Entry) -> pb::EntryMeta {
    pb::EntryMeta {
        kind: wire_kind(e.kind) as i32,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        user: e.user.clone(),
        group: e.group.clone(),
        mtime: Some(wire_time(e.mtime)),
        ctime: Some(wire_time(e.ctime)),
        inode: e.inode,
        device: e.device,
        nlink: e.nlink,
        rdev: e.rdev,
        size: e.size,
        link_target: e.link_target.clone(),
        xattrs: e
            .xattrs
            .iter()
            .map(|(name, value)| pb::Xattr {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// Engine labels from wire labels and the client's host name.
pub fn labels(l: Option<&pb::Labels>, hostname: &str) -> Labels {
    let l = l.cloned().unwrap_or_default();
    Labels {
        environment: l.environment,
        lab: l.lab,
        researcher: l.researcher,
        tags: l.tags,
        metadata: l.metadata.into_iter().map(|m| (m.key, m.value)).collect(),
        hostname: Some(hostname.to_string()),
        time_ns: None,
    }
}

/// Wire labels of a snapshot.
pub fn wire_labels(s: &Snapshot) -> pb::Labels {
    pb::Labels {
        environment: s.environment.clone(),
        lab: s.lab.clone(),
        researcher: s.researcher.clone(),
        tags: s.tags.clone(),
        metadata: wire_metadata(&s.metadata),
    }
}

/// Wire metadata pairs.
pub fn wire_metadata(pairs: &[(String, String)]) -> Vec<pb::MetadataEntry> {
    pairs
        .iter()
        .map(|(k, v)| pb::MetadataEntry {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// A snapshot as the catalog lists it.
pub fn snapshot_info(id: SnapshotId, s: &Snapshot) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        id: id.to_hex(),
        kind: source_kind(s.source) as i32,
        time_unix_nanos: s.time_ns,
        parent_id: s.parent.map(|p| p.to_hex()).unwrap_or_default(),
        labels: Some(wire_labels(s)),
        hostname: s.hostname.clone(),
        source_path: s.source_path.clone(),
        stats: Some(pb::SnapshotStats {
            files: s.stats.files,
            dirs: s.stats.dirs,
            bytes: s.stats.bytes,
            bytes_new: s.stats.bytes_new,
            blobs_new: s.stats.blobs_new,
        }),
        skipped: s.skipped,
        parts: Vec::new(),
    }
}

/// [`snapshot_info`] with the parts of an environment snapshot read from its root.
///
/// # Errors
/// Store and corruption errors reading an environment's root.
pub fn snapshot_info_in(
    repo: &amber_engine::repo::Repository,
    id: SnapshotId,
    s: &Snapshot,
) -> amber_engine::error::Result<pb::SnapshotInfo> {
    let mut info = snapshot_info(id, s);
    if s.source == SourceKind::Environment {
        info.parts = amber_engine::ops::environment::parts_of(repo, id, s)?
            .into_iter()
            .map(|p| pb::EnvironmentPart {
                kind: p.kind.name().into(),
                snapshot_id: p.snapshot.to_hex(),
                mount: p.mount,
            })
            .collect();
    }
    Ok(info)
}
