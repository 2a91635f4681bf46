//! Deduplication: the same content is stored once, whatever path or snapshot it comes from.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::common::{Repo, Rng, assert_same_tree, copy_tree, id_of, num, write_random, write_text};

const MIB: u64 = 1024 * 1024;
/// Files edited in the copy, and how much is appended to each.
const EDITED: [&str; 3] = ["notebooks/a.ipynb", "notebooks/b.ipynb", "lib/model/weights.npy"];
const APPENDED: u64 = 64 * 1024;

/// About 53 MiB: twelve 4 MiB binaries, three 1.5 MiB files that get edited, 300 small
/// text files in ten directories, and a few symlinks.
fn build_tree(root: &Path) {
    let mut rng = Rng::new(0xDED0);
    for i in 0..12 {
        write_random(
            &root.join(format!("lib/site-packages/blob{i:02}.so")),
            4 * MIB + i * 777,
            &mut rng,
        );
    }
    for e in EDITED {
        write_random(&root.join(e), 3 * MIB / 2, &mut rng);
    }
    for d in 0..10 {
        for f in 0..30 {
            write_text(&root.join(format!("src/pkg{d}/m{f}.py")), 500 + 97 * f, &mut rng);
        }
    }
    std::os::unix::fs::symlink("lib/site-packages", root.join("site")).unwrap();
    std::os::unix::fs::symlink("../../notebooks/a.ipynb", root.join("src/pkg0/nb")).unwrap();
}

#[test]
fn identical_and_edited_trees_deduplicate() {
    let repo = Repo::init();
    let src = repo.scratch("env");
    build_tree(&src);

    let first = repo.snapshot(&src, &[]);
    let size = num(&first, "bytes");
    assert!(size > 50 * MIB, "the tree should be over 50 MiB: {first}");
    // Random content does not compress: the first snapshot stores nearly all of it (the
    // small text files compress).
    assert!(
        num(&first, "bytes_new") >= size / 100 * 95,
        "first snapshot stores everything: {first}"
    );
    let (data1, store1) = (repo.size_of("data"), repo.listing().values().sum::<u64>());

    // Same tree again, reading every file: nothing new may be stored (tree nodes encode
    // the same entries, chunks have the same ids), so well under 1%.
    let forced = repo.snapshot(&src, &["--force"]);
    assert_eq!(
        forced["parent"],
        serde_json::Value::Null,
        "--force uses no parent: {forced}"
    );
    assert_eq!(
        num(&forced, "bytes_read"),
        size,
        "--force re-reads every byte: {forced}"
    );
    assert!(
        num(&forced, "bytes_new") < size / 100,
        "re-snapshot stored over 1%: {forced}"
    );
    assert_eq!(num(&forced, "blobs_new"), 0, "an identical tree adds no blob: {forced}");
    let (data2, store2) = (repo.size_of("data"), repo.listing().values().sum::<u64>());
    assert!(
        data2 - data1 < size / 100,
        "data/ grew by {} bytes for an identical tree",
        data2 - data1
    );
    assert!(
        store2 - store1 < size / 100,
        "the store grew by {} bytes for an identical tree",
        store2 - store1
    );

    // Unchanged tree with the automatic parent: nothing is even read.
    let quick = repo.snapshot(&src, &[]);
    assert_eq!(quick["parent"].as_str(), Some(id_of(&forced).as_str()), "{quick}");
    assert_eq!(num(&quick, "bytes_read"), 0, "an unchanged tree is not read: {quick}");
    assert_eq!(num(&quick, "files_unchanged"), num(&quick, "files"), "{quick}");
    assert_eq!(num(&quick, "blobs_new"), 0, "{quick}");

    // A copy elsewhere with three files appended to: only their changed tail is new.
    let copy = repo.scratch("copy");
    copy_tree(&src, &copy);
    let mut rng = Rng::new(0xED17);
    let mut edited_size = 0;
    for e in EDITED {
        let mut tail = vec![0u8; APPENDED as usize];
        rng.fill(&mut tail);
        fs::OpenOptions::new()
            .append(true)
            .open(copy.join(e))
            .unwrap()
            .write_all(&tail)
            .unwrap();
        edited_size += fs::metadata(copy.join(e)).unwrap().len();
    }
    let data3 = repo.size_of("data");
    let edited = repo.snapshot(&copy, &["--force"]);
    let new = num(&edited, "bytes_new");
    // Appending changes only a file's last chunk(s) (content-defined boundaries before it
    // stay put), so at worst the three edited files are stored whole. Bound: their full
    // size plus 1 MiB for the tree nodes (every mtime differs in the copy) and the
    // 29-byte sealing overhead per blob. Without deduplication it would be the whole
    // 53 MiB tree; the appended random bytes themselves must be stored.
    let bound = edited_size + MIB;
    assert!(new <= bound, "edited copy stored {new} bytes, bound {bound}: {edited}");
    assert!(new >= 3 * APPENDED, "the appended bytes must be stored: {edited}");
    assert_eq!(num(&edited, "bytes_read"), size + 3 * APPENDED, "{edited}");
    let grew = repo.size_of("data") - data3;
    assert!(
        grew <= bound,
        "data/ grew by {grew} bytes for the edited copy, bound {bound}"
    );

    let dest = repo.scratch("restored");
    repo.restore(&id_of(&edited), &dest);
    assert_same_tree(&copy, &dest);
}
