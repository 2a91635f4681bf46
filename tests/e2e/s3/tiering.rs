//! Tiering on a real S3 server: a policy moves data packs by age (a clock moved forward
//! with `AMBER_TEST_NOW`, not the system clock) while metadata stays STANDARD; listing and
//! diff need no restore; a restore of cold data first fails with a plan, then succeeds
//! after `--warm-up` and `--resume` in a new process; and a new snapshot stores its data
//! again in hot packs instead of reusing archived ones.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use amber_engine::backend::{Backend, StorageClass};
use serde_json::Value;

use super::Moto;
use crate::cli::{Mode, check};
use crate::common::{Out, Repo, Rng, assert_same_tree, id_of, num, p, run_command, sample_tree, write_random};

const DAY: u64 = 86_400;

fn at(repo: &Repo, now: u64, args: &[&str]) -> Out {
    let mut cmd: Command = repo.command(args);
    cmd.env("AMBER_TEST_NOW", now.to_string());
    run_command(cmd)
}

fn classes(store: &dyn Backend, prefix: &str) -> BTreeMap<String, StorageClass> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.class))
        .collect()
}

#[test]
fn packs_move_by_age_metadata_stays_hot_and_a_cold_restore_plans_warms_up_and_resumes() {
    let moto = Moto::shared();
    let (repo, bucket) = moto.repo("tiering", "v");
    repo.init_here();
    let dir = repo.scratch("env");
    sample_tree(&dir, 11);
    write_random(&dir.join("weights.bin"), 20 << 20, &mut Rng::new(11));
    let first = id_of(&repo.snapshot(&dir, &[]));
    write_random(&dir.join("more.bin"), 3 << 20, &mut Rng::new(12));
    let second = id_of(&repo.snapshot(&dir, &[]));
    let store = moto.backend(&bucket, "v");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();

    // Today nothing moves; in 40 days the data packs go to STANDARD_IA.
    let plan = at(&repo, now, &["tier", "plan"]).expect_code(0).json();
    check("tier-plan", &plan, Mode::Local);
    assert_eq!(plan["moves"], Value::Array(vec![]), "{plan}");
    let plan = at(&repo, now + 40 * DAY, &["tier", "plan"]).expect_code(0).json();
    let moves = plan["moves"].as_array().unwrap();
    assert!(
        !moves.is_empty()
            && moves
                .iter()
                .all(|m| m["to"] == "STANDARD_IA" && m["pack"].as_str().unwrap().starts_with("data/")),
        "{plan}"
    );
    assert!(plan["monthly_cost_after"].as_f64().unwrap() < plan["monthly_cost_before"].as_f64().unwrap());
    let applied = at(&repo, now + 40 * DAY, &["tier", "apply"]).expect_code(0).json();
    check("tier-apply", &applied, Mode::Local);
    assert_eq!(applied["moved"].as_u64().unwrap(), moves.len() as u64);
    assert!(
        classes(&store, "data/")
            .values()
            .all(|c| *c == StorageClass::StandardIa)
    );
    assert!(classes(&store, "meta/").values().all(|c| *c == StorageClass::Standard));
    assert!(
        !store.list("tiering/").unwrap().is_empty(),
        "the moves were not recorded"
    );

    // Straight on to DEEP_ARCHIVE is held by STANDARD_IA's 30-day minimum, unless forced.
    let fast = ["--policy", "STANDARD:1d,STANDARD_IA:1d,DEEP_ARCHIVE"];
    let held = at(&repo, now + 5 * DAY, &[&["tier", "apply"][..], &fast].concat())
        .expect_code(0)
        .json();
    assert_eq!(held["moved"], 0, "{held}");
    assert!(held["held_by_minimum"].as_u64().unwrap() > 0, "{held}");
    let forced = at(
        &repo,
        now + 5 * DAY,
        &[&["tier", "apply", "--force"][..], &fast].concat(),
    )
    .expect_code(0)
    .json();
    assert!(
        forced["moved"].as_u64().unwrap() > 0 && forced["early_cost"].as_f64().unwrap() > 0.0,
        "{forced}"
    );
    assert!(
        classes(&store, "data/")
            .values()
            .all(|c| *c == StorageClass::DeepArchive)
    );
    assert!(classes(&store, "meta/").values().all(|c| *c == StorageClass::Standard));

    // Listing and diff read only metadata; no restore was requested for them.
    assert_eq!(repo.snapshots().len(), 2);
    repo.ok(&["diff", &first, &second]);
    repo.ok(&["ls", &second]);

    // A restore: first the plan and exit status 4, nothing written.
    let out = repo.scratch("out");
    let cold = repo.run(&["restore", &second, p(&out)]);
    assert_eq!(cold.code, Some(4), "{cold}");
    let doc = cold.json();
    check("cold-restore", &doc, Mode::Local);
    assert!(doc["bytes_waiting"].as_u64().unwrap() > 20 << 20, "{doc}");
    assert_eq!(doc["requested"], 0);
    assert!(!out.exists(), "a cold restore wrote before its data was readable");
    // Then, in another process, warm up and resume: restored exact.
    let v = repo.ok(&[
        "restore",
        &second,
        p(&out),
        "--warm-up",
        "--resume",
        "--retrieval",
        "bulk",
    ]);
    assert_eq!(v["errors"], Value::Array(vec![]));
    assert_same_tree(&dir, &out);

    // A new snapshot of the same tree does not lean on the archived packs: its content
    // (unchanged files included, which are re-read instead of taken from the parent)
    // goes into new STANDARD packs, and it restores with no restore request.
    let third = repo.snapshot(&dir, &[]);
    assert!(num(&third, "bytes_new") > 20 << 20, "{third}");
    assert!(
        classes(&store, "data/").values().any(|c| *c == StorageClass::Standard),
        "no new hot pack"
    );
    let hot = repo.scratch("hot");
    let v = repo.ok(&["restore", &id_of(&third), p(&hot)]);
    assert_eq!(v["errors"], Value::Array(vec![]));
    assert_same_tree(&dir, &hot);
}
