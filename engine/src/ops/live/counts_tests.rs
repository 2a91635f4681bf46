//! The counted live set is always the walked one: as snapshots of trees and layers come
//! and go, and below damage marks whose lost nodes are stored again.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::counted_live;
use crate::backend::memory::MemoryBackend;
use crate::format::blob::BlobKind;
use crate::format::tree::{Content, TreeNode};
use crate::id::{BlobId, SnapshotId, TreeId};
use crate::ops::ingest::{TreeOptions, snapshot_tree};
use crate::ops::live::live_blobs;
use crate::ops::tar::{TarOptions, snapshot_tar};
use crate::ops::tests::tar::member_for_tests;
use crate::ops::tests::{init, noise};
use crate::repo::Repository;
use crate::repo::layout::{pack_key, snapshot_key};
use crate::repo::writer::BlobWriter;

fn counted(repo: &Repository) -> super::LiveSet {
    counted_live(repo, &|_, _| {})
        .unwrap()
        .expect("a writable index keeps counts")
}

fn walked(repo: &Repository) -> HashSet<BlobId> {
    live_blobs(repo, &repo.snapshots().unwrap()).unwrap().blobs
}

fn assert_counts_match_walk(repo: &Repository, step: &str) {
    let live = counted(repo);
    assert_eq!(live.blobs, walked(repo), "{step}");
    assert_eq!(live.snapshots, repo.snapshot_ids().unwrap().len() as u64, "{step}");
}

fn forget(repo: &Repository, id: SnapshotId) {
    repo.backend().delete(&snapshot_key(&id)).unwrap();
}

fn layer(files: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, data) in files {
        member_for_tests(&mut t, name, data, b'0');
    }
    t.extend(vec![0u8; 1024]);
    t
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

#[test]
fn counts_follow_trees_and_layers_as_they_come_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    let src = tmp.path().join("src");
    let mut ids = Vec::new();
    for i in 0..6u64 {
        write(&src, "kept.bin", &noise(700_000, 1));
        write(
            &src,
            &format!("v{}.bin", i % 3),
            &noise(300_000 + 1000 * i as usize, 10 + i),
        );
        write(&src.join(format!("d{i}")), "small", &noise(100, i));
        ids.push(snapshot_tree(&repo, &src, &TreeOptions::default()).unwrap().id);
        if i % 2 == 0 {
            let shared = noise(400_000, 10 + i);
            let bytes = layer(&[(b"a/shared.bin", &shared), (b"a/own", &noise(5000, 100 + i))]);
            ids.push(
                snapshot_tar(&repo, &mut bytes.as_slice(), "l.tar", &TarOptions::default())
                    .unwrap()
                    .id,
            );
        }
        assert_counts_match_walk(&repo, &format!("after snapshot {i}"));
    }
    let again = counted(&repo);
    assert_eq!((again.walked, again.nodes_read), (0, 0), "nothing came or went");
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| n % 3 != 1) {
        forget(&repo, *id);
        assert_counts_match_walk(&repo, &format!("after forgetting {n}"));
    }
    for id in ids.iter().skip(1).step_by(3) {
        forget(&repo, *id);
    }
    let none = counted(&repo);
    assert!(
        none.blobs.is_empty(),
        "{} blobs left with no snapshot",
        none.blobs.len()
    );
}

/// A snapshot whose file content is marked damaged and whose chunk list is lost: the list
/// is counted unread; once it is stored again its chunks count too, and stay counted
/// after the snapshot that stored it again goes.
#[test]
fn a_lost_node_below_a_damage_mark_counts_its_children_once_it_is_stored_again() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(Arc::new(MemoryBackend::new()), &tmp.path().join("cache"));
    let src = tmp.path().join("src");
    write(&src, "big.bin", &noise(12_000_000, 7));
    let first = snapshot_tree(&repo, &src, &TreeOptions::default()).unwrap();
    let snap = repo.load_snapshot(first.id).unwrap();
    let tree = repo.load_tree(TreeId::new(snap.root)).unwrap();
    let Content::List { root: list, .. } = tree.entries()[0].content else {
        panic!("a chunk list: {:?}", tree.entries()[0].content)
    };
    let list = BlobId::from(list);
    let list_pack = repo.index().lookup(&list).unwrap().unwrap();

    let mut entries = tree.into_entries();
    for e in &mut entries {
        e.content = e.content.clone().into_damaged();
    }
    let writer = BlobWriter::new(&repo).unwrap();
    let marked_root = writer
        .store_meta(BlobKind::Tree, &TreeNode::new(entries).unwrap().encode())
        .unwrap();
    writer.finish().unwrap();
    let mut marked = snap.clone();
    marked.root = marked_root;
    if let Some(entry) = marked.root_entry.as_mut() {
        entry.content = Content::Tree(TreeId::new(marked_root));
    }
    marked.time_ns += 1;
    let marked_id = repo.commit_snapshot(&marked).unwrap();
    forget(&repo, first.id);
    assert_ne!(
        repo.index().lookup(&BlobId::new(marked_root)).unwrap().unwrap().pack,
        list_pack.pack
    );
    repo.backend()
        .delete(&pack_key(list_pack.pack_kind, &list_pack.pack))
        .unwrap();
    crate::repo::sync::sync_index(&repo).unwrap();
    assert_counts_match_walk(&repo, "the list lost");

    let again = snapshot_tree(&repo, &src, &TreeOptions::default()).unwrap();
    assert_counts_match_walk(&repo, "the list stored again");
    forget(&repo, again.id);
    let live = counted(&repo);
    assert_eq!(live.blobs, walked(&repo), "the snapshot that stored it again forgotten");
    assert!(
        live.blobs.len() > 3,
        "the marked file's chunks still count: {}",
        live.blobs.len()
    );
    assert_eq!(repo.snapshot_ids().unwrap(), vec![marked_id]);
}
