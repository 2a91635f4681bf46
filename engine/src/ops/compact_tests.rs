//! Random sequences of snapshot, forget, compact and crash on a store that fails on
//! command (full disk, torn writes, failing reads and deletes, flipped bits): after every
//! step, exactly the snapshots that should exist are listed and each restores exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::backend::DynBackend;
use crate::backend::fault::{FaultPlan, Faulty};
use crate::backend::memory::MemoryBackend;
use crate::id::{SnapshotId, TreeId};
use crate::ops::compact::{CompactOptions, compact};
use crate::ops::forget::{Policy, forget};
use crate::ops::ingest::snapshot_tree;
use crate::ops::live::{counted_live, live_blobs};
use crate::ops::restore::{RestoreOptions, restore_tree};
use crate::ops::tests::{PW, init, noise};
use crate::ops::verify::{DataCheck, VerifyOptions, verify};
use crate::repo::Repository;

/// File name → content.
type Tree = BTreeMap<String, Vec<u8>>;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct World {
    tmp: tempfile::TempDir,
    plan: Arc<FaultPlan>,
    store: DynBackend,
    repo: Repository,
    caches: u32,
    src: Tree,
    expected: BTreeMap<SnapshotId, Tree>,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::default());
        let store: DynBackend = Arc::new(Faulty::new(Arc::new(MemoryBackend::new()), plan.clone()));
        let repo = init(store.clone(), &tmp.path().join("cache0"));
        World {
            tmp,
            plan,
            store,
            repo,
            caches: 0,
            src: Tree::new(),
            expected: BTreeMap::new(),
        }
    }

    /// A crash: the process and its index are gone; a new one opens the store.
    fn crash(&mut self) {
        self.caches += 1;
        let cache = self.tmp.path().join(format!("cache{}", self.caches));
        self.repo = Repository::open(self.store.clone(), &cache, PW).unwrap();
    }

    /// Changes one or two files (contents come back from a small pool, so blobs that a
    /// compaction found unused are wanted again) and snapshots, perhaps with a fault.
    fn snapshot(&mut self, rng: &mut Rng) {
        for _ in 0..=rng.below(2) {
            let file = rng.below(4);
            let variant = rng.below(5);
            let len = 50_000 + 70_000 * variant as usize;
            self.src.insert(format!("f{file}"), noise(len, file * 10 + variant));
        }
        let dir = self.tmp.path().join("src");
        write_tree(&dir, &self.src);
        let faulty = rng.below(3) == 0;
        if faulty {
            self.plan.fail_puts_after(rng.below(6), rng.below(2) == 0);
        }
        let result = snapshot_tree(&self.repo, &dir, &crate::ops::ingest::TreeOptions::default());
        self.plan.disarm();
        match result {
            Ok(s) => {
                self.expected.insert(s.id, self.src.clone());
            }
            Err(e) => assert!(faulty, "a snapshot without faults failed: {e}"),
        }
    }

    fn forget(&mut self, rng: &mut Rng) {
        let policy = Policy {
            last: 1 + rng.below(3) as u32,
            ..Policy::default()
        };
        let report = forget(&self.repo, &policy, false).unwrap();
        for (id, _) in report.removed {
            self.expected.remove(&id);
        }
    }

    fn compact(&mut self, rng: &mut Rng) {
        let faulty = rng.below(2) == 0;
        if faulty {
            match rng.below(3) {
                0 => self.plan.fail_puts_after(rng.below(4), rng.below(2) == 0),
                1 => self.plan.fail_deletes_after(rng.below(4)),
                _ => self.plan.fail_reads_after(rng.below(40)),
            }
        }
        let opts = CompactOptions {
            grace_secs: 0,
            max_unused: 0.01,
            ..CompactOptions::default()
        };
        let result = compact(&self.repo, &opts);
        self.plan.disarm();
        if let Err(e) = result {
            assert!(faulty, "a compaction without faults failed: {e}");
        }
    }

    /// Exactly the expected snapshots are listed, each restores exactly, and the vault's
    /// structure verifies.
    fn check(&self, step: usize) {
        let listed: Vec<SnapshotId> = self.repo.snapshots().unwrap().into_iter().map(|(id, _)| id).collect();
        let want: Vec<SnapshotId> = self.expected.keys().copied().collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, want, "step {step}: listed snapshots");
        for (id, tree) in &self.expected {
            let snap = self.repo.load_snapshot(*id).unwrap();
            let dest = self.tmp.path().join(format!("r{step}-{id}"));
            restore_tree(&self.repo, TreeId::new(snap.root), &dest, &RestoreOptions::default())
                .unwrap_or_else(|e| panic!("step {step}: snapshot {id} does not restore: {e}"));
            assert_eq!(&read_tree(&dest), tree, "step {step}: snapshot {id}");
            std::fs::remove_dir_all(&dest).unwrap();
        }
        let report = verify(&self.repo, &VerifyOptions::default()).unwrap();
        assert_no_snapshot_affected(&report, step);
        let counted = counted_live(&self.repo, &|_, _| {}).unwrap().expect("counts kept");
        let walked = live_blobs(&self.repo, &self.repo.snapshots().unwrap()).unwrap();
        assert_eq!(counted.blobs, walked.blobs, "step {step}: counted and walked live sets");
    }
}

/// A torn write leaves a damaged object that verify rightly reports; what matters is that
/// no snapshot needs anything damaged or lost.
fn assert_no_snapshot_affected(report: &crate::ops::verify::VerifyReport, step: usize) {
    assert!(
        report.damaged_snapshots.is_empty(),
        "step {step}: {:?}",
        report.problems
    );
    for p in &report.problems {
        assert_eq!(p.affected_total, 0, "step {step}: {p:?}");
    }
}

fn write_tree(dir: &Path, tree: &Tree) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, data) in tree {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

fn read_tree(dir: &Path) -> Tree {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn random_sequences_of_snapshot_forget_compact_and_crash_lose_nothing() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut world = World::new();
        for step in 0..16 {
            match rng.below(5) {
                0 | 1 => world.snapshot(&mut rng),
                2 => world.forget(&mut rng),
                _ => world.compact(&mut rng),
            }
            if rng.below(4) == 0 {
                world.crash();
            }
            world.check(step);
        }
        // A last compaction without faults finishes what the failed ones left.
        let clean = CompactOptions {
            grace_secs: 0,
            ..CompactOptions::default()
        };
        compact(&world.repo, &clean).unwrap();
        let report = verify(
            &world.repo,
            &VerifyOptions {
                read_data: DataCheck::All,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert_no_snapshot_affected(&report, 1000);
    }
}

#[test]
fn a_read_with_a_flipped_bit_fails_and_never_returns_other_bytes() {
    let mut world = World::new();
    let mut rng = Rng(77);
    world.snapshot(&mut rng);
    while world.expected.is_empty() {
        world.snapshot(&mut rng);
    }
    let (id, tree) = world.expected.iter().next().map(|(i, t)| (*i, t.clone())).unwrap();
    let snap = world.repo.load_snapshot(id).unwrap();
    for after in 0..6 {
        world.crash();
        world.plan.flip_reads_after(after);
        let dest = world.tmp.path().join(format!("flip{after}"));
        let restored = restore_tree(&world.repo, TreeId::new(snap.root), &dest, &RestoreOptions::default());
        world.plan.disarm();
        if let Ok(report) = restored {
            // What was restored is exact; what could not be verified is reported, not written.
            let got = read_tree(&dest);
            for (name, data) in &got {
                assert_eq!(Some(data), tree.get(name), "a flipped read gave other bytes in {name}");
            }
            assert_eq!(got.len() + report.errors.len(), tree.len(), "{:?}", report.errors);
        }
    }
}

#[test]
fn a_full_disk_stops_compaction_clearly_and_it_finishes_when_space_returns() {
    let mut world = World::new();
    let mut rng = Rng(5);
    for _ in 0..6 {
        world.snapshot(&mut rng);
    }
    world.plan.disarm();
    world.forget(&mut Rng(9));
    world.plan.fail_puts_after(0, false);
    let opts = CompactOptions {
        grace_secs: 0,
        max_unused: 0.01,
        ..CompactOptions::default()
    };
    let err = compact(&world.repo, &opts).unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    world.plan.disarm();
    world.check(0);
    let done = compact(&world.repo, &opts).unwrap();
    assert!(done.deleted_packs > 0, "{done:?}");
    world.check(1);
}

/// A pack this process touched for an earlier snapshot, and another process compacted
/// away since, does not fail a later snapshot of this process that does not need it.
#[test]
fn a_pack_gone_since_an_earlier_snapshot_does_not_fail_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store: DynBackend = Arc::new(MemoryBackend::new());
    let writer = init(store.clone(), &tmp.path().join("writer"));
    let admin = Repository::open(store.clone(), &tmp.path().join("admin"), PW).unwrap();
    let dir = tmp.path().join("src");
    let opts = crate::ops::ingest::TreeOptions::default();
    let version = |n: u64| Tree::from([("f".to_string(), noise(300_000, n))]);

    write_tree(&dir, &version(1));
    snapshot_tree(&writer, &dir, &opts).unwrap();
    // The other process takes the next snapshot, forgets the first and compacts it away.
    write_tree(&dir, &version(2));
    snapshot_tree(&admin, &dir, &opts).unwrap();
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    assert_eq!(forget(&admin, &policy, false).unwrap().removed.len(), 1);
    let opts_compact = CompactOptions {
        grace_secs: 0,
        ..CompactOptions::default()
    };
    assert!(compact(&admin, &opts_compact).unwrap().deleted_packs > 0);

    write_tree(&dir, &version(3));
    let third = snapshot_tree(&writer, &dir, &opts).unwrap();
    let out = tmp.path().join("out");
    let root = TreeId::new(writer.load_snapshot(third.id).unwrap().root);
    restore_tree(&writer, root, &out, &RestoreOptions::default()).unwrap();
    assert_eq!(read_tree(&out), version(3));
}
