//! An in-memory backend for tests. It models storage classes the way S3 does: an object
//! in an archive class cannot be read until a restore is asked for and has finished, and a
//! restore can be made to take a number of status polls ([`MemoryBackend::with_restore_polls`]),
//! which is how tests see "restore in progress" (the S3 test server restores at once).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    Backend, BackendError, CasOutcome, ListPage, ObjectInfo, PendingUpload, PutMode, PutOutcome, RestoreStatus,
    RetrievalTier, StorageClass, page_of, validate_key,
};

#[derive(Debug, Clone)]
struct Object {
    bytes: Vec<u8>,
    class: StorageClass,
    modified: i64,
    version: u64,
    /// Polls left before a requested restore finishes; `Some(0)`: restored.
    restore: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Object>,
    versions: u64,
}

/// Objects held in a map.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    restore_polls: u32,
}

impl MemoryBackend {
    /// An empty store whose restores finish at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose restores finish only after `polls` calls of
    /// [`Backend::restore_status`] on the object.
    pub fn with_restore_polls(polls: u32) -> Self {
        MemoryBackend {
            restore_polls: polls,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `change` on the object under `key`.
    fn with_object<T>(&self, key: &str, change: impl FnOnce(&mut Object) -> T) -> Result<T, BackendError> {
        validate_key(key)?;
        let mut state = self.lock();
        let obj = state
            .objects
            .get_mut(key)
            .ok_or_else(|| BackendError::NotFound { key: key.into() })?;
        Ok(change(obj))
    }

    fn readable<'a>(key: &str, obj: Option<&'a Object>) -> Result<&'a Object, BackendError> {
        let obj = obj.ok_or_else(|| BackendError::NotFound { key: key.into() })?;
        if obj.class.is_archive() && obj.restore != Some(0) {
            return Err(BackendError::Archived {
                key: key.into(),
                class: obj.class.clone(),
            });
        }
        Ok(obj)
    }
}

impl State {
    fn write(&mut self, key: &str, bytes: &[u8]) -> u64 {
        self.versions += 1;
        let obj = Object {
            bytes: bytes.to_vec(),
            class: StorageClass::Standard,
            modified: crate::repo::now_secs(),
            version: self.versions,
            restore: None,
        };
        self.objects.insert(key.to_string(), obj);
        self.versions
    }
}

fn info(key: &str, obj: &Object) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: obj.bytes.len() as u64,
        modified: Some(obj.modified),
        etag: Some(obj.version.to_string()),
        class: obj.class.clone(),
    }
}

impl Backend for MemoryBackend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        validate_key(key)?;
        let mut state = self.lock();
        if mode == PutMode::CreateOnly && state.objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExisted);
        }
        state.write(key, bytes);
        Ok(PutOutcome::Created)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        validate_key(key)?;
        let state = self.lock();
        Ok(Self::readable(key, state.objects.get(key))?.bytes.clone())
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        validate_key(key)?;
        let state = self.lock();
        let obj = Self::readable(key, state.objects.get(key))?;
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(offset.saturating_add(len)).ok());
        range
            .and_then(|(a, b)| obj.bytes.get(a..b))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::OutOfRange {
                key: key.into(),
                offset,
                len,
            })
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        validate_key(key)?;
        Ok(self.lock().objects.get(key).map(|o| info(key, o)))
    }

    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        let state = self.lock();
        let all = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| info(k, o))
            .collect();
        Ok(page_of(all, after, limit))
    }

    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        validate_key(key)?;
        let mut state = self.lock();
        let current = state.objects.get(key).map(|o| o.version.to_string());
        if current.as_deref() != Some(etag) {
            return Ok(CasOutcome::Conflict);
        }
        let version = state.write(key, bytes);
        Ok(CasOutcome::Replaced(Some(version.to_string())))
    }

    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        self.with_object(key, |obj| {
            obj.class = class.clone();
            obj.restore = None;
        })
    }

    fn request_restore(&self, key: &str, _days: u32, _tier: RetrievalTier) -> Result<(), BackendError> {
        self.with_object(key, |obj| {
            if obj.class.is_archive() && obj.restore.is_none() {
                obj.restore = Some(self.restore_polls);
            }
        })
    }

    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        self.with_object(key, |obj| {
            if !obj.class.is_archive() {
                return RestoreStatus::Readable;
            }
            match obj.restore {
                None => RestoreStatus::Archived,
                Some(0) => RestoreStatus::Readable,
                Some(n) => {
                    obj.restore = Some(n - 1);
                    RestoreStatus::InProgress
                }
            }
        })
    }

    fn pending_uploads(&self, _prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        Ok(Vec::new())
    }

    fn abort_upload(&self, _upload: &PendingUpload) -> Result<(), BackendError> {
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        validate_key(key)?;
        self.lock().objects.remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "an in-memory store".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemoryBackend::new()).unwrap();
    }

    #[test]
    fn conformance_with_slow_restores() {
        super::super::conformance::run(&super::MemoryBackend::with_restore_polls(3)).unwrap();
    }
}
