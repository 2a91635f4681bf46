//! Golden vectors of format v1.
//!
//! Every stored object is built here from fixed inputs (master key, vault id, nonces,
//! shuffle seed, Argon2 parameters) and compared byte for byte with the hex files in
//! `format-spec/vectors/`; then the stored bytes are decoded back and checked against the
//! structs they were made from. `format-spec/vectors/README.md` lists the inputs.
//!
//! `AMBER_BLESS=1 cargo test -p amber-engine --test golden` rewrites the files instead of
//! comparing. Without it a missing file is a failure, never a silent pass.
//!
//! Fixtures (`*-v1.hex`) are objects of an older version that the current writer no longer
//! makes: they are only read and checked, never written, even when blessing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use amber_engine::chunker::{ChunkerParams, GearTable, chunk_all};
use amber_engine::crypto::{KdfParams, MasterKey, SealKey, VaultKeys, derive_kek};
use amber_engine::format::audit::{self, AuditEvent, AuditHead, AuditRecord};
use amber_engine::format::blob::{self, BlobKind};
use amber_engine::format::chunklist::{self, ListBuilder, ListEntry, ListNode};
use amber_engine::format::config::{self, VaultConfig};
use amber_engine::format::keyslot::{self, KeySlot};
use amber_engine::format::layout::{self as tar_layout, LayoutReader, Record};
use amber_engine::format::pack::{self, BuiltPack, DIRECTORY_ID, PackEntry, PackKind, SealedBlob};
use amber_engine::format::segment::{self, PackRecord};
use amber_engine::format::snapshot::{self, Snapshot, SnapshotStats, SourceKind};
use amber_engine::format::tarhdr::{self, BLOCK, TarKind};
use amber_engine::format::tree::{ChunkRef, Content, Entry, EntryKind, MAX_INLINE_CHUNKS, Timestamp, TreeNode};
use amber_engine::hash::{IdKey, plain_hash};
use amber_engine::id::{BlobId, ChunkId, Hash32, KeySlotId, ListId, PackId, SegmentId, SnapshotId, TreeId, VaultId};
use amber_engine::ops::ranges::{BlockSet, ByteRange, parse_ranges};
use amber_engine::repo::layout;

// ---------------------------------------------------------------------------------------
// Fixed inputs (mirrored in format-spec/vectors/README.md).
// ---------------------------------------------------------------------------------------

/// Master key: bytes 0x00, 0x01, ..., 0x1f.
fn master_bytes() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}
/// Vault id: 32 × 0xa5.
fn vault_id() -> VaultId {
    config::fixed_vault_id(0xa5)
}
/// Every nonce is twelve copies of one byte; each object has its own byte.
const fn nonce(byte: u8) -> [u8; 12] {
    [byte; 12]
}
const NONCE_BLOB_COMPRESSIBLE: u8 = 0x01;
const NONCE_BLOB_INCOMPRESSIBLE: u8 = 0x02;
const NONCE_BLOB_SMALL: u8 = 0x03;
const NONCE_PACK_DIRECTORY: u8 = 0x04;
const NONCE_SNAPSHOT: u8 = 0x05;
const NONCE_SEGMENT: u8 = 0x06;
const NONCE_KEYSLOT: u8 = 0x07;
const NONCE_AUDIT: u8 = 0x08;
const NONCE_AUDIT_HEAD: u8 = 0x09;
const NONCE_CONDEMN: u8 = 0x0a;

const CREATED: i64 = 1_700_000_000;
const PACK_SHUFFLE_SEED: u64 = 0x5eed_0000_0000_0001;
const ID_HASH_INPUT: &[u8] = b"amber golden vector";
/// What the chunker key hashes to draw the gear table (chunker.md).
const GEAR_CONTEXT: &[u8] = b"amber gear table v1";
const ZSTD_LEVEL: i32 = 3;
const CHUNKER_INPUT_LEN: usize = 3_000_000;
const CHUNKER_INPUT_SEED: u64 = 0x0123_4567_89ab_cdef;
const PASSPHRASE: &[u8] = b"correct horse battery staple";

/// xorshift64 bytes: `x ^= x << 13; x ^= x >> 7; x ^= x << 17; byte = (x >> 24) as u8`,
/// starting from `seed | 1`.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn keys() -> VaultKeys {
    MasterKey::from_bytes(master_bytes()).subkeys(&vault_id()).unwrap()
}

fn compressible_chunk() -> Vec<u8> {
    b"Amber golden vector: a compressible chunk.\n".repeat(100)
}
fn incompressible_chunk() -> Vec<u8> {
    pseudo_random(256, 7)
}
fn small_chunk() -> Vec<u8> {
    b"hello, amber\n".to_vec()
}

// ---------------------------------------------------------------------------------------
// Vector files.
// ---------------------------------------------------------------------------------------

/// Every vector file the tests read; the directory must hold exactly these.
const ALL_VECTORS: &[&str] = &[
    "subkey-id-chunk",
    "subkey-id-tree",
    "subkey-id-list",
    "subkey-id-snapshot",
    "subkey-id-layout",
    "subkey-chunker-key",
    "subkey-config-mac",
    "chunker-gear",
    "config",
    "keyslot",
    "audit-record-plain",
    "audit-record",
    "audit-head-plain",
    "audit-head",
    "blob-compressible",
    "blob-incompressible",
    "pack",
    "tree",
    "tree-damaged",
    "chunklist",
    "chunklist-root",
    "snapshot-plain",
    "snapshot-file",
    "segment-plain",
    "segment",
    "chunker-lengths",
    "tar-header",
    "layout",
    "volume-list-root",
    "recipe",
    "image-node",
    "environment-node",
    "condemn-plain",
    "condemn",
];

/// Objects of older versions, kept as they were written: read and checked, never blessed.
const FIXTURES: &[&str] = &["pack-v1", "snapshot-plain-v1", "snapshot-file-v1"];

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../format-spec/vectors")
}

fn blessing() -> bool {
    std::env::var("AMBER_BLESS").is_ok_and(|v| v == "1")
}

/// Lower-case hex, 64 digits (32 bytes) per line, final newline.
fn to_hex_lines(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + bytes.len() / 32 + 1);
    for line in bytes.chunks(32) {
        out.push_str(&hex::encode(line));
        out.push('\n');
    }
    out
}

/// The vectors one test reads. A stored vector that differs from the freshly computed
/// bytes is remembered, and the stored bytes are still handed out, so the decode checks
/// that follow show whether old objects still read; the difference fails the test when
/// the `Vectors` is dropped.
#[derive(Default)]
struct Vectors {
    differences: Vec<String>,
}

impl Vectors {
    /// Compares `fresh` with `format-spec/vectors/<name>.hex` (or writes it when blessing)
    /// and returns the stored bytes, which the caller then decodes.
    fn golden(&mut self, name: &str, fresh: &[u8]) -> Vec<u8> {
        assert!(ALL_VECTORS.contains(&name), "{name} is missing from ALL_VECTORS");
        let path = vectors_dir().join(format!("{name}.hex"));
        if blessing() {
            std::fs::create_dir_all(vectors_dir()).unwrap();
            std::fs::write(&path, to_hex_lines(fresh)).unwrap();
            return fresh.to_vec();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "golden vector {} cannot be read ({e}); regenerate with \
                 AMBER_BLESS=1 cargo test -p amber-engine --test golden",
                path.display()
            )
        });
        let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let stored = hex::decode(&digits).unwrap_or_else(|e| panic!("{} is not hex: {e}", path.display()));
        if stored != fresh {
            let at = stored
                .iter()
                .zip(fresh)
                .position(|(a, b)| a != b)
                .unwrap_or(stored.len().min(fresh.len()));
            self.differences.push(format!(
                "{name}: {} differs from the computed bytes at byte {at} (stored {} bytes, computed {})",
                path.display(),
                stored.len(),
                fresh.len()
            ));
        }
        stored
    }
}

/// The bytes of the fixture `format-spec/vectors/<name>.hex`, which is never rewritten.
fn fixture(name: &str) -> Vec<u8> {
    assert!(FIXTURES.contains(&name), "{name} is missing from FIXTURES");
    let path = vectors_dir().join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} cannot be read ({e}); fixtures are never regenerated",
            path.display()
        )
    });
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(&digits).unwrap_or_else(|e| panic!("{} is not hex: {e}", path.display()))
}

impl Drop for Vectors {
    fn drop(&mut self) {
        if self.differences.is_empty() {
            return;
        }
        let list = self.differences.join("\n  ");
        if std::thread::panicking() {
            eprintln!("also, the encoding changed:\n  {list}");
        } else {
            panic!(
                "format change; the stored vectors still decode, but the encoding is different:\n  {list}\n\
                 If intended, bless the vectors (AMBER_BLESS=1) and say why; bump the object's \
                 version if old objects could no longer be read."
            );
        }
    }
}

fn u32s_le(bytes: &[u8]) -> Vec<u32> {
    assert_eq!(bytes.len() % 4, 0);
    bytes
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Object builders shared by several tests.
// ---------------------------------------------------------------------------------------

fn chunk_blob(keys: &VaultKeys, plain: &[u8], nonce_byte: u8) -> SealedBlob {
    let id = keys.ids.chunk.hash(plain);
    let sealed = blob::seal_blob_with_nonce(
        &keys.seal_key,
        nonce(nonce_byte),
        BlobKind::Chunk,
        &id,
        plain,
        Some(ZSTD_LEVEL),
    )
    .unwrap();
    SealedBlob {
        id: BlobId::new(id),
        kind: BlobKind::Chunk,
        raw_len: plain.len() as u32,
        sealed,
    }
}

fn golden_pack(keys: &VaultKeys) -> BuiltPack {
    let blobs = vec![
        chunk_blob(keys, &compressible_chunk(), NONCE_BLOB_COMPRESSIBLE),
        chunk_blob(keys, &incompressible_chunk(), NONCE_BLOB_INCOMPRESSIBLE),
        chunk_blob(keys, &small_chunk(), NONCE_BLOB_SMALL),
    ];
    pack::build_pack_with_nonce(
        &keys.seal_key,
        PackKind::Data,
        blobs,
        PACK_SHUFFLE_SEED,
        nonce(NONCE_PACK_DIRECTORY),
    )
    .unwrap()
}

fn chunk_ref(keys: &VaultKeys, plain: &[u8]) -> ChunkRef {
    ChunkRef {
        id: ChunkId::new(keys.ids.chunk.hash(plain)),
        len: plain.len() as u32,
    }
}

fn empty_tree_id(keys: &VaultKeys) -> TreeId {
    TreeId::new(keys.ids.tree.hash(&TreeNode::new(Vec::new()).unwrap().encode()))
}

/// A directory with a file (two inline chunks, one xattr), a subdirectory and a symlink,
/// given out of order so that the node has to sort them.
fn golden_tree(keys: &VaultKeys) -> TreeNode {
    let mut link = Entry::new(b"latest".to_vec(), EntryKind::Symlink);
    link.mode = 0o777;
    link.uid = 1000;
    link.gid = 100;
    link.user = b"jovyan".to_vec();
    link.group = b"users".to_vec();
    link.mtime = Timestamp {
        sec: 1_700_000_300,
        nsec: 0,
    };
    link.ctime = Timestamp {
        sec: 1_700_000_300,
        nsec: 1,
    };
    link.inode = 44;
    link.device = 0x803;
    link.size = 13;
    link.link_target = b"results/run-7".to_vec();

    let mut dir = Entry::new(b"results".to_vec(), EntryKind::Dir);
    dir.mode = 0o2775;
    dir.uid = 1000;
    dir.gid = 100;
    dir.user = b"jovyan".to_vec();
    dir.group = b"users".to_vec();
    dir.mtime = Timestamp {
        sec: 1_700_000_200,
        nsec: 999_999_999,
    };
    dir.ctime = Timestamp {
        sec: 1_700_000_201,
        nsec: 2,
    };
    dir.inode = 43;
    dir.device = 0x803;
    dir.nlink = 2;
    dir.size = 4096;
    dir.content = Content::Tree(empty_tree_id(keys));

    let a = compressible_chunk();
    let b = incompressible_chunk();
    let mut file = Entry::new(b"data.bin".to_vec(), EntryKind::File);
    file.mode = 0o644;
    file.uid = 1000;
    file.gid = 100;
    file.user = b"jovyan".to_vec();
    file.group = b"users".to_vec();
    file.mtime = Timestamp {
        sec: 1_700_000_100,
        nsec: 123_456_789,
    };
    file.ctime = Timestamp {
        sec: 1_700_000_101,
        nsec: 3,
    };
    file.inode = 42;
    file.device = 0x803;
    file.size = (a.len() + b.len()) as u64;
    file.xattrs = vec![(b"user.comment".to_vec(), b"golden".to_vec())];
    file.content = Content::Inline(vec![chunk_ref(keys, &a), chunk_ref(keys, &b)]);

    TreeNode::new(vec![link, dir, file]).unwrap()
}

/// The metadata of the snapshotted directory itself (snapshot plaintext version 2).
fn golden_root_entry(keys: &VaultKeys) -> Entry {
    let mut root = Entry::new(Vec::new(), EntryKind::Dir);
    root.mode = 0o750;
    root.uid = 1000;
    root.gid = 100;
    root.user = b"jovyan".to_vec();
    root.group = b"users".to_vec();
    root.mtime = Timestamp {
        sec: 1_700_000_400,
        nsec: 500_000_000,
    };
    root.ctime = Timestamp {
        sec: 1_700_000_401,
        nsec: 6,
    };
    root.inode = 2;
    root.device = 0x803;
    root.nlink = 3;
    root.size = 4096;
    root.xattrs = vec![(b"user.project".to_vec(), b"amber-golden".to_vec())];
    root.content = Content::Tree(TreeId::new(keys.ids.tree.hash(&golden_tree(keys).encode())));
    root
}

/// The snapshot of `snapshot-plain.hex` (version 2, with a root entry).
fn golden_snapshot(keys: &VaultKeys) -> Snapshot {
    Snapshot {
        root_entry: Some(golden_root_entry(keys)),
        ..golden_snapshot_v1(keys)
    }
}

/// The snapshot of the fixture `snapshot-plain-v1.hex` (version 1: no root entry).
fn golden_snapshot_v1(keys: &VaultKeys) -> Snapshot {
    let a = compressible_chunk().len() as u64;
    let b = incompressible_chunk().len() as u64;
    Snapshot {
        source: SourceKind::Tree,
        root: keys.ids.tree.hash(&golden_tree(keys).encode()),
        parent: Some(SnapshotId::new(Hash32::from_bytes([0x5a; 32]))),
        time_ns: 1_790_000_000_123_456_789,
        environment: "genomics-lab/jupyter-3".into(),
        lab: "genomics".into(),
        researcher: "ada".into(),
        hostname: "node-7".into(),
        source_path: "/home/jovyan".into(),
        tags: vec!["golden".into(), "nightly".into()],
        metadata: vec![
            ("experiment".into(), "E-42".into()),
            ("funding".into(), "ERC-1234".into()),
        ],
        stats: SnapshotStats {
            files: 1,
            dirs: 2,
            bytes: a + b,
            bytes_new: 700,
            blobs_new: 4,
        },
        skipped: 1,
        skipped_paths: vec!["secret.txt".into()],
        root_entry: None,
    }
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

/// The five id keys with the vector each one pins, in `ALL_VECTORS` order.
fn id_keys(keys: &VaultKeys) -> [(&'static str, &IdKey); 5] {
    [
        ("subkey-id-chunk", &keys.ids.chunk),
        ("subkey-id-tree", &keys.ids.tree),
        ("subkey-id-list", &keys.ids.list),
        ("subkey-id-snapshot", &keys.ids.snapshot),
        ("subkey-id-layout", &keys.ids.layout),
    ]
}

#[test]
fn subkeys() {
    let mut v = Vectors::default();
    let keys = keys();
    let mut hashes = BTreeSet::new();
    for (name, key) in id_keys(&keys) {
        let stored = v.golden(name, key.hash(ID_HASH_INPUT).as_bytes());
        assert_eq!(Hash32::from_slice(&stored).unwrap(), key.hash(ID_HASH_INPUT), "{name}");
        hashes.insert(stored);
    }
    assert_eq!(hashes.len(), 5, "each kind of id has its own key");

    let chunker_key = v.golden("subkey-chunker-key", &keys.chunker_key);
    assert_eq!(chunker_key, keys.chunker_key);

    let mac_key = v.golden("subkey-config-mac", &keys.config_mac);
    assert_eq!(mac_key, keys.config_mac);
    assert_ne!(keys.config_mac, keys.chunker_key);
    assert!(!hashes.contains(&keys.config_mac[..]));

    // Another vault id gives other keys.
    let other = MasterKey::from_bytes(master_bytes())
        .subkeys(&config::fixed_vault_id(0x5a))
        .unwrap();
    assert_ne!(other.config_mac, keys.config_mac);
    assert_ne!(other.chunker_key, keys.chunker_key);
    for ((name, mine), (_, theirs)) in id_keys(&keys).into_iter().zip(id_keys(&other)) {
        assert_ne!(mine.hash(ID_HASH_INPUT), theirs.hash(ID_HASH_INPUT), "{name}");
    }

    // The five bytes of an empty directory's tree node, stored as a file, get another id
    // than the directory (one id space per kind).
    let empty_dir = TreeNode::new(Vec::new()).unwrap().encode();
    assert_eq!(empty_dir, [1, 0, 0, 0, 0]);
    assert_ne!(keys.ids.chunk.hash(&empty_dir), keys.ids.tree.hash(&empty_dir));
}

#[test]
fn config() {
    let mut v = Vectors::default();
    let keys = keys();
    let expected = VaultConfig::new(vault_id(), CREATED);
    let stored = v.golden("config", &expected.encode(&keys.config_mac));
    assert_eq!(stored.len(), config::CONFIG_LEN);
    assert_eq!(layout::CONFIG_KEY, "config");
    assert_eq!(&stored[..8], config::CONFIG_MAGIC);
    assert_eq!(
        &stored[80..],
        blake3::keyed_hash(&keys.config_mac, &stored[..80]).as_bytes()
    );
    let (decoded, mac) = VaultConfig::decode(&stored).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(decoded.chunker, ChunkerParams::DEFAULT);
    assert!(decoded.verify(&mac, &keys.config_mac));
    assert!(!decoded.verify(&mac, &[0u8; 32]));
}

#[test]
fn keyslot() {
    let mut v = Vectors::default();
    let kdf = KdfParams {
        memory_kib: KdfParams::MIN_MEMORY_KIB,
        iterations: 1,
        parallelism: 1,
    };
    let salt: [u8; 16] = std::array::from_fn(|i| 0xf0 | i as u8);
    let slot_id = KeySlotId::new(Hash32::from_bytes([0x6b; 32]));
    let mut expected = KeySlot {
        kdf,
        salt,
        created: CREATED,
        label: "ada@node-7".into(),
        wrapped: Vec::new(),
    };
    let kek = SealKey::new(&derive_kek(PASSPHRASE, &salt, kdf).unwrap()).unwrap();
    let aad = expected.aad(&vault_id(), &slot_id);
    expected.wrapped = kek
        .seal_with_nonce(nonce(NONCE_KEYSLOT), &aad, master_bytes().to_vec())
        .unwrap();

    let stored = v.golden("keyslot", &expected.encode());
    assert_eq!(&stored[..8], keyslot::KEYSLOT_MAGIC);
    assert_eq!(layout::keyslot_key(&slot_id), format!("keys/{}", slot_id.to_hex()));
    let decoded = KeySlot::decode(&stored).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(decoded.wrapped.len(), keyslot::WRAPPED_LEN);
    assert_eq!(&decoded.wrapped[..12], &nonce(NONCE_KEYSLOT));

    let kek = SealKey::new(&derive_kek(PASSPHRASE, &decoded.salt, decoded.kdf).unwrap()).unwrap();
    let opened = kek
        .open(&decoded.aad(&vault_id(), &slot_id), &decoded.wrapped, String::new)
        .unwrap();
    assert_eq!(opened, master_bytes());
    // The associated data binds the vault and the slot id.
    let other_slot = KeySlotId::new(Hash32::from_bytes([0x6c; 32]));
    assert!(
        kek.open(&decoded.aad(&vault_id(), &other_slot), &decoded.wrapped, String::new)
            .is_err()
    );
    let other_vault = config::fixed_vault_id(0x5a);
    assert!(
        kek.open(&decoded.aad(&other_vault, &slot_id), &decoded.wrapped, String::new)
            .is_err()
    );
}

#[test]
fn blobs() {
    let mut v = Vectors::default();
    let keys = keys();
    for (name, plain, nonce_byte, compressed) in [
        ("blob-compressible", compressible_chunk(), NONCE_BLOB_COMPRESSIBLE, true),
        (
            "blob-incompressible",
            incompressible_chunk(),
            NONCE_BLOB_INCOMPRESSIBLE,
            false,
        ),
    ] {
        let fresh = chunk_blob(&keys, &plain, nonce_byte);
        let stored = v.golden(name, &fresh.sealed);
        let id = keys.ids.chunk.hash(&plain);
        assert_eq!(&stored[..12], &nonce(nonce_byte), "{name}: nonce first");
        if compressed {
            assert!(stored.len() < plain.len() / 4, "{name}: stored compressed");
        } else {
            assert_eq!(stored.len(), 12 + 1 + plain.len() + 16, "{name}: stored raw");
        }
        let opened = blob::open_blob(&keys.seal_key, BlobKind::Chunk, &id, &stored, plain.len()).unwrap();
        assert_eq!(opened, plain, "{name}");
        assert_eq!(keys.ids.chunk.hash(&opened), id, "{name}");
        // Kind and id are associated data: the blob opens as nothing else.
        assert!(blob::open_blob(&keys.seal_key, BlobKind::Tree, &id, &stored, plain.len()).is_err());
        assert!(blob::open_blob(&keys.seal_key, BlobKind::Chunk, &DIRECTORY_ID, &stored, plain.len()).is_err());
    }
    let aad = blob::blob_aad(BlobKind::Tree, &Hash32::from_bytes([0xee; 32]));
    assert_eq!(&aad[..13], b"amber blob v1");
    assert_eq!(aad[13], 2);
    assert_eq!(&aad[14..], &[0xee; 32]);
}

/// The header, footer, sealed directory and its offset of a whole pack (the footer's
/// length field is taken as it is, so that the checks are left to the code under test).
fn pack_parts(bytes: &[u8]) -> (&[u8], &[u8], &[u8], usize) {
    let n = bytes.len();
    let footer = &bytes[n - pack::FOOTER_LEN..];
    let dir_len = u32::from_le_bytes(footer[..4].try_into().unwrap()) as usize;
    let dir_at = n - pack::FOOTER_LEN - dir_len.min(n - pack::FOOTER_LEN);
    (
        &bytes[..pack::HEADER_LEN],
        footer,
        &bytes[dir_at..n - pack::FOOTER_LEN],
        dir_at,
    )
}

/// Opens a pack's directory from its parts, as the index sync does with ranged reads.
fn open_ranged(keys: &VaultKeys, bytes: &[u8], expected: PackKind) -> Result<Vec<PackEntry>, String> {
    let (header, footer, sealed, dir_at) = pack_parts(bytes);
    let id = PackId::new(plain_hash(bytes));
    pack::open_pack_directory(&keys.seal_key, id, expected, header, footer, sealed, dir_at as u64)
        .map_err(|e| e.to_string())
}

/// Checks the directory and every blob of the pack made from the three chunks.
fn check_golden_pack(keys: &VaultKeys, stored: &[u8], entries: &[PackEntry]) {
    let (_, _, sealed, dir_at) = pack_parts(stored);
    // The directory holds 1 version byte, a u32 count and 45 bytes per entry, sealed raw.
    assert_eq!(sealed.len(), 12 + 1 + (1 + 4 + 3 * pack::ENTRY_LEN) + 16);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].offset as usize, pack::HEADER_LEN);
    for pair in entries.windows(2) {
        assert_eq!(
            pair[0].offset + pair[0].sealed_len,
            pair[1].offset,
            "blobs are back to back"
        );
    }
    let last = entries.last().unwrap();
    assert_eq!((last.offset + last.sealed_len) as usize, dir_at);

    let plains = [compressible_chunk(), incompressible_chunk(), small_chunk()];
    let mut seen = BTreeSet::new();
    for e in entries {
        assert_eq!(e.kind, BlobKind::Chunk);
        let sealed = &stored[e.offset as usize..(e.offset + e.sealed_len) as usize];
        let plain = blob::open_blob(&keys.seal_key, e.kind, e.id.hash(), sealed, e.raw_len as usize).unwrap();
        assert_eq!(keys.ids.chunk.hash(&plain), *e.id.hash());
        seen.insert(plains.iter().position(|p| *p == plain).unwrap());
    }
    assert_eq!(seen.len(), 3, "every input blob is in the pack once");
}

#[test]
fn pack() {
    let mut v = Vectors::default();
    let keys = keys();
    let built = golden_pack(&keys);
    let stored = v.golden("pack", &built.bytes);
    assert_eq!(
        plain_hash(&stored),
        *built.id.hash(),
        "pack id is plain BLAKE3 of its bytes"
    );
    let hex = built.id.to_hex();
    assert_eq!(
        layout::pack_key(PackKind::Data, &built.id),
        format!("data/{}/{hex}", &hex[..2])
    );
    assert_eq!(
        layout::pack_key(PackKind::Meta, &built.id),
        format!("meta/{}/{hex}", &hex[..2])
    );
    let header = pack::decode_header(&stored[..pack::HEADER_LEN]).unwrap();
    assert_eq!((header.version, header.kind), (2, PackKind::Data));
    assert_eq!(&stored[..16], b"AMBRPACK\x02\x00\x01\x00\x00\x00\x00\x00");

    let (kind, entries) = pack::read_directory(&keys.seal_key, built.id, &stored).unwrap();
    assert_eq!(kind, PackKind::Data);
    assert_eq!(entries, built.entries);
    assert_eq!(open_ranged(&keys, &stored, PackKind::Data).unwrap(), entries);
    let err = open_ranged(&keys, &stored, PackKind::Meta).unwrap_err();
    assert!(err.contains("stored under meta/"), "{err}");
    check_golden_pack(&keys, &stored, &entries);

    // The directory's associated data is the blob AAD of kind 4 and the zero id, followed by
    // the header and the footer.
    let (header, footer, sealed, dir_at) = pack_parts(&stored);
    let aad = [
        &blob::blob_aad(BlobKind::PackDirectory, &DIRECTORY_ID)[..],
        header,
        footer,
    ]
    .concat();
    assert_eq!(aad.len(), 46 + 32);
    assert_eq!(pack::directory_aad(2, header, footer), aad);
    let plain = keys.seal_key.open(&aad, sealed, String::new).unwrap();
    assert_eq!(plain[0], 0, "the directory is stored raw");
    assert_eq!(pack::decode_directory(&plain[1..], dir_at as u64).unwrap(), entries);

    // Every byte of the header and the footer is covered: flipping any one of them makes
    // the directory fail to open (or the header or footer fail to decode).
    let n = stored.len();
    for at in (0..pack::HEADER_LEN).chain(n - pack::FOOTER_LEN..n) {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        assert!(open_ranged(&keys, &bad, PackKind::Data).is_err(), "byte {at}");
        assert!(
            pack::read_directory(&keys.seal_key, built.id, &bad).is_err(),
            "byte {at}"
        );
    }
    // A v2 pack relabelled as v1 is opened with the v1 associated data, and fails.
    let mut downgraded = stored.clone();
    downgraded[8] = 1;
    let err = open_ranged(&keys, &downgraded, PackKind::Data).unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
}

/// The fixture `pack-v1.hex`: a pack of version 1, written before the header and footer
/// were in the directory's associated data. It must stay readable.
#[test]
fn pack_v1() {
    let keys = keys();
    let stored = fixture("pack-v1");
    assert_eq!(stored.len(), 619);
    let id = PackId::new(plain_hash(&stored));
    let header = pack::decode_header(&stored[..pack::HEADER_LEN]).unwrap();
    assert_eq!((header.version, header.kind), (1, PackKind::Data));
    let (kind, entries) = pack::read_directory(&keys.seal_key, id, &stored).unwrap();
    assert_eq!(kind, PackKind::Data);
    assert_eq!(open_ranged(&keys, &stored, PackKind::Data).unwrap(), entries);
    check_golden_pack(&keys, &stored, &entries);

    // The v1 directory's associated data is the blob AAD alone.
    let (header, footer, sealed, _) = pack_parts(&stored);
    let aad = blob::blob_aad(BlobKind::PackDirectory, &DIRECTORY_ID);
    assert_eq!(pack::directory_aad(1, header, footer), aad);
    assert!(keys.seal_key.open(&aad, sealed, String::new).is_ok());

    // Its reserved bytes must be zero.
    let n = stored.len();
    for at in (11..pack::HEADER_LEN).chain(n - 12..n - 8) {
        let mut bad = stored.clone();
        bad[at] = 1;
        let err = open_ranged(&keys, &bad, PackKind::Data).unwrap_err();
        assert!(err.contains("reserved"), "byte {at}: {err}");
    }
    // A v1 pack relabelled as v2 is opened with the v2 associated data, and fails.
    let mut upgraded = stored.clone();
    upgraded[8] = 2;
    let err = open_ranged(&keys, &upgraded, PackKind::Data).unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn tree() {
    let mut v = Vectors::default();
    let keys = keys();
    let node = golden_tree(&keys);
    let stored = v.golden("tree", &node.encode());
    let decoded = TreeNode::decode(&stored).unwrap();
    assert_eq!(decoded, node);
    let names: Vec<&[u8]> = decoded.entries().iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(
        names,
        [&b"data.bin"[..], b"latest", b"results"],
        "entries sorted by name bytes"
    );
    assert_eq!(
        decoded.get(b"results").unwrap().content,
        Content::Tree(empty_tree_id(&keys))
    );
    let file = decoded.get(b"data.bin").unwrap();
    let Content::Inline(chunks) = &file.content else {
        panic!("inline chunks expected")
    };
    assert_eq!(chunks.iter().map(|c| u64::from(c.len)).sum::<u64>(), file.size);
    assert_eq!(decoded.get(b"latest").unwrap().link_target, b"results/run-7");
    assert_eq!(
        TreeNode::new(Vec::new()).unwrap().encode(),
        [1, 0, 0, 0, 0],
        "an empty directory"
    );
}

/// A node a repair wrote: `data.bin` and `results` of `tree.hex` marked damaged (content tag
/// 4 around their original content), `latest` unchanged.
fn golden_damaged_tree(keys: &VaultKeys) -> TreeNode {
    let entries = golden_tree(keys)
        .entries()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.kind != EntryKind::Symlink {
                e.content = e.content.into_damaged();
            }
            e
        })
        .collect();
    TreeNode::new(entries).unwrap()
}

#[test]
fn tree_with_damage_marks() {
    let mut v = Vectors::default();
    let keys = keys();
    let node = golden_damaged_tree(&keys);
    let stored = v.golden("tree-damaged", &node.encode());
    let decoded = TreeNode::decode(&stored).unwrap();
    assert_eq!(decoded, node);
    let plain = golden_tree(&keys);
    for (marked, original) in decoded.entries().iter().zip(plain.entries()) {
        assert_eq!(marked.content.refs(), &original.content, "the mark keeps the reference");
        assert_eq!(marked.content.is_damaged(), original.kind != EntryKind::Symlink);
    }
    // Each mark adds one byte (tag 4) before the original tag.
    assert_eq!(stored.len(), plain.encode().len() + 2);
    // A mark inside a mark is rejected.
    let at = stored.windows(2).position(|w| w == [4, 3]).unwrap();
    let mut nested = stored[..at].to_vec();
    nested.extend_from_slice(&[4, 4]);
    nested.extend_from_slice(&stored[at + 1..]);
    assert!(TreeNode::decode(&nested).is_err());
}

/// Builds a chunk list from `refs`, returning the content and every node emitted, in order.
fn build_list(keys: &VaultKeys, refs: &[ChunkRef]) -> (Content, Vec<(ListId, ListNode)>) {
    let mut emitted = Vec::new();
    let mut builder = ListBuilder::new(|node: &ListNode| -> Result<ListId, ()> {
        let id = ListId::new(keys.ids.list.hash(&node.encode()));
        emitted.push((id, node.clone()));
        Ok(id)
    });
    for r in refs {
        builder.push(*r).unwrap();
    }
    let content = builder.finish().unwrap();
    (content, emitted)
}

/// Appends the leaf entries under node `id` to `out`, checking every node's level and every
/// entry's length; returns the node's total length.
fn walk_list(nodes: &HashMap<Hash32, ListNode>, id: &Hash32, level: u8, out: &mut Vec<ListEntry>) -> u64 {
    let node = &nodes[id];
    assert_eq!(node.level, level, "node level follows its depth");
    for e in &node.entries {
        if level == 0 {
            out.push(*e);
        } else {
            assert_eq!(
                walk_list(nodes, &e.id, level - 1, out),
                e.len,
                "entry length = child total"
            );
        }
    }
    node.total_len()
}

#[test]
fn chunklist() {
    let mut v = Vectors::default();
    let keys = keys();
    // Chunks of 1 MiB + i bytes with made-up ids, up to and including the first that ends a
    // node, and one more.
    let chunk = |i: u32| ChunkRef {
        id: ChunkId::new(keys.ids.chunk.hash_parts(&[b"chunk list vector", &i.to_le_bytes()])),
        len: (1 << 20) + i,
    };
    let first_boundary = (0u32..).find(|&i| chunklist::is_boundary(chunk(i).id.hash())).unwrap();
    let refs: Vec<ChunkRef> = (0..=first_boundary + 1).map(chunk).collect();
    let (up_to_boundary, _) = refs.split_at(first_boundary as usize + 1);
    assert!(up_to_boundary.len() <= MAX_INLINE_CHUNKS);
    let entry = |r: &ChunkRef| ListEntry {
        id: *r.id.hash(),
        len: u64::from(r.len),
    };

    // Ending on a boundary does not close the node: these chunks stay inline.
    let (content, emitted) = build_list(&keys, up_to_boundary);
    assert!(emitted.is_empty(), "no node for a short list ending on a boundary");
    assert_eq!(content, Content::Inline(up_to_boundary.to_vec()));

    // The chunk after the boundary closes the first leaf ...
    let leaf = ListNode {
        level: 0,
        entries: up_to_boundary.iter().map(entry).collect(),
    };
    let (content, emitted) = build_list(&keys, &refs);
    assert_eq!(emitted.first().map(|(_, n)| n), Some(&leaf), "the first node emitted");
    let stored = v.golden("chunklist", &leaf.encode());
    let decoded = ListNode::decode(&stored).unwrap();
    assert_eq!(decoded, leaf);
    let (last, rest) = decoded.entries.split_last().unwrap();
    assert!(chunklist::is_boundary(&last.id));
    assert!(rest.iter().all(|e| !chunklist::is_boundary(&e.id)));
    assert_eq!(
        decoded.total_len(),
        up_to_boundary.iter().map(|r| u64::from(r.len)).sum::<u64>()
    );

    // ... and finish closes the second leaf and the root above them, emitted last.
    let Content::List { root, height } = content else {
        panic!("a chunk list expected, got {content:?}")
    };
    let (root_id, root_node) = emitted.last().unwrap();
    assert_eq!(*root_id, root);
    let stored_root = v.golden("chunklist-root", &root_node.encode());
    let decoded_root = ListNode::decode(&stored_root).unwrap();
    assert_eq!(&decoded_root, root_node);
    assert_eq!(decoded_root.level, height, "the height is the root's level");
    assert_eq!(ListId::new(keys.ids.list.hash(&stored_root)), root);

    // Walking down from the root gives every chunk back, in order.
    let nodes: HashMap<Hash32, ListNode> = emitted.iter().map(|(id, n)| (*id.hash(), n.clone())).collect();
    assert_eq!(nodes.len(), emitted.len());
    let mut leaves = Vec::new();
    let total = walk_list(&nodes, root.hash(), height, &mut leaves);
    assert_eq!(leaves, refs.iter().map(entry).collect::<Vec<_>>());
    assert_eq!(total, refs.iter().map(|r| u64::from(r.len)).sum::<u64>());
}

#[test]
fn snapshot() {
    let mut v = Vectors::default();
    let keys = keys();
    let snap = golden_snapshot(&keys);
    let plain = v.golden("snapshot-plain", &snap.encode());
    snap.validate().unwrap();
    assert_eq!(plain[0], 2, "plaintext version 2");
    assert_eq!(Snapshot::decode(&plain).unwrap(), snap);
    assert_eq!(snap.root, keys.ids.tree.hash(&golden_tree(&keys).encode()));
    let id = SnapshotId::new(keys.ids.snapshot.hash(&plain));

    // The plaintext ends with has-root-entry = 1 and the root entry in the tree entry
    // encoding with an empty name: a tree node holding the entry named "x" encodes the same
    // fields after `01 | u32 1 | 01 00 'x'`.
    let root_entry = snap.root_entry.clone().unwrap();
    let named = Entry {
        name: b"x".to_vec(),
        ..root_entry
    };
    let node = TreeNode::new(vec![named]).unwrap().encode();
    let tail = [&[1u8, 0, 0][..], &node[5 + 3..]].concat();
    assert!(plain.ends_with(&tail), "the root entry closes the plaintext");

    let fresh = snapshot::seal_file_with_nonce(&keys.seal_key, nonce(NONCE_SNAPSHOT), &id, &plain).unwrap();
    let file = v.golden("snapshot-file", &fresh);
    assert_eq!(&file[..12], b"AMBRSNAP\x02\x00\x00\x00");
    assert_eq!(&file[12..24], &nonce(NONCE_SNAPSHOT));
    let opened = snapshot::open_file(&keys.seal_key, &id, &file).unwrap();
    assert_eq!(opened, plain);
    assert_eq!(
        SnapshotId::new(keys.ids.snapshot.hash(&opened)),
        id,
        "snapshot id is keyed BLAKE3 of the plaintext"
    );
    assert_eq!(layout::snapshot_key(&id), format!("snapshots/{}", id.to_hex()));
    // The seal's associated data is the blob AAD of kind 5 and the id, then the header.
    let aad = [&blob::blob_aad(BlobKind::Snapshot, id.hash())[..], &file[..12]].concat();
    assert_eq!(snapshot::file_aad(2, &id, &file[..12]), aad);
    assert!(blob::open_blob_unsized_with_aad(&keys.seal_key, BlobKind::Snapshot, id.hash(), &aad, &file[12..]).is_ok());
    // Every header byte is covered.
    for at in 0..snapshot::FILE_HEADER_LEN {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        assert!(
            snapshot::open_file(&keys.seal_key, &id, &bad).is_err(),
            "header byte {at}"
        );
    }
    let mut downgraded = file.clone();
    downgraded[8] = 1;
    let err = snapshot::open_file(&keys.seal_key, &id, &downgraded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");

    // What a field's encoding cannot hold is refused before anything is written.
    let too_long = "x".repeat(usize::from(u16::MAX) + 1);
    let mut bad = snap.clone();
    bad.hostname = too_long.clone();
    assert!(bad.validate().is_err(), "text over 65535 bytes");
    let mut bad = snap.clone();
    bad.tags.push(too_long.clone());
    assert!(bad.validate().is_err(), "tag over 65535 bytes");
    let mut bad = snap.clone();
    bad.skipped_paths = vec![too_long];
    assert!(bad.validate().is_err(), "skipped path over 65535 bytes");
    let mut bad = snap.clone();
    bad.metadata = vec![("big".into(), "x".repeat(1024 * 1024 + 1))];
    assert!(bad.validate().is_err(), "metadata value over 1 MiB");
    let mut bad = snap.clone();
    bad.root_entry.as_mut().unwrap().name = b"home".to_vec();
    assert!(bad.validate().is_err(), "a root entry with a name");
    let mut bad = snap;
    bad.tags = (0..=u32::from(u16::MAX)).map(|i| i.to_string()).collect();
    assert!(bad.validate().is_err(), "more than 65535 tags");
}

/// The fixtures `snapshot-plain-v1.hex` and `snapshot-file-v1.hex`: a snapshot of plaintext
/// version 1 (no root entry) in a file of version 1 (header outside the seal).
#[test]
fn snapshot_v1() {
    let keys = keys();
    let plain = fixture("snapshot-plain-v1");
    assert_eq!(plain.len(), 261);
    assert_eq!(plain[0], 1, "plaintext version 1");
    let decoded = Snapshot::decode(&plain).unwrap();
    assert_eq!(decoded, golden_snapshot_v1(&keys));
    assert_eq!(decoded.root_entry, None);
    let id = SnapshotId::new(keys.ids.snapshot.hash(&plain));

    let file = fixture("snapshot-file-v1");
    assert_eq!(&file[..12], b"AMBRSNAP\x01\x00\x00\x00");
    assert_eq!(snapshot::open_file(&keys.seal_key, &id, &file).unwrap(), plain);
    // The v1 seal's associated data is the blob AAD alone.
    let aad = blob::blob_aad(BlobKind::Snapshot, id.hash());
    assert_eq!(snapshot::file_aad(1, &id, &file[..12]), aad);
    assert_eq!(
        blob::open_blob_unsized(&keys.seal_key, BlobKind::Snapshot, id.hash(), &file[12..]).unwrap(),
        plain
    );
    // Its reserved bytes lie outside the seal, so the reader insists they are zero.
    for at in [10, 11] {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        let err = snapshot::open_file(&keys.seal_key, &id, &bad).unwrap_err().to_string();
        assert!(err.contains("reserved"), "byte {at}: {err}");
    }
    // Relabelled as version 2 it is opened with the v2 associated data, and fails.
    let mut upgraded = file.clone();
    upgraded[8] = 2;
    let err = snapshot::open_file(&keys.seal_key, &id, &upgraded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn segment() {
    let mut v = Vectors::default();
    let keys = keys();
    // The segment describes the pack of the fixture `pack-v1.hex` (a segment's records do
    // not depend on the pack's version).
    let pack_v1 = fixture("pack-v1");
    let pack_id = PackId::new(plain_hash(&pack_v1));
    let (kind, entries) = pack::read_directory(&keys.seal_key, pack_id, &pack_v1).unwrap();
    let records = vec![PackRecord {
        id: pack_id,
        kind,
        len: pack_v1.len() as u64,
        entries,
    }];
    let plain = v.golden("segment-plain", &segment::encode(&records));
    assert_eq!(segment::decode(&plain).unwrap(), records);

    let sealed = blob::seal_blob_with_nonce(
        &keys.seal_key,
        nonce(NONCE_SEGMENT),
        BlobKind::IndexSegment,
        &DIRECTORY_ID,
        &plain,
        Some(ZSTD_LEVEL),
    )
    .unwrap();
    let file = v.golden("segment", &segment::frame(&sealed));
    assert_eq!(&file[..8], segment::SEGMENT_MAGIC);
    let segment_id = SegmentId::new(plain_hash(&file));
    assert_eq!(
        layout::segment_key(&segment_id),
        format!("index/{}", segment_id.to_hex())
    );
    let inner = segment::unframe(&file).unwrap();
    let opened = blob::open_blob_unsized(&keys.seal_key, BlobKind::IndexSegment, &DIRECTORY_ID, inner).unwrap();
    assert_eq!(segment::decode(&opened).unwrap(), records);
}

/// The gear table as chunker.md defines it: 256 little-endian `u64`s read from the BLAKE3
/// XOF of `GEAR_CONTEXT` keyed with the chunker key.
fn spec_gear_table(chunker_key: &[u8; 32]) -> Vec<u8> {
    let mut bytes = vec![0u8; 256 * 8];
    blake3::Hasher::new_keyed(chunker_key)
        .update(GEAR_CONTEXT)
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// The masks chunker.md gives for a 1 MiB average at normalization level 1.
const MASK_S_1MIB: u64 = 0x0000_d917_6753_7000;
const MASK_L_1MIB: u64 = 0x0000_d917_0753_7000;

/// `cut(window)` exactly as chunker.md writes it.
fn spec_cut(window: &[u8], params: ChunkerParams, gear: &[u64]) -> usize {
    let (min, avg, max) = (params.min() as usize, params.avg() as usize, params.max() as usize);
    let (mask_s, mask_l) = (MASK_S_1MIB, MASK_L_1MIB);
    let (mask_s_ls, mask_l_ls) = (mask_s << 1, mask_l << 1);
    let gear_ls: Vec<u64> = gear.iter().map(|g| g << 1).collect();
    let n = window.len();
    if n <= min {
        return n;
    }
    let limit = n.min(max);
    let center = avg.min(limit);
    let mut hash = 0u64;
    let mut i = min / 2;
    while i < center / 2 {
        let a = 2 * i;
        hash = (hash << 2).wrapping_add(gear_ls[usize::from(window[a])]);
        if hash & mask_s_ls == 0 {
            return a;
        }
        hash = hash.wrapping_add(gear[usize::from(window[a + 1])]);
        if hash & mask_s == 0 {
            return a + 1;
        }
        i += 1;
    }
    while i < limit / 2 {
        let a = 2 * i;
        hash = (hash << 2).wrapping_add(gear_ls[usize::from(window[a])]);
        if hash & mask_l_ls == 0 {
            return a;
        }
        hash = hash.wrapping_add(gear[usize::from(window[a + 1])]);
        if hash & mask_l == 0 {
            return a + 1;
        }
        i += 1;
    }
    limit
}

#[test]
fn chunker_gear() {
    let mut v = Vectors::default();
    let keys = keys();
    let stored = v.golden("chunker-gear", &spec_gear_table(&keys.chunker_key));
    assert_eq!(stored.len(), 256 * 8);
    let gear: Vec<u64> = stored
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(gear.iter().collect::<BTreeSet<_>>().len(), 256, "256 distinct entries");
    assert_eq!(
        fastcdc::v2020::select_masks(1 << 20, fastcdc::v2020::Normalization::Level1),
        (MASK_S_1MIB, MASK_L_1MIB),
        "the masks written in chunker.md"
    );

    // The engine's table is this one: chunker.md's cut loop over the stored table
    // reproduces the engine's chunks.
    let data = pseudo_random(CHUNKER_INPUT_LEN, CHUNKER_INPUT_SEED);
    let params = ChunkerParams::DEFAULT;
    let engine: Vec<usize> = chunk_all(params, Arc::new(GearTable::keyed(&keys.chunker_key)), &data)
        .iter()
        .map(Vec::len)
        .collect();
    let mut spec = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let cut = spec_cut(rest, params, &gear);
        spec.push(cut);
        rest = &rest[cut..];
    }
    assert_eq!(spec, engine);
}

#[test]
fn chunker_lengths() {
    let mut v = Vectors::default();
    let keys = keys();
    let data = pseudo_random(CHUNKER_INPUT_LEN, CHUNKER_INPUT_SEED);
    let params = ChunkerParams::DEFAULT;
    let chunks = chunk_all(params, Arc::new(GearTable::keyed(&keys.chunker_key)), &data);
    let lengths: Vec<u32> = chunks.iter().map(|c| c.len() as u32).collect();
    let fresh: Vec<u8> = lengths.iter().flat_map(|l| l.to_le_bytes()).collect();
    let stored = u32s_le(&v.golden("chunker-lengths", &fresh));
    assert_eq!(stored, lengths);
    assert_eq!(stored.iter().map(|&l| l as usize).sum::<usize>(), CHUNKER_INPUT_LEN);
    let (last, rest) = stored.split_last().unwrap();
    assert!(rest.iter().all(|&l| (params.min()..=params.max()).contains(&l)));
    assert!(*last <= params.max());
    // Another key cuts elsewhere: the boundaries depend on the vault key.
    let other: Vec<u32> = chunk_all(params, Arc::new(GearTable::keyed(&[0; 32])), &data)
        .iter()
        .map(|c| c.len() as u32)
        .collect();
    assert_ne!(other, stored);
}

// ---------------------------------------------------------------------------------------
// Tar layers and block volumes.
// ---------------------------------------------------------------------------------------

/// Writes `bytes` into `block` at `at`.
fn put(block: &mut [u8; BLOCK], at: usize, bytes: &[u8]) {
    block[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Sets the checksum field (offset 148, 8 bytes) as tar writes it: the unsigned sum of all
/// 512 bytes with the field taken as eight spaces, as six octal digits, NUL, space.
fn set_tar_checksum(block: &mut [u8; BLOCK]) -> u32 {
    put(block, 148, b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    put(block, 148, format!("{sum:06o}\0 ").as_bytes());
    sum
}

/// A ustar header of a regular file `usr/local` (prefix) + `bin/amber` (name), 4556 bytes.
fn golden_tar_header() -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put(&mut b, 0, b"bin/amber");
    put(&mut b, 100, format!("{:07o}\0", 0o755).as_bytes());
    put(&mut b, 108, format!("{:07o}\0", 1000).as_bytes());
    put(&mut b, 116, format!("{:07o}\0", 100).as_bytes());
    put(&mut b, 124, format!("{:011o}\0", 4556).as_bytes());
    put(&mut b, 136, format!("{:011o}\0", CREATED).as_bytes());
    put(&mut b, 156, b"0");
    put(&mut b, 257, b"ustar\0");
    put(&mut b, 263, b"00");
    put(&mut b, 265, b"jovyan");
    put(&mut b, 297, b"users");
    put(&mut b, 329, b"0000000\0");
    put(&mut b, 337, b"0000000\0");
    put(&mut b, 345, b"usr/local");
    set_tar_checksum(&mut b);
    b
}

#[test]
fn tar_header() {
    let mut v = Vectors::default();
    let fresh = golden_tar_header();
    let stored: [u8; BLOCK] = v.golden("tar-header", &fresh).try_into().unwrap();
    assert!(!tarhdr::is_zero_block(&stored));
    let h = tarhdr::parse_header(&stored).unwrap();
    assert_eq!(h.kind, TarKind::File);
    assert_eq!(h.name, b"usr/local/bin/amber", "ustar prefix joined with '/'");
    assert!(h.link.is_empty());
    assert_eq!((h.mode, h.uid, h.gid), (0o755, 1000, 100));
    assert_eq!(h.size, 4556);
    assert_eq!(h.mtime, CREATED);
    assert_eq!(h.dev, (0, 0));
    assert_eq!(tarhdr::padding(h.size), 52, "data is padded to a 512-byte boundary");
    assert!(!h.kind.is_meta());

    // The checksum covers every byte.
    let mut bad = stored;
    bad[0] ^= 1;
    assert!(tarhdr::parse_header(&bad).is_err());

    // GNU base-256 numbers: high bit set, the rest big-endian.
    let mut big = stored;
    let mut size_field = [0u8; 12];
    size_field[0] = 0x80;
    size_field[7] = 0x02; // 2 << 32 = 8 GiB
    put(&mut big, 124, &size_field);
    set_tar_checksum(&mut big);
    assert_eq!(tarhdr::parse_header(&big).unwrap().size, 8 << 30);

    // Without the ustar magic the prefix field is not part of the name.
    let mut old = stored;
    put(&mut old, 257, b"\0\0\0\0\0\0\0\0");
    set_tar_checksum(&mut old);
    assert_eq!(tarhdr::parse_header(&old).unwrap().name, b"bin/amber");
}

/// The records of the `layout` vector: one of each kind, in the order ingest writes them
/// (the sizes are not a consistent tar stream; the vector pins the record encoding).
fn golden_layout_records(keys: &VaultKeys) -> Vec<Record> {
    vec![
        Record::Header(Box::new(golden_tar_header())),
        Record::Raw(b"30 mtime=1700000000.123456789\n".to_vec()),
        Record::Member {
            size: (compressible_chunk().len() + incompressible_chunk().len()) as u64,
            content: Content::Inline(vec![
                chunk_ref(keys, &compressible_chunk()),
                chunk_ref(keys, &incompressible_chunk()),
            ]),
        },
        Record::Zeros(300),
        Record::Tail {
            size: 1024,
            content: Content::None,
        },
        Record::End,
    ]
}

/// Decodes a layout stream pushed `piece` bytes at a time.
fn read_layout(bytes: &[u8], piece: usize) -> Result<Vec<Record>, String> {
    let mut reader = LayoutReader::new();
    let mut records = Vec::new();
    for part in bytes.chunks(piece) {
        reader.push(part);
        while let Some(rec) = reader.next_record().map_err(|e| format!("pieces of {piece}: {e}"))? {
            records.push(rec);
        }
    }
    if !reader.is_drained() {
        return Err(format!("pieces of {piece}: a partial record is left"));
    }
    Ok(records)
}

#[test]
fn layout() {
    let mut v = Vectors::default();
    let keys = keys();
    let records = golden_layout_records(&keys);
    let mut fresh = tar_layout::layout_start().to_vec();
    for r in &records {
        fresh.extend(tar_layout::encode(r));
    }
    let stored = v.golden("layout", &fresh);

    // Byte offsets of layout.md: version, then each record's tag.
    assert_eq!(stored.len(), 651);
    assert_eq!(stored[0], 1, "version");
    let tags = [(1usize, 1u8), (514, 2), (549, 3), (635, 4), (640, 5), (650, 6)];
    for (at, tag) in tags {
        assert_eq!(stored[at], tag, "record tag at byte {at}");
    }
    assert_eq!(
        &stored[2..514],
        &golden_tar_header()[..],
        "a header record is the block as is"
    );
    assert_eq!(&stored[515..519], &30u32.to_le_bytes(), "raw: u32 length");
    assert_eq!(&stored[558], &1, "member content: tree content tag 1 (inline)");
    assert_eq!(&stored[636..640], &300u32.to_le_bytes(), "zeros: u32 length");

    // Decoded whole, and in small pieces as the chunks of a stored layout arrive.
    for piece in [stored.len(), 64, 7] {
        assert_eq!(read_layout(&stored, piece).unwrap(), records);
    }
    let Record::Raw(pax) = &records[1] else { panic!() };
    assert_eq!(
        tarhdr::parse_pax(pax).unwrap(),
        vec![(b"mtime".to_vec(), b"1700000000.123456789".to_vec())]
    );

    // Another version byte is refused; so is an unknown record tag.
    let mut reader = LayoutReader::new();
    reader.push(&[2]);
    assert!(reader.next_record().is_err());
    let mut reader = LayoutReader::new();
    reader.push(&[1, 7]);
    assert!(reader.next_record().is_err());
}

/// A record may be split anywhere between two chunks of the layout.
#[test]
fn layout_in_pieces() {
    let keys = keys();
    let records = golden_layout_records(&keys);
    let mut bytes = tar_layout::layout_start().to_vec();
    for r in &records {
        bytes.extend(tar_layout::encode(r));
    }
    let failures: Vec<String> = (1..bytes.len())
        .filter_map(|piece| read_layout(&bytes, piece).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} piece sizes fail, e.g. {}",
        failures.len(),
        failures[0]
    );
    for piece in [1, 7, 100, 512, 513] {
        assert_eq!(read_layout(&bytes, piece).unwrap(), records);
    }
}

#[test]
fn ranges_file() {
    let text = "# changed blocks since the last snapshot\n\
                0 10\n\
                0x100000,4096\r\n\
                \n\
                \t8   4  \n\
                3145728 1048577\n\
                0X7FF000, 0x1000\n";
    let ranges = parse_ranges(text).unwrap();
    // A zero-length range changes nothing: refused, naming its line.
    let err = parse_ranges("0 10\n8388608 0\n").unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("length 0"), "{err}");
    assert_eq!(parse_ranges("# nothing changed\n").unwrap(), []);
    let r = |offset, len| ByteRange { offset, len };
    assert_eq!(
        ranges,
        [
            r(0, 10),
            r(0x10_0000, 4096),
            r(8, 4),
            r(3 << 20, (1 << 20) + 1),
            r(0x7f_f000, 0x1000),
        ]
    );

    // A volume of 8 MiB + 100 bytes in 1 MiB blocks: blocks 0 … 8, the last one short.
    let size = (8 << 20) + 100;
    let set = BlockSet::from_ranges(&ranges, size, 1 << 20).unwrap();
    let touched: Vec<u64> = (0..9).filter(|&i| set.contains(i)).collect();
    assert_eq!(
        touched,
        [0, 1, 3, 4, 7],
        "overlaps merged, a range one byte into a block touches it"
    );
    assert_eq!(set.count(), 5);
    // The same ranges in 4 KiB blocks.
    let small = BlockSet::from_ranges(&ranges, size, 4096).unwrap();
    assert_eq!(small.count(), 1 + 1 + 257 + 1);
    assert!(small.contains(256) && !small.contains(257) && small.contains(768) && small.contains(1024));
    assert!(!small.contains(1025) && small.contains(2047) && !small.contains(2048));

    // A range may end at the end of the volume, not beyond it.
    assert!(
        BlockSet::from_ranges(&[r(size - 1, 1)], size, 1 << 20)
            .unwrap()
            .contains(8)
    );
    assert!(BlockSet::from_ranges(&[r(size - 1, 2)], size, 1 << 20).is_err());
    assert!(BlockSet::from_ranges(&[r(size + 1, 0)], size, 1 << 20).is_err());
    assert!(BlockSet::from_ranges(&[r(1, u64::MAX)], size, 1 << 20).is_err());

    for bad in ["12", "1 2 3", "a b", "-1 5", "0x 5", "1.5 2", "0o17 1"] {
        assert!(parse_ranges(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_ranges("# nothing\n\n").unwrap(), []);
}

#[test]
fn volume_list() {
    let mut v = Vectors::default();
    let keys = keys();
    const BLOCKS: usize = 3000;
    const MIB: u32 = 1 << 20;
    // Blocks 0, 500 and 2999 hold data; every other block is all zeros. The volume is
    // 2999 MiB + 4 KiB, so the last block is short.
    let data = [
        (0, Hash32::from_bytes([0x11; 32])),
        (500, Hash32::from_bytes([0x22; 32])),
        (2999, Hash32::from_bytes([0x33; 32])),
    ];
    assert!(
        !chunklist::is_boundary(ChunkId::HOLE.hash()),
        "the zero id never ends a node"
    );
    assert!(data.iter().all(|(_, id)| !chunklist::is_boundary(id)));
    let refs: Vec<ChunkRef> = (0..BLOCKS)
        .map(|i| {
            let id = data
                .iter()
                .find(|(at, _)| *at == i)
                .map_or(ChunkId::HOLE, |(_, id)| ChunkId::new(*id));
            let len = if i == BLOCKS - 1 { 4096 } else { MIB };
            ChunkRef { id, len }
        })
        .collect();
    assert_eq!(refs.iter().filter(|r| r.id.is_hole()).count(), BLOCKS - data.len());

    let (content, emitted) = build_list(&keys, &refs);
    let Content::List { root, height } = content else {
        panic!("a chunk list expected, got {content:?}")
    };
    assert_eq!(height, 1);
    // Three leaves, full up to 1024 entries, then the root above them.
    let sizes: Vec<(u8, usize)> = emitted.iter().map(|(_, n)| (n.level, n.entries.len())).collect();
    assert_eq!(sizes, [(0, 1024), (0, 1024), (0, 952), (1, 3)]);
    // The middle leaf is 1024 holes; every such run, where a leaf starts, gives this id.
    assert!(emitted[1].1.entries.iter().all(|e| e.id == Hash32::default()));
    assert_eq!(emitted[1].1.total_len(), 1024 << 20);

    let (root_id, root_node) = emitted.last().unwrap();
    assert_eq!(*root_id, root);
    let stored = v.golden("volume-list-root", &root_node.encode());
    assert_eq!(stored.len(), 6 + 3 * 40);
    let decoded = ListNode::decode(&stored).unwrap();
    assert_eq!(&decoded, root_node);
    assert_eq!(ListId::new(keys.ids.list.hash(&stored)), root);
    let lens: Vec<u64> = decoded.entries.iter().map(|e| e.len).collect();
    assert_eq!(lens, [1024 << 20, 1024 << 20, (951 << 20) + 4096]);
    for (e, (id, _)) in decoded.entries.iter().zip(&emitted) {
        assert_eq!(e.id, *id.hash());
    }

    let nodes: HashMap<Hash32, ListNode> = emitted.iter().map(|(id, n)| (*id.hash(), n.clone())).collect();
    let mut leaves = Vec::new();
    let total = walk_list(&nodes, root.hash(), height, &mut leaves);
    assert_eq!(total, (2999 << 20) + 4096);
    let expected: Vec<ListEntry> = refs
        .iter()
        .map(|r| ListEntry {
            id: *r.id.hash(),
            len: u64::from(r.len),
        })
        .collect();
    assert_eq!(leaves, expected);
}

#[test]
fn vector_directory_holds_exactly_the_known_files() {
    if blessing() {
        return;
    }
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // `server-*` vectors belong to `amber serve`'s files; the server crate checks them.
        if let Some(stem) = name.strip_suffix(".hex").filter(|s| !s.starts_with("server-")) {
            found.insert(stem.to_string());
        }
    }
    let known: BTreeSet<String> = ALL_VECTORS.iter().chain(FIXTURES).map(|s| (*s).to_string()).collect();
    assert_eq!(found, known, "format-spec/vectors/*.hex and ALL_VECTORS differ");
}

/// The plain text of the `recipe` vector.
fn recipe_plain_text() -> Vec<u8> {
    (0..400u32)
        .flat_map(|i| format!("row {i}: amber keeps layers exact\n").into_bytes())
        .collect()
}

/// The `recipe` vector rebuilds a gzip stream (flate2 level 6, one member) from its plain text.
#[test]
fn recipe() {
    use amber_engine::format::recipe::{self as recipe_format, RecipeOp, RecipeReader};
    use std::io::{Read, Write};
    let mut v = Vectors::default();
    let plain = recipe_plain_text();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    let (head, rest) = gz.split_at(10);
    let (deflate, trailer) = rest.split_at(rest.len() - 8);
    let config = preflate_rs::PreflateConfig::default();
    let (analysed, _) = preflate_rs::preflate_whole_deflate_stream(deflate, &config).unwrap();
    let ops = vec![
        RecipeOp::Literal(head.to_vec()),
        RecipeOp::Begin,
        RecipeOp::Deflate {
            plain: plain.len() as u64,
            corrections: analysed.corrections,
        },
        RecipeOp::Literal(trailer.to_vec()),
        RecipeOp::End,
    ];
    let mut fresh = recipe_format::recipe_start().to_vec();
    for op in &ops {
        fresh.extend(recipe_format::encode(op));
    }
    let stored = v.golden("recipe", &fresh);

    // Byte offsets of recipe.md: version, LITERAL of the 10-byte header, BEGIN, DEFLATE.
    assert_eq!(stored[0], 1, "version");
    assert_eq!(&stored[1..6], &[1, 10, 0, 0, 0], "LITERAL, u32 length 10");
    assert_eq!(&stored[6..8], &[0x1f, 0x8b], "the gzip magic");
    assert_eq!(stored[16], 2, "BEGIN");
    assert_eq!(stored[17], 3, "DEFLATE");
    assert_eq!(&stored[18..26], &(plain.len() as u64).to_le_bytes(), "plain length");
    assert_eq!(stored[stored.len() - 1], 4, "END");

    // Rebuilt from the stored bytes: a gzip stream of the plain text.
    let mut reader = RecipeReader::new();
    reader.push(&stored);
    let mut out = Vec::new();
    let mut state = None;
    while let Some(op) = reader.next_op().unwrap() {
        match op {
            RecipeOp::Literal(b) => out.extend(b),
            RecipeOp::Begin => state = Some(preflate_rs::RecreateStreamProcessor::new()),
            RecipeOp::Deflate { plain: n, corrections } => {
                let piece = plain.get(..n as usize).unwrap();
                let (bytes, _) = state
                    .as_mut()
                    .unwrap()
                    .recompress(&mut std::io::Cursor::new(piece), &corrections)
                    .unwrap();
                out.extend(bytes);
            }
            RecipeOp::End => break,
        }
    }
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(out.as_slice())
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, plain);
    assert_eq!(out, gz, "the rebuilt stream is the one given");
}

/// The `image-node` vector: a directory of an image snapshot's tree holding a file kept
/// byte for byte and a layer blob naming a layer root (image.md).
#[test]
fn image_node() {
    use amber_engine::ops::image::{XATTR_COMPRESSION, XATTR_DIFF_ID, XATTR_DIGEST, XATTR_LAYER_SNAPSHOT, layer_ref};
    let mut v = Vectors::default();
    let keys = keys();
    let index = small_chunk();
    let mut file = Entry::new(b"index.json".to_vec(), EntryKind::File);
    file.mode = 0o644;
    file.size = index.len() as u64;
    file.content = Content::Inline(vec![ChunkRef {
        id: ChunkId::new(keys.ids.chunk.hash(&index)),
        len: index.len() as u32,
    }]);
    let blob_hex = "ab".repeat(32);
    let mut layer = Entry::new(blob_hex.clone().into_bytes(), EntryKind::File);
    layer.mode = 0o644;
    layer.size = 1234;
    layer.content = Content::Tree(TreeId::new(Hash32::from_bytes([0x4c; 32])));
    layer.xattrs = vec![
        (XATTR_LAYER_SNAPSHOT.to_vec(), "5a".repeat(32).into_bytes()),
        (XATTR_COMPRESSION.to_vec(), b"gzip".to_vec()),
        (
            XATTR_DIFF_ID.to_vec(),
            format!("sha256:{}", "cd".repeat(32)).into_bytes(),
        ),
        (XATTR_DIGEST.to_vec(), format!("sha256:{blob_hex}").into_bytes()),
    ];
    let fresh = TreeNode::new(vec![layer, file]).unwrap().encode();
    let stored = v.golden("image-node", &fresh);
    let node = TreeNode::decode(&stored).unwrap();
    let names: Vec<&[u8]> = node.entries().iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(
        names,
        vec![blob_hex.as_bytes(), b"index.json".as_slice()],
        "sorted by name"
    );
    let l = layer_ref(&node.entries()[0], b"blobs/sha256/abab").unwrap();
    assert_eq!(l.root, TreeId::new(Hash32::from_bytes([0x4c; 32])));
    assert_eq!(
        (l.compression.as_str(), l.digest.as_str()),
        ("gzip", format!("sha256:{blob_hex}").as_str())
    );
    assert_eq!(l.diff_id, format!("sha256:{}", "cd".repeat(32)));
    let xattr_names: Vec<&[u8]> = node.entries()[0].xattrs.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        xattr_names,
        vec![
            &b"amber.layer.snapshot"[..],
            b"amber.oci.compression",
            b"amber.oci.diff_id",
            b"amber.oci.digest"
        ]
    );
    assert!(
        layer_ref(&node.entries()[1], b"index.json").is_err(),
        "a plain file is no layer"
    );
}

/// The `environment-node` vector: the root of an environment snapshot with an image, a
/// tree and a volume (environment.md).
#[test]
fn environment_node() {
    use amber_engine::ops::environment::{Part, PartKind, XATTR_KIND, XATTR_MOUNT, XATTR_SNAPSHOT, part_of_entry};
    let mut v = Vectors::default();
    let part = |kind: PartKind, byte: u8, mount: &str| {
        let p = Part {
            kind,
            snapshot: SnapshotId::new(Hash32::from_bytes([byte; 32])),
            mount: mount.into(),
        };
        let mut e = Entry::new(p.entry_name().into_bytes(), EntryKind::Dir);
        e.mode = 0o755;
        e.content = Content::Tree(TreeId::new(Hash32::from_bytes([byte ^ 0xff; 32])));
        e.xattrs = vec![
            (XATTR_KIND.to_vec(), kind.name().as_bytes().to_vec()),
            (XATTR_SNAPSHOT.to_vec(), p.snapshot.to_hex().into_bytes()),
        ];
        if !mount.is_empty() {
            e.xattrs.push((XATTR_MOUNT.to_vec(), mount.as_bytes().to_vec()));
        }
        e.xattrs.sort();
        (p, e)
    };
    let parts = [
        part(PartKind::Volume, 0x33, "/opt/jupyter"),
        part(PartKind::Tree, 0x22, "/home/researcher/notebooks"),
        part(PartKind::Image, 0x11, ""),
    ];
    let fresh = TreeNode::new(parts.iter().map(|(_, e)| e.clone()).collect())
        .unwrap()
        .encode();
    let stored = v.golden("environment-node", &fresh);
    let node = TreeNode::decode(&stored).unwrap();
    let names: Vec<String> = node.entries().iter().map(|e| e.name_lossy()).collect();
    assert_eq!(names, ["image", "tree_home_researcher_notebooks", "volume_opt_jupyter"]);
    for (entry, (want, _)) in node.entries().iter().zip([&parts[2], &parts[1], &parts[0]]) {
        assert_eq!(&part_of_entry(entry).unwrap(), want);
    }
}

/// The second record of a chain: a denied admin call whose detail pins the text encoding.
fn golden_audit_record() -> AuditRecord {
    AuditRecord {
        seq: 1,
        prev: Hash32::from_bytes([0xa1; 32]),
        time_unix_ms: 1_700_000_001_000,
        event: AuditEvent {
            request_id: "00112233445566bb".into(),
            token_id: "0123456789abcdef".into(),
            role: "sidecar".into(),
            call: "/amber.v1.Admin/CreateToken".into(),
            target: "lab-a".into(),
            result: "permission_denied".into(),
            detail: "name \"ci\"\nline two é".into(),
        },
    }
}

#[test]
fn audit_record() {
    let mut v = Vectors::default();
    let keys = keys();
    let record = golden_audit_record();
    let plain = v.golden("audit-record-plain", &record.encode());
    assert_eq!(plain[0], 1, "plaintext version 1");
    assert_eq!(&plain[1..9], &1u64.to_le_bytes());
    assert_eq!(AuditRecord::decode(&plain).unwrap(), record);
    let key = audit::record_key(0x0123_4567_89ab_cdef, 1);
    assert_eq!(key, "audit/0123456789abcdef/0000000000000001");
    let fresh = audit::seal_record_with_nonce(&keys.audit_key, nonce(NONCE_AUDIT), &key, &plain).unwrap();
    let file = v.golden("audit-record", &fresh);
    assert_eq!(&file[..12], b"AMBRAUDT\x01\x00\x00\x00");
    assert_eq!(&file[12..24], &nonce(NONCE_AUDIT));
    assert_eq!(file.len(), 12 + 12 + plain.len() + 16);
    assert_eq!(audit::open_record(&keys.audit_key, &key, &file).unwrap(), plain);
    // The seal covers the header and the key: the record opens nowhere else.
    let aad = [&file[..12], key.as_bytes()].concat();
    assert_eq!(keys.audit_key.open(&aad, &file[12..], String::new).unwrap(), plain);
    assert!(audit::open_record(&keys.audit_key, &audit::record_key(0x0123_4567_89ab_cdef, 2), &file).is_err());
    assert!(audit::open_record(&keys.seal_key, &key, &file).is_err(), "its own key");
    // The next record of the chain names the BLAKE3 of this plaintext.
    assert_eq!(audit::chain_hash(&plain).as_bytes(), blake3::hash(&plain).as_bytes());
}

#[test]
fn audit_head() {
    let mut v = Vectors::default();
    let keys = keys();
    // The head of the chain whose record 1 is the golden record.
    let record_plain = golden_audit_record().encode();
    let head = AuditHead {
        seq: 1,
        hash: audit::chain_hash(&record_plain),
    };
    let plain = v.golden("audit-head-plain", &head.encode());
    assert_eq!(plain.len(), audit::AUDIT_HEAD_PLAIN_LEN);
    assert_eq!(plain[0], 1, "plaintext version 1");
    assert_eq!(&plain[1..9], &1u64.to_le_bytes());
    assert_eq!(&plain[9..], blake3::hash(&record_plain).as_bytes());
    assert_eq!(AuditHead::decode(&plain).unwrap(), head);
    let key = audit::head_key(0x0123_4567_89ab_cdef);
    assert_eq!(key, "audit/0123456789abcdef/head");
    assert_eq!(audit::parse_head_key(&key), Some(0x0123_4567_89ab_cdef));
    assert_eq!(audit::parse_record_key(&key), None, "a head is not a record");
    let fresh = audit::seal_head_with_nonce(&keys.audit_key, nonce(NONCE_AUDIT_HEAD), &key, &plain).unwrap();
    let file = v.golden("audit-head", &fresh);
    assert_eq!(&file[..12], b"AMBRAUDH\x01\x00\x00\x00");
    assert_eq!(&file[12..24], &nonce(NONCE_AUDIT_HEAD));
    assert_eq!(file.len(), 12 + 12 + plain.len() + 16);
    let aad = [&file[..12], key.as_bytes()].concat();
    assert_eq!(keys.audit_key.open(&aad, &file[12..], String::new).unwrap(), plain);
    assert_eq!(audit::open_head(&keys.audit_key, &key, &file).unwrap(), plain);
    // A head does not pass for a record, nor opens at another chain's head.
    assert!(audit::open_record(&keys.audit_key, &key, &file).is_err());
    assert!(audit::open_head(&keys.audit_key, &audit::head_key(7), &file).is_err());
}

#[test]
fn condemn_record() {
    use amber_engine::format::condemn::{self, CondemnRecord, Condemned, Reason};
    use amber_engine::format::pack::PackKind;
    use amber_engine::id::{Hash32, PackId};
    let mut v = Vectors::default();
    let keys = keys();
    let pack = |b: u8| PackId::new(Hash32::from_slice(&[b; 32]).unwrap());
    let record = CondemnRecord {
        time_unix_ms: 1_700_000_000_000,
        packs: vec![
            Condemned {
                id: pack(7),
                kind: PackKind::Data,
                len: 33_554_432,
                reason: Reason::Unreferenced,
            },
            Condemned {
                id: pack(8),
                kind: PackKind::Meta,
                len: 1_048_576,
                reason: Reason::Repacked,
            },
        ],
    };
    let plain = v.golden("condemn-plain", &record.encode());
    assert_eq!(plain.len(), 13 + 2 * 42);
    assert_eq!(plain[0], 1, "plaintext version 1");
    assert_eq!(&plain[1..9], &1_700_000_000_000i64.to_le_bytes());
    assert_eq!(&plain[9..13], &2u32.to_le_bytes());
    assert_eq!(&plain[13..45], &[7u8; 32]);
    assert_eq!(plain[45], 1, "data pack");
    assert_eq!(&plain[46..54], &33_554_432u64.to_le_bytes());
    assert_eq!(plain[54], 1, "unreferenced");
    assert_eq!(plain[plain.len() - 1], 2, "repacked");
    assert_eq!(CondemnRecord::decode(&plain).unwrap(), record);
    let key = "compact/000102030405060708090a0b0c0d0e0f";
    assert!(condemn::is_record_key(key));
    let fresh = condemn::seal_with_nonce(&keys.audit_key, nonce(NONCE_CONDEMN), key, &plain).unwrap();
    let file = v.golden("condemn", &fresh);
    assert_eq!(&file[..12], b"AMBRCOND\x01\x00\x00\x00");
    assert_eq!(&file[12..24], &nonce(NONCE_CONDEMN));
    assert_eq!(file.len(), 12 + 12 + plain.len() + 16);
    let aad = [&file[..12], key.as_bytes()].concat();
    assert_eq!(keys.audit_key.open(&aad, &file[12..], String::new).unwrap(), plain);
    assert_eq!(condemn::open(&keys.audit_key, key, &file).unwrap(), plain);
    assert!(condemn::open(&keys.audit_key, "compact/000102030405060708090a0b0c0d0e00", &file).is_err());
    assert!(
        audit::open_record(&keys.audit_key, key, &file).is_err(),
        "not an audit record"
    );
}
