//! The packs side of `amber verify`: the store's listing against what the index segments
//! recorded (existence and length, read from the listing: no data pack is touched), and,
//! with `--read-data`, whole packs fetched and checked blob by blob.

use crate::ops::progress::Step;
use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use super::{Findings, ProblemKind, VerifyOptions, VerifyReport};
use crate::backend::{RestoreStatus, RetrievalTier, StorageClass};
use crate::error::{Error, Result};
use crate::format::blob;
use crate::format::pack::{self, PackKind};
use crate::id::{BlobId, PackId};
use crate::repo::Repository;
use crate::repo::layout::{INDEX_PREFIX, id_of_key, pack_key};
use crate::repo::sync;

/// Which packs `--read-data` reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DataCheck {
    /// None: structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// Some of them.
    Subset(Subset),
}

/// A part of the packs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// Part `n` of `of` (1-based): the packs whose id, read as a number, is `n - 1`
    /// modulo `of`. Running 1/M to M/M reads every pack once.
    Part {
        /// Which part.
        n: u32,
        /// Of how many.
        of: u32,
    },
    /// This share of the packs (0 < p ≤ 100), the next ones after those the previous run
    /// read (a cursor in the state directory), so repeated runs cover everything.
    Percent(f64),
}

impl Subset {
    /// Parses `N/M` or `P%`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Subset> {
        let bad = |why: &str| Error::InvalidArgument(format!("--read-data-subset {text:?}: {why}"));
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            return if p > 0.0 && p <= 100.0 {
                Ok(Subset::Percent(p))
            } else {
                Err(bad("the percentage must be above 0 and at most 100"))
            };
        }
        let (n, of) = text.split_once('/').ok_or_else(|| bad("give N/M or P%"))?;
        let n: u32 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        let of: u32 = of.trim().parse().map_err(|_| bad("M is not a number"))?;
        if of == 0 || n == 0 || n > of {
            return Err(bad("N/M needs 1 ≤ N ≤ M"));
        }
        Ok(Subset::Part { n, of })
    }
}

/// A pack as the store lists it.
#[derive(Clone, Debug)]
pub struct StorePack {
    /// Data or metadata.
    pub kind: PackKind,
    /// Its length.
    pub size: u64,
    /// Its storage class.
    pub class: StorageClass,
}

/// Lists the store's packs and compares them with what the index segments and the index
/// recorded. A pack of another length is a problem now; a recorded pack the store lacks
/// is one only when a snapshot needs it (the walk finds out through `lost_in`). Packs and
/// segments the index could not read are problems too.
///
/// # Errors
/// When the store cannot be listed.
pub(crate) fn check_listing(repo: &Repository, found: &mut Findings) -> Result<HashMap<PackId, StorePack>> {
    let mut store = HashMap::new();
    for kind in [PackKind::Data, PackKind::Meta] {
        for obj in repo.backend().list(&format!("{}/", kind.prefix()))? {
            if let Some(h) = id_of_key(&obj.key) {
                let p = StorePack {
                    kind,
                    size: obj.size,
                    class: obj.class,
                };
                store.insert(PackId::new(h), p);
            }
        }
    }
    let synced = sync::sync_index(repo)?;
    let mut named: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (what, why) in synced.unreadable {
        named.insert(what.clone());
        let pack = id_of_key(&what).map(PackId::new).filter(|p| store.contains_key(p));
        match pack {
            Some(p) => found.bad_pack(ProblemKind::DamagedPack, p, format!("{what}: {why}")),
            None if what.starts_with(INDEX_PREFIX) => {
                let why = format!("{what}: {why}; `amber repair index` describes its packs anew");
                found.add(ProblemKind::DamagedSegment, None, Some(what.clone()), why);
            }
            None => {
                found.add(
                    ProblemKind::DamagedPack,
                    None,
                    Some(what.clone()),
                    format!("{what}: {why}"),
                );
            }
        }
    }
    for (id, len) in repo.index().pack_lengths()? {
        note_recorded(&store, found, id, len, None);
    }
    for obj in repo.backend().list(INDEX_PREFIX)? {
        let Some(seg) = id_of_key(&obj.key) else { continue };
        let records = match sync::read_segment(repo, crate::id::SegmentId::new(seg)) {
            Ok(records) => records,
            // Named above when the sync met it; an index that loaded it before it was
            // damaged did not.
            Err(_) if named.contains(&obj.key) => continue,
            Err(e) => {
                let why = format!("{}: {e}; `amber repair index` describes its packs anew", obj.key);
                found.add(ProblemKind::DamagedSegment, None, Some(obj.key.clone()), why);
                continue;
            }
        };
        for rec in records {
            let blobs: Vec<BlobId> = rec.entries.iter().map(|e| e.id).collect();
            note_recorded(&store, found, rec.id, rec.len, Some(blobs));
        }
    }
    Ok(store)
}

/// One pack some record says exists with length `len` (and, from a segment, its blobs).
fn note_recorded(
    store: &HashMap<PackId, StorePack>,
    found: &mut Findings,
    id: PackId,
    len: u64,
    blobs: Option<Vec<BlobId>>,
) {
    let detail = match store.get(&id) {
        Some(p) if p.size == len => return,
        Some(p) => (
            ProblemKind::PackLength,
            format!("{} bytes in the store, {len} when it was written", p.size),
        ),
        None => (
            ProblemKind::MissingPack,
            format!("recorded with {len} bytes, not in the store"),
        ),
    };
    if detail.0 == ProblemKind::PackLength {
        found.bad_pack(detail.0, id, detail.1.clone());
    } else {
        found.lost_packs.entry(id).or_insert(detail.1);
    }
    for blob in blobs.into_iter().flatten() {
        found.lost_in.entry(blob).or_insert(id);
    }
}

/// Reads the packs `opts.read_data` chooses, whole, and checks them.
///
/// # Errors
/// When the state directory's cursor cannot be written.
pub(crate) fn read_data(
    repo: &Repository,
    opts: &VerifyOptions,
    store: &HashMap<PackId, StorePack>,
    found: &mut Findings,
    report: &mut VerifyReport,
    progress: &(dyn Fn(Step) + Sync),
) -> Result<()> {
    let chosen = choose(repo, &opts.read_data, store)?;
    let mut readable = Vec::new();
    for id in chosen {
        let Some(p) = store.get(&id) else { continue };
        if p.class.is_archive() && !warm(repo, p, id, opts.warm_up, report) {
            continue;
        }
        readable.push((id, p.kind));
    }
    let pool = crate::ops::reading_pool(repo, READ_THREADS, "verify")?;
    let total = readable.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    if total > 0 {
        progress(Step::new("packs", 0, total));
    }
    let checked: Vec<PackCheck> = pool.install(|| {
        readable
            .par_iter()
            .map(|&(id, kind)| {
                let c = check_pack(repo, id, kind);
                let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(Step::new("packs", done, total));
                c
            })
            .collect()
    });
    for c in checked {
        report.packs_read += 1;
        report.bytes_read += c.bytes;
        if let Some(why) = c.pack_problem {
            found.bad_pack(ProblemKind::DamagedPack, c.id, why);
        }
        if let Some(why) = c.directory_problem {
            let why = format!(
                "{why}; an index segment still says where its blobs are, and each was checked \
                 on its own: `amber repair index` copies them into new packs"
            );
            found.add(ProblemKind::DamagedPack, Some(c.id), None, why);
        } else if c.hash_mismatch {
            // Its directory opened, so the blobs that are damaged are named one by one
            // below; the others are good and still serve.
            let why = "its bytes do not hash to its name".to_string();
            found.add(ProblemKind::DamagedPack, Some(c.id), None, why);
        }
        for (blob, why) in c.blob_problems {
            found.bad_blob(ProblemKind::DamagedBlob, Some(c.id), blob, why);
        }
        heal(repo, c.id, c.good);
    }
    Ok(())
}

/// Blobs that were marked damaged (a read that failed once, perhaps for a reason that has
/// gone) and have now been read whole and checked, in the pack the index places them in,
/// are good again.
fn heal(repo: &Repository, pack: PackId, good: Vec<BlobId>) {
    let index = repo.index();
    let healed = good
        .into_iter()
        .filter(|b| index.damaged(b).is_some() && index.lookup(b).ok().flatten().is_some_and(|loc| loc.pack == pack));
    index.heal(healed.collect::<Vec<_>>().into_iter());
}

/// Packs read at once: each is held whole (32 MiB by default) while it is checked.
const READ_THREADS: usize = 4;

/// Whether an archived pack can be read now; asks for its restore when `warm_up` is set.
fn warm(repo: &Repository, p: &StorePack, id: PackId, warm_up: bool, report: &mut VerifyReport) -> bool {
    let key = pack_key(p.kind, &id);
    match repo.backend().restore_status(&key) {
        Ok(RestoreStatus::Readable) => return true,
        Ok(RestoreStatus::Archived)
            if warm_up && repo.backend().request_restore(&key, 7, RetrievalTier::Bulk).is_ok() =>
        {
            report.warm_up_requested += 1;
        }
        _ => {}
    }
    report.cold_not_read += 1;
    false
}

/// The packs to read, in id order.
fn choose(repo: &Repository, check: &DataCheck, store: &HashMap<PackId, StorePack>) -> Result<Vec<PackId>> {
    let mut all: Vec<PackId> = store.keys().copied().collect();
    all.sort_unstable();
    Ok(match check {
        DataCheck::None => Vec::new(),
        DataCheck::All => all,
        DataCheck::Subset(Subset::Part { n, of }) => all
            .into_iter()
            .filter(|p| id_number(p) % u64::from(*of) == u64::from(*n - 1))
            .collect(),
        DataCheck::Subset(Subset::Percent(pct)) => next_share(repo, all, *pct)?,
    })
}

fn id_number(p: &PackId) -> u64 {
    let b = p.as_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(b.get(..8).unwrap_or(&[0u8; 8]));
    u64::from_be_bytes(head)
}

/// The next `pct` percent of `all` (sorted) after the cursor, wrapping; moves the cursor.
fn next_share(repo: &Repository, all: Vec<PackId>, pct: f64) -> Result<Vec<PackId>> {
    let cursor_path = repo.state_dir().join(CURSOR_FILE);
    let after = std::fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|t| PackId::from_hex(t.trim()).ok());
    let count = ((all.len() as f64 * pct / 100.0).ceil() as usize).min(all.len());
    let start = after.map_or(0, |a| all.partition_point(|p| *p <= a));
    let share: Vec<PackId> = all.iter().cycle().skip(start).take(count).copied().collect();
    if let Some(last) = share.last() {
        write_cursor(&cursor_path, last)?;
    }
    Ok(share)
}

/// The file in the state directory naming the last pack a `--read-data-subset P%` read.
pub const CURSOR_FILE: &str = "verify-cursor";

fn write_cursor(path: &Path, last: &PackId) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{last}\n")).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// What reading one pack found.
struct PackCheck {
    id: PackId,
    bytes: u64,
    /// The pack cannot be used at all (unreadable, or its header or directory damaged).
    pack_problem: Option<String>,
    /// Its bytes do not hash to its name, though its directory opens.
    hash_mismatch: bool,
    /// Its header, footer or directory does not open, but an index segment says where its
    /// blobs are.
    directory_problem: Option<String>,
    blob_problems: Vec<(BlobId, String)>,
    /// Blobs that opened and checked out.
    good: Vec<BlobId>,
}

/// Fetches a pack whole; checks its name, header, directory, and every blob (opened under
/// its seal and, for content-addressed kinds, re-hashed).
fn check_pack(repo: &Repository, id: PackId, kind: PackKind) -> PackCheck {
    let mut c = PackCheck {
        id,
        bytes: 0,
        pack_problem: None,
        hash_mismatch: false,
        directory_problem: None,
        blob_problems: Vec::new(),
        good: Vec::new(),
    };
    let bytes = match repo.backend().get(&pack_key(kind, &id)) {
        Ok(b) => b,
        Err(e) => {
            c.pack_problem = Some(format!("cannot be read: {e}"));
            return c;
        }
    };
    c.bytes = bytes.len() as u64;
    c.hash_mismatch = blake3::hash(&bytes).as_bytes() != id.as_bytes();
    let entries = match pack::read_directory(&repo.keys().seal_key, id, &bytes) {
        Ok((_, entries)) => entries,
        // Each blob is sealed on its own: with a segment's entries they are still checked.
        Err(e) => match sync::segment_record(repo, id, c.bytes) {
            Ok(Some(record)) => {
                c.directory_problem = Some(e.to_string());
                record.entries
            }
            _ => {
                c.pack_problem = Some(e.to_string());
                return c;
            }
        },
    };
    for e in entries {
        match check_blob(repo, &bytes, &e) {
            Ok(()) => c.good.push(e.id),
            Err(why) => c.blob_problems.push((e.id, why)),
        }
    }
    c
}

fn check_blob(repo: &Repository, bytes: &[u8], e: &pack::PackEntry) -> std::result::Result<(), String> {
    let from = e.offset as usize;
    let sealed = bytes
        .get(from..from + e.sealed_len as usize)
        .ok_or_else(|| "outside the pack".to_string())?;
    let plain = blob::open_blob(&repo.keys().seal_key, e.kind, e.id.hash(), sealed, e.raw_len as usize)
        .map_err(|err| err.to_string())?;
    match repo.id_key(e.kind) {
        Some(k) if k.hash(&plain) != *e.id.hash() => Err("its content does not hash to its id".into()),
        _ => Ok(()),
    }
}
