//! Environment snapshots: a real OCI image (umoci), a notebooks tree and an ext4 volume
//! (mkfs.ext4 -d) taken together, restored and validated, locally and through a server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::cli::{Mode, check};
use crate::common::{Repo, assert_same_tree, id_of, num, p, sample_tree};
use crate::image::{Builder, lab_image, minimal_rootfs, same_files, tool};
use crate::server::faults::{METRICS_ENV, MIB, metric, random_tree, wait_until};
use crate::server::harness::Server;

/// Notebooks and data: a few modules, two notebooks in a subdirectory.
fn notebooks(dir: &Path) {
    sample_tree(dir, 7);
    fs::create_dir_all(dir.join("analysis")).unwrap();
    for name in ["qc.ipynb", "figures.ipynb"] {
        fs::write(
            dir.join("analysis").join(name),
            r#"{"cells": [], "nbformat": 4, "nbformat_minor": 5}"#,
        )
        .unwrap();
    }
}

/// An ext4 image of `size_mib` holding kernels and configs, made by `mkfs.ext4 -d`.
fn volume(dir: &Path, size_mib: u64) -> PathBuf {
    let content = dir.join("volume-content");
    fs::create_dir_all(content.join("share/jupyter/kernels/python3")).unwrap();
    fs::write(
        content.join("share/jupyter/kernels/python3/kernel.json"),
        r#"{"argv": ["python3"]}"#,
    )
    .unwrap();
    fs::write(content.join("jupyter_server_config.py"), "c.ServerApp.port = 8888\n").unwrap();
    let image = dir.join("jupyter.img");
    tool("truncate", &["-s", &format!("{size_mib}M"), p(&image)]);
    tool("mkfs.ext4", &["-q", "-F", "-d", p(&content), p(&image)]);
    image
}

fn env_args<'a>(image: &'a Path, tree: &'a str, vol: &'a str) -> Vec<&'a str> {
    vec![
        "--env",
        "lab-7",
        "env",
        "snapshot",
        "--image",
        p(image),
        "--tree",
        tree,
        "--volume",
        vol,
        "--lab",
        "genomics",
        "--researcher",
        "ada",
        "--experiment",
        "EXP-42",
        "--funding",
        "NIH R01",
        "--criticality",
        "high",
        "--package",
        "numpy",
        "--package",
        "jupyterlab",
    ]
}

#[test]
fn an_environment_is_snapshotted_restored_bit_exact_and_validated() {
    let repo = Repo::init();
    let image = lab_image(repo.root());
    let nb = repo.scratch("notebooks");
    notebooks(&nb);
    let vol = volume(repo.root(), 32);
    let tree = format!("/home/researcher/notebooks={}", nb.display());
    let volume_arg = format!("/opt/jupyter={}", vol.display());
    let made = repo.ok(&env_args(&image, &tree, &volume_arg));
    check("env-snapshot", &made, Mode::Local);
    let id = id_of(&made);
    let kinds: Vec<&str> = made["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["image", "tree", "volume"]);

    let listed = repo.ok(&["envs"]);
    check("env-info", &listed[0], Mode::Local);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["metadata"]["experiment"], "EXP-42");
    assert_eq!(listed[0]["metadata"]["packages"], "numpy\njupyterlab");

    let into = repo.scratch("restored");
    let r = repo.ok(&["--env", "lab-7", "env", "restore", "latest", "--into", p(&into)]);
    check("env-restore", &r, Mode::Local);
    assert_eq!(r["snapshot"], id.as_str(), "latest is the newest environment snapshot");
    assert_eq!(r["ok"], true, "{r}");
    let steps: Vec<String> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["part"].as_str().unwrap(), s["step"].as_str().unwrap()))
        .collect();
    for want in [
        "image:digests",
        "tree:file count",
        "volume:e2fsck",
        "environment:packages",
    ] {
        assert!(steps.contains(&want.to_string()), "{want} in {steps:?}");
    }
    assert_eq!(
        r["notebooks"],
        serde_json::json!([
            "/home/researcher/notebooks/analysis/figures.ipynb",
            "/home/researcher/notebooks/analysis/qc.ipynb"
        ])
    );
    same_files(&image, &into.join("image"));
    assert_same_tree(&nb, &into.join("trees/home/researcher/notebooks"));
    assert!(
        fs::read(&vol).unwrap() == fs::read(into.join("volumes/opt/jupyter.img")).unwrap(),
        "volume bit-exact"
    );
    let record: Value = serde_json::from_slice(&fs::read(into.join("environment.json")).unwrap()).unwrap();
    assert_eq!(record["metadata"]["funding"], "NIH R01");

    // A package the environment lacks fails the validation, naming the step.
    let missing = repo.ok(&[
        "--env",
        "lab-7",
        "env",
        "snapshot",
        "--tree",
        &tree,
        "--package",
        "tensorflow",
    ]);
    let into2 = repo.scratch("restored-2");
    let out = repo.run(&["env", "restore", &id_of(&missing), "--into", p(&into2)]);
    out.expect_code(3);
    let failed: Vec<Value> = out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .cloned()
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["step"], "packages");
    assert!(failed[0]["detail"].as_str().unwrap().contains("tensorflow"));

    // A part that fails leaves no environment snapshot.
    let before = repo.ok(&["envs"]).as_array().unwrap().len();
    repo.run(&[
        "--env",
        "lab-7",
        "env",
        "snapshot",
        "--tree",
        &tree,
        "--tree",
        "/data=/no/such/dir",
    ])
    .expect_error(&["part tree /data"]);
    assert_eq!(
        repo.ok(&["envs"]).as_array().unwrap().len(),
        before,
        "nothing committed"
    );
}

#[test]
fn an_environment_pushed_in_parts_survives_a_killed_push_and_the_retry_sends_only_the_rest() {
    let server = Server::start_with(&[], &[METRICS_ENV]);
    let admin = server.admin();
    let dir = server.scratch("env");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("small-oci");
    let b = Builder::new(&image, "base");
    b.layer(minimal_rootfs);
    b.finish();
    let data = dir.join("data");
    let tree_bytes = random_tree(&data, 0xE17, 120 * MIB);
    let vol = volume(&dir, 32);
    let tree = format!("/home/researcher/notebooks={}", data.display());
    let volume_arg = format!("/opt/jupyter={}", vol.display());
    let mut args = vec!["--json"];
    args.extend(env_args(&image, &tree, &volume_arg));
    args.retain(|a| !matches!(*a, "--package" | "numpy" | "jupyterlab"));

    let base = metric(&server, "amber_bytes_received_total");
    let mut child = server
        .client(&admin, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the parts to be under way", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it could be killed"
        );
        metric(&server, "amber_bytes_received_total") - base >= tree_bytes * 2 / 5
    });
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    wait_until("the server to close the broken pushes", || {
        metric(&server, "amber_streams_active") == 0
    });
    let kinds = |server: &Server| -> Vec<String> {
        server
            .ok(&admin, &["snapshots"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        !kinds(&server).contains(&"environment".to_string()),
        "a killed push commits no environment"
    );

    let retry = server.ok(&admin, &args[1..]);
    check("env-snapshot", &retry, Mode::Server);
    let sent: u64 = retry["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| num(p, "bytes_sent"))
        .sum();
    eprintln!("environment/killed-push: tree {tree_bytes} bytes; the retry sent {sent} bytes for all parts: {retry}");
    assert!(
        sent < tree_bytes * 9 / 10,
        "the retry resent nearly everything: {retry}"
    );
    assert_eq!(kinds(&server).iter().filter(|k| *k == "environment").count(), 1);

    // envs and env restore through the server, as locally.
    let listed = server.ok(&admin, &["--env", "lab-7", "envs"]);
    check("env-info", &listed[0], Mode::Server);
    assert_eq!(listed[0]["id"], id_of(&retry).as_str());
    let into = dir.join("restored");
    let r = server.ok(
        &admin,
        &["--env", "lab-7", "env", "restore", "latest", "--into", p(&into)],
    );
    check("env-restore", &r, Mode::Server);
    assert_eq!(r["ok"], true, "{r}");
    same_files(&image, &into.join("image"));
    assert_same_tree(&data, &into.join("trees/home/researcher/notebooks"));
    assert!(fs::read(&vol).unwrap() == fs::read(into.join("volumes/opt/jupyter.img")).unwrap());
}
