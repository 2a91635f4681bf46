//! Repository-level tests: real RocksDB, memory and fault-injecting stores.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::backend::fault::FaultBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, DynBackend, PutMode};
use crate::chunker::ChunkerParams;
use crate::crypto::KdfParams;
use crate::format::blob::BlobKind;
use crate::format::tree::{Content, EntryKind};
use crate::id::{BlobId, TreeId};
use crate::ops::diff::{ChangeKind, diff_trees};
use crate::ops::ingest::{ParentChoice, TreeOptions, snapshot_tree};
use crate::ops::restore::{RestoreOptions, restore_tree};
use crate::repo::writer::BlobWriter;
use crate::repo::{InitOptions, Repository};
use crate::{Error, repo::sync};

pub(super) const PW: &[u8] = b"correct horse";

fn small_chunks() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        },
        label: "test".into(),
        chunker: ChunkerParams::new(64 * 1024, 128 * 1024, 256 * 1024).unwrap(),
        block_size: 64 * 1024,
    }
}

/// A repository with small chunks (64/128/256 KiB), 64 KiB volume blocks and a cheap KDF.
pub(super) fn init(backend: DynBackend, cache: &Path) -> Repository {
    Repository::init(backend, cache, PW, &small_chunks()).unwrap()
}

/// Deterministic noise (xorshift) of `len` bytes.
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello amber").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    // Over 64 chunks of ~128 KiB: stored as a chunk-list tree.
    std::fs::write(root.join("a/large.bin"), noise(12 << 20, 1)).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("a/link")).unwrap();
    std::fs::hard_link(root.join("small.txt"), root.join("a/b/hard")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(3 << 20).unwrap();
    std::fs::set_permissions(root.join("a/b/c/deep.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
}

fn opts() -> TreeOptions {
    TreeOptions {
        labels: crate::ops::Labels {
            environment: "test-env".into(),
            ..Default::default()
        },
        threads: 2,
        ..TreeOptions::default()
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let content = if m.is_file() {
                    std::fs::read(&p).unwrap()
                } else {
                    Vec::new()
                };
                let link = if m.is_symlink() {
                    Some(std::fs::read_link(&p).unwrap())
                } else {
                    None
                };
                out.push((rel, m.permissions().mode(), content, link, m.is_dir()));
                if m.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    };
    assert_eq!(list(a), list(b));
}

#[test]
fn tree_round_trip_dedup_and_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    let first = snapshot_tree(&repo, &src, &opts()).unwrap();
    assert!(first.snapshot.is_complete());
    assert_eq!(first.snapshot.stats.files, 6);
    let dest = tmp.path().join("out");
    let report = restore_tree(
        &repo,
        TreeId::new(first.snapshot.root),
        &dest,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_same_tree(&src, &dest);
    let hard = std::fs::metadata(dest.join("a/b/hard")).unwrap();
    assert_eq!(hard.len(), 11);
    assert!(std::os::unix::fs::MetadataExt::nlink(&hard) == 2, "hard link recreated");
    assert!(std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(dest.join("sparse")).unwrap()) < 64);

    // The large file is a chunk list, not inline.
    let root = repo.load_tree(TreeId::new(first.snapshot.root)).unwrap();
    let a = root.get(b"a").unwrap();
    let Content::Tree(a_id) = a.content else {
        panic!("a is a dir")
    };
    let large = repo.load_tree(a_id).unwrap().get(b"large.bin").unwrap().clone();
    assert!(matches!(large.content, Content::List { .. }), "{:?}", large.content);

    // Unchanged: nothing read, nothing new but the snapshot object.
    let second = snapshot_tree(&repo, &src, &opts()).unwrap();
    assert_eq!(second.parent, Some(first.id));
    assert_eq!(second.bytes_read, 0);
    assert_eq!(second.written.blobs_new, 0);
    assert_eq!(second.snapshot.root, first.snapshot.root);

    // Forced re-read stores nothing new either.
    let forced = snapshot_tree(
        &repo,
        &src,
        &TreeOptions {
            parent: ParentChoice::None,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(forced.written.blobs_new, 0);
    assert!(forced.bytes_read > 12 << 20);

    // Edit one file, add one, remove one.
    std::fs::write(src.join("a/b/c/deep.txt"), b"changed").unwrap();
    std::fs::write(src.join("new.txt"), b"new").unwrap();
    std::fs::remove_file(src.join("empty")).unwrap();
    let third = snapshot_tree(&repo, &src, &opts()).unwrap();
    assert!(
        third.written.raw_new < 64 * 1024,
        "only small nodes and the edit: {}",
        third.written.raw_new
    );
    let changes = diff_trees(
        &repo,
        TreeId::new(first.snapshot.root),
        TreeId::new(third.snapshot.root),
    )
    .unwrap();
    let got: Vec<(&[u8], ChangeKind)> = changes.iter().map(|c| (c.path.as_slice(), c.kind)).collect();
    assert_eq!(
        got,
        vec![
            (&b"a/b/c/deep.txt"[..], ChangeKind::Modified),
            (&b"empty"[..], ChangeKind::Removed),
            (&b"new.txt"[..], ChangeKind::Added),
        ]
    );
}

#[test]
fn failed_write_leaves_no_snapshot_and_retry_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let store: DynBackend = Arc::new(MemoryBackend::new());
    let cache = tmp.path().join("cache");
    drop(init(store.clone(), &cache));
    // Key slot and config took two puts; fail the 4th put from here: some packs land.
    let faulty: DynBackend = Arc::new(FaultBackend::failing_put(store.clone(), 3));
    let repo = Repository::open(faulty, &cache, PW).unwrap();
    let err = snapshot_tree(&repo, &src, &opts()).unwrap_err();
    assert!(matches!(err, Error::Backend(_) | Error::Pipeline(_)), "{err}");
    drop(repo);
    let packs_before = store.list("data/").unwrap().len();
    assert!(packs_before > 0, "some packs were written before the fault");
    assert!(
        store.list("snapshots/").unwrap().is_empty(),
        "no snapshot after a failed write"
    );

    // A fresh index (as after a crash that lost the cache) finds the orphan packs.
    let repo = Repository::open(store.clone(), &tmp.path().join("cache2"), PW).unwrap();
    assert!(repo.snapshots().unwrap().is_empty());
    let done = snapshot_tree(&repo, &src, &opts()).unwrap();
    let total: u64 = 12 << 20;
    assert!(
        done.written.raw_new < total,
        "retry reused stored chunks: {} new",
        done.written.raw_new
    );
    let dest = tmp.path().join("out");
    let report = restore_tree(
        &repo,
        TreeId::new(done.snapshot.root),
        &dest,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert!(report.errors.is_empty());
    assert_same_tree(&src, &dest);
}

#[test]
fn concurrent_stores_of_one_blob_write_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), tmp.path());
    let writer = BlobWriter::new(&repo).unwrap();
    let data = noise(100_000, 7);
    let id = BlobId::from(repo.chunk_id(&data));
    let news: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| writer.store(BlobKind::Chunk, id, &data).unwrap() as usize))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(news, 1);
    let stats = writer.finish().unwrap();
    assert_eq!(stats.blobs_new, 1);
    assert_eq!(repo.read_blob(id, BlobKind::Chunk).unwrap(), data);
    // Read under the wrong kind: refused.
    assert!(repo.read_blob(id, BlobKind::Tree).is_err());
}

#[test]
fn corrupt_pack_names_the_blob_and_rebuild_restores_index() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryBackend::new());
    let repo = init(store.clone(), &tmp.path().join("cache"));
    let writer = BlobWriter::new(&repo).unwrap();
    let data = noise(50_000, 9);
    let id = BlobId::from(repo.chunk_id(&data));
    writer.store(BlobKind::Chunk, id, &data).unwrap();
    writer.finish().unwrap();
    let report = sync::rebuild_index(&repo).unwrap();
    assert_eq!((report.packs, report.blobs), (1, 1));
    assert_eq!(repo.read_chunk(crate::id::ChunkId::new(*id.hash())).unwrap(), data);

    let key = store.list("data/").unwrap().remove(0).key;
    let mut bytes = store.get(&key).unwrap();
    bytes[100] ^= 0x20;
    store.put(&key, &bytes, PutMode::Overwrite).unwrap();
    let err = repo.read_blob(id, BlobKind::Chunk).unwrap_err().to_string();
    assert!(err.contains(&id.to_hex()), "{err}");
}

#[test]
fn wrong_passphrase_and_missing_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let store: DynBackend = Arc::new(MemoryBackend::new());
    let empty: DynBackend = Arc::new(MemoryBackend::new());
    assert!(matches!(
        Repository::open(empty, tmp.path(), PW),
        Err(Error::NoRepository(_))
    ));
    drop(init(store.clone(), tmp.path()));
    let err = Repository::open(store.clone(), tmp.path(), b"wrong").unwrap_err();
    assert!(
        matches!(err, Error::Crypto(crate::error::CryptoError::WrongPassphrase)),
        "{err}"
    );
    assert!(
        Repository::init(store, tmp.path(), PW, &small_chunks()).is_err(),
        "no second init"
    );
}

#[test]
fn key_slots_add_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let store: DynBackend = Arc::new(MemoryBackend::new());
    let repo = init(store.clone(), tmp.path());
    let kdf = KdfParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    };
    let second = repo.add_key(b"second", kdf, "other").unwrap();
    assert_eq!(repo.list_keys().unwrap().len(), 2);
    assert!(
        repo.remove_key(&repo.current_slot().to_hex()).is_err(),
        "cannot remove the slot in use"
    );
    drop(repo);
    let repo = Repository::open(store.clone(), tmp.path(), b"second").unwrap();
    assert_eq!(repo.current_slot(), second);
    let first = repo
        .list_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.id != second)
        .unwrap()
        .id;
    repo.remove_key(&first.to_hex()[..10]).unwrap();
    assert!(
        repo.remove_key(&second.to_hex()).is_err(),
        "cannot remove the last slot"
    );
    drop(repo);
    assert!(
        Repository::open(store, tmp.path(), PW).is_err(),
        "removed passphrase no longer opens"
    );
}

#[test]
fn unreadable_directory_is_skipped_and_snapshot_marked_incomplete() {
    if nix::unistd::geteuid().is_root() {
        // Root reads through permissions; the end-to-end suite covers this with dropped privileges.
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("ok.txt"), b"ok").unwrap();
    std::fs::write(src.join("secret.txt"), b"no").unwrap();
    std::fs::set_permissions(src.join("secret.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    let s = snapshot_tree(&repo, &src, &opts()).unwrap();
    assert!(!s.snapshot.is_complete());
    assert_eq!(s.snapshot.skipped_paths, vec!["secret.txt".to_string()]);
    let root = repo.load_tree(TreeId::new(s.snapshot.root)).unwrap();
    assert!(root.get(b"ok.txt").is_some_and(|e| e.kind == EntryKind::File));
    assert!(root.get(b"secret.txt").is_none());
}

mod block {
    use super::*;
    use crate::ops::block::{BlockOptions, BlockRestoreOptions, restore_block, snapshot_block};
    use crate::ops::ranges::ByteRange;
    use std::os::unix::fs::{FileExt, MetadataExt};

    const BLOCK: u64 = 64 * 1024;

    fn volume(path: &Path, size: u64) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(size).unwrap();
        for (i, off) in [0u64, 5 * BLOCK + 100, 40 * BLOCK].into_iter().enumerate() {
            f.write_all_at(&noise(3 * BLOCK as usize, i as u64 + 1), off).unwrap();
        }
    }

    #[test]
    fn round_trip_holes_changed_ranges_and_seed() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let img = tmp.path().join("vol.img");
        let size = 1 << 30; // 1 GiB, sparse: 16384 blocks, all but ~10 holes
        volume(&img, size);
        let first = snapshot_block(&repo, &img, &BlockOptions::default()).unwrap();
        assert_eq!(first.blocks, size / BLOCK);
        assert!(first.holes >= first.blocks - 12, "{} holes", first.holes);
        let out = tmp.path().join("out.img");
        let r = restore_block(&repo, first.id, &out, &BlockRestoreOptions::default()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
        assert!(
            std::fs::metadata(&out).unwrap().blocks() * 512 < 4 << 20,
            "holes stay sparse"
        );
        assert_eq!(r.from_repo + r.holes, r.blocks);

        // Change ten scattered blocks and say so.
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        let mut ranges = Vec::new();
        for k in 0..10u64 {
            let off = k * 1601 * BLOCK + 17;
            f.write_all_at(b"changed!", off).unwrap();
            ranges.push(ByteRange { offset: off, len: 8 });
        }
        let opts = BlockOptions {
            parent: Some(first.id),
            changed_ranges: Some(ranges),
            ..BlockOptions::default()
        };
        let second = snapshot_block(&repo, &img, &opts).unwrap();
        assert_eq!(second.bytes_read, 10 * BLOCK, "only the changed blocks are read");
        assert_eq!(second.inherited, second.blocks - 10);
        let chunks = 10;
        assert!(
            second.written.blobs_new <= chunks + 30,
            "{} blobs",
            second.written.blobs_new
        );
        assert!(
            second.written.raw_new < 10 * BLOCK + 400 * 1024,
            "{} bytes",
            second.written.raw_new
        );

        // Restore seeded from the old image: only the ten blocks come from the store.
        let seeded = restore_block(
            &repo,
            second.id,
            &out,
            &BlockRestoreOptions {
                seed: Some(out.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&img).unwrap());
        assert_eq!(seeded.from_repo, 10);
    }

    #[test]
    fn bad_ranges_and_size_changes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let img = tmp.path().join("vol.img");
        volume(&img, 64 * BLOCK);
        let first = snapshot_block(&repo, &img, &BlockOptions::default()).unwrap();
        let outside = vec![ByteRange {
            offset: 64 * BLOCK - 4,
            len: 8,
        }];
        let opts = BlockOptions {
            parent: Some(first.id),
            changed_ranges: Some(outside),
            ..Default::default()
        };
        assert!(snapshot_block(&repo, &img, &opts).is_err());
        let no_parent = BlockOptions {
            changed_ranges: Some(vec![]),
            ..Default::default()
        };
        assert!(snapshot_block(&repo, &img, &no_parent).is_err());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(65 * BLOCK)
            .unwrap();
        let grown = BlockOptions {
            parent: Some(first.id),
            ..Default::default()
        };
        assert!(snapshot_block(&repo, &img, &grown).is_err());
        assert_eq!(
            repo.snapshots().unwrap().len(),
            1,
            "nothing committed by refused snapshots"
        );
    }
}

pub(super) mod tar {
    use super::*;
    use crate::ops::extract::extract_layer;
    use crate::ops::tar::{TarOptions, restore_tar, snapshot_tar};

    fn header(name: &[u8], size: usize, flag: u8, link: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..name.len()].copy_from_slice(name);
        b[100..108].copy_from_slice(b"0000644\0");
        b[108..116].copy_from_slice(b"0001750\0");
        b[116..124].copy_from_slice(b"0001750\0");
        b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        b[136..148].copy_from_slice(b"14707245430\0");
        b[156] = flag;
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..265].copy_from_slice(b"ustar  \0");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    pub(crate) fn member_for_tests(out: &mut Vec<u8>, name: &[u8], data: &[u8], flag: u8) {
        member(out, name, data, flag, b"", 0);
    }

    fn member(out: &mut Vec<u8>, name: &[u8], data: &[u8], flag: u8, link: &[u8], pad_byte: u8) {
        out.extend(header(name, data.len(), flag, link));
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(pad_byte, (512 - data.len() % 512) % 512));
    }

    /// A layer with GNU long names, a PAX header, odd padding and junk after the end.
    fn layer(shared: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        let long = [b'n'; 150];
        let mut long_data = long.to_vec();
        long_data.push(0);
        member(&mut t, b"././@LongLink", &long_data, b'L', b"", 0);
        member(&mut t, &long[..100], shared, b'0', b"", 0);
        let pax = b"27 path=pax/named/file.bin\n";
        member(&mut t, b"PaxHeaders/x", pax, b'x', b"", 0);
        member(&mut t, b"placeholder", b"pax content", b'0', b"", 7);
        member(&mut t, b"dir/", b"", b'5', b"", 0);
        member(&mut t, b"dir/link", b"", b'2', b"../pax/named/file.bin", 0);
        t.extend(vec![0u8; 1024 + 8192]);
        t.extend_from_slice(b"trailing junk");
        t
    }

    fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_compressed_layer_comes_back_as_the_same_bytes_with_its_content_deduplicated() {
        use crate::ops::tar::restore_layer_as_given;
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let text: Vec<u8> = (0..60_000u32)
            .flat_map(|i| {
                format!(
                    "{i},sample-{},{:.3},notes for row {}\n",
                    i % 97,
                    f64::from(i) * 0.37,
                    i / 7
                )
                .into_bytes()
            })
            .collect();
        let plain = layer(&text);
        let first = snapshot_tar(&repo, &mut plain.as_slice(), "plain.tar", &TarOptions::default()).unwrap();
        assert!(first.recipe.is_none(), "an uncompressed stream needs no recipe");

        let mut two_members = gzip(&plain, 6);
        two_members.extend(gzip(b"", 9));
        let given = [
            ("gzip -6", gzip(&plain, 6)),
            ("gzip -1", gzip(&plain, 1)),
            ("two members", two_members),
        ];
        for (what, gz) in given {
            let s = snapshot_tar(&repo, &mut gz.as_slice(), "layer.tar.gz", &TarOptions::default()).unwrap();
            let recipe = s.recipe.clone().unwrap();
            assert_eq!(recipe.kept_compressed, None, "{what}: rebuilt by preflate");
            assert!(
                recipe.len * 2 < gz.len() as u64,
                "{what}: recipe of {} bytes for {}",
                recipe.len,
                gz.len()
            );
            assert!(
                s.written.raw_new < 60_000 + recipe.len,
                "{what}: content deduplicated, {} new",
                s.written.raw_new
            );
            assert_ne!(s.id, first.id, "{what}: a new stream is its own snapshot");
            let mut out = Vec::new();
            restore_layer_as_given(&repo, s.id, &mut out).unwrap();
            assert!(out == gz, "{what}: rebuilt gzip differs");
            let mut tar = Vec::new();
            restore_tar(&repo, s.id, &mut tar).unwrap();
            assert!(tar == plain);
        }

        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        let z = snapshot_tar(&repo, &mut zst.as_slice(), "layer.tar.zst", &TarOptions::default()).unwrap();
        let kept = z.recipe.clone().unwrap();
        assert!(kept.kept_compressed.unwrap().contains("zstd"));
        assert_eq!(kept.literal, zst.len() as u64);
        let mut out = Vec::new();
        restore_layer_as_given(&repo, z.id, &mut out).unwrap();
        assert!(out == zst);
        let again = snapshot_tar(&repo, &mut zst.as_slice(), "again.tar.zst", &TarOptions::default()).unwrap();
        assert!(again.already_stored && again.id == z.id);
    }

    #[test]
    fn a_gzip_stream_preflate_cannot_model_is_kept_as_given_and_says_why() {
        use crate::ops::tar::restore_layer_as_given;
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let plain = layer(&noise(200_000, 8));
        // Deflate "stored" blocks of 1 byte each: valid gzip no compressor would write.
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        for (i, b) in plain.iter().enumerate() {
            gz.push(u8::from(i + 1 == plain.len()));
            gz.extend([1, 0, 0xfe, 0xff, *b]);
        }
        let mut crc = flate2::Crc::new();
        crc.update(&plain);
        gz.extend(crc.sum().to_le_bytes());
        gz.extend((plain.len() as u32).to_le_bytes());
        let s = snapshot_tar(&repo, &mut gz.as_slice(), "odd.tar.gz", &TarOptions::default()).unwrap();
        let recipe = s.recipe.clone().unwrap();
        assert_eq!(s.diff_id, first_diff_id(&plain));
        let why = recipe.kept_compressed.clone().unwrap_or_default();
        let mut out = Vec::new();
        restore_layer_as_given(&repo, s.id, &mut out).unwrap();
        assert!(out == gz, "kept bytes rebuild the stream ({why})");
    }

    fn first_diff_id(plain: &[u8]) -> String {
        format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, plain).as_ref())
        )
    }

    #[test]
    fn layer_rebuilds_byte_for_byte_and_dedups_with_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let shared = noise(600_000, 3);
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("shared.bin"), &shared).unwrap();
        snapshot_tree(&repo, &src, &opts()).unwrap();

        let bytes = layer(&shared);
        let s = snapshot_tar(&repo, &mut bytes.as_slice(), "layer.tar", &TarOptions::default()).unwrap();
        assert_eq!(s.members, 4);
        assert!(!s.already_stored);
        assert!(
            s.written.raw_new < 60_000,
            "the shared file is not stored again: {}",
            s.written.raw_new
        );
        let mut out = Vec::new();
        restore_tar(&repo, s.id, &mut out).unwrap();
        assert!(out == bytes, "rebuilt stream differs");

        let again = snapshot_tar(&repo, &mut bytes.as_slice(), "again.tar", &TarOptions::default()).unwrap();
        assert!(again.already_stored);
        assert_eq!((again.id, again.written.blobs_new), (s.id, 0));

        let dest = tmp.path().join("x");
        let report = extract_layer(&repo, s.id, &dest, false).unwrap();
        assert_eq!(report.members, 4);
        let long = String::from_utf8(vec![b'n'; 150]).unwrap();
        assert_eq!(std::fs::read(dest.join(long)).unwrap(), shared);
        assert_eq!(std::fs::read(dest.join("pax/named/file.bin")).unwrap(), b"pax content");
        assert_eq!(std::fs::read(dest.join("dir/link")).unwrap(), b"pax content");
    }

    #[test]
    fn malformed_layers_are_refused_and_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let good = layer(b"data");
        let mut bad_sum = good.clone();
        bad_sum[1024 + 10] ^= 1; // inside the second header
        let truncated = good[..700].to_vec();
        let mut oversized = Vec::new();
        oversized.extend(header(b"big", 1 << 20, b'0', b""));
        oversized.extend(vec![1u8; 1000]);
        for (what, bytes) in [
            ("checksum", bad_sum),
            ("truncated", truncated),
            ("oversized", oversized),
        ] {
            let err = snapshot_tar(&repo, &mut bytes.as_slice(), what, &TarOptions::default()).unwrap_err();
            assert!(err.to_string().contains("malformed tar"), "{what}: {err}");
        }
        assert!(repo.snapshots().unwrap().is_empty());
    }

    #[test]
    fn extraction_refuses_escapes_and_applies_whiteouts() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let ingest = |t: Vec<u8>| {
            snapshot_tar(&repo, &mut t.as_slice(), "l", &TarOptions::default())
                .unwrap()
                .id
        };
        for evil in [&b"../evil"[..], b"/abs/evil", b"a/../../evil"] {
            let mut t = Vec::new();
            member(&mut t, evil, b"x", b'0', b"", 0);
            let id = ingest(t);
            let err = extract_layer(&repo, id, &tmp.path().join("e"), false).unwrap_err();
            assert!(err.to_string().contains("leaves the target"), "{err}");
        }
        let mut t = Vec::new();
        member(
            &mut t,
            b"link",
            b"",
            b'2',
            tmp.path().join("outside").as_os_str().as_encoded_bytes(),
            0,
        );
        member(&mut t, b"link/file", b"x", b'0', b"", 0);
        let err = extract_layer(&repo, ingest(t), &tmp.path().join("s"), false).unwrap_err();
        assert!(err.to_string().contains("through the symlink"), "{err}");
        assert!(!tmp.path().join("outside").exists());

        let mut lower = Vec::new();
        for name in [&b"a"[..], b"b", b"d/x"] {
            member(&mut lower, name, b"lower", b'0', b"", 0);
        }
        let mut upper = Vec::new();
        member(&mut upper, b".wh.a", b"", b'0', b"", 0);
        member(&mut upper, b"d/.wh..wh..opq", b"", b'0', b"", 0);
        member(&mut upper, b"d/y", b"upper", b'0', b"", 0);
        let dest = tmp.path().join("w");
        extract_layer(&repo, ingest(lower), &dest, true).unwrap();
        let r = extract_layer(&repo, ingest(upper), &dest, true).unwrap();
        assert_eq!(r.whiteouts, 2);
        assert!(!dest.join("a").exists() && dest.join("b").exists());
        assert!(!dest.join("d/x").exists() && dest.join("d/y").exists());
        assert!(!dest.join(".wh.a").exists());
    }
}

mod whiteout_names {
    use super::*;
    use crate::ops::extract::extract_layer;
    use crate::ops::tar::{TarOptions, snapshot_tar};

    #[test]
    fn whiteouts_cannot_reach_outside_their_directory_or_their_own_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
        let ingest = |t: Vec<u8>| {
            snapshot_tar(&repo, &mut t.as_slice(), "l", &TarOptions::default())
                .unwrap()
                .id
        };
        std::fs::create_dir_all(tmp.path().join("dest")).unwrap();
        std::fs::write(tmp.path().join("keep"), b"outside the target").unwrap();
        for evil in [&b".wh..."[..], b".wh..", b".wh."] {
            let mut t = Vec::new();
            super::tar::member_for_tests(&mut t, evil, b"", b'0');
            let err = extract_layer(&repo, ingest(t), &tmp.path().join("dest"), true).unwrap_err();
            assert!(err.to_string().contains("whiteout"), "{err}");
        }
        assert!(tmp.path().join("keep").exists());
        let mut same_layer = Vec::new();
        super::tar::member_for_tests(&mut same_layer, b"d/new", b"mine", b'0');
        super::tar::member_for_tests(&mut same_layer, b"d/.wh..wh..opq", b"", b'0');
        let dest = tmp.path().join("o");
        extract_layer(&repo, ingest(same_layer), &dest, true).unwrap();
        assert!(dest.join("d/new").exists(), "an opaque marker hides lower layers only");
        assert!(repo.snapshots().unwrap().len() >= 4);
        let labels = crate::ops::Labels {
            metadata: vec![("oci.diff_id".into(), "x".into())],
            ..Default::default()
        };
        let reserved = TarOptions {
            labels,
            ..TarOptions::default()
        };
        assert!(snapshot_tar(&repo, &mut &b""[..], "l", &reserved).is_err());
    }
}

#[test]
fn include_restores_matching_paths_with_their_directories_metadata() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    std::fs::set_permissions(src.join("a/b"), std::fs::Permissions::from_mode(0o750)).unwrap();
    filetime::set_file_mtime(src.join("a/b"), filetime::FileTime::from_unix_time(1_000_000_000, 5)).unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    let s = snapshot_tree(&repo, &src, &opts()).unwrap();
    let dest = tmp.path().join("out");
    let include = RestoreOptions {
        include: vec!["a/b/c/*.txt".into()],
        ..RestoreOptions::default()
    };
    let r = restore_tree(&repo, TreeId::new(s.snapshot.root), &dest, &include).unwrap();
    assert_eq!(r.files, 1);
    assert_eq!(std::fs::read(dest.join("a/b/c/deep.txt")).unwrap(), b"deep");
    assert!(!dest.join("small.txt").exists() && !dest.join("a/large.bin").exists());
    let b = std::fs::metadata(dest.join("a/b")).unwrap();
    assert_eq!(
        (b.mode() & 0o7777, b.mtime(), b.mtime_nsec()),
        (0o750, 1_000_000_000, 5)
    );
    assert_eq!(r.dirs, 3, "a, a/b and a/b/c were recreated with their metadata");
}

#[test]
fn confined_layers_refuse_members_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), tmp.path());
    let confined = crate::ops::tar::TarOptions {
        confine_paths: true,
        ..Default::default()
    };
    let snapshot_tar = crate::ops::tar::snapshot_tar;
    for bad in [&b"../x"[..], b"/etc/passwd", b"a/../../b"] {
        let mut layer = Vec::new();
        tar::member_for_tests(&mut layer, bad, b"data", b'0');
        layer.extend_from_slice(&[0u8; 1024]);
        let err = snapshot_tar(&repo, &mut &layer[..], "l", &confined).unwrap_err();
        assert!(err.to_string().contains("member path"), "{err}");
    }
    let mut ok = Vec::new();
    tar::member_for_tests(&mut ok, b"./a/b", b"data", b'0');
    ok.extend_from_slice(&[0u8; 1024]);
    snapshot_tar(&repo, &mut &ok[..], "l", &confined).unwrap();
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}
