//! `amber copy`: a vault copied to a second bucket and back into a local directory,
//! bit-exact, sending only what each target lacks; a second run copies nothing.

use std::fs;

use serde_json::Value;

use super::{Moto, sh};
use crate::cli::{Mode, check};
use crate::common::{Repo, assert_same_tree, id_of, p, run_command, sample_tree};

fn copy(from: &Repo, to: &str, to_password: &str, extra: &[&str]) -> Value {
    let mut args = vec!["copy", "--to", to];
    args.extend_from_slice(extra);
    let mut cmd = from.command(&args);
    cmd.env("AMBER_TO_PASSWORD", to_password);
    let out = run_command(cmd);
    out.expect_code(0);
    let v = out.json();
    check("copy", &v, Mode::Local);
    v
}

#[test]
fn a_vault_copied_to_a_second_bucket_and_back_restores_bit_exact() {
    let moto = Moto::shared();
    let (first, _) = moto.repo("copy-a", "lab");
    first.init_here();
    let dir = first.scratch("env");
    sample_tree(&dir, 21);
    let tree = first.snapshot(&dir, &["--tag", "nightly"]);
    let layer = first.scratch("layer.tar");
    sh(&format!("tar -cf {} -C {} .", p(&layer), p(&dir)));
    first.ok(&["snapshot", "--tar", p(&layer)]);
    let image = first.scratch("vol.img");
    sh(&format!(
        "truncate -s 64M {} && mkfs.ext4 -q -F -d {} {}",
        p(&image),
        p(&dir),
        p(&image)
    ));
    first.ok(&["snapshot", "--block", p(&image)]);

    // To a second bucket, with a passphrase of its own.
    let (mut second, _) = moto.repo("copy-b", "dr");
    second.password = "another passphrase".into();
    second.init_here();
    let url_b = second.url.clone().unwrap();
    let v = copy(&first, &url_b, &second.password, &[]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 3, "{v}");
    // Again: nothing new.
    let again = copy(&first, &url_b, &second.password, &[]);
    assert_eq!(again["copied"], Value::Array(vec![]));
    assert_eq!(again["skipped"].as_array().unwrap().len(), 3);

    // And back, into a local directory.
    let back = Repo::init();
    let v = copy(&second, p(&back.path), &back.password, &[]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 3, "{v}");
    let snaps = back.snapshots();
    let kind = |k: &str| {
        id_of(
            snaps
                .iter()
                .find(|s| s["kind"] == k)
                .unwrap_or_else(|| panic!("no {k} in {snaps:?}")),
        )
    };
    let original = first.snapshots();
    let tree_back = snaps.iter().find(|s| s["kind"] == "tree").unwrap();
    let tree_orig = original.iter().find(|s| s["id"] == tree["id"]).unwrap();
    assert_eq!(tree_back["time"], tree_orig["time"], "a copy keeps the snapshot's time");
    assert_eq!(tree_back["tags"], tree_orig["tags"]);
    let out = back.scratch("out");
    back.restore(&kind("tree"), &out);
    assert_same_tree(&dir, &out);
    let tar_out = back.scratch("out.tar");
    back.ok(&["restore", &kind("tar"), "--tar", p(&tar_out)]);
    assert_eq!(fs::read(&tar_out).unwrap(), fs::read(&layer).unwrap());
    let img_out = back.scratch("out.img");
    back.ok(&["restore", &kind("block"), "--block", p(&img_out)]);
    sh(&format!("cmp {} {}", p(&image), p(&img_out)));
}
