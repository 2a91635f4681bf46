//! Many writers, no locks: processes with state directories of their own ingest into one
//! vault in one bucket at the same time, and each sees what the others committed.

use std::fs;
use std::path::Path;

use amber_engine::backend::Backend;

use super::Moto;
use crate::common::{Rng, id_of, p, sample_tree, walk_tree, write_random};

const ROUNDS: usize = 20;

/// Round `r` of writer `w`: its base tree plus one new file per round so far.
fn grow(dir: &Path, w: u64, r: usize) {
    let mut rng = Rng::new(1000 * w + r as u64);
    write_random(
        &dir.join(format!("round-{r:02}.bin")),
        40_000 + 3_000 * r as u64,
        &mut rng,
    );
}

#[test]
fn two_writers_ingest_into_one_vault_for_twenty_rounds_and_a_third_sees_everything() {
    let moto = Moto::shared();
    let bucket = moto.bucket("writers");
    let first = moto.repo_at(&bucket, "vault");
    first.init_here();
    let second = moto.repo_at(&bucket, "vault");
    let writers = [&first, &second];
    let trees: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(w, repo)| {
            let dir = repo.scratch("env");
            sample_tree(&dir, 50 + w as u64);
            dir
        })
        .collect();

    // Each writer snapshots its environment after every round, both at once.
    let ids: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter()
            .zip(&trees)
            .enumerate()
            .map(|(w, (repo, dir))| {
                s.spawn(move || {
                    (0..ROUNDS)
                        .map(|r| {
                            grow(dir, w as u64, r);
                            let env = format!("env-{w}");
                            id_of(&repo.ok(&["--env", &env, "snapshot", p(dir)]))
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // A third process, with a state directory of its own, lists and restores them all.
    let third = moto.repo_at(&bucket, "vault");
    let listed: Vec<String> = third.snapshots().iter().map(id_of).collect();
    assert_eq!(listed.len(), 2 * ROUNDS, "{listed:?}");
    for (w, snaps) in ids.iter().enumerate() {
        for (r, id) in snaps.iter().enumerate() {
            assert!(listed.contains(id), "snapshot {r} of writer {w} is not listed");
        }
    }
    for (w, snaps) in ids.iter().enumerate() {
        for r in [0, ROUNDS / 2, ROUNDS - 1] {
            let out = third.scratch(&format!("out-{w}-{r}"));
            third.restore(&snaps[r], &out);
            let expected = third.scratch(&format!("expected-{w}-{r}"));
            sample_tree(&expected, 50 + w as u64);
            for k in 0..=r {
                grow(&expected, w as u64, k);
            }
            let restored: Vec<_> = walk_tree(&out).into_keys().collect();
            let wanted: Vec<_> = walk_tree(&expected).into_keys().collect();
            assert_eq!(restored, wanted, "writer {w} round {r}: other names");
            for k in 0..=r {
                let name = format!("round-{k:02}.bin");
                assert_eq!(
                    fs::read(out.join(&name)).unwrap(),
                    fs::read(expected.join(&name)).unwrap()
                );
            }
        }
    }
    // Both writers' later snapshots deduplicated against what the other stored: every
    // object is in the vault's prefix, and no lock object exists.
    let keys: Vec<String> = moto
        .backend(&bucket, "")
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(keys.iter().all(|k| k.starts_with("vault/")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("lock")), "{keys:?}");
}
