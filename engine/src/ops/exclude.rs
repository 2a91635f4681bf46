//! Which paths a tree snapshot leaves out (`--exclude`, `--exclude-file`), the same for a
//! local snapshot and a push.
//!
//! A pattern without `/` is matched against the name of every entry at any depth
//! (`*.pyc`, `__pycache__`, `.ipynb_checkpoints`). A pattern with `/` is matched against
//! the entry's path relative to the snapshotted directory (a leading `/` anchors nothing
//! more: `/data/raw` and `data/raw` are the same); `*` does not cross `/`, `**` does. An
//! excluded directory is not entered. Names are raw bytes; patterns are UTF-8 text.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of exclusion patterns. The default excludes nothing.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
    patterns: Vec<String>,
}

impl Excludes {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a pattern that is not a valid glob.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut any_name, mut any_path) = (false, false);
        for p in patterns
            .iter()
            .map(|p| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty())
        {
            let glob = |text: &str| -> Result<Glob> {
                GlobBuilder::new(text)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::InvalidArgument(format!("bad --exclude pattern {p:?}: {e}")))
            };
            if p.contains('/') {
                paths.add(glob(p.trim_start_matches('/'))?);
                any_path = true;
            } else {
                names.add(glob(p)?);
                any_name = true;
            }
        }
        let build = |b: GlobSetBuilder, used: bool| -> Result<Option<GlobSet>> {
            if !used {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::InvalidArgument(format!("bad --exclude patterns: {e}")))
        };
        Ok(Excludes {
            names: build(names, any_name)?,
            paths: build(paths, any_path)?,
            patterns: patterns.to_vec(),
        })
    }

    /// Patterns from an exclude file's text: one per line; blank lines and lines starting
    /// with `#` are ignored; surrounding spaces are trimmed.
    pub fn parse_file(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    }

    /// The patterns given and those of the exclude files, compiled.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file; [`Error::InvalidArgument`] for a bad pattern.
    pub fn load(patterns: &[String], files: &[std::path::PathBuf]) -> Result<Self> {
        let mut all = patterns.to_vec();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            all.extend(Self::parse_file(&text));
        }
        Self::new(&all)
    }

    /// The patterns this set was made from.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.names.is_none() && self.paths.is_none()
    }

    /// Whether the entry named `name` at relative path `rel` (raw bytes, `/`-separated) is
    /// left out.
    pub fn excludes(&self, rel: &[u8], name: &[u8]) -> bool {
        let as_path = |b: &[u8]| Path::new(OsStr::from_bytes(b)).to_path_buf();
        self.names.as_ref().is_some_and(|g| g.is_match(as_path(name)))
            || self.paths.as_ref().is_some_and(|g| g.is_match(as_path(rel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_match_at_any_depth_paths_from_the_root() {
        let e = ex(&["*.pyc", "__pycache__", "/data/raw", "logs/**/*.log"]);
        assert!(e.excludes(b"a/b/x.pyc", b"x.pyc"));
        assert!(e.excludes(b"pkg/__pycache__", b"__pycache__"));
        assert!(!e.excludes(b"pkg/x.py", b"x.py"));
        assert!(e.excludes(b"data/raw", b"raw"));
        assert!(!e.excludes(b"other/data/raw", b"raw"));
        assert!(e.excludes(b"logs/2026/12/a.log", b"a.log"));
        assert!(!e.excludes(b"logs.log", b"logs.log"));
    }

    #[test]
    fn non_utf8_names_and_bad_patterns() {
        let e = ex(&["caf*"]);
        assert!(e.excludes(b"caf\xe9", b"caf\xe9"));
        assert!(Excludes::new(&["a[".into()]).is_err());
        assert!(ex(&[]).is_empty());
        assert_eq!(
            Excludes::parse_file("# comment\n\n *.tmp \ncache/\n"),
            vec!["*.tmp".to_string(), "cache/".to_string()]
        );
    }
}
