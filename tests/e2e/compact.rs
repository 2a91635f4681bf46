//! `amber compact`: space comes back after `forget`, mostly unused packs are repacked, a
//! grace period separates condemning from deleting, a compaction killed anywhere leaves a
//! vault that verifies and restores, and ingests running at the same time (other processes,
//! other caches) never lose a blob: on the local store and on S3.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Repo, Rng, amber_bin, assert_same_tree, id_of, p, run_command, write_random};
use crate::stores::{Store, on_every_store};

const MIB: u64 = 1024 * 1024;

/// `amber` on `repo` with its own state directory `cache` (another process's index).
fn command_with_cache(repo: &Repo, cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(amber_bin());
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("AMBER_PASSWORD", &repo.password);
    for (k, v) in &repo.env {
        cmd.env(k, v);
    }
    match &repo.url {
        Some(url) => cmd.arg("--repo").arg(url),
        None => cmd.arg("--repo").arg(&repo.path),
    };
    cmd.arg("--cache-dir").arg(cache).arg("--json").args(args);
    cmd.stdin(Stdio::null());
    cmd
}

/// A copy with modes and times (`cp -a`), to compare a restore with later.
fn copy_exact(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

fn compact(repo: &Repo, args: &[&str]) -> Value {
    repo.ok(&[&["compact"], args].concat())
}

fn field(v: &Value, path: &str) -> u64 {
    let mut at = v;
    for part in path.split('.') {
        at = &at[part];
    }
    at.as_u64().unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn verify_clean(repo: &Repo) {
    let out = run_command(repo.command(&["verify", "--read-data"]));
    assert_eq!(out.code, Some(0), "verify --read-data is not clean: {out}");
}

fn restores_exactly(repo: &Repo, id: &str, original: &Path, name: &str) {
    let dest = repo.scratch(name);
    repo.restore(id, &dest);
    assert_same_tree(original, &dest);
    std::fs::remove_dir_all(&dest).unwrap();
}

on_every_store! {
    compaction_gives_back_what_forget_released_and_keeps_the_rest => gives_back_on,
    a_killed_compaction_leaves_a_vault_that_verifies_and_restores => killed_on,
    ingest_and_compaction_at_once_lose_nothing => concurrent_on,
}

fn gives_back_on(store: Store) {
    let repo = store.repo("compact");
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xC0);
    // v1: a (3 MiB) and b (3 MiB), in one data pack. v2: a and c. v3: c only.
    write_random(&src.join("a.bin"), 3 * MIB, &mut rng);
    write_random(&src.join("b.bin"), 3 * MIB, &mut rng);
    let v1 = id_of(&repo.snapshot(&src, &[]));
    std::fs::remove_file(src.join("b.bin")).unwrap();
    write_random(&src.join("c.bin"), 3 * MIB, &mut rng);
    let v2 = id_of(&repo.snapshot(&src, &[]));
    let kept_v2 = repo.scratch("kept-v2");
    copy_exact(&src, &kept_v2);
    std::fs::remove_file(src.join("a.bin")).unwrap();
    let v3 = id_of(&repo.snapshot(&src, &[]));
    let before = repo.size_of("data");

    repo.ok(&["forget", "--keep-last", "2"]);
    let listing = repo.listing();
    let dry = compact(&repo, &["--dry-run", "--grace", "0s"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(repo.listing(), listing, "a dry run changed the store");
    // v1's pack (a and b) is half unused: repacked; nothing is wholly unused yet.
    assert_eq!(field(&dry, "repacked.packs"), 1, "{dry}");
    assert!(field(&dry, "repacked.bytes") >= 3 * MIB, "{dry}");
    // The first run makes the index's reference counts from both snapshots.
    assert_eq!(field(&dry, "snapshots_walked"), 2, "{dry}");

    let done = compact(&repo, &["--grace", "0s"]);
    assert_eq!(field(&done, "snapshots"), 2, "{done}");
    assert_eq!(field(&done, "snapshots_walked"), 0, "nothing came or went: {done}");
    assert_eq!(field(&done, "repacked.packs"), 1, "{done}");
    assert!(field(&done, "deleted.packs") >= 1, "{done}");
    assert!(field(&done, "deleted.bytes") >= 6 * MIB, "{done}");
    assert_eq!(field(&done, "pending.packs"), 0, "{done}");
    let after = repo.size_of("data");
    assert!(
        after + 2 * MIB < before,
        "data/ was {before} bytes and is {after}: b's 3 MiB should be gone"
    );
    verify_clean(&repo);
    restores_exactly(&repo, &v2, &kept_v2, "r2");
    restores_exactly(&repo, &v3, &src, "r3");
    assert!(repo.run(&["restore", &v1, p(&repo.scratch("r1"))]).code != Some(0));

    // Nothing more to do: a second run deletes and copies nothing.
    let again = compact(&repo, &["--grace", "0s"]);
    assert_eq!(field(&again, "deleted.packs"), 0, "{again}");
    assert_eq!(field(&again, "repacked.packs"), 0, "{again}");

    // With a grace period, a run only condemns; the deletion waits for a later run.
    repo.ok(&["forget", "--keep-last", "1"]);
    // The packs must be older than the grace period to be condemned at all.
    let young = compact(&repo, &["--grace", "1h"]);
    assert_eq!(field(&young, "condemned.packs"), 0, "{young}");
    assert_eq!(field(&young, "snapshots_walked"), 1, "only the forgotten one: {young}");
    assert!(field(&young, "young_packs") >= 1, "{young}");
    std::thread::sleep(Duration::from_secs(4));
    let first = compact(&repo, &["--grace", "3s"]);
    assert_eq!(field(&first, "deleted.packs"), 0, "{first}");
    assert!(field(&first, "condemned.packs") >= 1, "{first}");
    let waiting = compact(&repo, &["--grace", "3s"]);
    assert_eq!(field(&waiting, "deleted.packs"), 0, "{waiting}");
    assert_eq!(
        field(&waiting, "pending.packs"),
        field(&first, "condemned.packs"),
        "{waiting}"
    );
    std::thread::sleep(Duration::from_secs(4));
    let later = compact(&repo, &["--grace", "3s"]);
    assert_eq!(
        field(&later, "deleted.packs"),
        field(&first, "condemned.packs"),
        "{later}"
    );
    assert!(repo.object_keys("compact/").is_empty(), "finished records are removed");
    verify_clean(&repo);
    restores_exactly(&repo, &v3, &src, "r3-again");
}

/// Snapshots `src` after changing about half its files; records the tree it holds.
fn changed_snapshot(repo: &Repo, src: &Path, rng: &mut Rng, originals: &mut BTreeMap<String, PathBuf>) {
    for f in 0..4u64 {
        if originals.is_empty() || rng.below(2) == 0 {
            write_random(&src.join(format!("f{f}.bin")), MIB + rng.below(MIB), rng);
        }
    }
    let id = id_of(&repo.snapshot(src, &[]));
    let copy = repo.scratch(&format!("v{}", originals.len()));
    copy_exact(src, &copy);
    originals.insert(id, copy);
}

fn killed_on(store: Store) {
    let repo = store.repo("compact-kill");
    let src = repo.scratch("src");
    let mut rng = Rng::new(0x6E);
    let mut originals = BTreeMap::new();
    for _ in 0..12 {
        changed_snapshot(&repo, &src, &mut rng, &mut originals);
    }
    repo.ok(&["forget", "--keep-last", "6"]);
    let mut killed = 0;
    for attempt in 0..20u64 {
        let mut child = repo
            .command(&["compact", "--grace", "0s", "--max-unused", "1%"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn amber compact");
        let deadline = Instant::now() + Duration::from_millis(5 + rng.below(150));
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill().expect("SIGKILL");
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if status.signal() == Some(libc::SIGKILL) {
            killed += 1;
        } else {
            assert!(status.success(), "attempt {attempt}: compaction failed: {status}");
        }
        let check = run_command(repo.command(&["verify"]));
        assert_eq!(
            check.code,
            Some(0),
            "attempt {attempt}: the vault does not verify after a kill: {check}"
        );
        // Every other attempt, a new snapshot and a forget give the next one work again.
        if attempt % 2 == 1 {
            changed_snapshot(&repo, &src, &mut rng, &mut originals);
            repo.ok(&["forget", "--keep-last", "6"]);
        }
    }
    eprintln!("compact: {killed} of 20 attempts were killed");
    assert!(killed >= 5, "only {killed} attempts were killed");
    // A last run finishes whatever the killed ones left.
    let last = compact(&repo, &["--grace", "0s", "--max-unused", "1%"]);
    assert!(repo.object_keys("compact/").is_empty(), "{last}");
    verify_clean(&repo);
    let listed: Vec<String> = repo.snapshots().iter().map(id_of).collect();
    assert_eq!(listed.len(), 6, "{listed:?}");
    for (i, id) in listed.iter().enumerate() {
        restores_exactly(&repo, id, &originals[id], &format!("k{i}"));
    }
}

/// Rounds of the concurrent test, and variants each file takes.
const ROUNDS: u64 = 16;
const VARIANTS: u64 = 6;

/// Content variant `v` of file `f`: content comes back after every snapshot holding it was
/// forgotten, so an ingest may decide to reuse blobs that a compaction has just found
/// unused.
fn variant(dir: &Path, f: u64, v: u64) {
    let mut rng = Rng::new(0x5EED + f * 100 + v);
    write_random(&dir.join(format!("f{f}.bin")), 400_000, &mut rng);
}

fn concurrent_on(store: Store) {
    let repo = store.repo("compact-race");
    let src = repo.scratch("src");
    for f in 0..3u64 {
        variant(&src, f, 0);
    }
    let writer_cache = repo.scratch("writer-cache");
    let compactor_cache = repo.scratch("compactor-cache");
    let originals: std::sync::Mutex<BTreeMap<String, PathBuf>> = std::sync::Mutex::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    let failed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        let ingest = scope.spawn(|| {
            let mut rng = Rng::new(0xBEE);
            for round in 0..ROUNDS {
                for f in 0..3u64 {
                    variant(&src, f, rng.below(VARIANTS));
                }
                // A slow ingest: its blobs are decided long before the commit, while
                // compactions with a one-second grace period come and go.
                let mut cmd = command_with_cache(&repo, &writer_cache, &["snapshot", p(&src)]);
                cmd.env("AMBER_TEST_COMMIT_PAUSE_MS", (400 + rng.below(1000)).to_string());
                let out = run_command(cmd);
                if out.code != Some(0) {
                    // An ingest whose reused pack a compaction deleted meanwhile fails
                    // clearly and commits nothing; the next one stores that data again.
                    out.expect_error(&["removed by a compaction meanwhile", "take the snapshot again"]);
                    failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                let copy = repo.scratch(&format!("orig{round}"));
                copy_exact(&src, &copy);
                originals.lock().unwrap().insert(id_of(&out.json()), copy);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let forget = run_command(command_with_cache(
                &repo,
                &compactor_cache,
                &["forget", "--keep-last", "1"],
            ));
            forget.expect_code(0);
            let run = run_command(command_with_cache(
                &repo,
                &compactor_cache,
                &["compact", "--grace", "1s", "--max-unused", "1%"],
            ));
            run.expect_code(0);
            std::thread::sleep(Duration::from_millis(200));
        }
        ingest.join().unwrap();
    });
    let failed = failed.into_inner();
    eprintln!("compact: {failed} of {ROUNDS} slow ingests failed because their reused pack was deleted");
    assert!(failed < ROUNDS / 2, "{failed} of {ROUNDS} ingests failed");
    verify_clean(&repo);
    let originals = originals.into_inner().unwrap();
    let listed: Vec<String> = repo.snapshots().iter().map(id_of).collect();
    assert!(!listed.is_empty(), "{listed:?}");
    for (i, id) in listed.iter().enumerate() {
        restores_exactly(&repo, id, &originals[id], &format!("c{i}"));
    }
    // And once the last compaction has deleted all it may, still.
    std::thread::sleep(Duration::from_millis(1100));
    compact(&repo, &["--grace", "1s", "--max-unused", "1%"]);
    std::thread::sleep(Duration::from_millis(1100));
    compact(&repo, &["--grace", "1s", "--max-unused", "1%"]);
    verify_clean(&repo);
    for (i, id) in listed.iter().enumerate() {
        restores_exactly(&repo, id, &originals[id], &format!("d{i}"));
    }
}

/// `amber serve` compacts its vaults on a schedule and records each run in the audit log:
/// once a snapshot is forgotten, a run deletes what only it used, and what is kept still
/// restores.
#[test]
fn a_server_compacts_on_a_schedule_and_records_the_result() {
    use crate::server::harness::{Server, s};
    let server = Server::start_with(
        &[],
        &[
            ("AMBER_COMPACT_EVERY_SECONDS", "1"),
            ("AMBER_COMPACT_GRACE_SECONDS", "0"),
        ],
    );
    let admin = server.admin();
    let mut rng = Rng::new(0xC0A9);
    let src = server.scratch("tree");
    write_random(&src.join("old.bin"), 2 << 20, &mut rng);
    server.push(&admin, &[s(&src)]);
    fs::remove_file(src.join("old.bin")).unwrap();
    write_random(&src.join("new.bin"), 1 << 20, &mut rng);
    let kept = id_of(&server.push(&admin, &[s(&src)]));
    let forgot = server.ok(&admin, &["forget", "--keep-last", "1"]);
    assert_eq!(forgot["removed"].as_array().unwrap().len(), 1, "{forgot}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let freed = loop {
        let runs: Vec<Value> = server
            .audit(&admin)
            .into_iter()
            .filter(|r| r["call"] == "scheduled compact")
            .collect();
        if let Some(r) = runs
            .iter()
            .find(|r| !r["detail"].as_str().unwrap().contains("deleted 0 packs"))
        {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled compaction freed anything: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(freed["result"], "ok", "{freed}");
    assert_eq!(freed["role"], "server", "{freed}");
    let dest = server.scratch("restored");
    server.ok(&admin, &["restore", &kept, s(&dest)]);
    assert_same_tree(&src, &dest);
    let check = server.ok(&admin, &["verify", "--read-data"]);
    assert_eq!(check["clean"], true, "{check}");
}
