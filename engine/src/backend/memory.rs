//! An in-memory backend for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BackendError, ObjectInfo, PutMode, PutOutcome, validate_key};

/// Objects held in a map.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        validate_key(key)?;
        let mut map = self.lock();
        if mode == PutMode::CreateOnly && map.contains_key(key) {
            return Ok(PutOutcome::AlreadyExisted);
        }
        map.insert(key.to_string(), bytes.to_vec());
        Ok(PutOutcome::Created)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        validate_key(key)?;
        self.lock()
            .get(key)
            .cloned()
            .ok_or_else(|| BackendError::NotFound { key: key.into() })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        validate_key(key)?;
        let map = self.lock();
        let obj = map.get(key).ok_or_else(|| BackendError::NotFound { key: key.into() })?;
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(offset.saturating_add(len)).ok());
        range
            .and_then(|(a, b)| obj.get(a..b))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::OutOfRange {
                key: key.into(),
                offset,
                len,
            })
    }

    fn head(&self, key: &str) -> Result<Option<u64>, BackendError> {
        validate_key(key)?;
        Ok(self.lock().get(key).map(|v| v.len() as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        Ok(self
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemoryBackend::new());
    }
}
