//! The S3 backend against the real server: the conformance suite, multipart uploads, and a
//! real Python environment (tree, layer, volume) through a bucket, bit-exact, with every
//! object in the bucket sealed.

use std::fs;
use std::path::Path;

use amber_engine::backend::conformance;
use amber_engine::backend::{Backend, PutMode, PutOutcome};

use super::{Moto, sh};
use crate::common::{Rng, assert_same_tree, contains, id_of, p, python_venv};

#[test]
fn the_conformance_suite_passes_against_a_real_s3_server() {
    let moto = Moto::shared();
    let bucket = moto.bucket("conformance");
    conformance::run(&moto.backend(&bucket, "")).unwrap();
    let other = moto.bucket("conformance-prefix");
    conformance::run(&moto.backend(&other, "labs/genomics")).unwrap();
    // Everything went under the prefix.
    let root = moto.backend(&other, "");
    assert!(
        root.list("")
            .unwrap()
            .iter()
            .all(|o| o.key.starts_with("labs/genomics/"))
    );
}

#[test]
fn large_objects_go_up_in_parts_create_only() {
    let moto = Moto::shared();
    let b = moto.backend(&moto.bucket("multipart"), "v");
    let mut big = vec![0u8; 21 << 20];
    Rng::new(9).fill(&mut big);
    assert_eq!(
        b.put("data/ab/big", &big, PutMode::CreateOnly).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(b.get("data/ab/big").unwrap(), big);
    let other = vec![1u8; 21 << 20];
    assert_eq!(
        b.put("data/ab/big", &other, PutMode::CreateOnly).unwrap(),
        PutOutcome::AlreadyExisted,
        "a second multipart upload of a taken key must not replace it"
    );
    assert_eq!(
        b.get_range("data/ab/big", 20 << 20, 16).unwrap(),
        big[20 << 20..(20 << 20) + 16]
    );
    let ranges = b
        .get_ranges("data/ab/big", &[(5, 10), (100, 3), (19 << 20, 7)])
        .unwrap();
    assert_eq!(ranges[0], big[5..15]);
    assert_eq!(ranges[1], big[100..103]);
    assert_eq!(ranges[2], big[19 << 20..(19 << 20) + 7]);
}

/// Known plaintext of the environment: names and file contents that must not be in the bucket.
fn needles(venv: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = ["site-packages", "jupyterlab", "numpy/__init__.py", "pyvenv.cfg"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    for file in ["pyvenv.cfg", "bin/activate"] {
        let bytes = fs::read(venv.join(file)).unwrap();
        out.push(bytes[..bytes.len().min(48)].to_vec());
    }
    out
}

#[test]
fn a_python_environment_round_trips_through_s3_bit_exact_and_the_bucket_is_sealed() {
    let moto = Moto::shared();
    let venv = python_venv();
    let (repo, bucket) = moto.repo("python-env", "vaults/lab");
    repo.init_here();
    let tree = repo.snapshot(&venv, &[]);
    // The layer: a real tar of the environment; the volume: an ext4 image of part of it.
    let layer = repo.scratch("venv.tar");
    sh(&format!("tar -cf {} -C {} .", p(&layer), p(&venv)));
    let layer_snap = repo.ok(&["snapshot", "--tar", p(&layer)]);
    let image = repo.scratch("vol.img");
    sh(&format!("truncate -s 256M {}", p(&image)));
    let content = venv.join("lib/python3.11/site-packages/pip");
    let content = if content.is_dir() { content } else { venv.join("bin") };
    sh(&format!("mkfs.ext4 -q -F -d {} {}", p(&content), p(&image)));
    let volume = repo.ok(&["snapshot", "--block", p(&image)]);

    // A fresh state directory: everything comes from the bucket.
    fs::remove_dir_all(repo.scratch("cache")).unwrap();
    let out = repo.scratch("tree-out");
    repo.restore(&id_of(&tree), &out);
    assert_same_tree(&venv, &out);
    let tar_out = repo.scratch("layer-out.tar");
    repo.ok(&["restore", &id_of(&layer_snap), "--tar", p(&tar_out)]);
    assert_eq!(fs::read(&tar_out).unwrap(), fs::read(&layer).unwrap(), "layer differs");
    let img_out = repo.scratch("vol-out.img");
    repo.ok(&["restore", &id_of(&volume), "--block", p(&img_out)]);
    sh(&format!("cmp {} {}", p(&image), p(&img_out)));
    assert_eq!(repo.snapshots().len(), 3);

    let store = moto.backend(&bucket, "");
    let objects = store.list("").unwrap();
    assert!(objects.len() > 5, "{objects:?}");
    let needles = needles(&venv);
    for o in &objects {
        assert!(
            o.key.starts_with("vaults/lab/"),
            "{} is outside the vault's prefix",
            o.key
        );
        let bytes = store.get(&o.key).unwrap();
        for n in &needles {
            assert!(
                !contains(&bytes, n),
                "{} holds plaintext {:?}",
                o.key,
                String::from_utf8_lossy(n)
            );
        }
    }
}
