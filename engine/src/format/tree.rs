//! Tree nodes: one directory, its entries sorted by name, deterministically encoded.
//!
//! ```text
//! u8   version (1)
//! u32  entry count
//! entry*:
//!   bytes16 name          (no '/', no NUL, not "." or "..", not empty)
//!   u8      kind          (1 file, 2 dir, 3 symlink, 4 fifo, 5 char dev, 6 block dev, 7 socket)
//!   u32     mode          (permission and special bits, no file-type bits)
//!   u32 uid, u32 gid, bytes16 user, bytes16 group
//!   i64 mtime seconds, u32 mtime nanoseconds
//!   i64 ctime seconds, u32 ctime nanoseconds
//!   u64 inode, u64 device, u32 link count, u64 rdev
//!   u64 size
//!   bytes16 symlink target
//!   u16 xattr count, then per xattr: bytes16 name, bytes32 value
//!   u8 content tag: 0 none; 1 inline chunks (u32 n, n × (id, u32 len));
//!                   2 chunk-list root (id, u8 height); 3 subtree (id);
//!                   4 damaged (the original content, tags 0 to 3)
//! ```

use crate::format::FormatError;
use crate::format::codec::{Reader, Writer};
use crate::id::{ChunkId, ListId, TreeId};

const TREE_VERSION: u8 = 1;
/// Largest xattr value accepted (Linux allows 64 KiB).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// Most chunks kept inline in an entry; longer lists become chunk-list nodes.
pub const MAX_INLINE_CHUNKS: usize = 64;

/// The type of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Regular file.
    File = 1,
    /// Directory.
    Dir = 2,
    /// Symbolic link.
    Symlink = 3,
    /// Named pipe.
    Fifo = 4,
    /// Character device.
    CharDevice = 5,
    /// Block device.
    BlockDevice = 6,
    /// Unix socket (recorded, not recreated).
    Socket = 7,
}

impl EntryKind {
    fn from_u8(v: u8) -> Result<Self, FormatError> {
        Ok(match v {
            1 => EntryKind::File,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            4 => EntryKind::Fifo,
            5 => EntryKind::CharDevice,
            6 => EntryKind::BlockDevice,
            7 => EntryKind::Socket,
            other => return Err(FormatError::invalid("entry kind", format!("unknown tag {other}"))),
        })
    }
    /// One-letter code as `ls -l` shows it.
    pub fn letter(self) -> char {
        match self {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Fifo => 'p',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Socket => 's',
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// One chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// The chunk's id.
    pub id: ChunkId,
    /// Its plaintext length.
    pub len: u32,
}

/// What an entry's content is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    /// No content (empty file, symlink, device, ...).
    None,
    /// A short chunk list held in the entry.
    Inline(Vec<ChunkRef>),
    /// The root of a chunk-list tree.
    List {
        /// Root node.
        root: ListId,
        /// Height: 0 when the root holds chunks.
        height: u8,
    },
    /// A directory's node.
    Tree(TreeId),
    /// Content that `amber repair snapshots` found data missing from: the original
    /// reference (never itself damaged), kept so that a blob stored again later heals the
    /// entry. A reader restores what can still be read and names the rest as lost.
    Damaged(Box<Content>),
}

impl Content {
    /// The reference itself, through a damage mark.
    pub fn refs(&self) -> &Content {
        match self {
            Content::Damaged(inner) => inner,
            other => other,
        }
    }

    /// Whether a repair marked this content damaged.
    pub fn is_damaged(&self) -> bool {
        matches!(self, Content::Damaged(_))
    }

    /// `self` marked damaged (unchanged when it already is).
    #[must_use]
    pub fn into_damaged(self) -> Content {
        match self {
            Content::Damaged(_) => self,
            other => Content::Damaged(Box::new(other)),
        }
    }
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// File name (bytes, as the file system has it).
    pub name: Vec<u8>,
    /// Type.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name where known.
    pub user: Vec<u8>,
    /// Group name where known.
    pub group: Vec<u8>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status-change time (change detection only; not restored).
    pub ctime: Timestamp,
    /// Inode number (change detection and hard links).
    pub inode: u64,
    /// Device id of the file system (hard links).
    pub device: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Size in bytes (files: the content length).
    pub size: u64,
    /// Symlink target.
    pub link_target: Vec<u8>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Content reference.
    pub content: Content,
}

impl Entry {
    /// An entry with the given name and kind and every other field empty.
    pub fn new(name: Vec<u8>, kind: EntryKind) -> Self {
        Entry {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: Vec::new(),
            group: Vec::new(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            nlink: 1,
            rdev: 0,
            size: 0,
            link_target: Vec::new(),
            xattrs: Vec::new(),
            content: Content::None,
        }
    }

    /// The name as text (lossy), for display.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Appends the entry in the tree.md encoding (also a snapshot's root entry).
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes16(&self.name);
        w.u8(self.kind as u8);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.bytes16(&self.user);
        w.bytes16(&self.group);
        encode_time(w, self.mtime);
        encode_time(w, self.ctime);
        w.u64(self.inode);
        w.u64(self.device);
        w.u32(self.nlink);
        w.u64(self.rdev);
        w.u64(self.size);
        w.bytes16(&self.link_target);
        w.u16(u16::try_from(self.xattrs.len()).unwrap_or(u16::MAX));
        for (k, v) in &self.xattrs {
            w.bytes16(k);
            w.bytes32(v);
        }
        encode_content(w, &self.content);
    }

    /// Decodes one entry without checking its name, which is the caller's business: a tree
    /// node's entries need a single path component, a snapshot's root entry an empty name.
    pub(crate) fn decode_unchecked(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let name = r.bytes16("entry name")?.to_vec();
        Self::decode_after_name(name, r)
    }

    /// Decodes the fields after the name.
    fn decode_after_name(name: Vec<u8>, r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let mut e = Entry::new(name, EntryKind::from_u8(r.u8("entry kind")?)?);
        e.mode = r.u32("mode")?;
        e.uid = r.u32("uid")?;
        e.gid = r.u32("gid")?;
        e.user = r.bytes16("user")?.to_vec();
        e.group = r.bytes16("group")?.to_vec();
        e.mtime = decode_time(r, "mtime")?;
        e.ctime = decode_time(r, "ctime")?;
        e.inode = r.u64("inode")?;
        e.device = r.u64("device")?;
        e.nlink = r.u32("nlink")?;
        e.rdev = r.u64("rdev")?;
        e.size = r.u64("size")?;
        e.link_target = r.bytes16("link target")?.to_vec();
        let n = r.count16("xattr count", 6)?;
        for _ in 0..n {
            let k = r.bytes16("xattr name")?.to_vec();
            let v = r.bytes32("xattr value", MAX_XATTR_VALUE)?.to_vec();
            e.xattrs.push((k, v));
        }
        e.content = decode_content(r)?;
        Ok(e)
    }

    /// Checks that every field fits its encoding, so that the entry decodes as it was given
    /// (the name is not checked; see [`validate_name`]).
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the field that is too long, too numerous or out of range.
    pub(crate) fn check_encodable(&self) -> Result<(), FormatError> {
        let short = usize::from(u16::MAX);
        let fields = [&self.name, &self.user, &self.group, &self.link_target];
        if fields.iter().any(|f| f.len() > short) {
            return Err(FormatError::invalid(
                "entry",
                "a name, owner or link target over 65535 bytes",
            ));
        }
        if self.xattrs.len() > short
            || self
                .xattrs
                .iter()
                .any(|(k, v)| k.len() > short || v.len() > MAX_XATTR_VALUE)
        {
            return Err(FormatError::invalid(
                "xattrs",
                "too many, a name over 65535 bytes or a value over 64 KiB",
            ));
        }
        if self.mtime.nsec >= 1_000_000_000 || self.ctime.nsec >= 1_000_000_000 {
            return Err(FormatError::invalid("entry time", "nanoseconds of 10^9 or more"));
        }
        if let Content::Inline(chunks) = self.content.refs()
            && u32::try_from(chunks.len()).is_err()
        {
            return Err(FormatError::invalid("content", "more than 2^32 - 1 inline chunks"));
        }
        Ok(())
    }
}

fn encode_time(w: &mut Writer, t: Timestamp) {
    w.i64(t.sec);
    w.u32(t.nsec);
}

fn decode_time(r: &mut Reader<'_>, field: &'static str) -> Result<Timestamp, FormatError> {
    let sec = r.i64(field)?;
    let nsec = r.u32(field)?;
    if nsec >= 1_000_000_000 {
        return Err(FormatError::invalid(field, format!("{nsec} nanoseconds")));
    }
    Ok(Timestamp { sec, nsec })
}

/// Encodes a content reference (also used by tar layouts).
pub(crate) fn encode_content(w: &mut Writer, c: &Content) {
    match c {
        Content::None => w.u8(0),
        Content::Inline(chunks) => {
            w.u8(1);
            w.u32(u32::try_from(chunks.len()).unwrap_or(u32::MAX));
            for c in chunks {
                w.id(c.id.hash());
                w.u32(c.len);
            }
        }
        Content::List { root, height } => {
            w.u8(2);
            w.id(root.hash());
            w.u8(*height);
        }
        Content::Tree(id) => {
            w.u8(3);
            w.id(id.hash());
        }
        Content::Damaged(inner) => {
            w.u8(4);
            encode_content(w, inner);
        }
    }
}

/// Decodes a content reference.
pub(crate) fn decode_content(r: &mut Reader<'_>) -> Result<Content, FormatError> {
    Ok(match r.u8("content tag")? {
        0 => Content::None,
        1 => {
            let n = r.count32("inline chunk count", 36)?;
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                let id = ChunkId::new(r.id("chunk id")?);
                chunks.push(ChunkRef {
                    id,
                    len: r.u32("chunk length")?,
                });
            }
            Content::Inline(chunks)
        }
        2 => Content::List {
            root: ListId::new(r.id("list root")?),
            height: r.u8("list height")?,
        },
        3 => Content::Tree(TreeId::new(r.id("subtree")?)),
        4 => match decode_content(&mut *r)? {
            Content::Damaged(_) => {
                return Err(FormatError::invalid(
                    "content tag",
                    "a damage mark inside a damage mark",
                ));
            }
            inner => Content::Damaged(Box::new(inner)),
        },
        other => return Err(FormatError::invalid("content tag", format!("unknown tag {other}"))),
    })
}

/// Checks that a name is a single, safe path component.
///
/// # Errors
/// [`FormatError::Invalid`] for empty names, `.`, `..`, or names with `/` or NUL.
pub fn validate_name(name: &[u8]) -> Result<(), FormatError> {
    let bad = name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0);
    if bad {
        return Err(FormatError::invalid(
            "entry name",
            format!("{:?} is not a single path component", String::from_utf8_lossy(name)),
        ));
    }
    Ok(())
}

/// One directory: entries sorted by name bytes, names unique.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TreeNode {
    entries: Vec<Entry>,
}

impl TreeNode {
    /// Builds a node, sorting the entries.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] for a bad or duplicate name.
    pub fn new(mut entries: Vec<Entry>) -> Result<Self, FormatError> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        check_sorted_unique(&entries)?;
        for e in &entries {
            validate_name(&e.name)?;
        }
        Ok(TreeNode { entries })
    }
    /// The entries, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// Takes the entries out.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
    /// Finds an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
    /// Deterministic encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(5 + self.entries.len() * 128);
        w.u8(TREE_VERSION);
        w.u32(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        for e in &self.entries {
            e.encode(&mut w);
        }
        w.into_bytes()
    }
    /// Decodes and validates (sorted, unique, safe names).
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("tree version")?;
        if v != TREE_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "tree node",
                version: u16::from(v),
                supported: u16::from(TREE_VERSION),
            });
        }
        let n = r.count32("entry count", 80)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.bytes16("entry name")?.to_vec();
            validate_name(&name)?;
            entries.push(Entry::decode_after_name(name, &mut r)?);
        }
        r.finish()?;
        check_sorted_unique(&entries)?;
        Ok(TreeNode { entries })
    }
}

fn check_sorted_unique(entries: &[Entry]) -> Result<(), FormatError> {
    for pair in entries.windows(2) {
        if let [a, b] = pair
            && a.name >= b.name
        {
            return Err(FormatError::invalid(
                "tree node",
                format!("entries not sorted or duplicated at {:?}", b.name_lossy()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Hash32;
    use proptest::prelude::*;

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            "[a-zA-Z0-9_.-]{1,20}",
            0u8..4,
            any::<u32>(),
            any::<(u32, u32, i64, u64, u64)>(),
            proptest::collection::vec(("[a-z.]{1,10}", proptest::collection::vec(any::<u8>(), 0..40)), 0..3),
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..5),
        )
            .prop_filter("not . or ..", |(n, ..)| n != "." && n != "..")
            .prop_map(|(name, k, mode, (uid, gid, sec, size, inode), xattrs, chunks)| {
                let kind = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink, EntryKind::Fifo][k as usize];
                let mut e = Entry::new(name.into_bytes(), kind);
                e.mode = mode;
                e.uid = uid;
                e.gid = gid;
                e.mtime = Timestamp { sec, nsec: 5 };
                e.size = size;
                e.inode = inode;
                e.user = b"jovyan".to_vec();
                e.xattrs = xattrs.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
                e.content = match kind {
                    EntryKind::File => Content::Inline(
                        chunks
                            .into_iter()
                            .map(|(id, len)| ChunkRef {
                                id: ChunkId::new(Hash32::from_bytes(id)),
                                len,
                            })
                            .collect(),
                    ),
                    EntryKind::Dir => Content::Tree(TreeId::new(Hash32::from_bytes([7; 32]))),
                    EntryKind::Symlink => {
                        e.link_target = b"../target".to_vec();
                        Content::None
                    }
                    _ => Content::None,
                };
                e
            })
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec(arb_entry(), 0..12)) {
            let mut seen = std::collections::HashSet::new();
            let entries: Vec<Entry> = entries.into_iter().filter(|e| seen.insert(e.name.clone())).collect();
            let node = TreeNode::new(entries).unwrap();
            let bytes = node.encode();
            prop_assert_eq!(TreeNode::decode(&bytes).unwrap(), node);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = TreeNode::decode(&bytes);
        }
    }

    #[test]
    fn rejects_unsafe_names_and_duplicates() {
        for bad in [&b".."[..], b".", b"a/b", b"", b"a\0"] {
            assert!(TreeNode::new(vec![Entry::new(bad.to_vec(), EntryKind::File)]).is_err());
        }
        let dup = vec![
            Entry::new(b"a".to_vec(), EntryKind::File),
            Entry::new(b"a".to_vec(), EntryKind::Dir),
        ];
        assert!(TreeNode::new(dup).is_err());
    }
}
