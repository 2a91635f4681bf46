//! Counters an operation updates as it goes, for a progress display.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared with whoever displays them.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files done.
    pub files: AtomicU64,
    /// Bytes read (ingest) or written (restore).
    pub bytes: AtomicU64,
    /// Files that failed or were skipped.
    pub errors: AtomicU64,
}

impl Progress {
    pub(crate) fn add_file(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    /// (files, bytes, errors) now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Where a long operation with phases is (compaction, verification): items done of the
/// phase's total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The phase.
    pub phase: &'static str,
    /// Items done in it.
    pub done: u64,
    /// Items in it.
    pub total: u64,
}

impl Step {
    /// `done` of `total` in `phase`.
    pub const fn new(phase: &'static str, done: u64, total: u64) -> Self {
        Step { phase, done, total }
    }
}
