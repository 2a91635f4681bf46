//! `amber repair index`: the index rebuilt from the packs, and the store's own record of
//! its packs made whole again. Packs no readable index segment describes (their segment
//! was damaged, truncated or never written) get a new segment from their directories;
//! damaged segments are then removed. A pack whose header, footer or directory is
//! damaged but which a segment describes keeps serving from the segment's entries (each
//! blob is sealed on its own): its blobs that still open are copied into new packs and
//! it is condemned, so that `amber compact` deletes it after the grace period. Blobs
//! that do not open are marked damaged and named. Damage marks are kept: rebuilding an
//! index from directories says nothing of whether the blobs are whole.

pub mod snapshots;

use std::collections::HashSet;

use crate::error::Result;
use crate::format::condemn::{CondemnRecord, Condemned, Reason};
use crate::format::segment::PackRecord;
use crate::id::{BlobId, PackId};
use crate::ops::compact::{PackInfo, pack_table};
use crate::ops::progress::Step;
use crate::repo::layout::pack_key;
use crate::repo::sync::{is_unreadable, read_pack_record};
use crate::repo::writer::{BlobWriter, write_segments};
use crate::repo::{Repository, condemned, is_damage};

/// What a repair did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct RepairIndexReport {
    /// Only reported, nothing changed.
    pub dry_run: bool,
    /// Packs in the store.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Packs no readable segment described, now described by new segments.
    pub described_packs: u64,
    /// Damaged index segments removed.
    pub deleted_segments: u64,
    /// Packs with a damaged header, footer or directory whose blobs were copied out, the
    /// pack then condemned.
    pub rescued_packs: u64,
    /// Blobs copied out of those packs.
    pub rescued_blobs: u64,
    /// Blobs of those packs that do not open (now marked damaged), with their pack and why.
    pub lost_blobs: Vec<(BlobId, PackId, String)>,
    /// Packs whose blobs nothing can say (directory damaged and no segment, or archived
    /// and no segment), with why: left out of the index.
    pub unrecoverable: Vec<(String, String)>,
}

/// Packs found, sorted by what the repair does with them.
#[derive(Default)]
struct Plan {
    /// Readable directory, no segment: described anew.
    undescribed: Vec<PackRecord>,
    /// Damaged directory, known from a segment: copied out and condemned.
    damaged: Vec<PackRecord>,
}

/// Rebuilds the index and repairs the segments, as the module says.
///
/// # Errors
/// Store, index and crypto errors; damaged objects are reported, not errors.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    repair_index_with_progress(repo, dry_run, &|_| {})
}

/// [`repair_index`], calling `progress` in phase `packs` (listed, then each pack
/// classified and indexed) and `rescue` (each damaged pack whose blobs are copied out).
///
/// # Errors
/// As [`repair_index`].
pub fn repair_index_with_progress(
    repo: &Repository,
    dry_run: bool,
    progress: &dyn Fn(Step),
) -> Result<RepairIndexReport> {
    let table = pack_table(repo)?;
    let described: HashSet<PackId> = table.segments.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let mut report = RepairIndexReport {
        dry_run,
        packs: table.packs.len() as u64,
        ..RepairIndexReport::default()
    };
    if !dry_run {
        repo.index().clear()?;
    }
    let mut plan = Plan::default();
    let mut ids: Vec<&PackId> = table.packs.keys().collect();
    ids.sort_unstable();
    let total = ids.len() as u64;
    for (done, id) in (0..).zip(ids) {
        progress(Step::new("packs", done, total));
        let Some(info) = table.packs.get(id) else { continue };
        let Some(record) = classify(repo, *id, info, described.contains(id), &mut plan, &mut report)? else {
            continue;
        };
        report.blobs += record.entries.len() as u64;
        if !dry_run {
            repo.index().reindex_pack(&record)?;
        }
    }
    progress(Step::new("packs", total, total));
    report.described_packs = plan.undescribed.len() as u64;
    report.rescued_packs = plan.damaged.len() as u64;
    report.deleted_segments = table.damaged_segments.len() as u64;
    if dry_run {
        report.rescued_blobs = plan.damaged.iter().map(|r| r.entries.len() as u64).sum();
        return Ok(report);
    }
    // The new segments are durable before the damaged ones go.
    write_segments(repo, &plan.undescribed)?;
    rescue(repo, &plan.damaged, &mut report, progress)?;
    for obj in &table.damaged_segments {
        repo.backend().delete(&obj.key)?;
    }
    Ok(report)
}

/// What pack `id` holds, and where it goes in the plan; `None` when nothing can say.
fn classify(
    repo: &Repository,
    id: PackId,
    info: &PackInfo,
    in_segment: bool,
    plan: &mut Plan,
    report: &mut RepairIndexReport,
) -> Result<Option<PackRecord>> {
    let key = pack_key(info.kind, &id);
    for e in &info.cut {
        let why = format!(
            "cut off: the pack is {} bytes long, the blob lay at bytes {}..{}",
            info.object.size,
            e.offset,
            u64::from(e.offset) + u64::from(e.sealed_len)
        );
        report.lost_blobs.push((e.id, id, why));
    }
    let known = info.entries.clone().map(|entries| PackRecord {
        id,
        kind: info.kind,
        len: info.object.size,
        entries,
    });
    if info.class().is_archive() {
        // Never read here: only a segment can say what it holds.
        if known.is_none() {
            let why = "in an archive class and described by no readable index segment: \
                       restore it to a readable class and run the repair again";
            report.unrecoverable.push((key, why.into()));
        }
        return Ok(known);
    }
    if !in_segment {
        // The table read its directory already; `None`: that read failed.
        match &known {
            Some(r) => plan.undescribed.push(r.clone()),
            None => report.unrecoverable.push((
                key,
                "its directory does not open and no index segment describes it".into(),
            )),
        }
        return Ok(known);
    }
    match read_pack_record(repo, id, info.kind, info.object.size) {
        Ok(own) => Ok(Some(own)),
        Err(e) if is_unreadable(&e) => {
            match &known {
                Some(r) => plan.damaged.push(r.clone()),
                // Its directory does not open, and no segment says what it holds.
                None => report
                    .unrecoverable
                    .push((key, format!("{e}; no index segment describes it"))),
            }
            Ok(known)
        }
        Err(e) => Err(e),
    }
}

/// Copies every blob that opens out of the damaged packs, then condemns them.
fn rescue(
    repo: &Repository,
    damaged: &[PackRecord],
    report: &mut RepairIndexReport,
    progress: &dyn Fn(Step),
) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    let writer = BlobWriter::new(repo)?;
    let total = damaged.len() as u64;
    for (done, pack) in (0..).zip(damaged) {
        progress(Step::new("rescue", done, total));
        for e in &pack.entries {
            match repo.read_blob(e.id, e.kind) {
                Ok(plain) => {
                    writer.store_copy(e.kind, e.id, &plain)?;
                    report.rescued_blobs += 1;
                }
                Err(err) if is_damage(&err) => report.lost_blobs.push((e.id, pack.id, err.to_string())),
                Err(err) => return Err(err),
            }
        }
    }
    progress(Step::new("rescue", total, total));
    // Condemned only once the copies and the segment naming them are durable.
    writer.finish()?;
    let record = CondemnRecord {
        time_unix_ms: crate::repo::now_secs().saturating_mul(1000),
        packs: damaged
            .iter()
            .map(|p| Condemned {
                id: p.id,
                kind: p.kind,
                len: p.len,
                reason: Reason::Repacked,
            })
            .collect(),
    };
    condemned::write(repo, &record)?;
    Ok(())
}
