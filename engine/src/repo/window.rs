//! Reading blobs from a store where each request is costly (S3): a blob is read as part of
//! a larger aligned window of its pack, and the last few windows are kept, so a restore
//! that reads a pack's blobs one by one makes a few large requests (one `GET` for all the
//! neighbouring blobs in a window) instead of one per blob. Many threads may read at once
//! (a restore from such a store runs [`crate::ops::IO_THREADS`] of them, so several
//! windows are fetched in parallel); a thread that needs a window another thread is
//! already fetching waits for it instead of asking the store again. Memory is bounded:
//! [`WINDOWS`] windows of [`WINDOW`] bytes, plus those being fetched.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::backend::{Backend, BackendError};

/// Bytes per window.
pub const WINDOW: u64 = 4 << 20;
/// Windows kept.
pub const WINDOWS: usize = 16;

/// Which window: the object's key and where the window starts.
type WindowId = (String, u64);

#[derive(Debug, Default)]
struct Windows {
    /// Kept windows, newest last.
    kept: Vec<(WindowId, Arc<Vec<u8>>)>,
    /// Windows some thread is fetching now.
    fetching: Vec<WindowId>,
}

/// The windows read last, and those being read.
#[derive(Debug, Default)]
pub struct WindowCache {
    windows: Mutex<Windows>,
    fetched: Condvar,
}

impl WindowCache {
    /// `len` bytes at `offset` of object `key`, from a kept window or by reading the
    /// window(s) around them.
    ///
    /// # Errors
    /// Store errors; [`BackendError::OutOfRange`] when the object is shorter.
    pub fn read(&self, store: &dyn Backend, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let start = offset - offset % WINDOW;
        let end = (offset + len).div_ceil(WINDOW) * WINDOW;
        let id: WindowId = (key.to_string(), start);
        // A kept window holding the bytes may start before `start` (one read across a
        // window boundary keeps both windows as one).
        let (start, bytes) = match self.claim(&id, offset, len) {
            Claim::Kept(at, bytes) => (at, bytes),
            Claim::Fetch => {
                let fetched = store.get_range_upto(key, start, end - start).map(Arc::new);
                self.publish(&id, fetched.as_ref().ok());
                (start, fetched?)
            }
        };
        let from = usize::try_from(offset - start).unwrap_or(usize::MAX);
        let to = from.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        bytes
            .get(from..to)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| BackendError::OutOfRange {
                key: key.to_string(),
                offset,
                len,
            })
    }

    /// A kept window holding the bytes, or the duty to fetch window `id` (waiting first
    /// while another thread fetches it).
    fn claim(&self, id: &WindowId, offset: u64, len: u64) -> Claim {
        let mut w = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some((at, bytes)) = find(&w.kept, &id.0, offset, len) {
                return Claim::Kept(at, bytes);
            }
            if !w.fetching.contains(id) {
                w.fetching.push(id.clone());
                return Claim::Fetch;
            }
            w = self.fetched.wait(w).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Ends the fetch of `id`, keeping the window when it was read.
    fn publish(&self, id: &WindowId, bytes: Option<&Arc<Vec<u8>>>) {
        let mut w = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        w.fetching.retain(|f| f != id);
        if let Some(bytes) = bytes {
            if w.kept.len() >= WINDOWS {
                w.kept.remove(0);
            }
            w.kept.push((id.clone(), bytes.clone()));
        }
        drop(w);
        self.fetched.notify_all();
    }
}

enum Claim {
    /// A kept window starting at this offset holds the bytes.
    Kept(u64, Arc<Vec<u8>>),
    Fetch,
}

/// The newest kept window of `key` that holds `len` bytes at `offset`, with its start.
fn find(kept: &[(WindowId, Arc<Vec<u8>>)], key: &str, offset: u64, len: u64) -> Option<(u64, Arc<Vec<u8>>)> {
    kept.iter().rev().find_map(|((k, start), bytes)| {
        let from = offset.checked_sub(*start)?;
        let holds = k == key && from.checked_add(len)? <= bytes.len() as u64;
        holds.then(|| (*start, bytes.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PutMode;
    use crate::backend::memory::MemoryBackend;

    #[test]
    fn threads_share_windows_and_read_the_right_bytes() {
        let store = MemoryBackend::new();
        let data: Vec<u8> = (0..(3 * WINDOW + 100)).map(|i| (i % 251) as u8).collect();
        store.put("data/aa/p", &data, PutMode::CreateOnly).unwrap();
        let cache = WindowCache::default();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (cache, store, data) = (&cache, &store, &data);
                s.spawn(move || {
                    for i in 0..50u64 {
                        let offset = (t * 7919 + i * 104_729) % (data.len() as u64 - 5000);
                        let got = cache.read(store, "data/aa/p", offset, 4000).unwrap();
                        assert_eq!(got, data[offset as usize..offset as usize + 4000]);
                    }
                });
            }
        });
        // Across a window's end, then inside the second window (served from the two-window
        // read, which starts a window earlier), and past the object's end.
        let cache = WindowCache::default();
        for (at, len) in [(WINDOW - 10, 20), (WINDOW + 5000, 300), (2 * WINDOW - 7, 7)] {
            let got = cache.read(&store, "data/aa/p", at, len).unwrap();
            assert_eq!(got, data[at as usize..(at + len) as usize], "{len} bytes at {at}");
        }
        assert!(cache.read(&store, "data/aa/p", data.len() as u64 - 5, 10).is_err());
        assert!(cache.read(&store, "data/aa/missing", 0, 10).is_err());
        let w = cache.windows.lock().unwrap();
        assert!(w.fetching.is_empty() && w.kept.len() <= WINDOWS);
    }
}
