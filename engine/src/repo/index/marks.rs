//! What this process knows about packs beyond their blobs: which sit in an archive class,
//! which a compaction has condemned, and which this process has written or offered for
//! reuse (so that a snapshot about to be committed can tell whether it leans on a pack
//! that is going away; see `format-spec/compact.md`). Held in memory, refreshed from the
//! store's listings.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError, RwLock};

use crate::id::PackId;

/// Pack sets of one open index.
#[derive(Debug, Default)]
pub(crate) struct PackMarks {
    cold: RwLock<HashSet<PackId>>,
    condemned: RwLock<HashSet<PackId>>,
    touched: Mutex<HashSet<PackId>>,
    writers: std::sync::atomic::AtomicUsize,
}

impl PackMarks {
    pub(crate) fn set_cold(&self, packs: HashSet<PackId>) {
        *self.cold.write().unwrap_or_else(PoisonError::into_inner) = packs;
    }

    pub(crate) fn is_cold(&self, id: &PackId) -> bool {
        self.cold.read().unwrap_or_else(PoisonError::into_inner).contains(id)
    }

    pub(crate) fn set_condemned(&self, packs: HashSet<PackId>) {
        *self.condemned.write().unwrap_or_else(PoisonError::into_inner) = packs;
    }

    pub(crate) fn is_condemned(&self, id: &PackId) -> bool {
        self.condemned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// Whether a blob of this pack may be offered for reuse.
    pub(crate) fn reusable(&self, id: &PackId) -> bool {
        !self.is_cold(id) && !self.is_condemned(id)
    }

    pub(crate) fn touch(&self, id: PackId) {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
    }

    /// Every touched pack.
    pub(crate) fn touched(&self) -> Vec<PackId> {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    pub(crate) fn is_touched(&self, id: &PackId) -> bool {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).contains(id)
    }

    pub(crate) fn writer_started(&self) {
        self.writers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn writer_ended(&self) {
        self.writers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn writers(&self) -> usize {
        self.writers.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn untouch(&self, id: &PackId) {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}
