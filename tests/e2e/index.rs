//! The index is a cache: deleting it loses nothing, and `index rebuild` recreates it from
//! the packs alone.

use std::fs;

use crate::common::{Repo, Rng, assert_same_tree, files_under, num, sample_tree, write_random};

#[test]
fn deleted_cache_and_rebuilt_index_lose_nothing() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    sample_tree(&src, 40);
    let mut rng = Rng::new(0x1DE);
    write_random(&src.join("weights/w1.bin"), 5 * 1024 * 1024, &mut rng);
    write_random(&src.join("weights/w2.bin"), 6 * 1024 * 1024, &mut rng);
    repo.snapshot(&src, &[]);
    let cache = repo.path.join("cache");
    assert!(cache.is_dir(), "the index cache lives in <repo>/cache");

    fs::remove_dir_all(&cache).unwrap();
    assert_eq!(repo.snapshots().len(), 1);
    let dest = repo.scratch("after-delete");
    repo.restore("latest", &dest);
    assert_same_tree(&src, &dest);

    fs::remove_dir_all(&cache).unwrap();
    let packs = files_under(&repo.path.join("data")).len() + files_under(&repo.path.join("meta")).len();
    let v = repo.ok(&["index", "rebuild"]);
    assert_eq!(num(&v, "packs") as usize, packs, "every pack is read: {v}");
    assert!(num(&v, "blobs") > 0, "{v}");
    let again = repo.ok(&["index", "rebuild"]);
    assert_eq!(again, v, "a rebuild is repeatable");

    let dest = repo.scratch("after-rebuild");
    repo.restore("latest", &dest);
    assert_same_tree(&src, &dest);
    // The rebuilt index knows every blob: re-reading the tree stores nothing new.
    let forced = repo.snapshot(&src, &["--force"]);
    assert_eq!(num(&forced, "blobs_new"), 0, "{forced}");
}
