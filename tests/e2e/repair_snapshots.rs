//! `amber repair snapshots`: a data pack deleted (a file's content lost) and a metadata
//! pack deleted (a directory's tree node lost). The repair writes new snapshots in which
//! the file and the directory are marked damaged, never dropped; their restore writes
//! everything else exactly, the file at its size with the lost bytes as zeros, the
//! directory empty, and names both (exit 3). With the originals forgotten, verify is
//! clean and names the marks as known damage, and compaction runs. A new snapshot of the
//! same content stores the lost blobs again, which heals the repaired snapshots: they then
//! restore exactly. On the local store and on S3.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::{Repo, Rng, assert_same_tree, id_of, num, write_random};
use crate::stores::{Store, on_every_store};

on_every_store! {
    repair_snapshots_marks_what_is_lost_and_heals_when_it_comes_back => repair_on,
}

/// `amber <args>` expecting `code`; its JSON document.
#[track_caller]
fn run(repo: &Repo, args: &[&str], code: i32) -> Value {
    let out = repo.run(args);
    out.expect_code(code);
    out.json()
}

/// Takes a snapshot of `dir`, returning its id and the data and metadata packs it wrote.
fn snapshot_packs(repo: &Repo, dir: &Path) -> (String, Vec<String>, Vec<String>) {
    let (data, meta) = (repo.object_keys("data/"), repo.object_keys("meta/"));
    let id = id_of(&repo.snapshot(dir, &[]));
    (id, repo.new_keys("data/", &data), repo.new_keys("meta/", &meta))
}

/// The state directory (index cache and copies of metadata packs).
fn drop_cache(repo: &Repo) {
    let cache = match repo.url {
        Some(_) => repo.scratch("cache"),
        None => repo.path.join("cache"),
    };
    let _ = fs::remove_dir_all(cache);
}

/// `(snapshot, path, lost_bytes)` of verify's known damage.
fn marked(report: &Value) -> BTreeSet<(String, String, Option<u64>)> {
    report["marked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let path = m["path"].as_str().unwrap().to_string();
            (
                m["snapshot"].as_str().unwrap().to_string(),
                path,
                m["lost_bytes"].as_u64(),
            )
        })
        .collect()
}

fn repair_on(store: Store) {
    let repo = store.repo("repair-snapshots");
    let mut rng = Rng::new(0x5EA1);
    let src = repo.scratch("src");
    write_random(&src.join("results/run.csv"), 20_000, &mut rng);
    // The node of `results` is written by this snapshot of the directory alone, in its own
    // metadata pack; the later snapshots of `src` name the same node.
    let (alone, _, meta_results) = snapshot_packs(&repo, &src.join("results"));
    write_random(&src.join("keep.bin"), 1 << 20, &mut rng);
    write_random(&src.join("notes/n.txt"), 30_000, &mut rng);
    let (first, _, _) = snapshot_packs(&repo, &src);
    write_random(&src.join("lost.bin"), 2 << 20, &mut rng);
    let (second, data_lost, _) = snapshot_packs(&repo, &src);
    assert_eq!(
        (meta_results.len(), data_lost.len()),
        (1, 1),
        "{meta_results:?} {data_lost:?}"
    );

    repo.delete_object(&data_lost[0]);
    repo.delete_object(&meta_results[0]);
    drop_cache(&repo);
    let found = run(&repo, &["verify"], 3);
    let damaged: BTreeSet<&str> = found["damaged_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        damaged,
        BTreeSet::from([alone.as_str(), first.as_str(), second.as_str()]),
        "{found}"
    );

    // Counting the vault goes on past them: each is named unreadable.
    let stats = run(&repo, &["stats"], 0);
    assert_eq!(num(&stats, "unreadable_snapshots"), 3, "{stats}");

    let before = repo.snapshots().len();
    let dry = run(&repo, &["repair", "snapshots", "--dry-run"], 3);
    assert_eq!(repo.snapshots().len(), before, "a dry run writes nothing: {dry}");
    assert_eq!(dry["repaired"].as_array().unwrap().len(), 2, "{dry}");

    let fixed = run(&repo, &["repair", "snapshots"], 3);
    crate::cli::check("repair-snapshots", &fixed, crate::cli::Mode::Local);
    // The snapshot of `results` alone has lost its root: nothing to keep.
    assert_eq!(fixed["unrepairable"][0]["snapshot"], alone.as_str(), "{fixed}");
    let repaired: Vec<&Value> = fixed["repaired"].as_array().unwrap().iter().collect();
    let of = |original: &str| -> &Value {
        repaired
            .iter()
            .find(|r| r["original"] == original)
            .unwrap_or_else(|| panic!("{original} not repaired: {fixed}"))
    };
    let (r_first, r_second) = (of(&first), of(&second));
    assert_eq!((num(r_first, "files"), num(r_first, "dirs")), (0, 1), "{r_first}");
    assert_eq!(
        (
            num(r_second, "files"),
            num(r_second, "dirs"),
            num(r_second, "lost_bytes")
        ),
        (1, 1, 2 << 20),
        "{r_second}"
    );
    assert_eq!(
        r_second["paths"],
        json!([{ "path": "lost.bin", "lost_bytes": 2 << 20 }, { "path": "results", "lost_bytes": null }]),
        "{r_second}"
    );
    let new_second = r_second["repaired"].as_str().unwrap().to_string();
    let new_first = r_first["repaired"].as_str().unwrap().to_string();
    // The originals are kept.
    assert_eq!(repo.snapshots().len(), before + 2);

    // The repaired snapshot restores all it can, and names the rest (exit 3).
    let dest = repo.scratch("partial");
    let out = repo.run(&["restore", &new_second, dest.to_str().unwrap()]);
    out.expect_code(3);
    let restored = out.json();
    crate::cli::check("restore", &restored, crate::cli::Mode::Local);
    assert_eq!(
        restored["damaged"],
        json!([{ "path": "lost.bin", "lost_bytes": 2 << 20 }, { "path": "results", "lost_bytes": null }]),
        "{restored}"
    );
    assert_eq!(restored["errors"], json!([]), "{restored}");
    assert_eq!(
        fs::read(dest.join("keep.bin")).unwrap(),
        fs::read(src.join("keep.bin")).unwrap()
    );
    assert_eq!(
        fs::read(dest.join("notes/n.txt")).unwrap(),
        fs::read(src.join("notes/n.txt")).unwrap()
    );
    let zeros = fs::read(dest.join("lost.bin")).unwrap();
    assert_eq!(zeros.len(), 2 << 20);
    assert!(zeros.iter().all(|&b| b == 0), "lost bytes are zeros");
    assert_eq!(
        fs::read_dir(dest.join("results")).unwrap().count(),
        0,
        "a lost directory is empty"
    );

    // The originals forgotten, verify is clean: the marks are known damage.
    run(&repo, &["forget", "--keep-tag", "repaired"], 0);
    let clean = run(&repo, &["verify"], 0);
    crate::cli::check("verify", &clean, crate::cli::Mode::Local);
    let stats = run(&repo, &["stats"], 0);
    assert_eq!(
        (num(&stats, "unreadable_snapshots"), num(&stats["total"], "snapshots")),
        (0, 2),
        "{stats}"
    );
    assert_eq!(
        marked(&clean),
        BTreeSet::from([
            (new_first.clone(), "results".to_string(), None),
            (new_second.clone(), "results".to_string(), None),
            (new_second.clone(), "lost.bin".to_string(), Some(2 << 20)),
        ]),
        "{clean}"
    );
    run(&repo, &["compact", "--grace", "0s"], 0);
    let read = run(&repo, &["verify", "--read-data"], 0);
    assert_eq!(num(&read, "marked_total"), 3, "{read}");

    // The same content snapshotted again: its blobs are stored anew, and the marks heal.
    repo.snapshot(&src, &[]);
    let healed = run(&repo, &["verify", "--read-data"], 0);
    assert_eq!(
        (num(&healed, "marked_total"), num(&healed, "healed")),
        (0, 3),
        "{healed}"
    );
    drop_cache(&repo);
    let whole = repo.scratch("whole");
    repo.restore(&new_second, &whole);
    assert_same_tree(&src, &whole);
    let again = run(&repo, &["repair", "snapshots"], 0);
    assert_eq!(
        again["repaired"],
        json!([]),
        "nothing is short of data any more: {again}"
    );
}

/// Through `amber serve` with an admin token: the same repair, and restores of the
/// repaired tree and volume that write what can be read and name the rest, as locally.
/// Other roles are refused.
#[test]
fn repair_snapshots_through_a_server_marks_and_restores_in_part() {
    use crate::server::harness::{Server, s};
    let server = Server::start();
    let admin = server.admin();
    let mut rng = Rng::new(0x5EA2);
    let data_dir = server.data().join("vaults/default/data");
    let packs = || crate::common::files_under(&data_dir);
    let src = server.scratch("tree");
    write_random(&src.join("keep.bin"), 1 << 20, &mut rng);
    let tree1 = id_of(&server.push(&admin, &[s(&src)]));
    let before = packs();
    write_random(&src.join("lost.bin"), 2 << 20, &mut rng);
    let tree2 = id_of(&server.push(&admin, &[s(&src)]));
    let img = server.scratch("disk.img");
    write_random(&img, 4 << 20, &mut rng);
    let with_tree = packs();
    let volume = id_of(&server.push(&admin, &["--block", s(&img)]));
    let lost: Vec<_> = packs().into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(
        lost.len(),
        2,
        "one data pack for lost.bin, one for the volume: {lost:?}"
    );
    for p in &lost {
        fs::remove_file(p).unwrap();
    }
    assert!(with_tree.iter().all(|p| before.contains(p) || lost.contains(p)));

    let sidecar = server.token(&admin, "sidecar");
    server
        .run(&sidecar, &["--json", "repair", "snapshots"])
        .expect_error(&["(PermissionDenied)"]);
    let out = server.run(&admin, &["--json", "repair", "snapshots"]);
    out.expect_code(0);
    let fixed = out.json();
    crate::cli::check("repair-snapshots", &fixed, crate::cli::Mode::Server);
    let repaired: Vec<&Value> = fixed["repaired"].as_array().unwrap().iter().collect();
    let new_of = |original: &str| -> String {
        let r = repaired
            .iter()
            .find(|r| r["original"] == original)
            .unwrap_or_else(|| panic!("{original} not repaired: {fixed}"));
        r["repaired"].as_str().unwrap().to_string()
    };
    assert_eq!(repaired.len(), 2, "{fixed}");
    assert!(!repaired.iter().any(|r| r["original"] == tree1.as_str()), "{fixed}");

    let dest = server.scratch("partial");
    let out = server.run(&admin, &["--json", "restore", &new_of(&tree2), s(&dest)]);
    out.expect_code(3);
    let restored = out.json();
    crate::cli::check("restore", &restored, crate::cli::Mode::Server);
    assert_eq!(
        restored["damaged"],
        json!([{ "path": "lost.bin", "lost_bytes": 2 << 20 }]),
        "{restored}"
    );
    assert_eq!(
        fs::read(dest.join("keep.bin")).unwrap(),
        fs::read(src.join("keep.bin")).unwrap()
    );
    let zeros = fs::read(dest.join("lost.bin")).unwrap();
    assert!(zeros.len() == 2 << 20 && zeros.iter().all(|&b| b == 0));

    let disk = server.scratch("disk-out.img");
    let out = server.run(&admin, &["--json", "restore", &new_of(&volume), "--block", s(&disk)]);
    out.expect_code(3);
    let block = out.json();
    crate::cli::check("restore-block", &block, crate::cli::Mode::Server);
    assert_eq!(num(&block, "lost_bytes"), 4 << 20, "{block}");
    assert_eq!(block["lost_ranges"], json!([[0, 4 << 20]]), "{block}");
    assert_eq!(fs::metadata(&disk).unwrap().len(), 4 << 20);

    let calls: Vec<String> = server
        .audit(&admin)
        .iter()
        .map(|r| r["call"].as_str().unwrap().to_string())
        .collect();
    assert!(
        calls.iter().any(|c| c == "/amber.v1.Admin/RepairSnapshots"),
        "{calls:?}"
    );
}

/// An environment whose tree part lost a file: the part is repaired first, then the
/// environment, whose repaired snapshot names the repaired part; restoring it writes the
/// rest and names the part restored in part (exit 3).
#[test]
fn repair_snapshots_repairs_an_environment_after_its_part() {
    let repo = Repo::init();
    let mut rng = Rng::new(0x5EA3);
    let nb = repo.scratch("notebooks");
    write_random(&nb.join("keep.ipynb"), 40_000, &mut rng);
    let tree = format!("/home/researcher/notebooks={}", nb.display());
    let env_snapshot = || id_of(&repo.ok(&["--env", "lab-9", "env", "snapshot", "--tree", &tree]));
    let first = env_snapshot();
    write_random(&nb.join("lost.bin"), 2 << 20, &mut rng);
    let data = repo.object_keys("data/");
    let second = env_snapshot();
    let lost = repo.new_keys("data/", &data);
    assert_eq!(lost.len(), 1, "{lost:?}");
    repo.delete_object(&lost[0]);

    let fixed = run(&repo, &["repair", "snapshots"], 0);
    let repaired = fixed["repaired"].as_array().unwrap();
    let kinds: Vec<&str> = repaired.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["tree", "environment"], "the part first: {fixed}");
    assert_eq!(
        (num(&repaired[1], "parts"), num(&repaired[1], "files")),
        (1, 0),
        "{fixed}"
    );
    assert_eq!(repaired[1]["original"], second.as_str(), "{fixed}");
    assert!(!repaired.iter().any(|r| r["original"] == first.as_str()), "{fixed}");
    let (new_part, new_env) = (
        repaired[0]["repaired"].as_str().unwrap(),
        repaired[1]["repaired"].as_str().unwrap(),
    );

    let envs = repo.ok(&["envs"]);
    let listed = envs
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == new_env)
        .unwrap_or_else(|| panic!("{new_env} not listed: {envs}"));
    assert_eq!(listed["parts"][0]["snapshot"], new_part, "{listed}");

    let into = repo.scratch("restored");
    let out = repo.run(&["env", "restore", new_env, "--into", into.to_str().unwrap()]);
    out.expect_code(3);
    let steps = out.json()["steps"].as_array().unwrap().clone();
    let failed: Vec<&Value> = steps.iter().filter(|s| s["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{steps:?}");
    assert!(
        failed[0]["detail"].as_str().unwrap().contains("restored in part"),
        "{steps:?}"
    );
    let restored = into.join("trees/home/researcher/notebooks");
    assert_eq!(
        fs::read(restored.join("keep.ipynb")).unwrap(),
        fs::read(nb.join("keep.ipynb")).unwrap()
    );
    assert_eq!(fs::metadata(restored.join("lost.bin")).unwrap().len(), 2 << 20);
}
