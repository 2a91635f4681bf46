//! Tests of push-style building: the tree assembler, the volume builder, the writer's
//! flush and the wire digest map.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backend;
use crate::backend::memory::MemoryBackend;
use crate::format::blob::BlobKind;
use crate::format::tree::{Content, Entry, EntryKind};
use crate::id::{BlobId, ChunkId, TreeId};
use crate::ops::Labels;
use crate::ops::assemble::{Added, AssembledTree, MAX_DEPTH, MAX_KEPT_SKIPS, TreeAssembler};
use crate::ops::block::{BlockRestoreOptions, restore_block};
use crate::ops::fsmeta::{self, NameCache};
use crate::ops::ingest::{ParentChoice, TreeOptions, snapshot_tree};
use crate::ops::restore::{RestoreOptions, restore_tree};
use crate::ops::tests::{PW, init, noise};
use crate::ops::volume_build::{VolumeBuilder, wire_digest, wire_digest_key};
use crate::repo::Repository;
use crate::repo::writer::BlobWriter;
use crate::{Error, Result};

const BLOCK: u64 = 64 * 1024;

fn fresh() -> (tempfile::TempDir, Repository) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    (tmp, repo)
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("a/empty-dir")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello amber").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("a/large.bin"), noise(12 << 20, 1)).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(root.join("a/b/mid.txt"), b"middle").unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("a/link")).unwrap();
    std::fs::write(root.join("z.txt"), b"last").unwrap();
}

/// One entry as a client would send it: parent index, entry, and where to read it.
struct Item {
    parent: u64,
    entry: Entry,
    path: PathBuf,
}

/// The entries of `root` in depth-first pre-order, names in byte order, as ingest sees them.
fn walk(root: &Path) -> Vec<Item> {
    fn visit(dir: &Path, parent: u64, out: &mut Vec<Item>, names: &NameCache) {
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in children {
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let entry = fsmeta::entry_from(name.as_bytes(), &path, &meta, names).unwrap();
            let is_dir = entry.kind == EntryKind::Dir;
            out.push(Item {
                parent,
                entry,
                path: path.clone(),
            });
            if is_dir {
                let index = out.len() as u64;
                visit(&path, index, out, names);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, 0, &mut out, &NameCache::default());
    out
}

/// Adds every item, then sends the wanted files in order, in pieces.
fn push_all(asm: &mut TreeAssembler<'_>, items: &[Item]) -> Vec<u64> {
    let mut wanted = Vec::new();
    for item in items {
        if let Added::Wanted(i) = asm.add(item.parent, item.entry.clone()).unwrap() {
            wanted.push(i);
        }
    }
    for &i in &wanted {
        send(asm, i, &std::fs::read(&items[i as usize - 1].path).unwrap());
    }
    wanted
}

fn send(asm: &mut TreeAssembler<'_>, index: u64, data: &[u8]) {
    asm.begin_file(index).unwrap();
    for piece in data.chunks(100_000) {
        asm.file_data(piece).unwrap();
    }
    asm.end_file(index, data.len() as u64).unwrap();
}

fn assemble(repo: &Repository, parent: Option<TreeId>, items: &[Item]) -> (AssembledTree, Vec<u64>) {
    let writer = BlobWriter::new(repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, parent).unwrap();
    let wanted = push_all(&mut asm, items);
    let tree = asm.finish().unwrap();
    writer.finish().unwrap();
    (tree, wanted)
}

fn no_parent() -> TreeOptions {
    TreeOptions {
        parent: ParentChoice::None,
        threads: 2,
        ..TreeOptions::default()
    }
}

fn file(name: &str, size: u64) -> Entry {
    let mut e = Entry::new(name.as_bytes().to_vec(), EntryKind::File);
    e.size = size;
    e.inode = 7;
    e
}

fn dir(name: &str) -> Entry {
    Entry::new(name.as_bytes().to_vec(), EntryKind::Dir)
}

fn invalid<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn assembled_tree_equals_snapshot_tree_and_restores() {
    let (tmp, repo) = fresh();
    let src = tmp.path().join("src");
    make_tree(&src);
    let items = walk(&src);
    let (tree, wanted) = assemble(&repo, None, &items);
    let expected = snapshot_tree(&repo, &src, &no_parent()).unwrap();
    assert_eq!(*tree.root.hash(), expected.snapshot.root);
    assert_eq!(wanted.len(), 5, "every non-empty file is wanted without a parent");
    assert_eq!(tree.files, expected.snapshot.stats.files);
    assert_eq!(tree.dirs, expected.snapshot.stats.dirs);
    assert_eq!(tree.bytes, expected.snapshot.stats.bytes);
    assert_eq!(tree.files_sent, 5);
    assert_eq!(tree.files_reused, 0);
    assert_eq!(tree.files_empty, 1, "the empty file is neither sent nor reused");
    assert_eq!(tree.bytes_received, tree.bytes);

    let labels = Labels {
        hostname: Some("client-7".into()),
        ..Labels::default()
    };
    let written = repo_stats();
    let (id, snap) = tree.commit(&repo, &labels, None, "/src".into(), &written).unwrap();
    assert_eq!(repo.load_snapshot(id).unwrap().hostname, "client-7");
    assert!(snap.is_complete());
    let dest = tmp.path().join("out");
    let report = restore_tree(&repo, tree.root, &dest, &RestoreOptions::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(std::fs::read(dest.join("a/large.bin")).unwrap(), noise(12 << 20, 1));
    assert_eq!(std::fs::read(dest.join("a/b/c/deep.txt")).unwrap(), b"deep");
}

fn repo_stats() -> crate::repo::writer::WriteStats {
    crate::repo::writer::WriteStats::default()
}

#[test]
fn parent_snapshot_is_reused_at_every_depth() {
    let (tmp, repo) = fresh();
    let src = tmp.path().join("src");
    make_tree(&src);
    let first = snapshot_tree(&repo, &src, &no_parent()).unwrap();
    let parent = Some(TreeId::new(first.snapshot.root));
    let (same, wanted) = assemble(&repo, parent, &walk(&src));
    assert!(wanted.is_empty(), "nothing changed: {wanted:?}");
    assert_eq!((same.files_reused, same.files_empty), (5, 1));
    assert_eq!(same.bytes_received, 0);
    assert_eq!(*same.root.hash(), first.snapshot.root);

    std::fs::write(src.join("a/b/c/deep.txt"), b"deeper").unwrap();
    let items = walk(&src);
    let (changed, wanted) = assemble(&repo, parent, &items);
    let paths: Vec<_> = wanted.iter().map(|&i| items[i as usize - 1].path.clone()).collect();
    assert_eq!(paths, vec![src.join("a/b/c/deep.txt")]);
    assert_eq!(changed.bytes_received, 6);
    let expected = snapshot_tree(&repo, &src, &no_parent()).unwrap();
    assert_eq!(*changed.root.hash(), expected.snapshot.root);
}

#[test]
fn closed_directories_wait_for_their_files_while_adds_continue() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    assert_eq!(asm.add(0, dir("a")).unwrap(), Added::Other); // 1
    assert_eq!(asm.add(1, dir("b")).unwrap(), Added::Other); // 2
    assert_eq!(asm.add(2, file("x", 3)).unwrap(), Added::Wanted(3));
    assert_eq!(asm.add(1, file("y", 2)).unwrap(), Added::Wanted(4)); // closes b
    assert_eq!(asm.add(0, file("z", 1)).unwrap(), Added::Wanted(5)); // closes a
    send(&mut asm, 3, b"xxx");
    let done = asm.completed_files();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, b"a/b/x");
    assert_eq!(done[0].1.size, 3);
    assert!(asm.completed_files().is_empty(), "drained");
    assert_eq!(asm.add(0, dir("zz")).unwrap(), Added::Other); // 6
    send(&mut asm, 4, b"yy");
    assert_eq!(asm.add(6, file("w", 4)).unwrap(), Added::Wanted(7));
    send(&mut asm, 5, b"z");
    send(&mut asm, 7, b"wwww");
    let tree = asm.finish().unwrap();
    writer.finish().unwrap();
    assert_eq!((tree.files, tree.dirs, tree.bytes), (4, 3, 10));
    let root = repo.load_tree(tree.root).unwrap();
    let names: Vec<_> = root.entries().iter().map(Entry::name_lossy).collect();
    assert_eq!(names, ["a", "z", "zz"]);
    let Content::Tree(a) = root.get(b"a").unwrap().content else {
        panic!("a is a directory")
    };
    let a = repo.load_tree(a).unwrap();
    let Content::Tree(b) = a.get(b"b").unwrap().content else {
        panic!("b is a directory")
    };
    assert_eq!(repo.load_tree(b).unwrap().get(b"x").unwrap().size, 3);
}

#[test]
fn bad_names_are_refused_naming_the_path() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    asm.add(0, dir("d")).unwrap();
    for name in [&b""[..], b".", b"..", b"a/b", b"nul\0"] {
        let msg = invalid(asm.add(1, Entry::new(name.to_vec(), EntryKind::File)));
        assert!(msg.starts_with("d/"), "{msg}");
    }
    let long = vec![b'n'; 65_536];
    assert!(invalid(asm.add(1, Entry::new(long, EntryKind::File))).contains("65536"));
    assert_eq!(
        asm.add(1, Entry::new(vec![b'n'; 65_535], EntryKind::File)).unwrap(),
        Added::Reused
    );
    let mut bad_time = file("t", 0);
    bad_time.mtime.nsec = 1_000_000_000;
    invalid(asm.add(0, bad_time));
    let mut bad_xattr = file("x", 0);
    bad_xattr.xattrs.push((b"user.big".to_vec(), vec![0; 64 * 1024 + 1]));
    invalid(asm.add(0, bad_xattr));
    assert_eq!(asm.next_index(), 3, "refused entries take no index");
}

#[test]
fn names_must_strictly_increase_and_parents_be_open() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    asm.add(0, dir("b")).unwrap(); // 1
    assert!(invalid(asm.add(0, file("a", 0))).contains("increasing"));
    assert!(invalid(asm.add(0, dir("b"))).contains("increasing"), "duplicate");
    asm.add(1, file("f", 0)).unwrap(); // 2
    assert!(
        invalid(asm.add(2, file("g", 0))).contains("not an open directory"),
        "a file"
    );
    assert!(
        invalid(asm.add(9, file("g", 0))).contains("not an open directory"),
        "unknown"
    );
    asm.add(0, dir("c")).unwrap(); // 3, closes b
    assert!(
        invalid(asm.add(1, file("g", 0))).contains("not an open directory"),
        "closed"
    );
    asm.add(3, file("a", 0)).unwrap();
    asm.add(0, file("d", 0)).unwrap();
    asm.finish().unwrap();
}

#[test]
fn file_content_must_come_in_order_and_match_its_size() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    assert_eq!(asm.add(0, file("a", 5)).unwrap(), Added::Wanted(1));
    assert_eq!(asm.add(0, file("b", 5)).unwrap(), Added::Wanted(2));
    invalid(asm.begin_file(2));
    invalid(asm.begin_file(7));
    invalid(asm.file_data(b"x"));
    asm.begin_file(1).unwrap();
    invalid(asm.begin_file(2));
    invalid(asm.end_file(2, 0));
    asm.file_data(b"abc").unwrap();
    assert!(invalid(asm.end_file(1, 5)).contains("5 bytes announced but 3 received"));
    // The file stays wanted and can be sent again; the received size wins.
    asm.begin_file(1).unwrap();
    asm.file_data(b"abcd").unwrap();
    asm.end_file(1, 4).unwrap();
    invalid(asm.begin_file(1));
    assert!(invalid(asm.finish()).contains("file 2"), "b never arrived");
}

#[test]
fn failed_files_are_left_out_and_listed() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    asm.add(0, dir("d")).unwrap();
    asm.add(1, file("a", 5)).unwrap(); // 2
    asm.add(1, file("b", 5)).unwrap(); // 3
    asm.add(0, file("e", 2)).unwrap(); // 4
    asm.begin_file(2).unwrap();
    asm.file_data(b"ab").unwrap();
    invalid(asm.fail_file(3, "busy".into()));
    asm.fail_file(2, "vanished".into()).unwrap();
    asm.fail_file(4, "denied".into()).unwrap();
    invalid(asm.fail_file(4, "again".into()));
    send(&mut asm, 3, b"bbbbb");
    asm.skip("d/unreadable".into(), "permission denied".into());
    let tree = asm.finish().unwrap();
    writer.finish().unwrap();
    assert_eq!(tree.files, 1);
    let skipped: Vec<_> = tree.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped, ["d/a", "e", "d/unreadable"]);
    let root = repo.load_tree(tree.root).unwrap();
    assert!(root.get(b"e").is_none());
    let Content::Tree(d) = root.get(b"d").unwrap().content else {
        panic!("d is a directory")
    };
    let names: Vec<_> = repo
        .load_tree(d)
        .unwrap()
        .entries()
        .iter()
        .map(Entry::name_lossy)
        .collect();
    assert_eq!(names, ["b"]);
    let (_, snap) = tree
        .commit(&repo, &Labels::default(), None, "/x".into(), &repo_stats())
        .unwrap();
    assert!(!snap.is_complete());
    assert_eq!(snap.skipped, 3);
}

#[test]
fn resumed_files_are_not_sent_again() {
    let (tmp, repo) = fresh();
    let src = tmp.path().join("src");
    make_tree(&src);
    let items = walk(&src);
    // A first attempt receives the first wanted file, checkpoints, and breaks.
    let journal: HashMap<Vec<u8>, Entry> = {
        let writer = BlobWriter::new(&repo).unwrap();
        let mut asm = TreeAssembler::new(&writer, None).unwrap();
        let mut wanted = Vec::new();
        for item in &items {
            if let Added::Wanted(i) = asm.add(item.parent, item.entry.clone()).unwrap() {
                wanted.push(i);
            }
        }
        let first = wanted[0];
        send(
            &mut asm,
            first,
            &std::fs::read(&items[first as usize - 1].path).unwrap(),
        );
        writer.flush().unwrap();
        asm.completed_files().into_iter().collect()
    };
    assert_eq!(journal.len(), 1);
    let path = journal.keys().next().unwrap().clone();
    // A journal entry whose content the vault lacks is not trusted.
    let mut forged = journal.clone();
    forged.values_mut().for_each(|e| {
        e.content = Content::Inline(vec![crate::format::tree::ChunkRef {
            id: ChunkId::new(crate::id::Hash32::from_bytes([7; 32])),
            len: 1,
        }]);
    });
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap().with_resumed(forged);
    let wanted = push_all(&mut asm, &items);
    assert_eq!(wanted.len(), 5);
    drop(asm);
    drop(writer);

    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap().with_resumed(journal);
    let wanted = push_all(&mut asm, &items);
    assert_eq!(wanted.len(), 4, "the resumed file is not wanted");
    let completed: Vec<_> = asm.completed_files().into_iter().map(|(p, _)| p).collect();
    assert!(
        completed.contains(&path),
        "resumed files are reported again for the journal"
    );
    let tree = asm.finish().unwrap();
    writer.finish().unwrap();
    assert_eq!((tree.files_reused, tree.files_empty), (1, 1));
    let expected = snapshot_tree(&repo, &src, &no_parent()).unwrap();
    assert_eq!(*tree.root.hash(), expected.snapshot.root);
}

#[test]
fn memory_held_for_entries_is_limited() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    let long = |i: u32| {
        let mut name = format!("{i:08}").into_bytes();
        name.resize(60_000, b'x');
        Entry::new(name, EntryKind::Symlink)
    };
    let refused = (0..2_000).map(long).map(|e| asm.add(0, e)).find_map(Result::err);
    let err = refused.expect("one directory cannot hold unbounded entries");
    assert!(matches!(err, crate::Error::LimitExceeded(_)), "{err}");
    for i in 0..(MAX_KEPT_SKIPS as u32 + 5) {
        asm.skip(format!("s{i}"), "unreadable".into());
    }
    let tree = asm.finish().unwrap();
    assert_eq!(tree.skipped.len(), MAX_KEPT_SKIPS);
    assert_eq!(tree.skipped_beyond, 5);
}

#[test]
fn nesting_is_limited() {
    let (_tmp, repo) = fresh();
    let writer = BlobWriter::new(&repo).unwrap();
    let mut asm = TreeAssembler::new(&writer, None).unwrap();
    for depth in 0..MAX_DEPTH as u64 {
        asm.add(depth, dir("d")).unwrap();
    }
    assert!(invalid(asm.add(MAX_DEPTH as u64, dir("d"))).contains("deeper"));
    asm.add(MAX_DEPTH as u64, file("f", 0)).unwrap();
    let tree = asm.finish().unwrap();
    assert_eq!(tree.dirs, MAX_DEPTH as u64);
}

#[test]
fn flush_makes_blobs_durable_while_the_writer_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let backend: Arc<MemoryBackend> = Arc::new(MemoryBackend::new());
    let repo = init(backend.clone(), &tmp.path().join("cache"));
    let writer = BlobWriter::new(&repo).unwrap();
    let first = noise(1000, 3);
    let first_id = repo.chunk_id(&first);
    writer.store(BlobKind::Chunk, first_id.into(), &first).unwrap();
    assert_eq!(
        writer.stored_len(BlobKind::Chunk, &first_id.into()).unwrap(),
        Some(1000)
    );
    assert_eq!(writer.stored_len(BlobKind::Tree, &first_id.into()).unwrap(), None);
    assert!(!repo.index().contains(&first_id.into()).unwrap());
    writer.flush().unwrap();
    assert!(repo.index().contains(&first_id.into()).unwrap());
    assert_eq!(writer.stats().packs, 1);
    writer.flush().unwrap();
    assert_eq!(writer.stats().packs, 1, "an empty flush writes nothing");
    let second = noise(1000, 4);
    let second_id = repo.chunk_id(&second);
    writer.store(BlobKind::Chunk, second_id.into(), &second).unwrap();
    // Dropped without finish: what was flushed stays, the rest is abandoned.
    drop(writer);
    let segments = backend.list("index/").unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let other = Repository::open(backend.clone(), &tmp.path().join("cache2"), PW).unwrap();
    assert_eq!(other.read_chunk(first_id).unwrap(), first);
    assert!(!other.index().contains(&BlobId::from(second_id)).unwrap());
}

fn volume_bytes(blocks: u64, tail: u64) -> Vec<u8> {
    let mut v = vec![0u8; (blocks * BLOCK + tail) as usize];
    for (i, b) in [0u64, 3, 4].into_iter().enumerate() {
        let off = (b * BLOCK) as usize;
        v[off..off + BLOCK as usize].copy_from_slice(&noise(BLOCK as usize, i as u64 + 10));
    }
    let last = v.len() - 10;
    v[last..].copy_from_slice(b"tail bytes");
    v
}

fn block(v: &[u8], i: u64) -> &[u8] {
    let start = (i * BLOCK) as usize;
    &v[start..(start + BLOCK as usize).min(v.len())]
}

fn restore(repo: &Repository, tmp: &Path, id: crate::id::SnapshotId) -> Vec<u8> {
    let out = tmp.join(format!("{id}.img"));
    restore_block(repo, id, &out, &BlockRestoreOptions::default()).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn volumes_build_from_pushed_blocks_and_inherit() {
    let (tmp, repo) = fresh();
    let v1 = volume_bytes(8, 1000);
    let size = v1.len() as u64;
    let writer = BlobWriter::new(&repo).unwrap();
    let mut b = VolumeBuilder::new(&writer, size, None).unwrap();
    assert_eq!(b.block_count(), 9);
    assert_eq!(b.block_len(8), 1000);
    for i in 0..b.block_count() {
        b.data(i, block(&v1, i)).unwrap();
    }
    let meta = Entry::new(b"disk.img".to_vec(), EntryKind::File);
    let labels = Labels {
        hostname: Some("hv-1".into()),
        ..Labels::default()
    };
    let first = b.finish(&labels, meta.clone(), "/dev/vg/disk".into()).unwrap();
    assert_eq!(first.counts.blocks, 9);
    assert_eq!(first.counts.holes, 5);
    assert_eq!(first.counts.sent, 9);
    assert_eq!(first.snapshot.hostname, "hv-1");
    assert_eq!(restore(&repo, tmp.path(), first.id), v1);

    // The wire digest of a sent block now leads to its chunk.
    let key = wire_digest_key(&repo);
    assert_eq!(key, wire_digest_key(&repo));
    let id3 = repo.chunk_id(block(&v1, 3));
    assert_eq!(
        repo.index().wire_digest(&wire_digest(&key, block(&v1, 3))).unwrap(),
        Some(id3)
    );
    assert_eq!(
        repo.index().wire_digest(&wire_digest(&key, b"never sent")).unwrap(),
        None
    );
    assert_ne!(*wire_digest(&key, block(&v1, 3)).as_bytes(), *id3.as_bytes());

    // Second version: block 0 changes, block 1 becomes block 3's bytes, 4 becomes a hole.
    let mut v2 = v1.clone();
    v2[5] ^= 1;
    let b3 = block(&v1, 3).to_vec();
    v2[BLOCK as usize..2 * BLOCK as usize].copy_from_slice(&b3);
    v2[4 * BLOCK as usize..5 * BLOCK as usize].fill(0);
    let mut b = VolumeBuilder::new(&writer, size, Some((first.id, &first.snapshot))).unwrap();
    b.data(0, block(&v2, 0)).unwrap();
    b.known(1, id3).unwrap();
    b.inherit(2).unwrap();
    b.inherit(3).unwrap();
    b.hole(4).unwrap();
    for i in 5..9 {
        b.inherit(i).unwrap();
    }
    let second = b.finish(&labels, meta, "/dev/vg/disk".into()).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_eq!(
        (second.counts.inherited, second.counts.known, second.counts.sent),
        (6, 1, 1)
    );
    writer.finish().unwrap();
    assert_eq!(restore(&repo, tmp.path(), second.id), v2);
}

#[test]
fn volume_blocks_are_checked() {
    let (_tmp, repo) = fresh();
    let v = volume_bytes(5, 0);
    let size = v.len() as u64;
    let writer = BlobWriter::new(&repo).unwrap();
    let mut b = VolumeBuilder::new(&writer, size, None).unwrap();
    invalid(b.data(1, block(&v, 1)));
    invalid(b.inherit(0));
    invalid(b.data(0, &block(&v, 0)[1..]));
    invalid(b.known(0, repo.chunk_id(b"not stored")));
    let unstored_len = repo.chunk_id(&block(&v, 0)[..100]);
    invalid(b.known(0, unstored_len));
    let id0 = b.data(0, block(&v, 0)).unwrap();
    // A chunk this writer stored but has not packed yet counts as known.
    b.known(1, id0).unwrap();
    b.hole(2).unwrap();
    invalid(b.hole(2));
    b.hole(3).unwrap();
    b.hole(4).unwrap();
    invalid(b.hole(5));
    let meta = Entry::new(b"v".to_vec(), EntryKind::File);
    let done = b.finish(&Labels::default(), meta.clone(), "v".into()).unwrap();

    let incomplete = VolumeBuilder::new(&writer, size, None).unwrap();
    assert!(invalid(incomplete.finish(&Labels::default(), meta, "v".into())).contains("5 blocks, 0"));
    assert!(invalid(VolumeBuilder::new(&writer, size + 1, Some((done.id, &done.snapshot)))).contains("size"));
    let tree_snap = {
        let mut s = done.snapshot.clone();
        s.source = crate::format::snapshot::SourceKind::Tree;
        s
    };
    invalid(VolumeBuilder::new(&writer, size, Some((done.id, &tree_snap))));
    let empty = VolumeBuilder::new(&writer, 0, None).unwrap();
    assert_eq!(empty.block_count(), 0);
    let e = empty
        .finish(
            &Labels::default(),
            Entry::new(b"e".to_vec(), EntryKind::File),
            "e".into(),
        )
        .unwrap();
    assert_eq!(e.content, Content::None);
    writer.finish().unwrap();
}
