//! Two `amber serve` processes on one bucket: a cluster. They share the vault registry,
//! the sealed vault keys and the tokens (all in the store), keep their caches in state
//! directories of their own, and each sees what the other committed.

use std::fs;
use std::time::{Duration, Instant};

use amber_engine::backend::Backend;

use super::{Moto, sh};
use crate::common::{assert_same_tree, contains, id_of, p, python_venv, sample_tree};
use crate::server::harness::Server;

const CLUSTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn start(moto: &Moto, store: &str) -> Server {
    let mut env: Vec<(String, String)> = moto.env();
    env.push(("AMBER_STORE".into(), store.into()));
    env.push(("AMBER_CLUSTER_KEY".into(), CLUSTER_KEY.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&[], &env)
}

#[test]
fn two_servers_on_one_bucket_share_vaults_tokens_and_snapshots() {
    let moto = Moto::shared();
    let bucket = moto.bucket("cluster");
    let store = format!("s3://{bucket}/amber");
    let one = start(moto, &store);
    let admin = one.admin();
    let two = start(moto, &store);
    assert!(two.admin_tokens.is_empty(), "the second server created the vault again");

    // A real Python environment through the first server: tree, layer, volume.
    let venv = python_venv();
    let tree = id_of(&one.push(&admin, &[p(&venv)]));
    let scratch = tempfile::tempdir().unwrap();
    let layer = scratch.path().join("venv.tar");
    sh(&format!("tar -cf {} -C {} .", p(&layer), p(&venv)));
    let layer_id = id_of(&one.push(&admin, &["--tar", p(&layer)]));
    let image = scratch.path().join("vol.img");
    sh(&format!(
        "truncate -s 128M {} && mkfs.ext4 -q -F -d {} {}",
        p(&image),
        p(&venv.join("bin")),
        p(&image)
    ));
    let volume = id_of(&one.push(&admin, &["--block", p(&image)]));

    // The second server restores all three, bit-exact.
    let out = scratch.path().join("tree");
    two.ok(&admin, &["restore", &tree, p(&out)]);
    assert_same_tree(&venv, &out);
    let tar_out = scratch.path().join("out.tar");
    two.ok(&admin, &["restore", &layer_id, "--tar", p(&tar_out)]);
    assert_eq!(fs::read(&tar_out).unwrap(), fs::read(&layer).unwrap());
    let img_out = scratch.path().join("out.img");
    two.ok(&admin, &["restore", &volume, "--block", p(&img_out)]);
    sh(&format!("cmp {} {}", p(&image), p(&img_out)));

    // A token made on the second server works on the first within its refresh period.
    let reader = two.token(&admin, "restore");
    let start_wait = Instant::now();
    loop {
        let out = one.run(&reader, &["--json", "snapshots"]);
        if out.code == Some(0) {
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(30),
            "token never reached the first server\n{out}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Both ingest at once; each lists the other's snapshots at once.
    let dirs: Vec<_> = (0..2)
        .map(|i| {
            let d = scratch.path().join(format!("env-{i}"));
            sample_tree(&d, 70 + i);
            d
        })
        .collect();
    let ids: Vec<String> = std::thread::scope(|s| {
        let a = s.spawn(|| id_of(&one.push(&admin, &[p(&dirs[0])])));
        let b = s.spawn(|| id_of(&two.push(&admin, &[p(&dirs[1])])));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for server in [&one, &two] {
        let listed: Vec<String> = server
            .ok(&admin, &["snapshots"])
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect();
        assert_eq!(listed.len(), 5, "{listed:?}");
        assert!(ids.iter().all(|id| listed.contains(id)));
    }
    let back = scratch.path().join("back");
    one.ok(&admin, &["restore", &ids[1], p(&back)]);
    assert_same_tree(&dirs[1], &back);

    // One audit log for the vault, in the bucket: either server shows what both answered.
    let records = one.audit(&admin);
    let writers: std::collections::BTreeSet<&str> = records.iter().map(|r| r["writer"].as_str().unwrap()).collect();
    assert_eq!(writers.len(), 2, "a chain from each server: {records:#?}");
    let pushes = |w: &str| {
        records
            .iter()
            .filter(|r| r["writer"] == w && r["call"] == "/amber.v1.Ingest/Push" && r["result"] == "ok")
            .count()
    };
    assert!(writers.iter().all(|w| pushes(w) >= 1), "{records:#?}");
    assert_eq!(
        two.audit(&admin).len(),
        records.len() + 1,
        "the same log, and the first read in it"
    );

    // The bucket holds the vault, the registry with the sealed key and the tokens; nothing
    // in it is a passphrase, a token secret, or the environment's plaintext.
    let objects = moto.backend(&bucket, "amber").list("").unwrap();
    assert!(
        objects.iter().any(|o| o.key == "server/vaults/default.key"),
        "no sealed vault key"
    );
    assert!(objects.iter().any(|o| o.key == "server/tokens.json"), "no token object");
    let bucket_store = moto.backend(&bucket, "amber");
    for o in &objects {
        let bytes = bucket_store.get(&o.key).unwrap();
        assert!(
            !contains(&bytes, admin.split('_').next_back().unwrap().as_bytes()),
            "{} holds a token secret",
            o.key
        );
        assert!(!contains(&bytes, b"site-packages"), "{} holds plaintext", o.key);
    }
    // The state directories are the servers' own: neither is in the bucket.
    assert!(one.data().join("state/vaults/default/cache").is_dir());
    assert!(two.data().join("state/vaults/default/cache").is_dir());
}
