//! Snapshot objects: what was captured, from where, when, and its root.
//!
//! Stored as `snapshots/<id>`: `"AMBRSNAP" ‖ u16 version (2) ‖ u16 zero ‖ sealed blob`
//! (blob kind 5, id = the snapshot id = keyed BLAKE3 of the plaintext below). From file
//! version 2 on, the 12 header bytes are part of the seal's associated data; version 1
//! files (header outside the seal) are still read.
//!
//! ```text
//! u8  version (2; version 1 lacks the root entry and is still read)
//! u8  source kind (1 tree, 2 tar layer, 3 block volume)
//! id  root (tree id for trees)
//! u8  has parent, then id parent when 1
//! i64 time, nanoseconds since the epoch
//! bytes16 environment, lab, researcher, hostname, source path
//! u16 tag count, bytes16 each
//! u16 metadata count, then bytes16 key, bytes32 value each
//! u64 files, u64 dirs, u64 bytes, u64 bytes new (stored after compression), u64 blobs new
//! u8  complete (1) or incomplete (0), u64 skipped count, u16 listed skipped paths, bytes16 each
//! u8  has root entry, then (when 1) a tree entry: empty name, kind directory, content
//!     tag 3 naming the root: the snapshotted directory's own metadata
//! ```

use crate::crypto::{NONCE_LEN, SealKey, random_array};
use crate::error::Error;
use crate::format::FormatError;
use crate::format::blob::{self, BlobKind};
use crate::format::codec::{Reader, Writer, expect_header_versions, expect_zeros};
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::{Hash32, SnapshotId, TreeId};

/// File magic.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"AMBRSNAP";
/// File framing version the writer writes: the header is in the seal's associated data.
pub const SNAPSHOT_FILE_VERSION: u16 = 2;
/// The first file framing version, still read: the header lies outside the seal.
pub const SNAPSHOT_FILE_VERSION_V1: u16 = 1;
/// Bytes of the file header: magic, version, reserved.
pub const FILE_HEADER_LEN: usize = 12;
/// Plaintext version the writer writes (with the root entry).
const SNAPSHOT_VERSION: u8 = 2;
/// The first plaintext version, still read (no root entry).
const SNAPSHOT_VERSION_V1: u8 = 1;
/// zstd level of the sealed plaintext.
const SNAPSHOT_ZSTD_LEVEL: i32 = 3;
/// Skipped paths listed in the object (the count covers all).
pub const MAX_LISTED_SKIPS: usize = 100;
const MAX_META_VALUE: usize = 1024 * 1024;

const _: () = assert!(FILE_HEADER_LEN == 8 + 2 + 2);

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
    /// A container image (an OCI image layout or a `docker save` archive).
    Image = 4,
    /// An environment: its image, trees and volume taken together (parts are snapshots).
    Environment = 5,
}

impl SourceKind {
    fn from_u8(v: u8) -> Result<Self, FormatError> {
        Ok(match v {
            1 => SourceKind::Tree,
            2 => SourceKind::TarLayer,
            3 => SourceKind::BlockVolume,
            4 => SourceKind::Image,
            5 => SourceKind::Environment,
            other => return Err(FormatError::invalid("source kind", format!("unknown tag {other}"))),
        })
    }
    /// Name for display and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Tree => "tree",
            SourceKind::TarLayer => "tar",
            SourceKind::BlockVolume => "block",
            SourceKind::Image => "image",
            SourceKind::Environment => "environment",
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
    /// The snapshotted directory's own metadata (mode, owner, times, xattrs): an entry with
    /// an empty name, kind directory and content [`Content::Tree`] of [`Snapshot::root`].
    /// Only directory-tree snapshots have one; `None` in plaintext version 1.
    pub root_entry: Option<Entry>,
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
        if self.texts().iter().any(|t| t.len() > short) || self.tags.iter().any(|t| t.len() > short) {
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
        if let Some(entry) = &self.root_entry {
            check_root_entry(entry, self.source, &self.root)?;
            entry.check_encodable()?;
        }
        Ok(())
    }

    /// Deterministic plaintext encoding, version 2.
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
        for s in self.texts() {
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
        self.encode_tail(&mut w);
        w.into_bytes()
    }

    fn texts(&self) -> [&String; 5] {
        [
            &self.environment,
            &self.lab,
            &self.researcher,
            &self.hostname,
            &self.source_path,
        ]
    }

    /// Stats, skips and the root entry.
    fn encode_tail(&self, w: &mut Writer) {
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
        match &self.root_entry {
            Some(e) => {
                w.u8(1);
                e.encode(w);
            }
            None => w.u8(0),
        }
    }

    /// Decodes a plaintext of version 1 (no root entry) or 2.
    ///
    /// # Errors
    /// [`FormatError`] when malformed, or when a root entry has a name, is not a directory,
    /// does not name the root, or belongs to a snapshot that is not of a directory tree.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("snapshot version")?;
        if v != SNAPSHOT_VERSION_V1 && v != SNAPSHOT_VERSION {
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
        let metadata = decode_metadata(&mut r)?;
        let stats = decode_stats(&mut r)?;
        let _complete = r.u8("complete")?;
        let skipped = r.u64("skipped")?;
        let n = r.count16("skipped paths", 2)?;
        let skipped_paths = (0..n).map(|_| r.string16("skipped path")).collect::<Result<_, _>>()?;
        let root_entry = match v {
            SNAPSHOT_VERSION_V1 => None,
            _ => decode_root_entry(&mut r, source, &root)?,
        };
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
            root_entry,
        })
    }
}

fn decode_metadata(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, FormatError> {
    let n = r.count16("metadata count", 6)?;
    let mut metadata = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.string16("metadata key")?;
        let v = r.bytes32("metadata value", MAX_META_VALUE)?;
        let v = String::from_utf8(v.to_vec()).map_err(|_| FormatError::invalid("metadata value", "not UTF-8"))?;
        metadata.push((k, v));
    }
    Ok(metadata)
}

fn decode_stats(r: &mut Reader<'_>) -> Result<SnapshotStats, FormatError> {
    let mut stat = || r.u64("stats");
    Ok(SnapshotStats {
        files: stat()?,
        dirs: stat()?,
        bytes: stat()?,
        bytes_new: stat()?,
        blobs_new: stat()?,
    })
}

fn decode_root_entry(r: &mut Reader<'_>, source: SourceKind, root: &Hash32) -> Result<Option<Entry>, FormatError> {
    match r.u8("has root entry")? {
        0 => Ok(None),
        1 => {
            let entry = Entry::decode_unchecked(r)?;
            check_root_entry(&entry, source, root)?;
            Ok(Some(entry))
        }
        other => Err(FormatError::invalid("has root entry", format!("{other}"))),
    }
}

/// A root entry has no name, is a directory whose content is the snapshot's root, and
/// belongs to a directory-tree snapshot.
fn check_root_entry(entry: &Entry, source: SourceKind, root: &Hash32) -> Result<(), FormatError> {
    let problem = if source != SourceKind::Tree {
        "only a directory-tree snapshot has one"
    } else if !entry.name.is_empty() {
        "its name is not empty"
    } else if entry.kind != EntryKind::Dir {
        "it is not a directory"
    } else if entry.content != Content::Tree(TreeId::new(*root)) {
        "its content is not the snapshot's root"
    } else {
        return Ok(());
    };
    Err(FormatError::invalid("root entry", problem))
}

/// A snapshot file split at its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framed<'a> {
    /// [`SNAPSHOT_FILE_VERSION_V1`] or [`SNAPSHOT_FILE_VERSION`].
    pub version: u16,
    /// The 12 header bytes.
    pub header: &'a [u8],
    /// The sealed blob after them.
    pub sealed: &'a [u8],
}

/// The 12-byte header of a file of `version`.
fn file_header(version: u16) -> [u8; FILE_HEADER_LEN] {
    let mut w = Writer::with_capacity(FILE_HEADER_LEN);
    w.bytes(SNAPSHOT_MAGIC);
    w.u16(version);
    w.u16(0);
    let mut out = [0u8; FILE_HEADER_LEN];
    out.copy_from_slice(&w.into_bytes());
    out
}

/// Splits a snapshot file of version 1 or 2 into its header and its sealed blob.
///
/// # Errors
/// [`FormatError`] for a bad magic or version, or reserved bytes that are not zero.
pub fn unframe(bytes: &[u8]) -> Result<Framed<'_>, FormatError> {
    let (header, sealed) = bytes
        .split_at_checked(FILE_HEADER_LEN)
        .ok_or(FormatError::Truncated("snapshot file header"))?;
    let mut r = Reader::new(header);
    let versions = SNAPSHOT_FILE_VERSION_V1..=SNAPSHOT_FILE_VERSION;
    let version = expect_header_versions(&mut r, SNAPSHOT_MAGIC, "snapshot file", versions)?;
    expect_zeros(&mut r, 2, "snapshot file reserved bytes")?;
    Ok(Framed {
        version,
        header,
        sealed,
    })
}

/// The associated data of a snapshot file's seal: in version 1 the blob AAD (kind 5, the
/// snapshot id); from version 2 on, followed by the 12 header bytes.
pub fn file_aad(version: u16, id: &SnapshotId, header: &[u8]) -> Vec<u8> {
    if version == SNAPSHOT_FILE_VERSION_V1 {
        blob::blob_aad(BlobKind::Snapshot, id.hash()).to_vec()
    } else {
        blob::framed_aad(BlobKind::Snapshot, id.hash(), &[header])
    }
}

/// Seals a snapshot plaintext (zstd level 3 when it helps) under a random nonce and frames
/// it as the version 2 file stored at `snapshots/<id>`. Pure apart from drawing the nonce.
///
/// # Errors
/// [`Error::InvalidArgument`] for a plaintext over [`blob::MAX_BLOB_LEN`] (a reader would
/// refuse it); [`Error::Crypto`] when no nonce can be drawn.
pub fn seal_file(key: &SealKey, id: &SnapshotId, plain: &[u8]) -> Result<Vec<u8>, Error> {
    seal_file_with_nonce(key, random_array()?, id, plain)
}

/// As [`seal_file`] with a fixed nonce: for golden vectors only.
///
/// # Errors
/// As [`seal_file`].
pub fn seal_file_with_nonce(
    key: &SealKey,
    nonce: [u8; NONCE_LEN],
    id: &SnapshotId,
    plain: &[u8],
) -> Result<Vec<u8>, Error> {
    if plain.len() > blob::MAX_BLOB_LEN {
        return Err(Error::InvalidArgument(format!(
            "snapshot object of {} bytes is too large",
            plain.len()
        )));
    }
    let header = file_header(SNAPSHOT_FILE_VERSION);
    let aad = file_aad(SNAPSHOT_FILE_VERSION, id, &header);
    let sealed = blob::seal_blob_with_aad(key, nonce, &aad, plain, Some(SNAPSHOT_ZSTD_LEVEL))?;
    let mut file = Vec::with_capacity(FILE_HEADER_LEN + sealed.len());
    file.extend_from_slice(&header);
    file.extend_from_slice(&sealed);
    Ok(file)
}

/// Unframes and opens a snapshot file of version 1 or 2 and returns its plaintext, at most
/// [`blob::MAX_BLOB_LEN`] bytes. The caller re-hashes it against `id` (the snapshot id
/// key is not needed here) and decodes it.
///
/// # Errors
/// [`Error::Corrupt`] naming the snapshot for a bad header or envelope; [`Error::Crypto`]
/// when the seal does not open under `id` and the header.
pub fn open_file(key: &SealKey, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let framed = unframe(bytes).map_err(|e| Error::Corrupt {
        kind: "snapshot",
        id: id.to_hex(),
        detail: e.to_string(),
    })?;
    let aad = file_aad(framed.version, id, framed.header);
    blob::open_blob_unsized_with_aad(key, BlobKind::Snapshot, id.hash(), &aad, framed.sealed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::tree::Timestamp;
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
            root_entry: None,
        }
    }

    fn root_entry(root: &Hash32) -> Entry {
        let mut e = Entry::new(Vec::new(), EntryKind::Dir);
        e.mode = 0o750;
        e.uid = 1000;
        e.gid = 100;
        e.user = b"jovyan".to_vec();
        e.mtime = Timestamp { sec: -1, nsec: 5 };
        e.xattrs = vec![(b"user.project".to_vec(), b"amber".to_vec())];
        e.content = Content::Tree(TreeId::new(*root));
        e
    }

    fn with_root_entry() -> Snapshot {
        let mut s = sample();
        s.root_entry = Some(root_entry(&s.root));
        s
    }

    fn key() -> SealKey {
        SealKey::new(&[4u8; 32]).unwrap()
    }

    fn id_of(plain: &[u8]) -> SnapshotId {
        SnapshotId::new(crate::hash::plain_hash(plain))
    }

    /// A version 1 file: the header outside the seal, the blob AAD alone.
    fn v1_file(key: &SealKey, id: &SnapshotId, plain: &[u8]) -> Vec<u8> {
        let mut file = file_header(SNAPSHOT_FILE_VERSION_V1).to_vec();
        let sealed = blob::seal_blob_with_nonce(key, [5; 12], BlobKind::Snapshot, id.hash(), plain, Some(3)).unwrap();
        file.extend_from_slice(&sealed);
        file
    }

    /// The version 1 plaintext of a snapshot without a root entry.
    fn v1_plain(s: &Snapshot) -> Vec<u8> {
        assert!(s.root_entry.is_none());
        let mut plain = s.encode();
        assert_eq!(plain.pop(), Some(0), "has root entry = 0 comes last");
        plain[0] = SNAPSHOT_VERSION_V1;
        plain
    }

    #[test]
    fn round_trip() {
        for s in [sample(), with_root_entry()] {
            s.validate().unwrap();
            let plain = s.encode();
            assert_eq!(plain[0], SNAPSHOT_VERSION);
            assert_eq!(Snapshot::decode(&plain).unwrap(), s);
        }
        let s = sample();
        assert_eq!(
            Snapshot::decode(&v1_plain(&s)).unwrap(),
            s,
            "version 1 has no root entry"
        );
        let mut v1_with_more = v1_plain(&s);
        v1_with_more.push(0);
        assert!(
            Snapshot::decode(&v1_with_more).is_err(),
            "version 1 ends after the skipped paths"
        );
    }

    #[test]
    fn root_entry_is_checked() {
        let s = with_root_entry();
        type Change = fn(&mut Snapshot);
        let bad: [(&str, Change); 5] = [
            ("a name", |s| s.root_entry.as_mut().unwrap().name = b"home".to_vec()),
            ("a file", |s| s.root_entry.as_mut().unwrap().kind = EntryKind::File),
            ("another tree", |s| {
                s.root_entry.as_mut().unwrap().content = Content::Tree(TreeId::new(Hash32::from_bytes([9; 32])))
            }),
            ("no content", |s| s.root_entry.as_mut().unwrap().content = Content::None),
            ("a volume", |s| s.source = SourceKind::BlockVolume),
        ];
        for (what, change) in bad {
            let mut b = s.clone();
            change(&mut b);
            assert!(b.validate().is_err(), "{what}");
            assert!(Snapshot::decode(&b.encode()).is_err(), "{what}");
        }
        let mut plain = sample().encode();
        *plain.last_mut().unwrap() = 2;
        assert!(Snapshot::decode(&plain).is_err(), "has root entry = 2");
        let mut b = s;
        b.root_entry.as_mut().unwrap().xattrs = vec![(b"user.big".to_vec(), vec![0; 64 * 1024 + 1])];
        assert!(b.validate().is_err(), "an xattr value over 64 KiB");
    }

    #[test]
    fn file_round_trip_and_versions() {
        let key = key();
        let plain = with_root_entry().encode();
        let id = id_of(&plain);
        let file = seal_file(&key, &id, &plain).unwrap();
        assert_eq!(&file[..12], b"AMBRSNAP\x02\x00\x00\x00");
        assert_eq!(open_file(&key, &id, &file).unwrap(), plain);
        assert!(open_file(&key, &id_of(b"other"), &file).is_err());

        let old = v1_file(&key, &id, &plain);
        assert_eq!(open_file(&key, &id, &old).unwrap(), plain, "version 1 files still open");
        for at in [10, 11] {
            let mut bad = old.clone();
            bad[at] ^= 1;
            let err = open_file(&key, &id, &bad).unwrap_err().to_string();
            assert!(err.contains("reserved"), "v1 reserved byte {at}: {err}");
        }
        let mut upgraded = old;
        upgraded[8] = 2;
        assert!(open_file(&key, &id, &upgraded).is_err(), "a v1 file relabelled v2");
        assert!(unframe(b"AMBRSNAX\x01\x00\x00\x00").is_err());
        assert!(unframe(b"AMBRSNAP\x02\x00").is_err());
    }

    #[test]
    fn every_v2_header_byte_is_covered() {
        let key = key();
        let plain = sample().encode();
        let id = id_of(&plain);
        let file = seal_file(&key, &id, &plain).unwrap();
        for at in 0..FILE_HEADER_LEN {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert!(open_file(&key, &id, &bad).is_err(), "header byte {at}");
        }
        let mut downgraded = file.clone();
        downgraded[8] = 1;
        let err = open_file(&key, &id, &downgraded).unwrap_err().to_string();
        assert!(err.contains("authentication failed"), "{err}");
        // The seal binds the header itself, reserved bytes included.
        let framed = unframe(&file).unwrap();
        for at in 0..FILE_HEADER_LEN {
            let mut header = framed.header.to_vec();
            header[at] ^= 1;
            let aad = file_aad(SNAPSHOT_FILE_VERSION, &id, &header);
            assert!(
                blob::open_blob_unsized_with_aad(&key, BlobKind::Snapshot, id.hash(), &aad, framed.sealed).is_err()
            );
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 /._-]{0,12}"
    }

    fn arb_root_entry() -> impl Strategy<Value = Option<Entry>> {
        let fields = (
            any::<(u32, u32, u32)>(),
            arb_text(),
            arb_text(),
            any::<(i64, i64, u64, u64, u32)>(),
            (0u32..1_000_000_000, 0u32..1_000_000_000),
            proptest::collection::vec(("[a-z.]{1,10}", proptest::collection::vec(any::<u8>(), 0..20)), 0..3),
        );
        proptest::option::of(fields.prop_map(
            |((mode, uid, gid), user, group, (m, c, inode, size, nlink), (mn, cn), x)| {
                let mut e = Entry::new(Vec::new(), EntryKind::Dir);
                (e.mode, e.uid, e.gid) = (mode, uid, gid);
                (e.user, e.group) = (user.into_bytes(), group.into_bytes());
                e.mtime = Timestamp { sec: m, nsec: mn };
                e.ctime = Timestamp { sec: c, nsec: cn };
                (e.inode, e.size, e.nlink) = (inode, size, nlink);
                e.xattrs = x.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
                e
            },
        ))
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        let head = (
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>()),
            any::<i64>(),
            proptest::collection::vec(arb_text(), 5),
            proptest::collection::vec(arb_text(), 0..4),
            proptest::collection::vec((arb_text(), arb_text()), 0..4),
        );
        let tail = (
            any::<[u64; 5]>(),
            any::<u64>(),
            proptest::collection::vec(arb_text(), 0..4),
            arb_root_entry(),
        );
        (head, tail).prop_map(
            |((root, parent, time_ns, texts, tags, metadata), (st, skipped, paths, entry))| {
                let root = Hash32::from_bytes(root);
                let [environment, lab, researcher, hostname, source_path]: [String; 5] = texts.try_into().unwrap();
                Snapshot {
                    source: SourceKind::Tree,
                    root,
                    parent: parent.map(|p| SnapshotId::new(Hash32::from_bytes(p))),
                    time_ns,
                    environment,
                    lab,
                    researcher,
                    hostname,
                    source_path,
                    tags,
                    metadata,
                    stats: SnapshotStats {
                        files: st[0],
                        dirs: st[1],
                        bytes: st[2],
                        bytes_new: st[3],
                        blobs_new: st[4],
                    },
                    skipped,
                    skipped_paths: paths,
                    root_entry: entry.map(|mut e| {
                        e.content = Content::Tree(TreeId::new(root));
                        e
                    }),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Snapshot::decode(&bytes);
        }

        #[test]
        fn snapshot_round_trip(s in arb_snapshot()) {
            prop_assert!(s.validate().is_ok());
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s.clone());
            if s.root_entry.is_none() {
                prop_assert_eq!(Snapshot::decode(&v1_plain(&s)).unwrap(), s);
            }
        }

        #[test]
        fn file_round_trip(s in arb_snapshot(), nonce in any::<[u8; 12]>()) {
            let key = key();
            let plain = s.encode();
            let id = id_of(&plain);
            let file = seal_file_with_nonce(&key, nonce, &id, &plain).unwrap();
            prop_assert_eq!(open_file(&key, &id, &file).unwrap(), plain);
        }
    }
}
