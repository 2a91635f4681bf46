//! Who may do what: roles within a vault, vaults against each other, revoked, missing and
//! malformed tokens, and the audit log's record of a refusal.

use std::fs;

use serde_json::Value;

use super::harness::{Server, s};
use crate::common::Out;

fn two_vault_server() -> (Server, tempfile::TempDir) {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("amber.toml");
    fs::write(&cfg, "vaults = [\"lab-a\", \"lab-b\"]\n").unwrap();
    let server = Server::start_with(&["--config", s(&cfg)], &[]);
    (server, cfg_dir)
}

fn small_tree(server: &Server, name: &str) -> std::path::PathBuf {
    let dir = server.scratch(name);
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("a.txt"), format!("hello from {name}\n")).unwrap();
    fs::write(dir.join("sub/b.txt"), "second file\n").unwrap();
    dir
}

fn id_of_push(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Runs a client command with `--json`.
fn run(server: &Server, token: &str, args: &[&str]) -> Out {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    server.run(token, &all)
}

#[test]
fn a_sidecar_only_pushes_and_a_restore_token_only_reads() {
    let server = Server::start();
    let admin = server.admin();
    let sidecar = server.token(&admin, "sidecar");
    let reader = server.token(&admin, "restore");
    let tree = small_tree(&server, "tree");

    // The sidecar pushes; then it can see nothing.
    let id = id_of_push(&server.push(&sidecar, &[s(&tree)]));
    let dest = server.scratch("dest");
    for args in [
        vec!["snapshots"],
        vec!["ls", id.as_str()],
        vec!["restore", id.as_str(), s(&dest)],
        vec!["diff", id.as_str(), id.as_str()],
        vec!["token", "list"],
        vec!["token", "create", "--role", "admin", "--name", "escalate"],
    ] {
        run(&server, &sidecar, &args).expect_error(&["(PermissionDenied)"]);
    }
    assert!(
        !dest.exists() || fs::read_dir(&dest).unwrap().next().is_none(),
        "nothing restored"
    );

    // The restore token reads and restores, but cannot push or manage tokens.
    assert_eq!(server.snapshot_ids(&reader), vec![id.clone()]);
    assert!(
        run(&server, &reader, &["ls", &id])
            .expect_code(0)
            .json()
            .as_array()
            .unwrap()
            .len()
            == 3
    );
    server.ok(&reader, &["restore", &id, s(&dest)]);
    assert_eq!(fs::read_to_string(dest.join("sub/b.txt")).unwrap(), "second file\n");
    server.ok(&reader, &["diff", &id, &id]);
    let other = small_tree(&server, "other");
    run(&server, &reader, &["push", s(&other)]).expect_error(&["(PermissionDenied)"]);
    for args in [
        vec!["token", "list"],
        vec!["token", "create", "--role", "sidecar", "--name", "x"],
    ] {
        run(&server, &reader, &args).expect_error(&["(PermissionDenied)"]);
    }
    assert_eq!(server.snapshot_ids(&admin), vec![id], "the refused push stored nothing");
}

#[test]
fn another_vault_is_refused_whether_or_not_the_snapshot_exists() {
    let (server, _cfg) = two_vault_server();
    let (a, b) = (server.admin_of("lab-a"), server.admin_of("lab-b"));
    let in_b = id_of_push(&server.push(&b, &[s(&small_tree(&server, "b-tree"))]));
    let missing = "ab".repeat(32);
    assert_ne!(in_b, missing);

    let refused = |args: &[&str]| -> String {
        let out = run(&server, &a, args);
        out.expect_error(&["(PermissionDenied)"]);
        out.stderr
    };
    let dest = server.scratch("dest");
    let layer_out = server.scratch("layer.tar");
    for (exists, absent) in [
        (
            vec!["--vault", "lab-b", "ls", in_b.as_str()],
            vec!["--vault", "lab-b", "ls", missing.as_str()],
        ),
        (
            vec!["--vault", "lab-b", "restore", in_b.as_str(), s(&dest)],
            vec!["--vault", "lab-b", "restore", missing.as_str(), s(&dest)],
        ),
        (
            vec!["--vault", "lab-b", "diff", in_b.as_str(), in_b.as_str()],
            vec!["--vault", "lab-b", "diff", missing.as_str(), missing.as_str()],
        ),
        (
            vec!["--vault", "lab-b", "restore", in_b.as_str(), "--tar", s(&layer_out)],
            vec!["--vault", "lab-b", "restore", missing.as_str(), "--tar", s(&layer_out)],
        ),
    ] {
        let (e1, e2) = (refused(&exists), refused(&absent));
        assert_eq!(e1, e2, "the answer must not reveal whether the snapshot exists");
    }
    refused(&["--vault", "lab-b", "snapshots"]);
    refused(&["--vault", "lab-b", "token", "list"]);
    refused(&["--vault", "lab-b", "push", s(&small_tree(&server, "a-tree"))]);
    // An unknown vault gets the same refusal as an existing one (the name aside).
    let unknown = refused(&["--vault", "no-such-vault", "ls", &missing]);
    let known = refused(&["--vault", "lab-b", "ls", &missing]);
    assert_eq!(unknown.replace("no-such-vault", "lab-b"), known);
    // Without --vault, the token's own vault simply does not hold it.
    run(&server, &a, &["ls", &in_b]).expect_error(&["(NotFound)"]);
    assert!(server.snapshot_ids(&a).is_empty(), "lab-a holds nothing");
    assert_eq!(server.snapshot_ids(&b), vec![in_b.clone()], "lab-b unchanged");
    assert!(!dest.exists() || fs::read_dir(&dest).unwrap().next().is_none());

    // Every refusal is in lab-a's audit log, none in lab-b's.
    let denied_a = server
        .audit(&a)
        .iter()
        .filter(|l| l["result"] == "permission_denied")
        .count();
    assert!(denied_a >= 10, "lab-a's audit log records the refusals ({denied_a})");
    assert!(
        server.audit(&b).iter().all(|l| l["result"] != "permission_denied"),
        "lab-b's log has no record of lab-a's attempts"
    );
}

#[test]
fn a_revoked_token_is_unauthenticated() {
    let server = Server::start();
    let admin = server.admin();
    let created = server.ok(&admin, &["token", "create", "--role", "restore", "--name", "leaving"]);
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["info"]["id"].as_str().unwrap().to_string();
    server.ok(&token, &["snapshots"]);
    let listed = server.ok(&admin, &["token", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked_unix_nanos"].is_null()),
        "{listed}"
    );
    server.ok(&admin, &["token", "revoke", &id]);
    run(&server, &token, &["snapshots"]).expect_error(&["(Unauthenticated)", "revoked"]);
    run(&server, &token, &["push", s(&small_tree(&server, "t"))]).expect_error(&["(Unauthenticated)"]);
    let listed = server.ok(&admin, &["token", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && !t["revoked_unix_nanos"].is_null()),
        "{listed}"
    );
    // The token's secret never appears in any error.
    let out = run(&server, &token, &["snapshots"]);
    assert!(!out.stderr.contains(token.rsplit('_').next().unwrap()), "{out}");
    // Revoking one token leaves the others valid.
    server.ok(&admin, &["snapshots"]);
}

#[test]
fn a_missing_or_malformed_token_is_unauthenticated() {
    let server = Server::start();
    let admin = server.admin();
    let tree = small_tree(&server, "t");
    let well_formed_unknown = format!("amber1_{}_{}", "0".repeat(16), "1".repeat(64));
    let tampered = {
        let mut t = admin.clone();
        let last = t.pop().unwrap();
        t.push(if last == '0' { '1' } else { '0' });
        t
    };
    for token in ["", "nope", "Bearer", well_formed_unknown.as_str(), tampered.as_str()] {
        for args in [vec!["snapshots"], vec!["push", s(&tree)], vec!["token", "list"]] {
            run(&server, token, &args).expect_error(&["(Unauthenticated)"]);
        }
    }
    // No AMBER_TOKEN at all: the client says so before calling.
    let mut cmd = server.client("", &["--json", "snapshots"]);
    cmd.env_remove("AMBER_TOKEN");
    crate::common::run_command(cmd).expect_error(&["AMBER_TOKEN"]);
    assert!(server.snapshot_ids(&admin).is_empty());
}

#[test]
fn the_audit_log_records_a_refused_attempt() {
    let server = Server::start();
    let admin = server.admin();
    let sidecar = server.token(&admin, "sidecar");
    run(&server, &sidecar, &["snapshots"]).expect_error(&["(PermissionDenied)"]);
    let reader = server.token(&admin, "restore");
    run(&server, &reader, &["push", s(&small_tree(&server, "t"))]).expect_error(&["(PermissionDenied)"]);

    let lines = server.audit(&admin);
    let denied: Vec<&Value> = lines.iter().filter(|l| l["result"] == "permission_denied").collect();
    assert!(
        denied
            .iter()
            .any(|l| l["call"] == "/amber.v1.Catalog/ListSnapshots" && l["role"] == "sidecar"),
        "{lines:#?}"
    );
    assert!(
        denied
            .iter()
            .any(|l| l["call"] == "/amber.v1.Ingest/Push" && l["role"] == "restore"),
        "{lines:#?}"
    );
    for l in &denied {
        assert_eq!(
            l["token_id"].as_str().unwrap().len(),
            16,
            "the token id is recorded: {l}"
        );
        assert!(!l["detail"].as_str().unwrap().is_empty(), "{l}");
    }
    // Tokens never appear in the log, and nothing of it is readable in the store.
    let raw = serde_json::to_string(&lines).unwrap();
    let stored = crate::common::files_under(&server.data().join("vaults/default/audit"));
    assert!(stored.len() >= lines.len(), "one object per record");
    for t in [&admin, &sidecar, &reader] {
        assert!(
            !raw.contains(t.rsplit('_').next().unwrap()),
            "a token secret in the audit log"
        );
    }
    for file in &stored {
        let bytes = fs::read(file).unwrap();
        // Records, and each chain's head.
        assert!(bytes.starts_with(b"AMBRAUD"), "{}", file.display());
        for plain in [&b"ListSnapshots"[..], b"permission_denied", b"sidecar"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{} holds plaintext",
                file.display()
            );
        }
    }
}

#[test]
fn a_lost_admin_token_is_recovered_offline_in_the_data_directory() {
    let mut server = Server::start();
    let old = server.admin();
    server.kill();
    let data = server.data();
    let offline = |args: &[&str]| {
        let mut cmd = std::process::Command::new(crate::common::amber_bin());
        cmd.arg("--repo").arg(&data).arg("--json").args(args);
        cmd.env_remove("AMBER_SERVER")
            .env_remove("AMBER_TOKEN")
            .env_remove("AMBER_VAULT");
        crate::common::run_command(cmd)
    };
    let created = offline(&["token", "create", "--role", "admin", "--name", "recovery"])
        .expect_code(0)
        .json();
    let fresh = created["token"].as_str().unwrap().to_string();
    let old_id = old.split('_').nth(1).unwrap().to_string();
    offline(&["token", "revoke", &old_id]).expect_code(0);
    offline(&["--vault", "no-such", "token", "list"]).expect_error(&["no vault"]);
    server.restart();
    let listed = server.ok(&fresh, &["token", "list"]);
    let tokens = listed.as_array().unwrap();
    assert!(
        tokens
            .iter()
            .any(|t| t["name"] == "recovery" && t["revoked_unix_nanos"].is_null())
    );
    assert!(
        tokens
            .iter()
            .any(|t| t["id"] == old_id.as_str() && !t["revoked_unix_nanos"].is_null())
    );
    server.run(&old, &["snapshots"]).expect_error(&["Unauthenticated"]);
}

/// The audit log is in the vault's store, one sealed object per record, a chain per server
/// start; `amber audit` reads every chain, and a deleted, changed or moved record is named.
#[test]
fn the_audit_log_lives_in_the_store_and_damage_to_it_is_named() {
    let mut server = Server::start();
    let admin = server.admin();
    let sidecar = server.token(&admin, "sidecar");
    server.push(&sidecar, &[s(&small_tree(&server, "t1"))]);
    server.snapshot_ids(&admin);
    server.restart();
    server.push(&sidecar, &[s(&small_tree(&server, "t2"))]);
    let records = server.audit(&admin);
    let writers: std::collections::BTreeSet<&str> = records.iter().map(|r| r["writer"].as_str().unwrap()).collect();
    assert_eq!(writers.len(), 2, "one chain per server start: {records:#?}");
    let pushes = records
        .iter()
        .filter(|r| r["call"] == "/amber.v1.Ingest/Push" && r["result"] == "ok")
        .count();
    assert_eq!(pushes, 2, "both pushes, across the restart");
    let none = server.ok(&admin, &["audit", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(none["records"], serde_json::json!([]));

    // Damage: delete record 1 of one chain, flip a byte of record 0 of the other, and move
    // a record of the first chain into the second's place 5.
    let dir = server.data().join("vaults/default/audit");
    let chains: Vec<String> = writers.iter().map(|w| w.to_string()).collect();
    let record = |w: &str, seq: u64| dir.join(w).join(format!("{seq:016x}"));
    fs::remove_file(record(&chains[0], 1)).unwrap();
    let mut bytes = fs::read(record(&chains[1], 0)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(record(&chains[1], 0), &bytes).unwrap();
    fs::copy(record(&chains[0], 2), record(&chains[1], 50)).unwrap();

    let out = server.run(&admin, &["--json", "audit"]);
    out.expect_code(3);
    let problems = out.json()["problems"].as_array().unwrap().clone();
    let named = |w: &str, seq: u64, what: &str| {
        let key = format!("audit/{w}/{seq:016x}");
        problems
            .iter()
            .any(|p| p["key"] == key.as_str() && p["detail"].as_str().unwrap().contains(what))
    };
    assert!(named(&chains[0], 1, "missing"), "{problems:#?}");
    assert!(named(&chains[1], 0, "damaged"), "{problems:#?}");
    assert!(named(&chains[1], 50, "damaged"), "{problems:#?}");
    assert!(out.stderr.contains("audit log damaged at"), "{}", out.stderr);

    // The last record of the first chain (the one no record was moved into) deleted: no
    // link names it, the chain's head does. (Read before this call's own record is added.)
    let old = chains[0].as_str();
    let last = fs::read_dir(dir.join(old))
        .unwrap()
        .filter_map(|e| u64::from_str_radix(e.unwrap().file_name().to_str().unwrap(), 16).ok())
        .max()
        .unwrap();
    fs::remove_file(record(old, last)).unwrap();
    let out = server.run(&admin, &["--json", "audit"]);
    out.expect_code(3);
    let problems = out.json()["problems"].as_array().unwrap().clone();
    let (chain, named_last) = (format!("audit/{old}/"), format!("its head names record {last})"));
    assert!(
        problems.iter().any(|p| {
            let detail = p["detail"].as_str().unwrap();
            p["key"].as_str().unwrap().starts_with(&chain)
                && detail.contains("at the end")
                && detail.contains(&named_last)
        }),
        "{problems:#?}"
    );
}
