//! A wrapper that fails chosen operations, for crash and fault tests.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Backend, BackendError, CasOutcome, DynBackend, ListPage, ObjectInfo, PendingUpload, PutMode, PutOutcome,
    RestoreStatus, RetrievalTier, StorageClass,
};

/// A store that ignores preconditions, as some S3-compatible servers do: create-only
/// writes replace, compare-and-swap always writes. For the probe's tests.
#[derive(Debug)]
pub struct NoPreconditions(pub DynBackend);

impl Backend for NoPreconditions {
    fn put(&self, key: &str, bytes: &[u8], _mode: PutMode) -> Result<PutOutcome, BackendError> {
        self.0.put(key, bytes, PutMode::Overwrite)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.0.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.0.get_range(key, offset, len)
    }
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.0.stat(key)
    }
    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        self.0.list_page(prefix, after, limit)
    }
    fn put_if_match(&self, key: &str, bytes: &[u8], _etag: &str) -> Result<CasOutcome, BackendError> {
        self.0.put(key, bytes, PutMode::Overwrite)?;
        Ok(CasOutcome::Replaced(None))
    }
    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        self.0.set_storage_class(key, class)
    }
    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError> {
        self.0.request_restore(key, days, tier)
    }
    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        self.0.restore_status(key)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.0.delete(key)
    }
    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        self.0.pending_uploads(prefix)
    }
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError> {
        self.0.abort_upload(upload)
    }
}

/// Forwards to an inner backend and fails the Nth put (counting from 1) and every put
/// after it, as a full disk or a lost connection would.
#[derive(Debug)]
pub struct FaultBackend {
    inner: DynBackend,
    fail_from_put: u64,
    puts: AtomicU64,
}

impl FaultBackend {
    /// Fails put number `n` and later ones; `u64::MAX` never fails.
    pub fn failing_put(inner: DynBackend, n: u64) -> Self {
        FaultBackend {
            inner,
            fail_from_put: n,
            puts: AtomicU64::new(0),
        }
    }
    /// Puts attempted so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
}

impl Backend for FaultBackend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_from_put {
            return Err(BackendError::Injected(key.to_string()));
        }
        self.inner.put(key, bytes, mode)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.get_range(key, offset, len)
    }
    fn get_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, BackendError> {
        self.inner.get_ranges(key, ranges)
    }
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner.stat(key)
    }
    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        self.inner.list_page(prefix, after, limit)
    }
    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_from_put {
            return Err(BackendError::Injected(key.to_string()));
        }
        self.inner.put_if_match(key, bytes, etag)
    }
    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        self.inner.set_storage_class(key, class)
    }
    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError> {
        self.inner.request_restore(key, days, tier)
    }
    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        self.inner.restore_status(key)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        self.inner.pending_uploads(prefix)
    }
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError> {
        self.inner.abort_upload(upload)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Faults a test arms and disarms while a store is in use: the next puts fail as on a
/// full disk (`ENOSPC`), or as a torn write (a prefix of the bytes lands, then the error),
/// reads fail, or return bytes with one bit flipped, deletes fail. Each count says how many
/// more operations of that kind pass before the fault hits (`u64::MAX`: never); a
/// fault, once hit, stays until disarmed, as a full disk does.
#[derive(Debug)]
pub struct FaultPlan {
    put_after: AtomicU64,
    torn: std::sync::atomic::AtomicBool,
    read_after: AtomicU64,
    flip_after: AtomicU64,
    delete_after: AtomicU64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            put_after: AtomicU64::new(u64::MAX),
            torn: std::sync::atomic::AtomicBool::new(false),
            read_after: AtomicU64::new(u64::MAX),
            flip_after: AtomicU64::new(u64::MAX),
            delete_after: AtomicU64::new(u64::MAX),
        }
    }
}

impl FaultPlan {
    /// After `n` more puts, every put fails with ENOSPC; `torn`: the failing put first
    /// leaves a prefix of its bytes under the key.
    pub fn fail_puts_after(&self, n: u64, torn: bool) {
        self.torn.store(torn, Ordering::SeqCst);
        self.put_after.store(n, Ordering::SeqCst);
    }
    /// After `n` more reads, every read fails.
    pub fn fail_reads_after(&self, n: u64) {
        self.read_after.store(n, Ordering::SeqCst);
    }
    /// After `n` more reads, every read returns its bytes with one bit flipped.
    pub fn flip_reads_after(&self, n: u64) {
        self.flip_after.store(n, Ordering::SeqCst);
    }
    /// After `n` more deletes, every delete fails.
    pub fn fail_deletes_after(&self, n: u64) {
        self.delete_after.store(n, Ordering::SeqCst);
    }
    /// No fault any more.
    pub fn disarm(&self) {
        for budget in [&self.put_after, &self.read_after, &self.flip_after, &self.delete_after] {
            budget.store(u64::MAX, Ordering::SeqCst);
        }
        self.torn.store(false, Ordering::SeqCst);
    }
}

/// Counts one operation against `budget`: whether the fault hits it.
fn hits(budget: &AtomicU64) -> bool {
    let counted = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
        u64::MAX | 0 => None,
        n => Some(n - 1),
    });
    counted == Err(0)
}

/// A store whose faults a shared [`FaultPlan`] arms.
#[derive(Debug)]
pub struct Faulty {
    inner: DynBackend,
    plan: std::sync::Arc<FaultPlan>,
}

impl Faulty {
    /// Wraps `inner`; faults are armed through `plan`.
    pub fn new(inner: DynBackend, plan: std::sync::Arc<FaultPlan>) -> Self {
        Faulty { inner, plan }
    }

    fn full(key: &str) -> BackendError {
        BackendError::Io {
            key: key.to_string(),
            source: std::io::Error::from_raw_os_error(28),
        }
    }

    fn read(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>, BackendError> {
        if hits(&self.plan.read_after) {
            return Err(BackendError::Injected(key.to_string()));
        }
        let mut bytes = bytes;
        let middle = bytes.len() / 2;
        if hits(&self.plan.flip_after)
            && let Some(b) = bytes.get_mut(middle)
        {
            *b ^= 0x10;
        }
        Ok(bytes)
    }
}

impl Backend for Faulty {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        if hits(&self.plan.put_after) {
            if self.plan.torn.load(Ordering::SeqCst) && !key.starts_with("snapshots/") {
                let half = bytes.get(..bytes.len() / 2).unwrap_or_default();
                self.inner.put(key, half, mode)?;
            }
            return Err(Self::full(key));
        }
        self.inner.put(key, bytes, mode)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        let bytes = self.inner.get(key)?;
        self.read(key, bytes)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let bytes = self.inner.get_range(key, offset, len)?;
        self.read(key, bytes)
    }
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner.stat(key)
    }
    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        self.inner.list_page(prefix, after, limit)
    }
    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        if hits(&self.plan.put_after) {
            return Err(Self::full(key));
        }
        self.inner.put_if_match(key, bytes, etag)
    }
    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        self.inner.set_storage_class(key, class)
    }
    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError> {
        self.inner.request_restore(key, days, tier)
    }
    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        self.inner.restore_status(key)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        if hits(&self.plan.delete_after) {
            return Err(BackendError::Injected(key.to_string()));
        }
        self.inner.delete(key)
    }
    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        self.inner.pending_uploads(prefix)
    }
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError> {
        if hits(&self.plan.delete_after) {
            return Err(BackendError::Injected(upload.key.clone()));
        }
        self.inner.abort_upload(upload)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Backend;

    #[test]
    fn the_probe_tells_a_store_that_ignores_preconditions() {
        let good = Arc::new(super::super::memory::MemoryBackend::new());
        assert_eq!(super::super::probe_conditional_writes(good.as_ref()).unwrap(), Ok(()));
        assert!(good.list("tmp/").unwrap().is_empty(), "the probe object is left");
        let bad = super::NoPreconditions(good);
        assert!(super::super::probe_conditional_writes(&bad).unwrap().is_err());
        let dir = tempfile::tempdir().unwrap();
        let refused =
            crate::repo::Repository::init(Arc::new(bad), dir.path(), b"pw", &crate::repo::InitOptions::default())
                .unwrap_err();
        assert!(
            refused.to_string().contains("does not honour conditional writes"),
            "{refused}"
        );
    }

    #[test]
    fn conformance_when_no_fault_is_due() {
        let inner = Arc::new(super::super::memory::MemoryBackend::new());
        super::super::conformance::run(&super::FaultBackend::failing_put(inner, u64::MAX)).unwrap();
    }
}
