//! Operations on a vault: snapshot a tree, restore, list, diff.

pub mod block;
pub mod content;
pub mod diff;
pub mod extract;
pub mod fsmeta;
pub mod ingest;
pub mod progress;
pub mod ranges;
pub mod restore;
pub mod stream;
pub mod tar;
pub mod walk;

#[cfg(test)]
mod tests;

/// Worker threads for CPU work when the caller does not choose.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// A path inside a snapshot, `/`-separated, from raw name bytes.
pub(crate) fn join_rel(parent: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if parent.is_empty() {
        name.into_owned()
    } else {
        format!("{parent}/{name}")
    }
}
