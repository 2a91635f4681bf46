//! Reading blobs from a store where each request is costly (S3): a blob is read as part of
//! a larger aligned window of its pack, and the last few windows are kept, so a restore
//! that reads a pack's blobs one by one makes a few large requests instead of one per
//! blob. Memory is bounded: [`WINDOWS`] windows of [`WINDOW`] bytes.

use std::sync::{Arc, Mutex, PoisonError};

use crate::backend::{Backend, BackendError};

/// Bytes per window.
pub const WINDOW: u64 = 4 << 20;
/// Windows kept.
pub const WINDOWS: usize = 8;

/// One kept window: the object's key, where the window starts, its bytes.
type Window = (String, u64, Arc<Vec<u8>>);

/// The windows read last, newest last.
#[derive(Debug, Default)]
pub struct WindowCache {
    windows: Mutex<Vec<Window>>,
}

impl WindowCache {
    /// `len` bytes at `offset` of object `key`, from a kept window or by reading the
    /// window(s) around them.
    ///
    /// # Errors
    /// Store errors; [`BackendError::OutOfRange`] when the object is shorter.
    pub fn read(&self, store: &dyn Backend, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        if let Some(hit) = self.find(key, offset, len) {
            return Ok(hit);
        }
        let start = offset - offset % WINDOW;
        let end = (offset + len).div_ceil(WINDOW) * WINDOW;
        let bytes = Arc::new(store.get_range_upto(key, start, end - start)?);
        let from = usize::try_from(offset - start).unwrap_or(usize::MAX);
        let to = from.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        let out = bytes
            .get(from..to)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::OutOfRange {
                key: key.to_string(),
                offset,
                len,
            })?;
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= WINDOWS {
            windows.remove(0);
        }
        windows.push((key.to_string(), start, bytes));
        Ok(out)
    }

    fn find(&self, key: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.iter().rev().find_map(|(k, start, bytes)| {
            if k != key || offset < *start {
                return None;
            }
            let from = usize::try_from(offset - start).ok()?;
            let to = from.checked_add(usize::try_from(len).ok()?)?;
            bytes.get(from..to).map(<[u8]>::to_vec)
        })
    }
}
