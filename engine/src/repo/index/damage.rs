//! Blobs found damaged or missing, so that deduplication never offers them again and a
//! file whose content names one is read again instead of inherited from its parent.
//!
//! Kept as an append-only text file beside the RocksDB index (`damaged.log`), not inside
//! it, so that every process records what it finds even when another one holds the
//! index's lock or the index is opened read-only on a full disk. Each line is
//! `<64 hex> damaged <reason>` or `<64 hex> healed` (a good copy was written since); the
//! last line about an id wins. The file is a cache like the index: losing it only means
//! damage is found again by the next read.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::id::{BlobId, Hash32};

/// How often a writer looks whether another process appended to the log.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The damage log of one vault's index.
#[derive(Debug)]
pub(crate) struct DamageLog {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    damaged: HashMap<BlobId, String>,
    /// Bytes of the file already read.
    read: u64,
    checked: Option<Instant>,
}

impl DamageLog {
    /// The log at `path`, loaded now (a missing or unreadable file is an empty log).
    pub(crate) fn open(path: &Path) -> Self {
        let log = DamageLog {
            path: path.to_path_buf(),
            state: Mutex::default(),
        };
        log.reload(true);
        log
    }

    /// Why `id` is known damaged, if it is.
    pub(crate) fn get(&self, id: &BlobId) -> Option<String> {
        self.reload(false);
        self.state.lock().ok()?.damaged.get(id).cloned()
    }

    /// Number of blobs known damaged.
    pub(crate) fn len(&self) -> usize {
        self.reload(false);
        self.state.lock().map_or(0, |s| s.damaged.len())
    }

    /// Records that `id` is damaged. Best effort on disk (a full disk only loses the
    /// record for other processes); always in memory.
    pub(crate) fn mark(&self, id: BlobId, reason: &str) {
        let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if let Ok(mut s) = self.state.lock() {
            if s.damaged.contains_key(&id) {
                return;
            }
            s.damaged.insert(id, reason.clone());
        }
        self.append(&format!("{} damaged {reason}\n", id.to_hex()));
    }

    /// Records that good copies of `ids` were stored, for those marked damaged.
    pub(crate) fn heal(&self, ids: impl Iterator<Item = BlobId>) {
        let mut lines = String::new();
        if let Ok(mut s) = self.state.lock() {
            if s.damaged.is_empty() {
                return;
            }
            for id in ids {
                if s.damaged.remove(&id).is_some() {
                    lines.push_str(&format!("{} healed\n", id.to_hex()));
                }
            }
        }
        if !lines.is_empty() {
            self.append(&lines);
        }
    }

    fn append(&self, text: &str) {
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_data()));
        if written.is_ok()
            && let Ok(mut s) = self.state.lock()
        {
            s.read += text.len() as u64;
        }
    }

    /// Reads what other processes appended since the last look (at most once a second
    /// unless `now`).
    fn reload(&self, now: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        if !now && s.checked.is_some_and(|t| t.elapsed() < RELOAD_EVERY) {
            return;
        }
        s.checked = Some(Instant::now());
        let Ok(bytes) = std::fs::read(&self.path) else { return };
        let start = usize::try_from(s.read).unwrap_or(usize::MAX);
        let Some(new) = bytes.get(start..) else {
            // Shorter than what was read: rewritten (cleared); start over.
            s.damaged.clear();
            s.read = 0;
            return;
        };
        let text = String::from_utf8_lossy(new).into_owned();
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        for line in text.get(..complete).unwrap_or_default().lines() {
            apply_line(&mut s.damaged, line);
        }
        s.read += complete as u64;
    }
}

fn apply_line(damaged: &mut HashMap<BlobId, String>, line: &str) {
    let mut parts = line.splitn(3, ' ');
    let (Some(hex), Some(what)) = (parts.next(), parts.next()) else {
        return;
    };
    let Some(id) = Hash32::from_hex(hex).ok().map(BlobId::new) else {
        return;
    };
    match what {
        "damaged" => {
            damaged.insert(id, parts.next().unwrap_or_default().to_string());
        }
        "healed" => {
            damaged.remove(&id);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> BlobId {
        BlobId::new(Hash32::from_bytes([b; 32]))
    }

    #[test]
    fn marks_survive_reopening_and_heal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.log");
        let log = DamageLog::open(&path);
        assert_eq!(log.len(), 0);
        log.mark(id(1), "authentication failed\nin pack x");
        log.mark(id(2), "pack missing");
        let other = DamageLog::open(&path);
        assert_eq!(other.get(&id(1)).unwrap(), "authentication failed in pack x");
        other.heal([id(1), id(3)].into_iter());
        let again = DamageLog::open(&path);
        assert!(again.get(&id(1)).is_none());
        assert!(again.get(&id(2)).is_some());
    }

    #[test]
    fn another_process_appending_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.log");
        let reader = DamageLog::open(&path);
        assert!(reader.get(&id(9)).is_none());
        DamageLog::open(&path).mark(id(9), "truncated");
        std::thread::sleep(RELOAD_EVERY + Duration::from_millis(50));
        assert_eq!(reader.get(&id(9)).unwrap(), "truncated");
    }
}
