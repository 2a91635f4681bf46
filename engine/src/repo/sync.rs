//! Keeping the index cache in step with the store, and rebuilding it from packs alone.

use std::collections::HashMap;

use crate::backend::ObjectInfo;
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobKind};
use crate::format::pack::{self, PackKind};
use crate::format::segment::{self, PackRecord};
use crate::hash::plain_hash;
use crate::id::{PackId, SegmentId};
use crate::repo::Repository;
use crate::repo::layout::{INDEX_PREFIX, id_of_key, pack_key, segment_key};

/// What a sync or rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Packs in the store.
    pub packs: u64,
    /// Packs whose directory was read from the pack itself.
    pub packs_read: u64,
    /// Packs learned from index segments.
    pub packs_from_segments: u64,
    /// Blobs added to the index.
    pub blobs: u64,
    /// Packs and segments that could not be read (damaged, truncated, vanished), with why:
    /// left out, so the rest of the vault keeps working; their blobs are not offered for
    /// deduplication, and content naming them is read again by the next snapshot.
    pub unreadable: Vec<(String, String)>,
}

/// Every pack in the store with its kind and size; the index learns which of them are
/// in an archive class.
fn store_packs(repo: &Repository) -> Result<Vec<(PackId, PackKind, u64)>> {
    let mut out = Vec::new();
    let mut cold = std::collections::HashSet::new();
    for kind in [PackKind::Data, PackKind::Meta] {
        for obj in repo.backend().list(&format!("{}/", kind.prefix()))? {
            if let Some(h) = id_of_key(&obj.key) {
                if obj.class.is_archive() {
                    cold.insert(PackId::new(h));
                }
                out.push((PackId::new(h), kind, obj.size));
            }
        }
    }
    repo.index().set_cold(cold);
    Ok(out)
}

/// Adds to the index every pack the store has and the index lacks: first from index
/// segments, then by reading the remaining packs' directories. When the index lists a
/// pack the store no longer has, the cache is stale and is rebuilt from scratch.
///
/// # Errors
/// Store, index and corruption errors.
pub fn sync_index(repo: &Repository) -> Result<SyncReport> {
    // Segments are listed before packs. A writer stores a segment only after every pack it
    // names, so each listed segment's packs are in the pack listing that follows, and a
    // segment is never marked loaded with one of its packs missed (which would later be
    // indexed by reading its directory: a ranged read that fails once the pack is archived).
    let segments = repo.backend().list(INDEX_PREFIX)?;
    crate::repo::condemned::refresh(repo)?;
    let packs = store_packs(repo)?;
    let sizes: HashMap<PackId, u64> = packs.iter().map(|p| (p.0, p.2)).collect();
    let index = repo.index();
    // A pack gone (a compaction deleted it), or of another length than when it was indexed
    // (truncated): the cache is stale. Rebuilt, the pack's blobs are known only if its
    // directory still reads. Wire and layer digests name chunks and snapshots, not packs:
    // they stay.
    let stale = index.pack_lengths()?.iter().any(|(p, len)| sizes.get(p) != Some(len));
    if stale {
        index.clear_locations()?;
    }
    let mut report = SyncReport {
        packs: packs.len() as u64,
        ..SyncReport::default()
    };
    // Rebuilt, the index cannot tell new packs from the ones it knew: damage marks stay.
    let heal = if stale { Heal::Never } else { Heal::NewPacks };
    load_segments(repo, segments, &sizes, &mut report, heal)?;
    read_unknown_packs(repo, packs, &mut report, heal)?;
    Ok(report)
}

/// Whether indexing a pack's directory lifts the damage marks of its blobs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// Packs the index did not know are new ones (another writer's copies): yes.
    NewPacks,
    /// The index is being rebuilt from packs it knew: no, their directories say nothing
    /// of whether the blobs are whole.
    Never,
}

fn read_unknown_packs(
    repo: &Repository,
    packs: Vec<(PackId, PackKind, u64)>,
    report: &mut SyncReport,
    heal: Heal,
) -> Result<()> {
    for (id, kind, size) in packs {
        if repo.index().has_pack(&id)? {
            continue;
        }
        match read_pack_record(repo, id, kind, size) {
            Ok(record) => {
                report.blobs += record.entries.len() as u64;
                report.packs_read += 1;
                index_pack(repo, &record, heal)?;
            }
            Err(e) if is_unreadable(&e) => report.unreadable.push((pack_key(kind, &id), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A stored object that cannot be read for what it holds (not the store failing).
pub(crate) fn is_unreadable(e: &Error) -> bool {
    use crate::backend::BackendError;
    matches!(
        e,
        Error::Corrupt { .. }
            | Error::Crypto(_)
            | Error::Format(_)
            | Error::Backend(
                BackendError::NotFound { .. } | BackendError::OutOfRange { .. } | BackendError::Archived { .. }
            )
    )
}

fn index_pack(repo: &Repository, record: &PackRecord, heal: Heal) -> Result<()> {
    match heal {
        Heal::NewPacks => repo.index().add_pack(record),
        Heal::Never => repo.index().reindex_pack(record),
    }
}

fn load_segments(
    repo: &Repository,
    segments: Vec<ObjectInfo>,
    in_store: &HashMap<PackId, u64>,
    report: &mut SyncReport,
    heal: Heal,
) -> Result<()> {
    let index = repo.index();
    for obj in segments {
        let Some(h) = id_of_key(&obj.key) else { continue };
        let seg_id = SegmentId::new(h);
        if index.has_segment(&seg_id)? {
            continue;
        }
        let records = match read_segment(repo, seg_id) {
            Ok(r) => r,
            // Its packs are indexed from their own directories instead.
            Err(e) if is_unreadable(&e) => {
                report.unreadable.push((segment_key(&seg_id), e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        for record in records {
            // Only packs the store holds at the length the segment recorded: one that
            // compaction removed, or that was truncated since, is not taken on its word.
            if in_store.get(&record.id) == Some(&record.len) && !index.has_pack(&record.id)? {
                report.blobs += record.entries.len() as u64;
                report.packs_from_segments += 1;
                index_pack(repo, &record, heal)?;
            }
        }
        index.add_segment(&seg_id)?;
    }
    Ok(())
}

/// Reads and verifies one index segment.
///
/// # Errors
/// Store and corruption errors naming the segment.
pub fn read_segment(repo: &Repository, id: SegmentId) -> Result<Vec<PackRecord>> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: "index segment",
        id: id.to_hex(),
        detail,
    };
    let bytes = repo.backend().get(&segment_key(&id))?;
    if plain_hash(&bytes) != *id.hash() {
        return Err(corrupt("bytes do not hash to its name".into()));
    }
    let sealed = segment::unframe(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let plain = blob::open_blob_unsized(
        &repo.keys().seal_key,
        BlobKind::IndexSegment,
        &pack::DIRECTORY_ID,
        sealed,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    segment::decode(&plain).map_err(|e| corrupt(e.to_string()))
}

/// Reads a pack's footer, header and directory with three ranged reads, and checks them
/// with [`pack::open_pack_directory`] (the header's kind must be `kind`).
///
/// # Errors
/// Store and corruption errors naming the pack.
pub fn read_pack_record(repo: &Repository, id: PackId, kind: PackKind, size: u64) -> Result<PackRecord> {
    let corrupt = |detail: String| Error::Corrupt {
        kind: "pack",
        id: id.to_hex(),
        detail,
    };
    let key = pack_key(kind, &id);
    let (header_len, footer_len) = (pack::HEADER_LEN as u64, pack::FOOTER_LEN as u64);
    if size < header_len + footer_len {
        return Err(corrupt(format!("only {size} bytes")));
    }
    let footer_at = size - footer_len;
    let footer = repo.backend().get_range(&key, footer_at, footer_len)?;
    let dir_len = u64::from(pack::decode_footer(&footer).map_err(|e| corrupt(format!("footer: {e}")))?);
    let dir_at = footer_at
        .checked_sub(dir_len)
        .filter(|&d| d >= header_len)
        .ok_or_else(|| corrupt("directory length out of range".into()))?;
    let header = repo.backend().get_range(&key, 0, header_len)?;
    let sealed = repo.backend().get_range(&key, dir_at, dir_len)?;
    let seal_key = &repo.keys().seal_key;
    let entries = pack::open_pack_directory(seal_key, id, kind, &header, &footer, &sealed, dir_at)?;
    Ok(PackRecord {
        id,
        kind,
        len: size,
        entries,
    })
}

/// A pack's blobs from its own directory or, when that does not open (a damaged header,
/// footer or directory), from an index segment that recorded it at this length: its
/// blobs are sealed one by one and may all still be whole.
///
/// # Errors
/// The directory's error when no segment describes the pack; store errors.
pub fn pack_record_or_segment(repo: &Repository, id: PackId, kind: PackKind, size: u64) -> Result<PackRecord> {
    match read_pack_record(repo, id, kind, size) {
        Err(e @ (Error::Corrupt { .. } | Error::Crypto(_) | Error::Format(_))) => {
            segment_record(repo, id, size)?.ok_or(e)
        }
        other => other,
    }
}

/// The record of pack `id` at length `size` in the first index segment that reads and
/// names it. Reads every segment: for the rare pack whose directory is damaged.
///
/// # Errors
/// Store errors listing the segments.
pub fn segment_record(repo: &Repository, id: PackId, size: u64) -> Result<Option<PackRecord>> {
    for obj in repo.backend().list(INDEX_PREFIX)? {
        let Some(h) = id_of_key(&obj.key) else { continue };
        let Ok(records) = read_segment(repo, SegmentId::new(h)) else {
            continue;
        };
        if let Some(r) = records.into_iter().find(|r| r.id == id && r.len == size) {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Throws the index away and rebuilds it from every pack's own directory, reading no
/// index segment: the packs alone are the truth.
///
/// # Errors
/// Store, index and corruption errors.
pub fn rebuild_index(repo: &Repository) -> Result<SyncReport> {
    repo.index().clear()?;
    let packs = store_packs(repo)?;
    let mut report = SyncReport {
        packs: packs.len() as u64,
        ..SyncReport::default()
    };
    read_unknown_packs(repo, packs, &mut report, Heal::Never)?;
    Ok(report)
}
