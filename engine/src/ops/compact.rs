//! `amber compact`: give back the space of what no snapshot uses, safely while other
//! processes ingest into the same vault. The protocol is in `format-spec/compact.md`.
//!
//! A run first finishes what earlier runs proposed (condemnation records older than the
//! grace period): a condemned pack is deleted only if every blob in it that a snapshot
//! uses *now* is also in a pack nobody condemned. Then it proposes anew: packs with no
//! blob in use, older than the grace period, and packs whose unused share is over the
//! threshold after their live blobs were copied into new packs. Nothing is deleted by the
//! run that proposes it unless the grace period is zero.

mod table;

use std::collections::{HashMap, HashSet};

use crate::backend::ObjectInfo;
use crate::error::{Error, Result};
use crate::format::condemn::{CondemnRecord, Condemned, Reason};
use crate::format::pack::PackEntry;
use crate::id::{BlobId, PackId};
use crate::ops::live::{LiveSet, counted_live, live_blobs};
use crate::ops::tier::PriceTable;
use crate::repo::layout::{pack_key, segment_key};
use crate::repo::writer::BlobWriter;
use crate::repo::{Repository, condemned};

pub use table::{PackInfo, PackTable, pack_table};

const DAY: i64 = 86_400;

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    /// Only report what would be done.
    pub dry_run: bool,
    /// Repack a pack when more than this share of its bytes is unused (0.05 = 5%).
    pub max_unused: f64,
    /// Copy at most this many live bytes per run (`None`: no limit).
    pub max_repack: Option<u64>,
    /// Seconds that must pass (by the store's clock) between proposing a pack's deletion
    /// and deleting it, and the least age of an unreferenced pack that may be proposed.
    pub grace_secs: i64,
    /// Also delete archived packs before their class's minimum storage duration (paying
    /// the early-deletion charge).
    pub force_cold: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            dry_run: false,
            max_unused: 0.05,
            max_repack: None,
            grace_secs: 3600,
            force_cold: false,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default)]
pub struct CompactReport {
    /// Snapshots whose blobs were kept.
    pub snapshots: u64,
    /// Snapshots whose metadata the run walked: those that came or went since the
    /// index's reference counts were last brought up to date (all, the first time).
    pub snapshots_walked: u64,
    /// Metadata nodes read to find the blobs in use.
    pub nodes_read: u64,
    /// Packs in the store, and their bytes, before the run.
    pub packs: u64,
    /// Bytes of those packs.
    pub stored_bytes: u64,
    /// Sealed bytes of blobs in use (each copy counted).
    pub live_bytes: u64,
    /// Packs deleted, and their bytes.
    pub deleted_packs: u64,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Packs whose live blobs were copied into new packs (then condemned).
    pub repacked_packs: u64,
    /// Live bytes copied.
    pub repacked_bytes: u64,
    /// Packs newly proposed for deletion, and their bytes.
    pub condemned_packs: u64,
    /// Bytes of those packs.
    pub condemned_bytes: u64,
    /// Packs proposed earlier and waiting for the grace period, and their bytes.
    pub pending_packs: u64,
    /// Bytes of those packs.
    pub pending_bytes: u64,
    /// Condemned packs found in use again and kept.
    pub revived_packs: u64,
    /// Unreferenced packs too young to propose (perhaps an ingest still running).
    pub young_packs: u64,
    /// Condemned packs left for a later run because an ingest of this same process (a
    /// server's session) was running and may rely on them.
    pub busy_packs: u64,
    /// Archived packs left before their minimum storage duration, their bytes, and what
    /// deleting them now would cost (USD, list prices).
    pub cold_kept_packs: u64,
    /// Bytes of those packs.
    pub cold_kept_bytes: u64,
    /// The early-deletion charge avoided.
    pub cold_early_cost: f64,
    /// Sparse archived packs not repacked (repacking never reads cold data).
    pub cold_sparse_packs: u64,
    /// Index segments deleted (every pack they named is gone).
    pub deleted_segments: u64,
    /// Temporary files of killed writers deleted.
    pub deleted_temp: u64,
    /// Objects that could not be read, with why; nothing they might hold is deleted.
    pub unreadable: Vec<(String, String)>,
}

/// Runs a compaction.
///
/// # Errors
/// A snapshot that does not open or whose metadata cannot be read (what it uses is then
/// unknown: nothing is deleted); store, index and corruption errors.
pub fn compact(repo: &Repository, opts: &CompactOptions) -> Result<CompactReport> {
    compact_with_progress(repo, opts, &|_| {})
}

/// Where a compaction is: phases `snapshots`, `packs`, `delete`, `repack`.
pub use crate::ops::progress::Step as CompactStep;

/// As [`compact`], telling `progress` where it is at the start and end of each phase and
/// after each pack it deletes or repacks.
///
/// # Errors
/// As [`compact`].
pub fn compact_with_progress(
    repo: &Repository,
    opts: &CompactOptions,
    progress: &dyn Fn(CompactStep),
) -> Result<CompactReport> {
    let mut report = CompactReport::default();
    let proposed = pass(repo, opts, &mut report, true, progress)?;
    if proposed && opts.grace_secs <= 0 && !opts.dry_run {
        let mut second = CompactReport::default();
        pass(repo, opts, &mut second, false, progress)?;
        report.deleted_packs += second.deleted_packs;
        report.deleted_bytes += second.deleted_bytes;
        report.deleted_segments += second.deleted_segments;
        report.revived_packs += second.revived_packs;
        report.busy_packs += second.busy_packs;
        report.pending_packs = second.pending_packs;
        report.pending_bytes = second.pending_bytes;
        report.unreadable.extend(second.unreadable);
    }
    Ok(report)
}

/// Everything one pass knows.
struct Pass<'a> {
    repo: &'a Repository,
    opts: &'a CompactOptions,
    progress: &'a dyn Fn(CompactStep),
    now: i64,
    live: LiveSet,
    table: PackTable,
}

/// One pass: finish ripe records, then (when `propose`) propose anew. Returns whether a
/// record was written.
fn pass(
    repo: &Repository,
    opts: &CompactOptions,
    report: &mut CompactReport,
    propose: bool,
    progress: &dyn Fn(CompactStep),
) -> Result<bool> {
    crate::repo::sync::sync_index(repo)?;
    let now = store_now(repo, opts.dry_run)?;
    let records = condemned::refresh(repo)?;
    report.unreadable.extend(records.unreadable.iter().cloned());
    let live = live_set(repo, progress)?;
    let table = pack_table(repo)?;
    let packs = table.packs.len() as u64;
    progress(CompactStep::new("packs", packs, packs));
    report.unreadable.extend(table.unreadable.iter().cloned());
    let mut p = Pass {
        repo,
        opts,
        progress,
        now,
        live,
        table,
    };
    p.summarise(report);
    let (ripe, pending): (Vec<_>, Vec<_>) = records
        .records
        .into_iter()
        .partition(|(obj, _)| now - obj.modified.unwrap_or(now) >= opts.grace_secs);
    let gone = p.finish_ripe(&ripe, &pending, report)?;
    let pending_packs: HashSet<PackId> = pending.iter().flat_map(|(_, r)| r.packs.iter().map(|c| c.id)).collect();
    for id in &pending_packs {
        if let Some(info) = p.table.packs.get(id) {
            report.pending_packs += 1;
            report.pending_bytes += info.object.size;
        }
    }
    let mut wrote = false;
    if propose {
        wrote = p.propose(&gone, &pending_packs, report)?;
        p.delete_leftovers(&gone, report)?;
    }
    Ok(wrote)
}

/// The blobs in use: from the index's reference counts, brought up to date, or (when the
/// index cannot keep them) by walking every snapshot.
fn live_set(repo: &Repository, progress: &dyn Fn(CompactStep)) -> Result<LiveSet> {
    let walked = |done, total| progress(CompactStep::new("snapshots", done, total));
    if let Some(live) = counted_live(repo, &walked).map_err(refuse_unknown)? {
        return Ok(live);
    }
    let list = repo.snapshot_list()?;
    if let Some((id, why)) = list.damaged.first() {
        return Err(refuse_unknown(Error::Corrupt {
            kind: "snapshot",
            id: id.to_hex(),
            detail: why.clone(),
        }));
    }
    let snapshots = list.snapshots.len() as u64;
    walked(0, snapshots);
    let live = live_blobs(repo, &list.snapshots).map_err(refuse_unknown)?;
    walked(snapshots, snapshots);
    Ok(live)
}

/// A snapshot whose use is unknown stops the run, saying so and what to do.
fn refuse_unknown(e: Error) -> Error {
    match e {
        Error::Corrupt {
            kind: "snapshot",
            id,
            detail,
        } => Error::Corrupt {
            kind: "snapshot",
            id,
            detail: format!(
                "{detail}; compaction cannot tell what it uses and deletes nothing: \
                 `amber verify` says what it affects, `amber forget` removes it"
            ),
        },
        other => other,
    }
}

impl Pass<'_> {
    fn summarise(&self, report: &mut CompactReport) {
        report.snapshots = self.live.snapshots;
        report.snapshots_walked += self.live.walked;
        report.nodes_read += self.live.nodes_read;
        report.packs = self.table.packs.len() as u64;
        report.stored_bytes = self.table.packs.values().map(|p| p.object.size).sum();
        report.live_bytes = self
            .table
            .packs
            .values()
            .filter_map(|p| p.entries.as_ref())
            .flatten()
            .filter(|e| self.live.blobs.contains(&e.id))
            .map(|e| u64::from(e.sealed_len))
            .sum();
    }

    fn live_entries<'t>(&'t self, info: &'t PackInfo) -> impl Iterator<Item = &'t PackEntry> + 't {
        live_entries(&self.live.blobs, info)
    }

    /// Deletes what ripe records condemned and may go, then the records. Returns the
    /// packs deleted.
    fn finish_ripe(
        &mut self,
        ripe: &[(ObjectInfo, CondemnRecord)],
        pending: &[(ObjectInfo, CondemnRecord)],
        report: &mut CompactReport,
    ) -> Result<HashSet<PackId>> {
        let condemned: HashSet<PackId> = ripe
            .iter()
            .chain(pending)
            .flat_map(|(_, r)| r.packs.iter().map(|c| c.id))
            .collect();
        let copies = self.copies_outside(&condemned, ripe);
        let mut gone = HashSet::new();
        let total = ripe.iter().map(|(_, r)| r.packs.len() as u64).sum();
        for (i, c) in ripe.iter().flat_map(|(_, r)| &r.packs).enumerate() {
            (self.progress)(CompactStep::new("delete", i as u64, total));
            if gone.contains(&c.id) {
                continue;
            }
            let Some(info) = self.table.packs.get(&c.id) else {
                continue;
            };
            if !self.may_delete(c, info, &copies, report) {
                continue;
            }
            report.deleted_packs += 1;
            report.deleted_bytes += info.object.size;
            gone.insert(c.id);
            if !self.opts.dry_run {
                self.delete_pack(c.id, info, &copies)?;
            }
        }
        (self.progress)(CompactStep::new("delete", total, total));
        if !self.opts.dry_run {
            for (obj, _) in ripe {
                self.repo.backend().delete(&obj.key)?;
            }
        }
        for id in &gone {
            self.table.packs.remove(id);
        }
        Ok(gone)
    }

    /// For every live blob in a ripe condemned pack, a pack nobody condemned that holds
    /// it too.
    fn copies_outside(
        &self,
        condemned: &HashSet<PackId>,
        ripe: &[(ObjectInfo, CondemnRecord)],
    ) -> HashMap<BlobId, PackId> {
        let needed: HashSet<BlobId> = ripe
            .iter()
            .flat_map(|(_, r)| &r.packs)
            .filter_map(|c| self.table.packs.get(&c.id))
            .flat_map(|info| self.live_entries(info).map(|e| e.id))
            .collect();
        let mut copies = HashMap::new();
        for (id, info) in &self.table.packs {
            if condemned.contains(id) {
                continue;
            }
            for e in info.entries.iter().flatten() {
                if needed.contains(&e.id) {
                    copies.insert(e.id, *id);
                }
            }
        }
        copies
    }

    fn may_delete(
        &self,
        c: &Condemned,
        info: &PackInfo,
        copies: &HashMap<BlobId, PackId>,
        report: &mut CompactReport,
    ) -> bool {
        if info.object.size != c.len || info.entries.is_none() {
            return false;
        }
        let index = self.repo.index();
        let covered = self
            .live_entries(info)
            .all(|e| copies.contains_key(&e.id) && index.damaged(&e.id).is_none());
        if !covered {
            report.revived_packs += 1;
            return false;
        }
        // An ingest of this very process (a server's session) may have decided to reuse a
        // blob of it: its check before committing cannot see this run's deletion coming,
        // so the pack waits for a run once every ingest that may have touched it has ended.
        if index.is_busy(&c.id) {
            report.busy_packs += 1;
            return false;
        }
        self.cold_allows(info, report)
    }

    /// An archived pack may go once its class's minimum storage duration has passed, or
    /// when forced; otherwise it is counted with the charge that deleting it would cost.
    fn cold_allows(&self, info: &PackInfo, report: &mut CompactReport) -> bool {
        let class = info.class();
        let days_in_class = info.object.modified.map_or(0, |m| (self.now - m).max(0) / DAY);
        let left = i64::from(class.minimum_days()) - days_in_class;
        if left <= 0 || self.opts.force_cold {
            return true;
        }
        report.cold_kept_packs += 1;
        report.cold_kept_bytes += info.object.size;
        report.cold_early_cost += PriceTable::default().monthly(class, info.object.size) * left as f64 / 30.0;
        false
    }

    /// Deletes a pack, then teaches the index where its live blobs are now.
    fn delete_pack(&self, id: PackId, info: &PackInfo, copies: &HashMap<BlobId, PackId>) -> Result<()> {
        self.repo.backend().delete(&pack_key(info.kind, &id))?;
        let blobs: Vec<BlobId> = info.entries.iter().flatten().map(|e| e.id).collect();
        let index = self.repo.index();
        index.forget_pack(&id, &blobs)?;
        // No ingest of this process is running (see `may_delete`): a later one decides anew.
        index.untouch(&id);
        let mut holders: HashSet<PackId> = HashSet::new();
        for b in &blobs {
            if index.lookup(b)?.is_none() {
                holders.extend(copies.get(b));
            }
        }
        for holder in holders {
            if let Some(h) = self.table.packs.get(&holder) {
                index.add_pack(&crate::format::segment::PackRecord {
                    id: holder,
                    kind: h.kind,
                    len: h.object.size,
                    entries: h.entries.clone().unwrap_or_default(),
                })?;
            }
        }
        Ok(())
    }

    /// Proposes unreferenced and sparse packs (repacking the sparse ones first) and
    /// writes the record. Returns whether one was written.
    fn propose(&self, gone: &HashSet<PackId>, pending: &HashSet<PackId>, report: &mut CompactReport) -> Result<bool> {
        let mut proposals = Vec::new();
        let mut sparse = Vec::new();
        for (id, info) in &self.table.packs {
            if gone.contains(id) || pending.contains(id) || info.entries.is_none() {
                continue;
            }
            let young = info.object.modified.is_none_or(|m| self.now - m < self.opts.grace_secs);
            let live: u64 = self.live_entries(info).map(|e| u64::from(e.sealed_len)).sum();
            if live == 0 && young {
                report.young_packs += 1;
            } else if live == 0 {
                if self.cold_allows(info, report) {
                    proposals.push(self.condemned(*id, info, Reason::Unreferenced));
                }
            } else if !young && unused_share(live, blob_bytes(info)) > self.opts.max_unused {
                if info.class().is_archive() {
                    report.cold_sparse_packs += 1;
                } else {
                    sparse.push((*id, live));
                }
            }
        }
        proposals.extend(self.repack(sparse, report)?);
        if proposals.is_empty() {
            return Ok(false);
        }
        for c in &proposals {
            report.condemned_packs += 1;
            report.condemned_bytes += c.len;
        }
        if self.opts.dry_run {
            return Ok(false);
        }
        let record = CondemnRecord {
            time_unix_ms: crate::repo::now_secs().saturating_mul(1000),
            packs: proposals,
        };
        condemned::write(self.repo, &record)?;
        Ok(true)
    }

    fn condemned(&self, id: PackId, info: &PackInfo, reason: Reason) -> Condemned {
        Condemned {
            id,
            kind: info.kind,
            len: info.object.size,
            reason,
        }
    }

    /// Copies the live blobs of the sparsest packs (up to `max_repack` bytes) into new
    /// packs, and returns those packs as condemned. A pack whose live blob cannot be read
    /// is left as it is, and reported.
    fn repack(&self, mut sparse: Vec<(PackId, u64)>, report: &mut CompactReport) -> Result<Vec<Condemned>> {
        sparse.sort_by_key(|(id, live)| (*live, *id));
        let budget = self.opts.max_repack.unwrap_or(u64::MAX);
        let mut chosen = Vec::new();
        let mut bytes = 0u64;
        for (id, live) in sparse {
            if bytes.saturating_add(live) > budget {
                break;
            }
            bytes += live;
            chosen.push(id);
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        if self.opts.dry_run {
            report.repacked_packs += chosen.len() as u64;
            report.repacked_bytes += bytes;
            let infos = chosen.iter().filter_map(|id| Some((*id, self.table.packs.get(id)?)));
            return Ok(infos
                .map(|(id, info)| self.condemned(id, info, Reason::Repacked))
                .collect());
        }
        let writer = BlobWriter::new(self.repo)?;
        let mut done = Vec::new();
        let total = chosen.len() as u64;
        for (i, id) in chosen.into_iter().enumerate() {
            (self.progress)(CompactStep::new("repack", i as u64, total));
            let Some(info) = self.table.packs.get(&id) else {
                continue;
            };
            match self.copy_live(&writer, info) {
                Ok(copied) => {
                    report.repacked_packs += 1;
                    report.repacked_bytes += copied;
                    done.push(self.condemned(id, info, Reason::Repacked));
                }
                Err(e @ (Error::Corrupt { .. } | Error::Crypto(_) | Error::MissingBlob(_) | Error::Backend(_))) => {
                    report.unreadable.push((pack_key(info.kind, &id), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        // Condemned only once the copies and the segment naming them are durable.
        writer.finish()?;
        (self.progress)(CompactStep::new("repack", total, total));
        Ok(done)
    }

    fn copy_live(&self, writer: &BlobWriter, info: &PackInfo) -> Result<u64> {
        let mut copied = 0;
        for e in self.live_entries(info) {
            let plain = self.repo.read_blob(e.id, e.kind)?;
            writer.store_copy(e.kind, e.id, &plain)?;
            copied += u64::from(e.sealed_len);
        }
        Ok(copied)
    }

    /// Index segments all of whose packs are gone or whose bytes are damaged (a segment
    /// only repeats what its packs' directories say), and temporary files of killed
    /// writers older than the grace period.
    fn delete_leftovers(&self, gone: &HashSet<PackId>, report: &mut CompactReport) -> Result<()> {
        for (seg, named) in &self.table.segments {
            let all_gone = named
                .iter()
                .all(|p| gone.contains(p) || !self.table.packs.contains_key(p));
            if all_gone {
                report.deleted_segments += 1;
                if !self.opts.dry_run {
                    self.repo.backend().delete(&segment_key(seg))?;
                }
            }
        }
        for obj in &self.table.damaged_segments {
            if obj.modified.is_some_and(|m| self.now - m >= self.opts.grace_secs) {
                report.deleted_segments += 1;
                if !self.opts.dry_run {
                    self.repo.backend().delete(&obj.key)?;
                }
            }
        }
        for obj in self.repo.backend().list("tmp/")? {
            let old = obj
                .modified
                .is_some_and(|m| self.now - m >= self.opts.grace_secs.max(DAY / 24));
            if old && is_leftover(&obj.key) {
                report.deleted_temp += 1;
                if !self.opts.dry_run {
                    self.repo.backend().delete(&obj.key)?;
                }
            }
        }
        // Uploads in parts a killed writer left open (their parts are kept and billed). One
        // still being written by a writer slower than the grace period fails that writer's
        // pack, which it reports; nothing committed depends on an unfinished upload.
        for upload in self.repo.backend().pending_uploads("")? {
            if upload.started.is_some_and(|t| self.now - t >= self.opts.grace_secs) {
                report.deleted_temp += 1;
                if !self.opts.dry_run {
                    self.repo.backend().abort_upload(&upload)?;
                }
            }
        }
        Ok(())
    }
}

/// The entries of `info` that are in `live`.
fn live_entries<'t>(live: &'t HashSet<BlobId>, info: &'t PackInfo) -> impl Iterator<Item = &'t PackEntry> + 't {
    info.entries.iter().flatten().filter(move |e| live.contains(&e.id))
}

/// Temporary files of a local store and probe objects; never the lock file.
fn is_leftover(key: &str) -> bool {
    let name = key.strip_prefix("tmp/").unwrap_or_default();
    name.ends_with(".tmp") || name.starts_with("probe-") || name.starts_with("clock-")
}

/// The share of a pack's blob bytes that is not in use (its header, directory and footer
/// are not counted: a small pack whose blobs are all in use is not sparse).
fn unused_share(live: u64, blobs: u64) -> f64 {
    if blobs == 0 {
        return 0.0;
    }
    1.0 - live as f64 / blobs as f64
}

/// Sealed bytes of every blob in a pack.
fn blob_bytes(info: &PackInfo) -> u64 {
    info.entries.iter().flatten().map(|e| u64::from(e.sealed_len)).sum()
}

/// The store's own time now: the modification time of an object written for the
/// purpose (then deleted), so that ages compare times of one clock. A dry run, which
/// writes nothing, uses this machine's clock.
fn store_now(repo: &Repository, dry_run: bool) -> Result<i64> {
    if dry_run {
        return Ok(crate::repo::now_secs());
    }
    let name: [u8; 8] = crate::crypto::random_array()?;
    let key = format!("tmp/clock-{}", hex::encode(name));
    repo.backend().put(&key, b"", crate::backend::PutMode::CreateOnly)?;
    let info = repo.backend().stat(&key)?;
    repo.backend().delete(&key)?;
    Ok(info.and_then(|i| i.modified).unwrap_or_else(crate::repo::now_secs))
}
