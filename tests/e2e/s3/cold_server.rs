//! Restoring archived data through `amber serve` (its store in a bucket): the client gets
//! the cold plan first and exits 4 with nothing written; `--warm-up` starts the server's
//! restore job, recorded in the vault's store, and the restore completes bit-exact; the
//! job is still known after the server restarts; `--resume` without a warm-up stops at
//! once instead of waiting forever.

use amber_engine::backend::{Backend, StorageClass};

use super::Moto;
use crate::cli::{Mode, check};
use crate::common::{Rng, assert_same_tree, id_of, sample_tree, write_random};
use crate::server::harness::s;
use crate::stores::s3_server;

#[test]
fn a_cold_restore_through_a_server_plans_warms_up_survives_a_restart_and_resumes() {
    let moto = Moto::shared();
    let bucket = moto.bucket("cold-server");
    let mut server = s3_server(&bucket, &[], &[]);
    let admin = server.admin();
    let src = server.scratch("tree");
    sample_tree(&src, 91);
    write_random(&src.join("weights.bin"), 2 << 20, &mut Rng::new(91));
    let id = id_of(&server.push(&admin, &[s(&src)]));
    let vault = moto.backend(&bucket, "amber/vaults/default");
    let archive = |vault: &dyn Backend| {
        for o in vault.list("data/").unwrap() {
            if !o.class.is_archive() {
                vault.set_storage_class(&o.key, &StorageClass::DeepArchive).unwrap();
            }
        }
    };
    archive(&vault);

    // The plan, exit 4, nothing written; a restore token may ask too.
    let dest = server.scratch("dest");
    let reader = server.token(&admin, "restore");
    let out = server.run(&reader, &["--json", "restore", &id, s(&dest)]);
    assert_eq!(out.code, Some(4), "{out}");
    let plan = out.json();
    check("cold-restore", &plan, Mode::Server);
    assert_eq!(plan["requested"], 0, "{plan}");
    assert!(plan["bytes_waiting"].as_u64().unwrap() > 2 << 20, "{plan}");
    assert!(
        plan["archived"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["class"] == "DEEP_ARCHIVE")
    );
    assert!(!dest.exists(), "a cold restore wrote before its data was readable");
    let job_key = format!("jobs/cold-restore/{id}");
    assert!(vault.head(&job_key).unwrap().is_none(), "a plan alone records no job");

    // --resume with nothing asked for stops at once (it would wait forever).
    let out = server.run(&reader, &["--json", "restore", &id, s(&dest), "--resume"]);
    assert_eq!(out.code, Some(4), "{out}");

    // Across a restart: warm up (the job is recorded in the store), then restore.
    server.restart();
    let warmed = server.ok(&reader, &["restore", &id, s(&dest), "--warm-up", "--resume"]);
    assert_eq!(warmed["errors"], serde_json::json!([]), "{warmed}");
    assert_same_tree(&src, &dest);
    let job: serde_json::Value = serde_json::from_slice(&vault.get(&job_key).unwrap()).unwrap();
    assert_eq!(job["snapshot"], id.as_str(), "{job}");
    assert!(job["created_unix_ms"].as_i64().unwrap() > 0, "{job}");
    server.restart();
    let again = server.scratch("again");
    server.ok(&reader, &["restore", &id, s(&again), "--resume"]);
    assert_same_tree(&src, &again);
    let calls: Vec<String> = server
        .audit(&admin)
        .iter()
        .map(|r| format!("{} {}", r["call"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("/amber.v1.Restore/ColdRestore warm up")),
        "{calls:?}"
    );
}
