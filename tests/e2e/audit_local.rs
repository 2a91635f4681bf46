//! Commands run on a repository directly write audit records too (role `local`, a chain
//! per process): snapshots made, restores, verifications, key changes, with their
//! outcome; listings are not recorded.

use serde_json::Value;

use crate::common::{Repo, id_of, p, sample_tree};

fn local_records(repo: &Repo) -> Vec<Value> {
    let log = repo.ok(&["audit"]);
    assert_eq!(log["problems"], serde_json::json!([]), "{log}");
    log["records"].as_array().unwrap().clone()
}

#[test]
fn local_commands_that_change_read_or_check_the_vault_are_audited() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    sample_tree(&src, 81);
    let id = id_of(&repo.snapshot(&src, &[]));
    repo.ok(&["ls", "latest"]);
    repo.ok(&["snapshots"]);
    repo.restore("latest", &repo.scratch("out"));
    repo.ok(&["verify"]);
    repo.run(&["restore", &"f".repeat(64), p(&repo.scratch("none"))])
        .expect_code(1);
    let pass = repo.scratch("new-pass");
    std::fs::write(&pass, "another passphrase\n").unwrap();
    repo.ok(&[
        "key",
        "add",
        "--new-password-file",
        p(&pass),
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
    ]);

    let records = local_records(&repo);
    let calls: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["call"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("amber snapshot", id.as_str(), "ok"),
            ("amber restore", "latest", "ok"),
            ("amber verify", "", "ok"),
            ("amber restore", "f".repeat(64).as_str(), "not_found"),
            ("amber key add", "", "ok"),
        ],
        "{records:#?}"
    );
    for r in &records {
        assert_eq!(r["role"], "local", "{r}");
    }
    // One chain per process.
    let writers: std::collections::BTreeSet<&str> = records.iter().map(|r| r["writer"].as_str().unwrap()).collect();
    assert_eq!(writers.len(), records.len());
}
