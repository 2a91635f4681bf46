//! Faults between Amber and S3: a throttling server, a connection dropped in the middle
//! of a multipart upload, a writer killed mid-upload. Each operation retries or fails
//! cleanly; nothing is half-committed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use amber_engine::backend::Backend;

use super::Moto;
use crate::common::{Rng, assert_same_tree, id_of, p, sample_tree, write_random};

#[test]
fn a_server_answering_503_to_every_third_request_is_retried_through() {
    let moto = Moto::start(&["--fail-every", "3"]);
    let (repo, _) = moto.repo("throttled", "v");
    repo.init_here();
    let dir = repo.scratch("env");
    sample_tree(&dir, 3);
    write_random(&dir.join("large.bin"), 40 << 20, &mut Rng::new(3));
    let snap = repo.snapshot(&dir, &[]);
    std::fs::remove_dir_all(repo.scratch("cache")).unwrap();
    let out = repo.scratch("out");
    repo.restore(&id_of(&snap), &out);
    assert_same_tree(&dir, &out);
    let (failed, _) = moto.faults();
    assert!(failed >= 10, "only {failed} requests were answered 503");
}

#[test]
fn a_connection_dropped_mid_multipart_is_retried_and_the_pack_is_whole() {
    let moto = Moto::start(&["--drop-part", "2"]);
    let (repo, bucket) = moto.repo("dropped", "v");
    repo.init_here();
    let dir = repo.scratch("env");
    write_random(&dir.join("large.bin"), 40 << 20, &mut Rng::new(4));
    let snap = repo.snapshot(&dir, &[]);
    let packs = moto.backend(&bucket, "v").list("data/").unwrap();
    assert!(
        packs.iter().any(|o| o.size > 16 << 20),
        "no pack went up in parts: {packs:?}"
    );
    std::fs::remove_dir_all(repo.scratch("cache")).unwrap();
    let out = repo.scratch("out");
    repo.restore(&id_of(&snap), &out);
    assert_same_tree(&dir, &out);
    assert_eq!(moto.faults().1, 1, "the connection was not dropped");
}

#[test]
fn a_writer_killed_mid_upload_leaves_no_snapshot_and_no_lock_and_the_next_one_works() {
    let moto = Moto::shared();
    let (repo, bucket) = moto.repo("killed", "v");
    repo.init_here();
    let dir = repo.scratch("env");
    sample_tree(&dir, 5);
    for i in 0..4 {
        write_random(&dir.join(format!("large-{i}.bin")), 30 << 20, &mut Rng::new(10 + i));
    }
    let mut child = repo
        .command(&["snapshot", p(&dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = moto.backend(&bucket, "v");
    let start = Instant::now();
    while store.list("data/").unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(120), "no pack was ever uploaded");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the snapshot finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        store.list("snapshots/").unwrap().is_empty(),
        "a killed snapshot committed"
    );
    assert!(repo.snapshots().is_empty());

    // Another process (a state directory of its own) and the same one both go on.
    let snap = repo.snapshot(&dir, &[]);
    let out = repo.scratch("out");
    repo.restore(&id_of(&snap), &out);
    assert_same_tree(&dir, &out);
    let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert!(
        !keys.iter().any(|k| k.contains("lock") || k.starts_with("tmp/")),
        "{keys:?}"
    );
}

/// A writer killed in the middle of an upload in parts leaves the upload open, and the
/// store keeps (and bills) its parts: compaction aborts the uploads begun longer than the
/// grace period ago (here made by hand, as a killed writer leaves them), a dry run only
/// counts them, and the vault's data is untouched.
#[test]
fn compaction_aborts_uploads_in_parts_that_a_killed_writer_left_open() {
    let moto = Moto::shared();
    let (repo, bucket) = moto.repo("uploads", "v");
    repo.init_here();
    let src = repo.scratch("src");
    sample_tree(&src, 6);
    let id = id_of(&repo.snapshot(&src, &[]));
    let store = moto.backend(&bucket, "v");
    let key = format!("data/ab/{}", "ab".repeat(32));
    let begun = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &format!("{}/{bucket}/v/{key}?uploads", moto.endpoint),
        ])
        .output()
        .unwrap();
    assert!(begun.status.success(), "{begun:?}");
    let open = store.pending_uploads("").unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].key, key);
    assert!(open[0].started.is_some(), "{open:?}");

    let dry = repo.ok(&["compact", "--dry-run", "--grace", "0s"]);
    assert!(dry["deleted_temp"].as_u64().unwrap() >= 1, "{dry}");
    assert_eq!(store.pending_uploads("").unwrap().len(), 1, "a dry run aborts nothing");
    let young = repo.ok(&["compact", "--grace", "1h"]);
    assert_eq!(young["deleted_temp"], 0, "younger than the grace period: {young}");
    assert_eq!(store.pending_uploads("").unwrap().len(), 1);
    let done = repo.ok(&["compact", "--grace", "0s"]);
    assert!(done["deleted_temp"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(store.pending_uploads("").unwrap(), Vec::new());
    let dest = repo.scratch("restored");
    repo.ok(&["restore", &id, p(&dest)]);
    assert_same_tree(&src, &dest);
}
