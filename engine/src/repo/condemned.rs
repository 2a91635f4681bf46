//! Condemnation records in the store (`compact/…`): reading them, writing one, and the
//! check a writer makes just before it commits a snapshot, which copies what it relies
//! on out of condemned packs. The protocol is in `format-spec/compact.md`.

use std::collections::HashSet;

use crate::backend::{ObjectInfo, PutMode};
use crate::error::{Error, Result};
use crate::format::condemn::{self, CONDEMN_PREFIX, CondemnRecord};
use crate::format::pack::PackKind;
use crate::format::snapshot::Snapshot;
use crate::id::{Hash32, PackId, SnapshotId};
use crate::ops::live::live_blobs;
use crate::repo::Repository;
use crate::repo::layout::pack_key;
use crate::repo::sync::pack_record_or_segment;
use crate::repo::writer::BlobWriter;

/// The records in the store now.
#[derive(Clone, Debug, Default)]
pub struct Condemnations {
    /// Records that open, with their listing entry (its time is the store's).
    pub records: Vec<(ObjectInfo, CondemnRecord)>,
    /// Records that do not open, with why: nothing they name is ever deleted.
    pub unreadable: Vec<(String, String)>,
}

impl Condemnations {
    /// Every pack some record names.
    pub fn packs(&self) -> HashSet<PackId> {
        self.records
            .iter()
            .flat_map(|(_, r)| r.packs.iter().map(|p| p.id))
            .collect()
    }
}

/// Reads every condemnation record and tells the index which packs they name.
///
/// # Errors
/// Store errors listing or reading them.
pub fn refresh(repo: &Repository) -> Result<Condemnations> {
    let mut out = Condemnations::default();
    for obj in repo.backend().list(CONDEMN_PREFIX)? {
        if !condemn::is_record_key(&obj.key) {
            continue;
        }
        let bytes = match repo.backend().get(&obj.key) {
            Ok(b) => b,
            // Deleted by a compaction that finished with it since the listing.
            Err(crate::backend::BackendError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let opened = condemn::open(&repo.keys().audit_key, &obj.key, &bytes)
            .and_then(|plain| CondemnRecord::decode(&plain).map_err(Error::from));
        match opened {
            Ok(record) => out.records.push((obj, record)),
            Err(e) => out.unreadable.push((obj.key.clone(), e.to_string())),
        }
    }
    repo.index().set_condemned(out.packs());
    Ok(out)
}

/// Stores `record` create-only under a new name and returns the name.
///
/// # Errors
/// Store and crypto errors.
pub fn write(repo: &Repository, record: &CondemnRecord) -> Result<String> {
    let key = condemn::new_key()?;
    let file = condemn::seal(&repo.keys().audit_key, &key, &record.encode())?;
    repo.backend().put(&key, &file, PutMode::CreateOnly)?;
    Ok(key)
}

/// Called just before a snapshot is committed. When a pack this process wrote or offered
/// for reuse has been condemned since, its blobs are copied into new packs (and indexed
/// there) first, so the snapshot never depends on a pack a compaction may delete. When
/// one is already gone, the index is brought up to date and the snapshot walked: if a blob
/// it names is now in no pack (a compaction deleted it while this ingest ran longer than
/// the grace period), the commit fails, naming the pack: nothing is committed, and the
/// snapshot can be taken again. A pack touched by an earlier ingest of this process and
/// deleted since does not fail a snapshot that does not need it.
///
/// # Errors
/// [`Error::Conflict`] for a pack already deleted; store and corruption errors.
pub fn rescue_before_commit(repo: &Repository, snap: &Snapshot) -> Result<()> {
    refresh(repo)?;
    if repo.index().any_condemned() {
        // A reuse decision looks at the first level of a file's content (a chunk-list
        // root), not at the chunks below it: while anything is condemned, every pack the
        // snapshot names is touched, so none of them is missed below.
        touch_what_it_needs(repo, snap)?;
    }
    let touched = repo.index().touched();
    if touched.is_empty() {
        return Ok(());
    }
    let existing = pack_ids(repo)?;
    let gone: Vec<PackId> = touched.iter().filter(|p| !existing.contains(p)).copied().collect();
    if let Some(first) = gone.first() {
        // The touched packs are this process's, since it started: an ingest committed long
        // ago may have touched the pack that is gone. Whether this snapshot needs it is
        // found by walking the snapshot against the index brought up to date.
        for p in &gone {
            repo.index().untouch(p);
        }
        crate::repo::sync::sync_index(repo)?;
        touch_what_it_needs(repo, snap).map_err(|_| removed_meanwhile(*first))?;
    }
    let touched = repo.index().touched();
    let condemned: Vec<PackId> = touched.into_iter().filter(|p| repo.index().is_condemned(p)).collect();
    if condemned.is_empty() {
        return Ok(());
    }
    let writer = BlobWriter::new(repo)?;
    for pack in &condemned {
        copy_out(repo, &writer, *pack)?;
    }
    writer.finish()?;
    for pack in &condemned {
        repo.index().untouch(pack);
    }
    Ok(())
}

/// Touches the pack of every blob `snap` names, failing when one is in no pack or its
/// metadata does not read. A blob named only below a damage mark (a repaired snapshot)
/// may be in no pack: the mark says it is lost.
fn touch_what_it_needs(repo: &Repository, snap: &Snapshot) -> Result<()> {
    let unnamed = SnapshotId::new(Hash32::default());
    let live = live_blobs(repo, &[(unnamed, snap.clone())])?;
    for blob in &live.blobs {
        match repo.index().lookup(blob)? {
            Some(loc) => repo.index().touch(loc.pack),
            None if live.marked.contains(blob) => {}
            None => return Err(Error::MissingBlob(blob.to_hex())),
        }
    }
    Ok(())
}

/// Every pack in the store now.
fn pack_ids(repo: &Repository) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    for kind in [PackKind::Data, PackKind::Meta] {
        for obj in repo.backend().list(&format!("{}/", kind.prefix()))? {
            out.extend(crate::repo::layout::id_of_key(&obj.key).map(PackId::new));
        }
    }
    Ok(out)
}

fn removed_meanwhile(pack: PackId) -> Error {
    Error::Conflict(format!(
        "pack {pack}, which this snapshot uses, was removed by a compaction meanwhile: \
         nothing was committed; take the snapshot again"
    ))
}

fn copy_out(repo: &Repository, writer: &BlobWriter, pack: PackId) -> Result<()> {
    let gone = || removed_meanwhile(pack);
    let mut found = None;
    for kind in [PackKind::Data, PackKind::Meta] {
        if let Some(info) = repo.backend().stat(&pack_key(kind, &pack))? {
            found = Some((kind, info.size));
            break;
        }
    }
    let (kind, size) = found.ok_or_else(gone)?;
    let record = pack_record_or_segment(repo, pack, kind, size).map_err(|e| match e {
        Error::Backend(crate::backend::BackendError::NotFound { .. }) => gone(),
        other => other,
    })?;
    for e in &record.entries {
        // Deleted between the listing and this read: as gone.
        let plain = repo.read_blob(e.id, e.kind).map_err(|e| match e {
            Error::MissingBlob(_) | Error::Backend(crate::backend::BackendError::NotFound { .. }) => gone(),
            other => other,
        })?;
        writer.store_copy(e.kind, e.id, &plain)?;
    }
    Ok(())
}
