//! Operations on a vault: snapshot a tree, restore, list, diff.

pub mod assemble;
pub mod block;
pub mod cold;
pub mod compact;
pub mod content;
pub mod copy;
pub mod diff;
pub mod environment;
pub mod exclude;
pub mod extract;
pub mod forget;
pub mod fsmeta;
pub mod image;
pub mod ingest;
pub mod live;
pub mod members;
pub mod progress;
pub mod ranges;
pub mod reach;
pub mod regzip;
pub mod repair;
pub mod restore;
pub mod stats;
pub mod stream;
pub mod tar;
pub mod tier;
pub mod verify;
pub mod volume_build;
pub mod walk;

#[cfg(test)]
mod assemble_tests;
#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use crate::id::{Hash32, SnapshotId};

/// Who and what a snapshot is about; recorded in the snapshot object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    /// Environment name.
    pub environment: String,
    /// Lab.
    pub lab: String,
    /// Researcher.
    pub researcher: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Free metadata (experiment, funding source, criticality, package list, ...).
    pub metadata: Vec<(String, String)>,
    /// The host the data came from; `None`: this machine (a server receiving a push
    /// records the client's).
    pub hostname: Option<String>,
    /// When the snapshot was taken (ns since the epoch); `None`: now. A copy keeps the
    /// original's time.
    pub time_ns: Option<i64>,
}

impl Labels {
    /// A snapshot object carrying these labels, taken now on this host (or the one named).
    pub(crate) fn snapshot(
        &self,
        source: SourceKind,
        root: Hash32,
        parent: Option<SnapshotId>,
        source_path: String,
        stats: SnapshotStats,
    ) -> Snapshot {
        Snapshot {
            source,
            root,
            parent,
            time_ns: self.time_ns.unwrap_or_else(ingest::now_ns),
            environment: self.environment.clone(),
            lab: self.lab.clone(),
            researcher: self.researcher.clone(),
            hostname: self.hostname.clone().unwrap_or_else(ingest::hostname),
            source_path,
            tags: sorted(self.tags.clone()),
            metadata: sorted(self.metadata.clone()),
            stats,
            skipped: 0,
            skipped_paths: Vec::new(),
            root_entry: None,
        }
    }

    /// Refuses labels that would not fit a snapshot object, before any work is done.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field.
    pub fn check(&self) -> Result<()> {
        let probe = self.snapshot(
            SourceKind::Tree,
            Hash32::default(),
            None,
            String::new(),
            SnapshotStats::default(),
        );
        probe.validate().map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// A bounded pool for CPU work (0 threads: one per core).
pub(crate) fn worker_pool(threads: usize, name: &'static str) -> Result<rayon::ThreadPool> {
    let threads = if threads == 0 { default_threads() } else { threads };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("amber-{name}-{i}"))
        .build()
        .map_err(|e| Error::Pipeline(format!("cannot start the {name} pool: {e}")))
}

/// Threads a restore from a store where requests are costly (S3) runs when the caller
/// does not choose: most of them wait on the store, so many more than there are cores keep
/// several window reads in flight (`repo::window`).
pub const IO_THREADS: usize = 16;

/// The pool a restore reads and writes with: `threads`, or when 0, one per core for a
/// local store and [`IO_THREADS`] for a costly one.
pub(crate) fn reading_pool(
    repo: &crate::repo::Repository,
    threads: usize,
    name: &'static str,
) -> Result<rayon::ThreadPool> {
    let costly = repo.backend().prefers_large_reads();
    worker_pool(if threads == 0 && costly { IO_THREADS } else { threads }, name)
}

/// Worker threads for CPU work when the caller does not choose.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// A path inside a snapshot: `/`-separated raw name bytes, never converted to text.
pub fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        path.extend_from_slice(parent);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// `path` without leading and trailing `/`.
pub fn trim_slashes(path: &[u8]) -> &[u8] {
    let start = path.iter().position(|&b| b != b'/').unwrap_or(path.len());
    let end = path.iter().rposition(|&b| b != b'/').map_or(start, |i| i + 1);
    path.get(start..end).unwrap_or_default()
}

/// How a path (or name) of raw bytes is shown as text: valid UTF-8 as it is, every byte
/// of an invalid sequence as `\xNN` (two lower-case hex digits). Two different byte
/// strings can show alike only when one of them contains a literal `\x`; JSON output
/// carries the exact bytes beside this form (see the README).
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
