//! The metadata cache of a bucket store: once snapshots and metadata packs have been read,
//! listing and diffing read neither again from the bucket; a deleted or damaged local copy
//! is read again from the store.

use std::fs;

use super::Moto;
use crate::common::{files_under, id_of, sample_tree};

/// Object GETs (not listings) of `kind/` keys among request lines.
fn gets_of(lines: &[String], kind: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("GET ") && l.contains(&format!("/{kind}/")) && !l.contains("list-type"))
        .count()
}

#[test]
fn listing_and_diffing_read_metadata_from_the_state_directory() {
    let moto = Moto::start(&["--record"]);
    let (repo, _bucket) = moto.repo("meta-cache", "vault");
    repo.init_here();
    let src = repo.scratch("src");
    sample_tree(&src, 71);
    let a = id_of(&repo.snapshot(&src, &[]));
    fs::write(src.join("new-notebook.ipynb"), "{\"cells\": []}\n").unwrap();
    let b = id_of(&repo.snapshot(&src, &[]));

    let read = |what: &str| {
        let before = moto.requests().len();
        assert_eq!(repo.snapshots().len(), 2, "{what}");
        let diff = repo.ok(&["diff", &a, &b]);
        assert!(diff.to_string().contains("new-notebook.ipynb"), "{what}: {diff}");
        moto.requests()[before..].to_vec()
    };
    read("first read");
    let again = read("second read");
    assert_eq!(
        gets_of(&again, "snapshots"),
        0,
        "snapshots came from the cache: {again:#?}"
    );
    assert_eq!(gets_of(&again, "meta"), 0, "trees came from the cache: {again:#?}");

    // A damaged copy is noticed, dropped and read again from the bucket.
    let objects = repo.scratch("cache");
    let copies: Vec<_> = files_under(&objects)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("/objects/"))
        .collect();
    assert!(
        copies
            .iter()
            .any(|f| f.to_string_lossy().contains("/objects/snapshots/")),
        "{copies:#?}"
    );
    assert!(
        copies.iter().any(|f| f.to_string_lossy().contains("/objects/meta/")),
        "{copies:#?}"
    );
    for copy in &copies {
        let mut bytes = fs::read(copy).unwrap();
        for at in (0..bytes.len()).step_by(64) {
            bytes[at] ^= 0x20;
        }
        fs::write(copy, &bytes).unwrap();
    }
    let healed = read("damaged copies");
    assert!(gets_of(&healed, "snapshots") >= 2, "{healed:#?}");
    assert!(gets_of(&healed, "meta") >= 1, "{healed:#?}");
    assert_eq!(gets_of(&read("healed copies"), "snapshots"), 0);

    // The state directory can go at any time.
    fs::remove_dir_all(&objects).unwrap();
    let cold = read("no state directory");
    assert!(gets_of(&cold, "snapshots") >= 2, "{cold:#?}");
}
