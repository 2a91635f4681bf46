//! `amber repair index`: a truncated index segment and a pack whose header is damaged are
//! named by `amber verify` (with no snapshot or file affected, since every blob is still
//! whole), and the repair makes the vault clean again without losing anything: new
//! segments describe the packs, the damaged pack's blobs are copied out and the pack goes
//! with the next compaction. On the local store and on S3.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::{Repo, Rng, assert_same_tree, id_of, num, write_random};
use crate::stores::{Store, on_every_store};

on_every_store! {
    repair_index_mends_a_truncated_segment_and_a_damaged_pack_header => segment_and_header_on,
}

/// The state directory of the repository (its index cache).
fn cache_of(repo: &Repo) -> PathBuf {
    match repo.url {
        Some(_) => repo.scratch("cache"),
        None => repo.path.join("cache"),
    }
}

/// `amber <args>` expecting `code`; its JSON document.
#[track_caller]
fn run(repo: &Repo, args: &[&str], code: i32) -> Value {
    let out = repo.run(args);
    out.expect_code(code);
    out.json()
}

fn kinds(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn assert_restores(repo: &Repo, id: &str, src: &std::path::Path, name: &str) {
    let dest = repo.scratch(name);
    repo.restore(id, &dest);
    assert_same_tree(src, &dest);
}

fn segment_and_header_on(store: Store) {
    let repo = store.repo("repair");
    let mut rng = Rng::new(0x4E9A);
    let (one, two) = (repo.scratch("one"), repo.scratch("two"));
    write_random(&one.join("model.bin"), 3 << 20, &mut rng);
    write_random(&one.join("notes/a.txt"), 30_000, &mut rng);
    write_random(&two.join("table.bin"), 2 << 20, &mut rng);

    let (segs0, data0, meta0) = (
        repo.object_keys("index/"),
        repo.object_keys("data/"),
        repo.object_keys("meta/"),
    );
    let a = id_of(&repo.snapshot(&one, &[]));
    let segs_a = repo.new_keys("index/", &segs0);
    let data_a = repo.new_keys("data/", &data0);
    let packs_a = (data_a.len() + repo.new_keys("meta/", &meta0).len()) as u64;
    let b = id_of(&repo.snapshot(&two, &[]));
    let data_b: Vec<String> = repo
        .new_keys("data/", &data0)
        .into_iter()
        .filter(|k| !data_a.contains(k))
        .collect();
    assert_eq!(
        (segs_a.len(), data_a.len(), data_b.len()),
        (1, 1, 1),
        "{segs_a:?} {data_a:?} {data_b:?}"
    );

    // A's index segment cut in half. The index had loaded it, yet verify reads it and
    // names it; no snapshot and no file is affected (the packs' directories say the same).
    repo.rewrite_object(&segs_a[0], |bytes| bytes.truncate(bytes.len() / 2));
    let found = run(&repo, &["verify"], 3);
    assert_eq!(kinds(&found), ["damaged-segment"], "{found}");
    assert_eq!(found["problems"][0]["object"], segs_a[0].as_str(), "{found}");
    assert_eq!(found["damaged_snapshots"], serde_json::json!([]), "{found}");
    assert!(
        found["problems"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("repair index"),
        "{found}"
    );
    // Nothing is lost meanwhile, even with the cache gone.
    fs::remove_dir_all(cache_of(&repo)).unwrap();
    assert_restores(&repo, &a, &one, "a1");

    let dry = run(&repo, &["repair", "index", "--dry-run"], 0);
    assert_eq!(
        (num(&dry, "described_packs"), num(&dry, "deleted_segments")),
        (packs_a, 1),
        "{dry}"
    );
    assert!(
        repo.object_keys("index/").contains(&segs_a[0]),
        "a dry run changes nothing"
    );
    let fixed = run(&repo, &["repair", "index"], 0);
    crate::cli::check("repair-index", &fixed, crate::cli::Mode::Local);
    // The packs A wrote (data and metadata) are described again, by a new segment.
    assert_eq!(
        (num(&fixed, "described_packs"), num(&fixed, "deleted_segments")),
        (packs_a, 1),
        "{fixed}"
    );
    let segs_now = repo.object_keys("index/");
    assert!(
        !segs_now.contains(&segs_a[0]),
        "the damaged segment is gone: {segs_now:?}"
    );
    assert_eq!(
        segs_now.len(),
        segs0.len() + 2,
        "B's segment and the new one: {segs_now:?}"
    );
    let clean = run(&repo, &["verify", "--read-data"], 0);
    assert_eq!(clean["clean"], true, "{clean}");
    // Every pack is described by a readable segment again.
    fs::remove_dir_all(cache_of(&repo)).unwrap();
    let rebuilt = run(&repo, &["repair", "index", "--dry-run"], 0);
    assert_eq!(num(&rebuilt, "described_packs"), 0, "{rebuilt}");

    // A byte of the reserved part of B's data pack header flipped: the structural check
    // reads no pack and sees nothing; --read-data names the pack, and only the pack: each
    // blob is sealed on its own and still opens, so no snapshot or file is affected.
    repo.rewrite_object(&data_b[0], |bytes| bytes[12] ^= 0x40);
    run(&repo, &["verify"], 0);
    let found = run(&repo, &["verify", "--read-data"], 3);
    assert_eq!(kinds(&found), ["damaged-pack"], "{found}");
    let pack_b = data_b[0].rsplit('/').next().unwrap();
    assert_eq!(found["problems"][0]["pack"], pack_b, "{found}");
    assert_eq!(found["damaged_snapshots"], serde_json::json!([]), "{found}");
    assert_restores(&repo, &b, &two, "b1");
    // Its directory no longer opens, so an index rebuilt from pack directories alone
    // leaves it out; the repair indexes it from its segment and copies its blobs out.
    let rebuilt = repo.run(&["index", "rebuild"]);
    rebuilt.expect_code(3);
    let mended = run(&repo, &["repair", "index"], 0);
    assert_eq!(mended["rescued"]["packs"], 1, "{mended}");
    // Every chunk of table.bin (one or more: the chunker is keyed per vault) is copied.
    assert!(num(&mended["rescued"], "blobs") >= 1, "{mended}");
    assert_eq!(mended["lost_blobs"], serde_json::json!([]), "{mended}");
    assert_restores(&repo, &b, &two, "b2");
    // The damaged pack is condemned; compaction deletes it, and the vault is clean.
    let compacted = run(&repo, &["compact", "--grace", "0s"], 0);
    assert!(num(&compacted["deleted"], "packs") >= 1, "{compacted}");
    assert!(
        !repo.object_keys("data/").contains(&data_b[0]),
        "the damaged pack is gone"
    );
    let clean = run(&repo, &["verify", "--read-data"], 0);
    assert_eq!(clean["clean"], true, "{clean}");
    fs::remove_dir_all(cache_of(&repo)).unwrap();
    assert_restores(&repo, &a, &one, "a2");
    assert_restores(&repo, &b, &two, "b3");
}

/// A torn data pack (cut short) that its segment describes at its old length: the repair
/// copies out the blobs that still lie within it, names those cut off (exit 3), and
/// condemns it, so the next compaction deletes it. `repair snapshots` then marks the files
/// that lost data, and a restore writes every other file exactly.
#[test]
fn repair_index_rescues_what_a_torn_pack_still_holds() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0x70A1);
    // Forty files of one chunk each, in one data pack.
    for i in 0..40 {
        write_random(&src.join(format!("f{i:02}.bin")), 60_000, &mut rng);
    }
    repo.snapshot(&src, &[]);
    let key = repo.object_keys("data/").pop().unwrap();
    let pack = key.rsplit('/').next().unwrap().to_string();
    repo.rewrite_object(&key, |bytes| bytes.truncate(bytes.len() / 2));
    let out = repo.run(&["repair", "index"]);
    out.expect_code(3);
    let report = out.json();
    assert_eq!(report["unrecoverable"], serde_json::json!([]), "{report}");
    assert_eq!(report["rescued"]["packs"], 1, "{report}");
    let rescued = num(&report["rescued"], "blobs");
    let lost: Vec<&Value> = report["lost_blobs"].as_array().unwrap().iter().collect();
    assert!(rescued >= 10 && lost.len() >= 10, "about half each: {report}");
    assert_eq!(rescued + lost.len() as u64, 40, "{report}");
    assert!(lost.iter().all(|l| l["pack"] == pack.as_str()), "{report}");
    assert!(lost[0]["error"].as_str().unwrap().contains("cut off"), "{report}");
    assert!(out.stderr.contains(&pack), "{out}");
    // The rescued blobs live on elsewhere; the torn pack goes with the next compaction.
    run(&repo, &["compact", "--grace", "0s"], 0);
    assert!(!repo.object_keys("data/").contains(&key), "the torn pack is deleted");
    // What was cut off is named (by the pack the old segment still records).
    let found = run(&repo, &["verify"], 3);
    assert!(
        kinds(&found)
            .iter()
            .all(|k| ["missing-blob", "missing-pack", "damaged-blob"].contains(&k.as_str())),
        "{found}"
    );

    let fixed = run(&repo, &["repair", "snapshots"], 0);
    assert_eq!(num(&fixed["repaired"][0], "files"), lost.len() as u64, "{fixed}");
    let new = fixed["repaired"][0]["repaired"].as_str().unwrap().to_string();
    let dest = repo.scratch("partial");
    repo.run(&["restore", &new, dest.to_str().unwrap()]).expect_code(3);
    let (mut whole, mut zeroed) = (0u64, 0u64);
    for i in 0..40 {
        let name = format!("f{i:02}.bin");
        let (want, got) = (fs::read(src.join(&name)).unwrap(), fs::read(dest.join(&name)).unwrap());
        assert_eq!(got.len(), want.len(), "{name} keeps its size");
        if got == want {
            whole += 1;
        } else {
            assert!(got.iter().all(|&b| b == 0), "{name}: lost bytes are zeros");
            zeroed += 1;
        }
    }
    assert_eq!((whole, zeroed), (rescued, lost.len() as u64));
}

/// Through `amber serve` with an admin token: an index segment of the vault cut short is
/// named by verify, and `repair index` run by the server describes the packs again and
/// removes the damaged segment, as locally; the server goes on restoring, and the run is
/// audited. Other roles are refused.
#[test]
fn repair_index_through_a_server_mends_a_damaged_segment() {
    use crate::server::harness::{Server, s};
    let server = Server::start();
    let admin = server.admin();
    let mut rng = Rng::new(0x1D3);
    let index_dir = server.data().join("vaults/default/index");
    let src = server.scratch("tree");
    write_random(&src.join("a.bin"), 1 << 20, &mut rng);
    write_random(&src.join("notes/b.txt"), 20_000, &mut rng);
    let id = id_of(&server.push(&admin, &[s(&src)]));
    let segments = crate::common::files_under(&index_dir);
    assert_eq!(segments.len(), 1, "{segments:?}");
    let bytes = fs::read(&segments[0]).unwrap();
    fs::write(&segments[0], &bytes[..bytes.len() / 2]).unwrap();

    let found = server.run(&admin, &["--json", "verify"]);
    found.expect_code(3);
    assert_eq!(kinds(&found.json()), ["damaged-segment"], "{found}");
    let sidecar = server.token(&admin, "sidecar");
    server
        .run(&sidecar, &["--json", "repair", "index"])
        .expect_error(&["(PermissionDenied)"]);
    let out = server.run(&admin, &["--json", "repair", "index"]);
    out.expect_code(0);
    let fixed = out.json();
    crate::cli::check("repair-index", &fixed, crate::cli::Mode::Server);
    assert!(
        num(&fixed, "described_packs") >= 2,
        "a data and a metadata pack: {fixed}"
    );
    assert_eq!(num(&fixed, "deleted_segments"), 1, "{fixed}");
    assert!(!segments[0].exists(), "the damaged segment is gone");
    assert_eq!(crate::common::files_under(&index_dir).len(), 1, "one new segment");

    let clean = server.run(&admin, &["--json", "verify", "--read-data"]);
    clean.expect_code(0);
    let dest = server.scratch("restored");
    server.run(&admin, &["--json", "restore", &id, s(&dest)]).expect_code(0);
    assert_eq!(
        fs::read(dest.join("a.bin")).unwrap(),
        fs::read(src.join("a.bin")).unwrap()
    );
    let calls: Vec<String> = server
        .audit(&admin)
        .iter()
        .map(|r| r["call"].as_str().unwrap().to_string())
        .collect();
    assert!(calls.iter().any(|c| c == "/amber.v1.Admin/RepairIndex"), "{calls:?}");
}
