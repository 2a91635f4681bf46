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
    /// Path relative to the pushed root.
    path: String,
    /// Hex of a one-entry tree node holding the file's entry and content.
    node: String,
}

impl Journal {
    /// The journal for this push; a push without a resume key has none.
    pub fn open(vault: &Vault, token_id: &str, resume_key: &[u8], source_path: &str) -> Journal {
        if resume_key.is_empty() {
            return Journal { path: None };
        }
        let mut h = blake3::Hasher::new();
        for part in [token_id.as_bytes(), source_path.as_bytes(), resume_key] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let name = format!("{}.journal", h.finalize().to_hex());
        Journal {
            path: Some(journal_dir(vault).join(name)),
        }
    }

    /// The files recorded so far, by path. Unreadable lines are ignored (it is a cache).
    pub fn load(&self) -> HashMap<String, Entry> {
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
    pub fn append(&self, files: &[(String, Entry)]) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if files.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (p, e) in files {
            let node = TreeNode::new(vec![e.clone()]).context("journal entry")?;
            let line = Line {
                path: p.clone(),
                node: hex::encode(node.encode()),
            };
            text.push_str(&serde_json::to_string(&line)?);
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

fn decode(line: &str) -> Option<(String, Entry)> {
    let line: Line = serde_json::from_str(line).ok()?;
    let node = TreeNode::decode(&hex::decode(line.node).ok()?).ok()?;
    let entry = node.into_entries().into_iter().next()?;
    Some((line.path, entry))
}
