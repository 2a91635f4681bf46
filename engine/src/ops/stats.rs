//! `amber stats`: how much the vault holds and how well it deduplicates, as restic's
//! `stats` reports it: the restore size (what restoring every snapshot would write), the
//! distinct content (each chunk counted once) and what the store holds, in all, per kind
//! of snapshot and per environment. Only metadata is read.

use std::collections::{BTreeMap, HashSet};

use crate::error::Result;
use crate::format::layout::Record;
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::{ChunkRef, Content, EntryKind};
use crate::id::{BlobId, TreeId};
use crate::ops::content::{Piece, for_each_chunk, for_each_piece};
use crate::ops::tar::for_each_record;
use crate::ops::walk::walk;
use crate::repo::Repository;

/// Counts over a set of snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Snapshots in it.
    pub snapshots: u64,
    /// Bytes of content restoring each of them would write, summed.
    pub restore_bytes: u64,
    /// Distinct content chunks they need (each counted once, holes not).
    pub chunks: u64,
    /// Bytes of those chunks before compression.
    pub unique_bytes: u64,
}

impl Group {
    /// Restore size per distinct byte (1 when nothing is shared; 0 for an empty group).
    pub fn dedup_ratio(&self) -> f64 {
        if self.unique_bytes == 0 {
            0.0
        } else {
            self.restore_bytes as f64 / self.unique_bytes as f64
        }
    }
}

/// What `stats` reports.
#[derive(Clone, Debug, Default)]
pub struct VaultStats {
    /// Every snapshot.
    pub total: Group,
    /// By kind (`tree`, `tar`, `block`, `image`, `environment`).
    pub by_kind: BTreeMap<String, Group>,
    /// By environment name (snapshots without one are not in this map).
    pub by_environment: BTreeMap<String, Group>,
    /// Packs the index knows.
    pub packs: u64,
    /// Their bytes in the store (sealed, compressed).
    pub stored_bytes: u64,
    /// Snapshots that could not be read (left out of the counts).
    pub unreadable_snapshots: u64,
}

/// A group and the chunks counted in it so far.
#[derive(Default)]
struct Counting {
    group: Group,
    seen: HashSet<BlobId>,
}

impl Counting {
    fn add_chunk(&mut self, id: BlobId, len: u64) {
        if self.seen.insert(id) {
            self.group.chunks += 1;
            self.group.unique_bytes += len;
        }
    }
}

/// Counts the vault.
///
/// # Errors
/// When the snapshot list or the index cannot be read. A snapshot whose metadata is lost
/// or damaged is left out of the counts and counted as unreadable (`amber verify` names
/// what is damaged); content a repair marked damaged counts what of it can still be read.
pub fn stats(repo: &Repository) -> Result<VaultStats> {
    let list = repo.snapshot_list()?;
    let mut total = Counting::default();
    let mut by_kind: BTreeMap<String, Counting> = BTreeMap::new();
    let mut by_env: BTreeMap<String, Counting> = BTreeMap::new();
    let mut unreadable = list.damaged.len() as u64;
    for (_, snap) in &list.snapshots {
        let chunks = match snapshot_chunks(repo, snap) {
            Ok(chunks) => chunks,
            Err(e) if crate::repo::is_damage(&e) => {
                unreadable += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut groups = vec![&mut total];
        groups.push(by_kind.entry(snap.source.name().to_string()).or_default());
        let env = (!snap.environment.is_empty()).then(|| by_env.entry(snap.environment.clone()).or_default());
        groups.extend(env);
        for g in groups {
            g.group.snapshots += 1;
            g.group.restore_bytes += snap.stats.bytes;
            for &(id, len) in &chunks {
                g.add_chunk(id, len);
            }
        }
    }
    let lengths = repo.index().pack_lengths()?;
    Ok(VaultStats {
        total: total.group,
        by_kind: by_kind.into_iter().map(|(k, c)| (k, c.group)).collect(),
        by_environment: by_env.into_iter().map(|(k, c)| (k, c.group)).collect(),
        packs: lengths.len() as u64,
        stored_bytes: lengths.iter().map(|(_, len)| len).sum(),
        unreadable_snapshots: unreadable,
    })
}

/// Every content chunk a snapshot needs (its parts' included), with its length; holes
/// left out. Repeats are kept (the caller counts each once).
fn snapshot_chunks(repo: &Repository, snap: &Snapshot) -> Result<Vec<(BlobId, u64)>> {
    let mut out = Vec::new();
    let mut note = |content: &Content| -> Result<()> {
        let marked = content.is_damaged();
        let mut add = |c: ChunkRef| -> Result<()> {
            // Below a damage mark, only what can still be read counts.
            if !c.id.is_hole() && (!marked || repo.index().holds_good(&c.id.into())?) {
                out.push((BlobId::new(*c.id.hash()), u64::from(c.len)));
            }
            Ok(())
        };
        if !marked {
            return for_each_chunk(repo, content, &mut add);
        }
        for_each_piece(repo, content, 0, &mut |piece| match piece {
            Piece::Chunk(c) => add(c),
            Piece::Lost(_) => Ok(()),
        })
    };
    let root = TreeId::new(snap.root);
    if snap.source == SourceKind::TarLayer {
        for e in repo.load_tree(root)?.entries() {
            if e.name != b"layer.tar" {
                note(&e.content)?;
                continue;
            }
            for_each_record(repo, &e.content, &mut |rec| match rec {
                Record::Member { content, .. } | Record::Tail { content, .. } => note(&content),
                _ => Ok(()),
            })?;
        }
    } else {
        walk(repo, root, b"", &mut |_, e| {
            if e.kind == EntryKind::File {
                note(&e.content)?;
            }
            Ok(())
        })?;
    }
    Ok(out)
}
