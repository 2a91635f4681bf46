//! A wrapper that fails chosen operations, for crash and fault tests.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, BackendError, DynBackend, ObjectInfo, PutMode, PutOutcome};

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
    fn head(&self, key: &str) -> Result<Option<u64>, BackendError> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
