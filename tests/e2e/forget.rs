//! `amber forget` with a policy, `--dry-run`, `protect`/`unprotect`: per group (an
//! environment, or kind, host and path), the newest of each kept day, tagged and protected
//! snapshots stay; the others are removed and the kept ones still restore exactly.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{Repo, Rng, assert_same_tree, id_of, p, run_command, write_random};

const DAY: u64 = 86_400;
const BASE: u64 = 1_789_948_800; // 2026-09-21T00:00:00Z

/// `amber snapshot DIR` as if at `now` (seconds), with `extra` arguments.
fn snapshot_at(repo: &Repo, now: u64, dir: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["snapshot", p(dir)];
    args.extend_from_slice(extra);
    let mut cmd = repo.command(&args);
    cmd.env("AMBER_TEST_NOW", now.to_string());
    let out = run_command(cmd);
    out.expect_code(0);
    id_of(&out.json())
}

fn ids(v: &Value, field: &str) -> BTreeSet<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn forget_keeps_what_the_policy_says_per_group_and_never_a_protected_snapshot() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xF0);
    // Environment lab-a: two snapshots a day for 6 days (morning, evening).
    let mut lab = Vec::new();
    for day in 0..6u64 {
        for hour in [8u64, 20] {
            write_random(&src.join("data.bin"), 50_000, &mut rng);
            let now = BASE + day * DAY + hour * 3600;
            lab.push(snapshot_at(&repo, now, &src, &["--env", "lab-a"]));
        }
    }
    // Without an environment: its own group, one a day for 3 days; the first tagged.
    let other = repo.scratch("other");
    let mut plain = Vec::new();
    for day in 0..3u64 {
        write_random(&other.join("x.bin"), 10_000, &mut rng);
        let tag: &[&str] = if day == 0 { &["--tag", "paper"] } else { &[] };
        plain.push(snapshot_at(&repo, BASE + day * DAY, &other, tag));
    }
    // The very first lab-a snapshot is protected.
    repo.ok(&["protect", &lab[0]]);

    let policy = ["forget", "--keep-daily", "2", "--keep-last", "1", "--keep-tag", "paper"];
    let dry = repo.ok(&[&policy[..], &["--dry-run"]].concat());
    crate::cli::check("forget", &dry, crate::cli::Mode::Local);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(repo.snapshots().len(), 15, "a dry run removes nothing");
    // lab-a: the evening of each of the last 2 days (the newest also as `last`), and the
    // protected one. The plain group: its newest two days, and the tagged one.
    let want_kept: BTreeSet<String> = [&lab[11], &lab[9], &lab[0], &plain[2], &plain[1], &plain[0]]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(ids(&dry, "kept"), want_kept, "{dry:#}");
    let reasons = |id: &str| -> Vec<String> {
        dry["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .map(|k| {
                k["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap()
    };
    assert!(reasons(&lab[0]).contains(&"protected".to_string()), "{dry:#}");
    assert!(reasons(&lab[11]).contains(&"last".to_string()), "{dry:#}");
    assert!(reasons(&lab[9]).iter().any(|r| r.starts_with("daily ")), "{dry:#}");
    assert!(reasons(&plain[0]).contains(&"tag paper".to_string()), "{dry:#}");
    assert_eq!(ids(&dry, "removed").len(), 15 - want_kept.len());

    let done = repo.ok(&policy);
    assert_eq!(ids(&done, "kept"), want_kept);
    let listed: BTreeSet<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, want_kept);
    let dest = repo.scratch("restored");
    repo.restore(&lab[11], &dest);
    assert_same_tree(&src, &dest);
    repo.run(&["restore", &lab[1], p(&repo.scratch("gone"))]).expect_code(1);

    // Unprotected, the old one goes with the next run; an empty policy is refused.
    let un = repo.ok(&["unprotect", &lab[0]]);
    crate::cli::check("protect", &un, crate::cli::Mode::Local);
    assert_eq!(un["protected"], false);
    let again = repo.ok(&policy);
    assert_eq!(ids(&again, "removed"), BTreeSet::from([lab[0].clone()]));
    repo.run(&["forget"]).expect_error(&["--keep-"]);
    repo.run(&["forget", "--keep-within", "7x"])
        .expect_error(&["--keep-within"]);
    let calls: Vec<String> = repo.ok(&["audit"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call"].as_str().unwrap().to_string())
        .collect();
    assert!(calls.contains(&"amber forget".to_string()) && calls.contains(&"amber protect".to_string()));
}
