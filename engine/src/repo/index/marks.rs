//! What this process knows about packs beyond their blobs: which sit in an archive class,
//! which a compaction has condemned, and which this process has written or offered for
//! reuse (so that a snapshot about to be committed can tell whether it leans on a pack
//! that is going away; see `format-spec/compact.md`). Held in memory, refreshed from the
//! store's listings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use crate::id::PackId;

/// When a writer started, in this process's count of writer starts: a pack touched at or
/// after the start of a writer still running may be one that writer relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriterEpoch(u64);

/// Pack sets of one open index.
#[derive(Debug, Default)]
pub(crate) struct PackMarks {
    cold: RwLock<HashSet<PackId>>,
    condemned: RwLock<HashSet<PackId>>,
    /// Touched packs, with the count of writer starts when each was last touched.
    touched: Mutex<HashMap<PackId, u64>>,
    /// Writers running now, by their start.
    running: Mutex<BTreeMap<WriterEpoch, usize>>,
    starts: AtomicU64,
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

    pub(crate) fn any_condemned(&self) -> bool {
        !self.condemned.read().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Whether a blob of this pack may be offered for reuse.
    pub(crate) fn reusable(&self, id: &PackId) -> bool {
        !self.is_cold(id) && !self.is_condemned(id)
    }

    pub(crate) fn touch(&self, id: PackId) {
        let now = self.starts.load(Ordering::SeqCst);
        let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = touched.entry(id).or_insert(now);
        *stamp = (*stamp).max(now);
    }

    /// Every touched pack.
    pub(crate) fn touched(&self) -> Vec<PackId> {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    pub(crate) fn is_touched(&self, id: &PackId) -> bool {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// Whether a writer running now may rely on pack `id`: it was touched since the
    /// oldest running writer started. A pack touched only while no writer that is still
    /// running existed is not busy, however long the process has run.
    pub(crate) fn is_busy(&self, id: &PackId) -> bool {
        let Some(stamp) = self
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .copied()
        else {
            return false;
        };
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.keys().next().is_some_and(|oldest| stamp >= oldest.0)
    }

    pub(crate) fn writer_started(&self) -> WriterEpoch {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = WriterEpoch(self.starts.fetch_add(1, Ordering::SeqCst) + 1);
        *running.entry(epoch).or_insert(0) += 1;
        epoch
    }

    pub(crate) fn writer_ended(&self, epoch: WriterEpoch) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = running.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                running.remove(&epoch);
            }
        }
    }

    pub(crate) fn writers(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }

    pub(crate) fn untouch(&self, id: &PackId) {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Hash32;

    #[test]
    fn a_pack_is_busy_only_while_a_writer_that_may_rely_on_it_runs() {
        let marks = PackMarks::default();
        let (p, q) = (
            PackId::new(Hash32::from_bytes([1; 32])),
            PackId::new(Hash32::from_bytes([2; 32])),
        );
        marks.touch(p);
        assert!(!marks.is_busy(&p), "no writer runs");
        let first = marks.writer_started();
        assert!(!marks.is_busy(&p), "touched before the writer started");
        marks.touch(q);
        assert!(marks.is_busy(&q), "touched while the writer runs");
        let second = marks.writer_started();
        assert!(marks.is_busy(&q), "the first writer still runs");
        marks.writer_ended(first);
        assert!(!marks.is_busy(&q), "the writer running now started after the touch");
        marks.touch(q);
        assert!(marks.is_busy(&q), "touched again, by the running writer");
        assert_eq!(marks.writers(), 1);
        marks.writer_ended(second);
        assert!(!marks.is_busy(&q) && marks.is_touched(&q), "no writer runs");
        assert_eq!(marks.writers(), 0);
    }
}
