//! A view of one prefix of a store as a store of its own: how one bucket (or one
//! directory) holds many vaults and the server's shared state beside them.

use super::{
    Backend, BackendError, CasOutcome, DynBackend, ListPage, ObjectInfo, PendingUpload, PutMode, PutOutcome,
    RestoreStatus, RetrievalTier, StorageClass, validate_key,
};

/// Keys `k` of this store are `prefix/k` of the inner one.
#[derive(Debug, Clone)]
pub struct PrefixBackend {
    inner: DynBackend,
    prefix: String,
}

impl PrefixBackend {
    /// The objects of `inner` under `prefix/` (a valid key, without the trailing `/`).
    ///
    /// # Errors
    /// [`BackendError::InvalidKey`] for a prefix that is not a valid key.
    pub fn new(inner: DynBackend, prefix: &str) -> Result<Self, BackendError> {
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix)?;
        Ok(PrefixBackend {
            inner,
            prefix: format!("{prefix}/"),
        })
    }

    fn outer(&self, key: &str) -> Result<String, BackendError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn inner_info(&self, mut o: ObjectInfo) -> ObjectInfo {
        o.key = o.key.strip_prefix(&self.prefix).unwrap_or(&o.key).to_string();
        o
    }
}

impl Backend for PrefixBackend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        self.inner.put(&self.outer(key)?, bytes, mode)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.get(&self.outer(key)?)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.get_range(&self.outer(key)?, offset, len)
    }
    fn get_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, BackendError> {
        self.inner.get_ranges(&self.outer(key)?, ranges)
    }
    fn get_range_upto(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        self.inner.get_range_upto(&self.outer(key)?, offset, len)
    }
    fn prefers_large_reads(&self) -> bool {
        self.inner.prefers_large_reads()
    }
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        Ok(self.inner.stat(&self.outer(key)?)?.map(|o| self.inner_info(o)))
    }
    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        let outer_prefix = format!("{}{prefix}", self.prefix);
        let outer_after = after.map(|a| format!("{}{a}", self.prefix));
        let page = self.inner.list_page(&outer_prefix, outer_after.as_deref(), limit)?;
        Ok(ListPage {
            objects: page.objects.into_iter().map(|o| self.inner_info(o)).collect(),
            next_after: page
                .next_after
                .map(|k| k.strip_prefix(&self.prefix).unwrap_or(&k).to_string()),
        })
    }
    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        self.inner.put_if_match(&self.outer(key)?, bytes, etag)
    }
    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        self.inner.set_storage_class(&self.outer(key)?, class)
    }
    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError> {
        self.inner.request_restore(&self.outer(key)?, days, tier)
    }
    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        self.inner.restore_status(&self.outer(key)?)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(&self.outer(key)?)
    }
    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        let outer = format!("{}{prefix}", self.prefix);
        let mut uploads = self.inner.pending_uploads(&outer)?;
        for u in &mut uploads {
            u.key = u.key.strip_prefix(&self.prefix).unwrap_or(&u.key).to_string();
        }
        Ok(uploads)
    }
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError> {
        let outer = PendingUpload {
            key: self.outer(&upload.key)?,
            ..upload.clone()
        };
        self.inner.abort_upload(&outer)
    }
    fn describe(&self) -> String {
        let outer = self.inner.describe();
        format!("{}/{}", outer.trim_end_matches('/'), self.prefix.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::memory::MemoryBackend;
    use super::super::{Backend, PutMode};

    #[test]
    fn conformance_under_a_prefix_leaves_the_rest_alone() {
        let inner = Arc::new(MemoryBackend::new());
        inner.put("vaults/other/config", b"x", PutMode::CreateOnly).unwrap();
        let view = super::PrefixBackend::new(inner.clone(), "vaults/lab").unwrap();
        super::super::conformance::run(&view).unwrap();
        assert_eq!(inner.get("vaults/other/config").unwrap(), b"x");
        assert!(
            inner
                .list("vaults/lab/data/")
                .unwrap()
                .iter()
                .all(|o| o.key.starts_with("vaults/lab/"))
        );
    }
}
