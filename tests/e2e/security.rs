//! Encryption at rest: no file of the store, index cache included, holds a name, a byte of
//! content, a label, or an unkeyed hash of any content that was snapshotted.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{Repo, Rng, contains, files_under, run_command, write_random};

/// The SHA-256 of a file, from `sha256sum`, as hex.
fn sha256_hex(path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = run_command(cmd);
    assert_eq!(out.code, Some(0), "sha256sum failed\n{out}");
    let hex = out
        .stdout
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string();
    assert_eq!(hex.len(), 64, "{out}");
    hex
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every way the content of `path` could be recognised: BLAKE3 and SHA-256, hex and raw.
fn hash_needles(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let b3 = blake3::hash(&bytes);
    let sha = sha256_hex(path);
    vec![
        (format!("BLAKE3 hex of {name}"), b3.to_hex().as_bytes().to_vec()),
        (
            format!("BLAKE3 hex (upper) of {name}"),
            b3.to_hex().to_uppercase().into_bytes(),
        ),
        (format!("BLAKE3 raw of {name}"), b3.as_bytes().to_vec()),
        (format!("SHA-256 hex of {name}"), sha.as_bytes().to_vec()),
        (format!("SHA-256 raw of {name}"), unhex(&sha)),
    ]
}

#[test]
fn store_and_cache_hold_no_plaintext() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let marker = "qZ8rT2vW6yB4nM1kX9pL3sD7fG5hJ0aC2eU4iO6w"; // 40 characters
    assert_eq!(marker.len(), 40);
    let dir_name = "amber-secret-directory-R4T9Q2";
    let file_name = "amber-secret-filename-K7M3P8.ipynb";
    let link_target = "amber-secret-link-target-V5N1X6";
    let xattr_value = "amber-secret-xattr-value-H2J8L4";
    let (tag, lab, researcher, meta) = (
        "amber-secret-tag-W3E7R1",
        "amber-secret-lab-Y6U2I9",
        "amber-secret-researcher-O4P8A3",
        "amber-secret-meta-S1D5F9",
    );

    let small = src.join(dir_name).join(file_name);
    fs::create_dir_all(small.parent().unwrap()).unwrap();
    fs::write(&small, format!("{{\"cells\": [\"{marker}\"]}}\n")).unwrap();
    let _ = xattr::set(&small, "user.comment", xattr_value.as_bytes());
    let big = src.join("payload.bin");
    write_random(&big, 2 * 1024 * 1024, &mut Rng::new(0x5EC));
    std::os::unix::fs::symlink(link_target, src.join("link")).unwrap();

    let meta_arg = format!("funding={meta}");
    repo.snapshot(
        &src,
        &[
            "--tag",
            tag,
            "--lab",
            lab,
            "--researcher",
            researcher,
            "--meta",
            &meta_arg,
        ],
    );
    // Exercise every reader too, so whatever they cache is on disk when we look.
    repo.ok(&["ls", "latest"]);
    repo.snapshots();
    repo.restore("latest", &repo.scratch("restored"));
    assert_eq!(
        fs::read(repo.scratch("restored").join(dir_name).join(file_name)).unwrap(),
        fs::read(&small).unwrap()
    );

    let mut needles: Vec<(String, Vec<u8>)> = [
        ("content marker", marker),
        ("directory name", dir_name),
        ("file name", file_name),
        ("symlink target", link_target),
        ("xattr value", xattr_value),
        ("tag", tag),
        ("lab", lab),
        ("researcher", researcher),
        ("metadata value", meta),
    ]
    .iter()
    .map(|(what, s)| ((*what).to_string(), s.as_bytes().to_vec()))
    .collect();
    needles.extend(hash_needles(&small));
    needles.extend(hash_needles(&big));

    let files = files_under(&repo.path);
    let cache_files = files.iter().filter(|f| f.starts_with(repo.path.join("cache"))).count();
    assert!(
        files.iter().any(|f| f.starts_with(repo.path.join("data"))),
        "no data pack written"
    );
    assert!(
        cache_files > 0,
        "the index cache should hold files under {}",
        repo.path.join("cache").display()
    );
    let mut found = Vec::new();
    for f in &files {
        let bytes = fs::read(f).unwrap();
        for (what, needle) in &needles {
            if contains(&bytes, needle) {
                found.push(format!("{what} in {}", f.strip_prefix(&repo.path).unwrap().display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "plaintext found at rest ({} store files scanned):\n{}",
        files.len(),
        found.join("\n")
    );
}
