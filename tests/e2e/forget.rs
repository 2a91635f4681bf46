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
    let out = repo.run(&policy);
    let again = out.expect_code(0).json();
    assert_eq!(ids(&again, "removed"), BTreeSet::from([lab[0].clone()]));
    // Progress on stderr, one line per phase (stderr is not a terminal), as with --server.
    for phase in ["forget: snapshots ", "forget: removed 1/1"] {
        assert!(out.stderr.contains(phase), "{phase:?}\n{out}");
    }
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

/// Through `amber serve` with an admin token: the same policy, protection and documents;
/// other roles are refused.
#[test]
fn forget_and_protect_work_through_a_server() {
    use crate::server::harness::{Server, s};
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    let mut rng = Rng::new(0xF1);
    let mut pushed = Vec::new();
    for _ in 0..3 {
        write_random(&src.join("data.bin"), 30_000, &mut rng);
        pushed.push(id_of(&server.push(&admin, &[s(&src), "--env", "lab-b"])));
    }
    let prot = server.ok(&admin, &["protect", &pushed[0]]);
    crate::cli::check("protect", &prot, crate::cli::Mode::Server);
    let out = server.run(&admin, &["--json", "forget", "--keep-last", "1"]);
    let done = out.expect_code(0).json();
    crate::cli::check("forget", &done, crate::cli::Mode::Server);
    // Progress streamed by Admin/Forget, printed as locally (one line per phase).
    for phase in ["forget: snapshots 3/3", "forget: removed 1/1"] {
        assert!(out.stderr.contains(phase), "{phase:?}\n{out}");
    }
    assert_eq!(
        ids(&done, "kept"),
        BTreeSet::from([pushed[0].clone(), pushed[2].clone()]),
        "{done}"
    );
    assert_eq!(ids(&done, "removed"), BTreeSet::from([pushed[1].clone()]), "{done}");
    let left: BTreeSet<String> = server.snapshot_ids(&admin).into_iter().collect();
    assert_eq!(left, BTreeSet::from([pushed[0].clone(), pushed[2].clone()]));
    let reader = server.token(&admin, "restore");
    server
        .run(&reader, &["--json", "forget", "--keep-last", "1"])
        .expect_error(&["(PermissionDenied)"]);
}

/// A vault's policy in the server's config (`[vault.retention]`) is applied on a schedule,
/// and each run is in the audit log.
#[test]
fn a_server_applies_a_configured_policy_on_a_schedule() {
    use crate::server::harness::{Server, s};
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("amber.toml");
    std::fs::write(
        &path,
        "[[vault]]\nname = \"default\"\n[vault.retention]\nkeep_last = 1\n",
    )
    .unwrap();
    let server = Server::start_with(&["--config", p(&path)], &[("AMBER_FORGET_EVERY_SECONDS", "1")]);
    let admin = server.admin();
    let src = server.scratch("src");
    let mut rng = Rng::new(0xF2);
    let mut last = String::new();
    for _ in 0..3 {
        write_random(&src.join("data.bin"), 20_000, &mut rng);
        last = id_of(&server.push(&admin, &[s(&src)]));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.snapshot_ids(&admin) != [last.clone()] {
        assert!(std::time::Instant::now() < deadline, "the policy was not applied");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let runs: Vec<serde_json::Value> = server
        .audit(&admin)
        .into_iter()
        .filter(|r| r["call"] == "scheduled forget" && r["result"] == "ok")
        .collect();
    assert!(
        runs.iter().any(|r| r["detail"].as_str().unwrap().contains("removed")),
        "{runs:?}"
    );
}
