//! Every pack of the store with the blobs it holds: from index segments (the truth a
//! writer recorded, including blobs two writers both stored), and for packs no segment
//! names (a writer killed before its segment) from the pack's own directory. Archived
//! packs are never read: one no segment describes stays unknown and is never deleted.

use std::collections::HashMap;

use crate::backend::{ObjectInfo, StorageClass};
use crate::error::{Error, Result};
use crate::format::pack::{PackEntry, PackKind};
use crate::id::{PackId, SegmentId};
use crate::repo::Repository;
use crate::repo::layout::{INDEX_PREFIX, id_of_key, pack_key, segment_key};
use crate::repo::sync::{read_pack_record, read_segment};

/// One pack.
#[derive(Clone, Debug)]
pub struct PackInfo {
    /// Data or metadata.
    pub kind: PackKind,
    /// Its listing entry (size, time, class).
    pub object: ObjectInfo,
    /// Its blobs; `None` when neither a segment nor its directory could say.
    pub entries: Option<Vec<PackEntry>>,
    /// Blobs a segment says it holds that lie beyond its end: a pack cut short (torn),
    /// described by a segment at its old length, holds only the blobs that still fit.
    pub cut: Vec<PackEntry>,
}

impl PackInfo {
    /// Its storage class.
    pub fn class(&self) -> &StorageClass {
        &self.object.class
    }
}

/// The store's packs and segments.
#[derive(Debug, Default)]
pub struct PackTable {
    /// Every pack.
    pub packs: HashMap<PackId, PackInfo>,
    /// Every segment that reads, with the packs it names.
    pub segments: Vec<(SegmentId, Vec<PackId>)>,
    /// Segments and packs that could not be read, with why.
    pub unreadable: Vec<(String, String)>,
    /// Segments whose bytes are damaged (not a failed request), with their listing entry:
    /// redundant with the packs' own directories, so a compaction removes them.
    pub damaged_segments: Vec<ObjectInfo>,
}

/// Lists segments, then packs (a segment is written after its packs, so every pack a
/// listed segment names is in the pack listing), then fills in each pack's blobs.
///
/// # Errors
/// Store errors listing; unreadable objects are reported, not errors.
pub fn pack_table(repo: &Repository) -> Result<PackTable> {
    let segments = repo.backend().list(INDEX_PREFIX)?;
    let mut table = PackTable::default();
    for kind in [PackKind::Data, PackKind::Meta] {
        for obj in repo.backend().list(&format!("{}/", kind.prefix()))? {
            if let Some(h) = id_of_key(&obj.key) {
                let info = PackInfo {
                    kind,
                    object: obj,
                    entries: None,
                    cut: Vec::new(),
                };
                table.packs.insert(PackId::new(h), info);
            }
        }
    }
    for obj in segments {
        let Some(h) = id_of_key(&obj.key) else { continue };
        let listed = obj.clone();
        let id = SegmentId::new(h);
        match read_segment(repo, id) {
            Ok(records) => {
                let named = records.iter().map(|r| r.id).collect();
                for r in records {
                    if let Some(p) = table.packs.get_mut(&r.id) {
                        take_record(p, r.len, r.entries);
                    }
                }
                table.segments.push((id, named));
            }
            Err(e) => {
                if matches!(e, Error::Corrupt { .. } | Error::Crypto(_) | Error::Format(_)) {
                    table.damaged_segments.push(listed);
                }
                table.unreadable.push((segment_key(&id), e.to_string()));
            }
        }
    }
    read_missing_directories(repo, &mut table)?;
    Ok(table)
}

/// What a segment says of pack `p` (recorded at `len`). A record at the pack's length is
/// taken over any other; one at another length (the pack was cut short or grew: damage, as
/// a pack's name is the hash of its bytes) says which blobs still lie within the pack.
fn take_record(p: &mut PackInfo, len: u64, entries: Vec<PackEntry>) {
    let exact = p.object.size == len;
    if p.entries.is_some() && !exact {
        return;
    }
    let size = p.object.size;
    let (fit, cut): (Vec<PackEntry>, Vec<PackEntry>) = entries
        .into_iter()
        .partition(|e| u64::from(e.offset) + u64::from(e.sealed_len) <= size);
    p.entries = Some(fit);
    p.cut = cut;
}

fn read_missing_directories(repo: &Repository, table: &mut PackTable) -> Result<()> {
    for (id, p) in &mut table.packs {
        if p.entries.is_some() || p.class().is_archive() {
            continue;
        }
        match read_pack_record(repo, *id, p.kind, p.object.size) {
            Ok(record) => p.entries = Some(record.entries),
            Err(e @ (Error::Corrupt { .. } | Error::Crypto(_) | Error::Format(_) | Error::Backend(_))) => {
                table.unreadable.push((pack_key(p.kind, id), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
