//! Crash safety: `amber snapshot` killed with SIGKILL at any moment leaves a consistent
//! store, and the next snapshot reuses the packs the killed one managed to write: on the
//! local store and on S3.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Repo, Rng, assert_same_tree, id_of, num, p, sample_tree, write_random};
use crate::stores::{Store, on_every_store};

const MIB: u64 = 1024 * 1024;
/// 40 files of 8 MiB: 320 MiB of random data, about 2 s or more to snapshot here.
const FILES: u64 = 40;
const FILE_SIZE: u64 = 8 * MIB;
/// When each attempt is killed, after its start.
const KILL_AFTER_MS: [u64; 8] = [50, 150, 300, 600, 1000, 1500, 2200, 3000];

/// Runs `amber snapshot <dir> --force` and kills it after `delay` unless it exited first.
/// Returns `true` when it was killed, `false` when it exited 0 before.
fn snapshot_killed_after(repo: &Repo, dir: &std::path::Path, delay: Duration) -> bool {
    let mut child = repo
        .command(&["snapshot", p(dir), "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn amber");
    let deadline = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "an attempt that was not killed failed: {status}");
            return false;
        }
        if Instant::now() >= deadline {
            child.kill().expect("SIGKILL");
            let status = child.wait().expect("wait");
            // It may have exited on its own between the last check and the kill.
            if status.success() {
                return false;
            }
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

on_every_store! {
    killed_snapshots_leave_the_store_consistent => killed_snapshots_on,
}

fn killed_snapshots_on(store: Store) {
    let repo = store.repo("crash");
    let small = repo.scratch("small");
    sample_tree(&small, 20);
    let earlier = id_of(&repo.snapshot(&small, &[]));
    let big = repo.scratch("big");
    let mut rng = Rng::new(0xC4A5);
    for i in 0..FILES {
        write_random(&big.join(format!("d{}/f{i:02}.bin", i % 4)), FILE_SIZE + i, &mut rng);
    }
    let tree_bytes: u64 = (0..FILES).map(|i| FILE_SIZE + i).sum();

    let data_before = repo.size_of("data");
    let mut complete = 1usize;
    let mut killed = 0;
    let mut killed_wrote_packs = false;
    for (round, ms) in KILL_AFTER_MS.into_iter().enumerate() {
        let data0 = repo.size_of("data");
        let was_killed = snapshot_killed_after(&repo, &big, Duration::from_millis(ms));
        let list = repo.snapshots();
        let grew = repo.size_of("data") - data0;
        eprintln!("crash: attempt {round} killed after {ms} ms: {was_killed}; data/ grew {grew} bytes");
        if was_killed {
            killed += 1;
            killed_wrote_packs |= grew > 0;
            // The commit is one atomic write at the very end; a kill can land after it and
            // before the exit. Then the snapshot must be whole.
            if list.len() == complete + 1 {
                let last = list.last().unwrap();
                assert_eq!(
                    num(last, "files"),
                    FILES,
                    "a snapshot committed by a killed run is partial: {last}"
                );
                assert_eq!(num(last, "bytes"), tree_bytes, "{last}");
                complete += 1;
            }
        } else {
            complete += 1;
        }
        assert_eq!(
            list.len(),
            complete,
            "after a kill at {ms} ms, only the snapshots that finished are listed: {list:?}"
        );
        for s in &list {
            assert_eq!(s["complete"], true, "{s}");
        }
        let dest = repo.scratch(&format!("earlier-{round}"));
        repo.restore(&earlier, &dest);
        assert_same_tree(&small, &dest);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    assert!(killed >= 3, "only {killed} attempts were killed: make the tree bigger");

    let written_before = repo.size_of("data") - data_before;
    let last = repo.snapshot(&big, &["--force"]);
    let new = num(&last, "bytes_new");
    eprintln!("crash: attempts wrote {written_before} bytes to data/; the final snapshot {new} bytes");
    assert_eq!(num(&last, "files"), FILES, "{last}");
    if killed_wrote_packs {
        assert!(new < tree_bytes, "packs of killed attempts should be reused: {last}");
    }
    // Every chunk in a pack under data/ is reused, none stored twice: what the attempts
    // wrote plus what this snapshot adds is the tree once (plus sealing and metadata).
    assert!(
        new + written_before <= tree_bytes + tree_bytes / 100 + MIB,
        "attempts wrote {written_before} bytes to data/, the last snapshot {new} more, for a {tree_bytes}-byte tree"
    );
    assert_eq!(repo.snapshots().len(), complete + 1);
    let dest = repo.scratch("restored");
    repo.restore(&id_of(&last), &dest);
    assert_same_tree(&big, &dest);
}
