//! Snapshot objects: what was captured, from where, when, and its root.
//!
//! Stored as `snapshots/<id>`: `"AMBRSNAP" ‖ u16 version ‖ u16 zero ‖ sealed blob`
//! (blob kind 5, id = the snapshot id = keyed BLAKE3 of the plaintext below).
//!
//! ```text
//! u8  version (1)
//! u8  source kind (1 tree, 2 tar layer, 3 block volume)
//! id  root (tree id for trees)
//! u8  has parent, then id parent when 1
//! i64 time, nanoseconds since the epoch
//! bytes16 environment, lab, researcher, hostname, source path
//! u16 tag count, bytes16 each
//! u16 metadata count, then bytes16 key, bytes32 value each
//! u64 files, u64 dirs, u64 bytes, u64 bytes new (stored after compression), u64 blobs new
//! u8  complete (1) or incomplete (0), u64 skipped count, u16 listed skipped paths, bytes16 each
//! ```

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer, expect_header};
use crate::id::{Hash32, SnapshotId};

/// File magic.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"AMBRSNAP";
/// File framing version.
pub const SNAPSHOT_FILE_VERSION: u16 = 1;
const SNAPSHOT_VERSION: u8 = 1;
/// Skipped paths listed in the object (the count covers all).
pub const MAX_LISTED_SKIPS: usize = 100;
const MAX_META_VALUE: usize = 1024 * 1024;

/// What kind of source a snapshot captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceKind {
    /// A directory tree.
    Tree = 1,
    /// A container layer (tar stream).
    TarLayer = 2,
    /// A raw block volume.
    BlockVolume = 3,
}

impl SourceKind {
    fn from_u8(v: u8) -> Result<Self, FormatError> {
        Ok(match v {
            1 => SourceKind::Tree,
            2 => SourceKind::TarLayer,
            3 => SourceKind::BlockVolume,
            other => return Err(FormatError::invalid("source kind", format!("unknown tag {other}"))),
        })
    }
    /// Name for display and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Tree => "tree",
            SourceKind::TarLayer => "tar",
            SourceKind::BlockVolume => "block",
        }
    }
}

/// Counters recorded with a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Bytes newly written to the store (sealed, after compression).
    pub bytes_new: u64,
    /// Blobs newly written.
    pub blobs_new: u64,
}

/// A snapshot object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Source kind.
    pub source: SourceKind,
    /// Root: a tree id for tree snapshots.
    pub root: Hash32,
    /// The snapshot this one was compared against.
    pub parent: Option<SnapshotId>,
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
    /// Environment name.
    pub environment: String,
    /// Lab.
    pub lab: String,
    /// Researcher.
    pub researcher: String,
    /// Host that took it.
    pub hostname: String,
    /// Path (or name) of the source.
    pub source_path: String,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Free metadata (experiment, funding, criticality, packages, ...), sorted by key.
    pub metadata: Vec<(String, String)>,
    /// Counters.
    pub stats: SnapshotStats,
    /// Paths that could not be read.
    pub skipped: u64,
    /// The first [`MAX_LISTED_SKIPS`] of them.
    pub skipped_paths: Vec<String>,
}

impl Snapshot {
    /// Records the paths (with reasons) a snapshot left out: their number, and the first
    /// [`MAX_LISTED_SKIPS`] of them.
    pub fn record_skips(&mut self, skipped: &[(String, String)]) {
        self.skipped = skipped.len() as u64;
        self.skipped_paths = skipped.iter().take(MAX_LISTED_SKIPS).map(|(p, _)| p.clone()).collect();
    }

    /// True when every source path was captured.
    pub fn is_complete(&self) -> bool {
        self.skipped == 0
    }

    /// Checks that every field fits its encoding, so what is committed always decodes.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the field that is too long or too numerous.
    pub fn validate(&self) -> Result<(), FormatError> {
        let short = u16::MAX as usize;
        let texts = [
            &self.environment,
            &self.lab,
            &self.researcher,
            &self.hostname,
            &self.source_path,
        ];
        if texts.iter().any(|t| t.len() > short) || self.tags.iter().any(|t| t.len() > short) {
            return Err(FormatError::invalid(
                "snapshot text",
                "a name, path or tag is longer than 65535 bytes",
            ));
        }
        if self.tags.len() > short || self.metadata.len() > short {
            return Err(FormatError::invalid(
                "snapshot",
                "more than 65535 tags or metadata entries",
            ));
        }
        if self
            .metadata
            .iter()
            .any(|(k, v)| k.len() > short || v.len() > MAX_META_VALUE)
        {
            return Err(FormatError::invalid(
                "metadata",
                "a key over 65535 bytes or a value over 1 MiB",
            ));
        }
        if self.skipped_paths.iter().any(|p| p.len() > short) {
            return Err(FormatError::invalid("skipped path", "longer than 65535 bytes"));
        }
        Ok(())
    }

    /// Deterministic plaintext encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(SNAPSHOT_VERSION);
        w.u8(self.source as u8);
        w.id(&self.root);
        match &self.parent {
            Some(p) => {
                w.u8(1);
                w.id(p.hash());
            }
            None => w.u8(0),
        }
        w.i64(self.time_ns);
        for s in [
            &self.environment,
            &self.lab,
            &self.researcher,
            &self.hostname,
            &self.source_path,
        ] {
            w.bytes16(s.as_bytes());
        }
        w.u16(u16::try_from(self.tags.len()).unwrap_or(u16::MAX));
        for t in &self.tags {
            w.bytes16(t.as_bytes());
        }
        w.u16(u16::try_from(self.metadata.len()).unwrap_or(u16::MAX));
        for (k, v) in &self.metadata {
            w.bytes16(k.as_bytes());
            w.bytes32(v.as_bytes());
        }
        let s = &self.stats;
        for v in [s.files, s.dirs, s.bytes, s.bytes_new, s.blobs_new] {
            w.u64(v);
        }
        w.u8(u8::from(self.is_complete()));
        w.u64(self.skipped);
        let listed = self.skipped_paths.iter().take(MAX_LISTED_SKIPS);
        w.u16(u16::try_from(listed.len()).unwrap_or(0));
        for p in listed {
            w.bytes16(p.as_bytes());
        }
        w.into_bytes()
    }

    /// Decodes the plaintext.
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("snapshot version")?;
        if v != SNAPSHOT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "snapshot",
                version: u16::from(v),
                supported: u16::from(SNAPSHOT_VERSION),
            });
        }
        let source = SourceKind::from_u8(r.u8("source kind")?)?;
        let root = r.id("root")?;
        let parent = match r.u8("has parent")? {
            0 => None,
            1 => Some(SnapshotId::new(r.id("parent")?)),
            other => return Err(FormatError::invalid("has parent", format!("{other}"))),
        };
        let time_ns = r.i64("time")?;
        let mut text = || r.string16("snapshot text");
        let (environment, lab, researcher, hostname, source_path) = (text()?, text()?, text()?, text()?, text()?);
        let n = r.count16("tag count", 2)?;
        let tags = (0..n).map(|_| r.string16("tag")).collect::<Result<_, _>>()?;
        let n = r.count16("metadata count", 6)?;
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.string16("metadata key")?;
            let v = r.bytes32("metadata value", MAX_META_VALUE)?;
            let v = String::from_utf8(v.to_vec()).map_err(|_| FormatError::invalid("metadata value", "not UTF-8"))?;
            metadata.push((k, v));
        }
        let mut stat = || r.u64("stats");
        let stats = SnapshotStats {
            files: stat()?,
            dirs: stat()?,
            bytes: stat()?,
            bytes_new: stat()?,
            blobs_new: stat()?,
        };
        let _complete = r.u8("complete")?;
        let skipped = r.u64("skipped")?;
        let n = r.count16("skipped paths", 2)?;
        let skipped_paths = (0..n).map(|_| r.string16("skipped path")).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Snapshot {
            source,
            root,
            parent,
            time_ns,
            environment,
            lab,
            researcher,
            hostname,
            source_path,
            tags,
            metadata,
            stats,
            skipped,
            skipped_paths,
        })
    }
}

/// Frames a sealed snapshot for storage.
pub fn frame(sealed: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + sealed.len());
    w.bytes(SNAPSHOT_MAGIC);
    w.u16(SNAPSHOT_FILE_VERSION);
    w.u16(0);
    w.bytes(sealed);
    w.into_bytes()
}

/// Strips the framing; returns the sealed blob.
///
/// # Errors
/// [`FormatError`] for a bad magic or version.
pub fn unframe(bytes: &[u8]) -> Result<&[u8], FormatError> {
    let mut r = Reader::new(bytes);
    expect_header(&mut r, SNAPSHOT_MAGIC, "snapshot file", SNAPSHOT_FILE_VERSION)?;
    r.u16("snapshot file padding")?;
    r.take(r.remaining(), "sealed snapshot")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            source: SourceKind::Tree,
            root: Hash32::from_bytes([1; 32]),
            parent: Some(SnapshotId::new(Hash32::from_bytes([2; 32]))),
            time_ns: 1_790_000_000_000_000_000,
            environment: "genomics-lab/jupyter-3".into(),
            lab: "genomics".into(),
            researcher: "ada".into(),
            hostname: "node-7".into(),
            source_path: "/home/jovyan".into(),
            tags: vec!["nightly".into()],
            metadata: vec![("experiment".into(), "E-42".into())],
            stats: SnapshotStats {
                files: 3,
                dirs: 1,
                bytes: 100,
                bytes_new: 50,
                blobs_new: 2,
            },
            skipped: 1,
            skipped_paths: vec!["secret.txt".into()],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        let framed = frame(b"sealed");
        assert_eq!(unframe(&framed).unwrap(), b"sealed");
        assert!(unframe(b"AMBRSNAX\x01\x00\x00\x00").is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
