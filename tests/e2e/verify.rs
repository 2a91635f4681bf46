//! `amber verify`: clean on a healthy vault; a flipped bit in a data pack (found by
//! `--read-data`), a deleted pack and a damaged tree node (found by the structural check)
//! are each named with exactly the snapshots and paths they affect; what is found damaged
//! is not reused by the next snapshot; `--read-data-subset` covers every pack over runs.
//! On the local store and on S3.

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;

use crate::common::{Out, Repo, Rng, assert_same_tree, id_of, num, p, write_random};
use crate::stores::{Store, on_every_store};

on_every_store! {
    verify_names_exactly_what_damage_affects => damage_on,
    read_data_subsets_cover_every_pack => subsets_on,
    a_damage_mark_that_no_longer_holds_is_lifted_by_a_full_read => healed_on,
}

fn healed_on(store: Store) {
    let repo = store.repo("healed");
    let src = repo.scratch("src");
    write_random(&src.join("w.bin"), 2 << 20, &mut Rng::new(0x4EA1));
    let id = id_of(&repo.snapshot(&src, &[]));
    let key = repo.object_keys("data/").pop().unwrap();
    let mut original = Vec::new();
    repo.rewrite_object(&key, |bytes| {
        original = bytes.clone();
        bytes[1 << 20] ^= 0x01;
    });
    // A restore meets the damage and marks it; then the pack is whole again (as after a
    // transient fault, or a copy put back).
    repo.run(&["restore", &id, p(&repo.scratch("bad"))]).expect_code(3);
    repo.rewrite_object(&key, |bytes| *bytes = original.clone());
    let (remembered, _) = verify(&repo, &[], 3);
    assert!(!affected(&remembered, "damaged-blob").is_empty(), "{remembered}");
    verify(&repo, &["--read-data"], 0);
    verify(&repo, &[], 0);
    let dest = repo.scratch("good");
    repo.restore(&id, &dest);
    assert_same_tree(&src, &dest);
}

/// `amber verify <args>`, expecting `code`; its JSON report.
#[track_caller]
fn verify(repo: &Repo, args: &[&str], code: i32) -> (Value, Out) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = repo.run(&all);
    out.expect_code(code);
    (out.json(), out)
}

/// The data packs that appeared between two listings.
fn new_keys(before: &[String], after: &[String]) -> Vec<String> {
    let old: BTreeSet<&String> = before.iter().collect();
    after.iter().filter(|k| !old.contains(k)).cloned().collect()
}

/// Snapshots named by the problems of a report, and the paths, per problem kind.
fn affected(report: &Value, kind: &str) -> BTreeSet<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == kind)
        .flat_map(|p| p["affected"].as_array().unwrap().iter())
        .map(|a| {
            (
                a["snapshot"].as_str().unwrap().to_string(),
                a["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn damage_on(store: Store) {
    let repo = store.repo("verify");
    let mut rng = Rng::new(0xD1A6);
    let (one, two) = (repo.scratch("one"), repo.scratch("two"));
    write_random(&one.join("model.bin"), 3 << 20, &mut rng);
    write_random(&one.join("notes/a.txt"), 20_000, &mut rng);
    write_random(&two.join("table.bin"), 2 << 20, &mut rng);
    fs::create_dir_all(two.join("sub/deeper")).unwrap();
    write_random(&two.join("sub/deeper/x.bin"), 50_000, &mut rng);

    let packs0 = repo.object_keys("data/");
    let a = id_of(&repo.snapshot(&one, &[]));
    let packs_a = new_keys(&packs0, &repo.object_keys("data/"));
    let meta_a = repo.object_keys("meta/");
    let b = id_of(&repo.snapshot(&two, &[]));
    let packs_b = new_keys(&packs0, &repo.object_keys("data/"))
        .into_iter()
        .filter(|k| !packs_a.contains(k))
        .collect::<Vec<_>>();
    assert_eq!((packs_a.len(), packs_b.len()), (1, 1), "{packs_a:?} {packs_b:?}");

    // Healthy: clean both ways, and --read-data reads every pack.
    let (clean, _) = verify(&repo, &[], 0);
    assert_eq!(clean["clean"], true, "{clean}");
    assert_eq!(num(&clean, "snapshots"), 2, "{clean}");
    assert_eq!(
        num(&clean, "packs_read"),
        0,
        "the structural check reads no pack: {clean}"
    );
    let (full, _) = verify(&repo, &["--read-data"], 0);
    assert_eq!(num(&full, "packs_read"), num(&full, "packs"), "{full}");
    assert!(num(&full, "bytes_read") > 5 << 20, "{full}");

    // A flipped bit in A's data pack: the structure still checks out (no data is read);
    // --read-data names the blob, its pack, snapshot A and model.bin with the byte range.
    repo.rewrite_object(&packs_a[0], |bytes| bytes[1 << 20] ^= 0x10);
    verify(&repo, &[], 0);
    let (found, out) = verify(&repo, &["--read-data"], 3);
    assert_eq!(found["clean"], false);
    crate::cli::check("verify", &found, crate::cli::Mode::Local);
    let pack_a = packs_a[0].rsplit('/').next().unwrap();
    let damaged: Vec<&Value> = found["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "damaged-blob")
        .collect();
    assert_eq!(damaged.len(), 1, "one chunk is damaged: {found}");
    assert_eq!(damaged[0]["pack"], pack_a, "{found}");
    assert_eq!(
        affected(&found, "damaged-blob"),
        BTreeSet::from([(a.clone(), "model.bin".to_string())]),
        "{found}"
    );
    let place = &damaged[0]["affected"][0];
    assert!(
        num(place, "length") > 0 && num(place, "offset") + num(place, "length") <= 3 << 20,
        "{place}"
    );
    assert_eq!(found["damaged_snapshots"], serde_json::json!([a]), "{found}");
    assert!(
        out.stderr.contains("damaged-blob") && out.stderr.contains(pack_a),
        "{out}"
    );
    // The bad pack itself is named too (its bytes no longer hash to its name).
    assert!(
        found["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "damaged-pack" && p["pack"] == pack_a),
        "{found}"
    );

    // What was found is remembered: the structural check now reports it without reading,
    // and a new snapshot of the same tree stores the damaged chunk again instead of
    // reusing it, so it restores exactly.
    let (remembered, _) = verify(&repo, &[], 3);
    assert_eq!(affected(&remembered, "damaged-blob"), affected(&found, "damaged-blob"));
    let again = repo.snapshot(&one, &["--force"]);
    assert!(
        num(&again, "bytes_new") > 0,
        "the damaged chunk is stored again: {again}"
    );
    let dest = repo.scratch("again");
    repo.restore(&id_of(&again), &dest);
    assert_same_tree(&one, &dest);

    // B's data pack deleted: the structural check names the pack, snapshot B and both of
    // its files, and nothing of A's.
    repo.delete_object(&packs_b[0]);
    let (lost, _) = verify(&repo, &[], 3);
    crate::cli::check("verify", &lost, crate::cli::Mode::Local);
    let pack_b = packs_b[0].rsplit('/').next().unwrap();
    let missing: Vec<&Value> = lost["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "missing-pack")
        .collect();
    assert_eq!(missing.len(), 1, "{lost}");
    assert_eq!(missing[0]["pack"], pack_b, "{lost}");
    assert_eq!(
        affected(&lost, "missing-pack"),
        BTreeSet::from([
            (b.clone(), "sub/deeper/x.bin".to_string()),
            (b.clone(), "table.bin".to_string()),
        ]),
        "{lost}"
    );

    // Every metadata pack A wrote (its tree nodes) flipped in the store: --read-data names
    // them, and A among the snapshots that need them; B's walk goes on.
    for key in &meta_a {
        repo.rewrite_object(key, |bytes| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x01;
        });
    }
    let (meta, _) = verify(&repo, &["--read-data"], 3);
    let snaps: BTreeSet<&str> = meta["damaged_snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(snaps.contains(a.as_str()) && snaps.contains(b.as_str()), "{meta}");
    let meta_ids: BTreeSet<&str> = meta_a.iter().map(|k| k.rsplit('/').next().unwrap()).collect();
    assert!(
        meta["problems"].as_array().unwrap().iter().any(|p| {
            p["pack"].as_str().is_some_and(|id| meta_ids.contains(id))
                && p["affected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["snapshot"] == a.as_str())
        }),
        "a damaged metadata pack of A is named with A: {meta}"
    );
}

fn subsets_on(store: Store) {
    let repo = store.repo("subsets");
    let mut rng = Rng::new(0x5B5E);
    for round in 0..4 {
        let dir = repo.scratch(&format!("t{round}"));
        write_random(&dir.join("f.bin"), 400_000, &mut rng);
        repo.snapshot(&dir, &[]);
    }
    let total = repo.object_keys("data/").len() + repo.object_keys("meta/").len();
    let read = |args: &[&str]| num(&verify(&repo, args, 0).0, "packs_read") as usize;
    assert_eq!(
        read(&["--read-data-subset", "1/2"]) + read(&["--read-data-subset", "2/2"]),
        total
    );
    // 50% twice reads every pack once (the cursor moves on).
    assert_eq!(
        read(&["--read-data-subset", "50%"]) + read(&["--read-data-subset", "50%"]),
        total
    );
    let bad = repo.run(&["verify", "--read-data-subset", "3/2"]);
    bad.expect_error(&["--read-data-subset", "1 ≤ N ≤ M"]);
}

/// Through `amber serve`, with an admin token: the same report (the server's audit log
/// records the call); other roles are refused.
#[test]
fn verify_through_a_server_names_the_same_damage() {
    use crate::server::harness::{Server, s};
    let server = Server::start();
    let admin = server.admin();
    let mut rng = Rng::new(0x5E7F);
    let src = server.scratch("tree");
    write_random(&src.join("weights.bin"), 2 << 20, &mut rng);
    write_random(&src.join("dir/small.txt"), 9_000, &mut rng);
    let id = id_of(&server.push(&admin, &[s(&src)]));

    let clean = server.ok(&admin, &["verify", "--read-data"]);
    assert_eq!(clean["clean"], true, "{clean}");
    assert_eq!(num(&clean, "packs_read"), num(&clean, "packs"), "{clean}");
    let sidecar = server.token(&admin, "sidecar");
    let refused = server.run(&sidecar, &["--json", "verify"]);
    refused.expect_error(&["(PermissionDenied)"]);

    let store = server.data().join("vaults/default");
    let data: Vec<_> = crate::common::files_under(&store.join("data"));
    assert_eq!(data.len(), 1, "{data:?}");
    let mut bytes = fs::read(&data[0]).unwrap();
    bytes[1 << 20] ^= 0x04;
    fs::remove_file(&data[0]).unwrap();
    fs::write(&data[0], &bytes).unwrap();

    let out = server.run(&admin, &["--json", "verify", "--read-data"]);
    out.expect_code(3);
    let found = out.json();
    crate::cli::check("verify", &found, crate::cli::Mode::Server);
    assert_eq!(
        affected(&found, "damaged-blob"),
        BTreeSet::from([(id.clone(), "weights.bin".to_string())]),
        "{found}"
    );
    assert_eq!(found["damaged_snapshots"], serde_json::json!([id]), "{found}");
    let calls: Vec<String> = server
        .audit(&admin)
        .iter()
        .map(|r| r["call"].as_str().unwrap().to_string())
        .collect();
    assert!(calls.iter().any(|c| c == "/amber.v1.Admin/Verify"), "{calls:?}");
}

/// `amber serve` verifies its vaults on a schedule and records each result in the audit
/// log: clean first, then, once a pack is damaged, `data_loss` naming the problem.
#[test]
fn a_server_verifies_on_a_schedule_and_records_the_result() {
    use crate::server::harness::{Server, s};
    let server = Server::start_with(
        &[],
        &[("AMBER_VERIFY_EVERY_SECONDS", "1"), ("AMBER_VERIFY_SUBSET", "100%")],
    );
    let admin = server.admin();
    let mut rng = Rng::new(0x5C4E);
    let src = server.scratch("tree");
    write_random(&src.join("w.bin"), 1 << 20, &mut rng);
    server.push(&admin, &[s(&src)]);
    let scheduled = |result: &str| -> Option<Value> {
        server
            .audit(&admin)
            .into_iter()
            .find(|r| r["call"] == "scheduled verify" && r["result"] == result)
    };
    let wait_for = |result: &str| -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(r) = scheduled(result) {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no scheduled verification with result {result}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let ok = wait_for("ok");
    assert_eq!(ok["role"], "server", "{ok}");
    assert!(ok["detail"].as_str().unwrap().contains("0 problems"), "{ok}");

    let data = crate::common::files_under(&server.data().join("vaults/default/data"));
    let mut bytes = fs::read(&data[0]).unwrap();
    bytes[1000] ^= 0x80;
    fs::remove_file(&data[0]).unwrap();
    fs::write(&data[0], &bytes).unwrap();
    let bad = wait_for("data_loss");
    assert!(bad["detail"].as_str().unwrap().contains("first: damaged-"), "{bad}");
}
