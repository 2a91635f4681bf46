//! Resume journals: the files an unfinished tree push completed, so that a retry with the
//! same resume key, token and source does not send them again. A journal is a cache: a
//! lost or unreadable one only means the retry sends those files again. Its format is in
//! `format-spec/server.md`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use amber_engine::format::tree::{Entry, TreeNode};
use anyhow::{Context, Result};

use super::session::journal_dir;
use crate::serve::vaults::Vault;

/// The journal of one (token, source, resume key).
pub struct Journal {
    path: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    /// Path relative to the pushed root, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    /// Hex of the path's bytes, when it is not UTF-8 (instead of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    /// Hex of a one-entry tree node holding the file's entry and content.
    node: String,
}

impl Line {
    fn new(path: &[u8], entry: &Entry) -> Result<Self> {
        let node = TreeNode::new(vec![entry.clone()]).context("journal entry")?;
        let (path, path_hex) = match std::str::from_utf8(path) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(hex::encode(path))),
        };
        Ok(Line {
            path,
            path_hex,
            node: hex::encode(node.encode()),
        })
    }

    fn path_bytes(&self) -> Option<Vec<u8>> {
        match (&self.path_hex, &self.path) {
            (Some(h), _) => hex::decode(h).ok(),
            (None, Some(p)) => Some(p.clone().into_bytes()),
            (None, None) => None,
        }
    }
}

impl Journal {
    /// The journal for this push; a push without a resume key has none.
    pub fn open(vault: &Vault, token_id: &str, resume_key: &[u8], source_path: &str) -> Journal {
        Journal {
            path: resume_base(vault, token_id, resume_key, source_path).map(|b| b.with_extension("journal")),
        }
    }

    /// The files recorded so far, by path. Unreadable lines are ignored (it is a cache).
    pub fn load(&self) -> HashMap<Vec<u8>, Entry> {
        let Some(path) = &self.path else {
            return HashMap::new();
        };
        let Ok(file) = std::fs::File::open(path) else {
            return HashMap::new();
        };
        std::io::BufReader::new(file)
            .lines()
            .map_while(std::result::Result::ok)
            .filter_map(|line| decode(&line))
            .collect()
    }

    /// Appends completed files. Call only once their content is durable.
    ///
    /// # Errors
    /// I/O errors writing the journal.
    pub fn append(&self, files: &[(Vec<u8>, Entry)]) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if files.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (p, e) in files {
            text.push_str(&serde_json::to_string(&Line::new(p, e)?)?);
            text.push('\n');
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// Deletes the journal once the push is committed.
    pub fn remove(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where the resume files of a push live, without extension: named by a hash of the
/// token, source path and resume key, so they are bound to all three and reveal none. A
/// push without a resume key has none.
pub fn resume_base(vault: &Vault, token_id: &str, resume_key: &[u8], source_path: &str) -> Option<PathBuf> {
    if resume_key.is_empty() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    for part in [token_id.as_bytes(), source_path.as_bytes(), resume_key] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(journal_dir(vault).join(h.finalize().to_hex().as_str()))
}

/// One journal line as a path and its entry; `None` for a line that does not parse.
pub fn decode(line: &str) -> Option<(Vec<u8>, Entry)> {
    let line: Line = serde_json::from_str(line).ok()?;
    let path = line.path_bytes()?;
    let node = TreeNode::decode(&hex::decode(line.node).ok()?).ok()?;
    let entry = node.into_entries().into_iter().next()?;
    Some((path, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amber_engine::format::tree::{ChunkRef, Content, EntryKind, Timestamp};
    use amber_engine::id::{ChunkId, Hash32, ListId};

    const VECTOR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../format-spec/vectors/server-journal.jsonl"
    );

    fn file(name: &str, content: Content, size: u64) -> Entry {
        let mut e = Entry::new(name.as_bytes().to_vec(), EntryKind::File);
        e.mode = 0o644;
        e.size = size;
        e.mtime = Timestamp {
            sec: 1_790_000_000,
            nsec: 5,
        };
        e.ctime = Timestamp {
            sec: 1_790_000_001,
            nsec: 6,
        };
        e.inode = 42;
        e.content = content;
        e
    }

    fn lines() -> Vec<(Vec<u8>, Entry)> {
        let inline = Content::Inline(vec![ChunkRef {
            id: ChunkId::new(Hash32::from_bytes([7; 32])),
            len: 11,
        }]);
        let list = Content::List {
            root: ListId::new(Hash32::from_bytes([9; 32])),
            height: 1,
        };
        vec![
            (b"notebooks/a.ipynb".to_vec(), file("a.ipynb", inline.clone(), 11)),
            (b"data/big.parquet".to_vec(), file("big.parquet", list, 5_000_000)),
            (b"caf\xe9/x".to_vec(), file("x", inline, 11)),
        ]
    }

    fn encode(files: &[(Vec<u8>, Entry)]) -> String {
        let mut text = String::new();
        for (p, e) in files {
            text.push_str(&serde_json::to_string(&Line::new(p, e).unwrap()).unwrap());
            text.push('\n');
        }
        text
    }

    #[test]
    fn golden_journal_decodes_and_reencodes() {
        let expected = lines();
        let good = encode(&expected);
        let text = format!("{good}{{\"path\": \"torn\", \"node\": \"01ff\n");
        if std::env::var_os("AMBER_BLESS").is_some() {
            std::fs::write(VECTOR, &text).unwrap();
        }
        let stored = std::fs::read_to_string(VECTOR).unwrap();
        assert_eq!(stored, text, "the vector differs from what the code writes");
        let decoded: Vec<(Vec<u8>, Entry)> = stored.lines().filter_map(decode).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn journals_append_load_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal {
            path: Some(dir.path().join("resume/x.journal")),
        };
        assert!(j.load().is_empty());
        j.append(&lines()).unwrap();
        j.append(&lines()[..1]).unwrap();
        let loaded = j.load();
        assert_eq!(loaded.len(), 3);
        assert_eq!(loaded.get(&b"data/big.parquet"[..]), Some(&lines()[1].1));
        assert_eq!(loaded.get(&b"caf\xe9/x"[..]), Some(&lines()[2].1));
        j.remove();
        assert!(j.load().is_empty());
        let none = Journal { path: None };
        none.append(&lines()).unwrap();
        assert!(none.load().is_empty());
    }
}
