//! Bad input gives a clear error and leaves the store as it was; damaged input is reported
//! path by path without losing what is intact.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{Repo, Rng, id_of, num, run_command, running_as_root, same_content, sample_tree, write_random};

/// Runs `args` and asserts it fails clearly without touching the store (cache excluded).
#[track_caller]
fn refused(repo: &Repo, password: Option<&str>, args: &[&str], needles: &[&str]) {
    let before = repo.listing();
    repo.run_with(password, args).expect_error(needles);
    assert_eq!(repo.listing(), before, "`amber {}` changed the store", args.join(" "));
}

#[test]
fn wrong_or_missing_passphrase_is_refused() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    sample_tree(&src, 10);
    repo.snapshot(&src, &[]);
    let dest = repo.scratch("dest");
    let s = src.to_str().unwrap();
    let d = dest.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["snapshots"],
        &["snapshot", s],
        &["snapshot", s, "--force"],
        &["ls", "latest"],
        &["restore", "latest", d],
        &["key", "list"],
        &["index", "rebuild"],
    ];
    for args in commands {
        refused(&repo, Some("not the passphrase"), args, &["wrong passphrase"]);
        refused(&repo, None, args, &["AMBER_PASSWORD"]);
    }
    assert!(!dest.exists(), "a refused restore must not create its destination");
    assert_eq!(repo.snapshots().len(), 1);

    // The same through --password-file: the right one works, a wrong one is refused.
    let good = repo.scratch("good-pass");
    fs::write(&good, format!("{}\n", repo.password)).unwrap();
    let out = repo.run_with(None, &["--password-file", good.to_str().unwrap(), "snapshots"]);
    out.expect_code(0);
    assert_eq!(out.json().as_array().unwrap().len(), 1, "{out}");
    let bad = repo.scratch("bad-pass");
    fs::write(&bad, "nope\n").unwrap();
    refused(
        &repo,
        None,
        &["--password-file", bad.to_str().unwrap(), "snapshots"],
        &["wrong passphrase"],
    );
    let missing = repo.scratch("no-such-file");
    refused(
        &repo,
        None,
        &["--password-file", missing.to_str().unwrap(), "snapshots"],
        &["password file"],
    );
}

#[test]
fn missing_repository_says_to_run_init() {
    let repo = Repo::uninitialised();
    let src = repo.scratch("src");
    sample_tree(&src, 11);
    // An empty directory, then a path that does not exist at all.
    fs::create_dir(&repo.path).unwrap();
    for args in [
        &["snapshots"][..],
        &["snapshot", src.to_str().unwrap()],
        &["ls", "latest"],
    ] {
        repo.run(args).expect_error(&["no repository", "amber init"]);
        assert_eq!(
            fs::read_dir(&repo.path).unwrap().count(),
            0,
            "`amber {}` wrote into an empty dir",
            args[0]
        );
    }
    fs::remove_dir(&repo.path).unwrap();
    repo.run(&["snapshots"]).expect_error(&["amber init"]);
    repo.run(&["snapshot", src.to_str().unwrap()])
        .expect_error(&["amber init"]);
    assert!(
        !repo.path.exists(),
        "a failed command must not create the repository directory"
    );

    // And init refuses to overwrite an existing repository.
    repo.init_here();
    let before = repo.listing();
    repo.run(&["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"])
        .expect_error(&["already exists"]);
    assert_eq!(repo.listing(), before, "a refused init changed the store");
}

#[test]
fn bad_source_path_is_refused() {
    let repo = Repo::init();
    let missing = repo.scratch("no-such-dir");
    refused(
        &repo,
        Some(repo.password.as_str()),
        &["snapshot", missing.to_str().unwrap()],
        &["no-such-dir"],
    );
    let file = repo.scratch("a-file");
    fs::write(&file, "not a directory").unwrap();
    refused(
        &repo,
        Some(repo.password.as_str()),
        &["snapshot", file.to_str().unwrap()],
        &["not a directory"],
    );
    assert!(repo.snapshots().is_empty());
}

#[test]
fn unknown_snapshot_is_refused() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    sample_tree(&src, 12);
    let a = id_of(&repo.snapshot(&src, &[]));
    let b = id_of(&repo.snapshot(&src, &["--force"]));
    let unused = "0123456789abcdef"
        .chars()
        .find(|c| !a.starts_with(*c) && !b.starts_with(*c))
        .unwrap()
        .to_string();
    let full_unknown = unused.repeat(64);
    let dest = repo.scratch("dest");
    let d = dest.to_str().unwrap();
    let pw = Some(repo.password.as_str());
    let matches_nothing = |args: &[&str], name: &str| refused(&repo, pw, args, &["no snapshot matches", name]);
    matches_nothing(&["ls", &unused], &unused);
    matches_nothing(&["ls", &full_unknown], &full_unknown);
    matches_nothing(&["ls", "not-hex!"], "not-hex!");
    matches_nothing(&["restore", &unused, d], &unused);
    matches_nothing(&["diff", &a, &unused], &unused);
    matches_nothing(&["diff", &full_unknown, &b], &full_unknown);
    matches_nothing(&["snapshot", src.to_str().unwrap(), "--parent", &unused], &unused);
    refused(
        &repo,
        pw,
        &["--env", "nowhere", "ls", "latest"],
        &["no snapshot matches", "nowhere"],
    );
    assert!(!dest.exists(), "a refused restore must not create its destination");
    // The real ids still resolve, by prefix too.
    assert_eq!(
        repo.ok(&["ls", &b[..8]]).as_array().unwrap().len(),
        repo.ok(&["ls", &a]).as_array().unwrap().len()
    );
}

#[test]
fn ambiguous_prefix_is_refused() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    // Pigeonhole: at most 17 snapshots until two ids share their first hex digit.
    let mut ids: Vec<String> = Vec::new();
    let digit = loop {
        let id = id_of(&repo.snapshot(&src, &["--force"]));
        if let Some(other) = ids.iter().find(|o| o[..1] == id[..1]) {
            assert_ne!(other, &id);
            break id[..1].to_string();
        }
        ids.push(id);
        assert!(ids.len() <= 16, "more than 16 snapshots with distinct first digits");
    };
    let dest = repo.scratch("dest");
    let pw = Some(repo.password.as_str());
    refused(&repo, pw, &["ls", &digit], &["ambiguous", &digit]);
    refused(&repo, pw, &["restore", &digit, dest.to_str().unwrap()], &["ambiguous"]);
    refused(&repo, pw, &["diff", &digit, &ids[0]], &["ambiguous"]);
    assert!(!dest.exists(), "a refused restore must not create its destination");
    for id in &ids {
        repo.ok(&["ls", &id[..10]]);
    }
}

// ---------------------------------------------------------------------------------------
// Unreadable source files.

/// How to make a path unreadable to the amber process. As root, permissions do not stop
/// reads, so amber runs as `nobody` through `setpriv` and the path stays root-only.
struct Unprivileged {
    as_root: bool,
}

const NOBODY: u32 = 65534;

impl Unprivileged {
    fn setup(repo: &mut Repo) -> Unprivileged {
        let as_root = running_as_root();
        if as_root {
            let probe = run_command({
                let mut c = Command::new("setpriv");
                c.arg("--version");
                c
            });
            assert_eq!(
                probe.code,
                Some(0),
                "running as root: this test needs `setpriv` (util-linux) to drop privileges\n{probe}"
            );
            fs::set_permissions(repo.root(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::create_dir(&repo.path).unwrap();
            std::os::unix::fs::chown(&repo.path, Some(NOBODY), Some(NOBODY)).unwrap();
            repo.wrapper = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
                .map(String::from)
                .to_vec();
        }
        Unprivileged { as_root }
    }

    /// Makes `path` (file or directory) unreadable to amber; returns its old mode.
    fn deny(&self, path: &Path) -> u32 {
        let old = fs::metadata(path).unwrap().permissions().mode();
        let mode = if self.as_root { 0o700 } else { 0o000 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        old
    }

    /// A directory amber can write into.
    fn writable_dir(&self, path: &Path) {
        fs::create_dir_all(path).unwrap();
        if self.as_root {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

fn unreadable_tree(repo: &Repo) -> std::path::PathBuf {
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xACCE55);
    write_random(&src.join("a.bin"), 300_000, &mut rng);
    write_random(&src.join("secret/b.bin"), 200_000, &mut rng);
    write_random(&src.join("secret/private.key"), 1000, &mut rng);
    write_random(&src.join("z/c.bin"), 100_000, &mut rng);
    for d in [&src, &src.join("secret"), &src.join("z")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    src
}

#[test]
fn unreadable_file_makes_an_incomplete_snapshot() {
    let mut repo = Repo::uninitialised();
    let who = Unprivileged::setup(&mut repo);
    repo.init_here();
    let src = unreadable_tree(&repo);
    let old = who.deny(&src.join("secret/private.key"));

    let out = repo.run(&["snapshot", src.to_str().unwrap()]);
    out.expect_code(3);
    let v = out.json();
    assert_eq!(v["complete"], false, "{out}");
    let skipped = v["skipped_paths"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{out}");
    assert_eq!(skipped[0]["path"], "secret/private.key", "{out}");
    assert!(!skipped[0]["error"].as_str().unwrap().is_empty(), "{out}");
    assert!(
        out.stderr.contains("secret/private.key"),
        "stderr should name the skipped file\n{out}"
    );
    assert_eq!(
        num(&v, "files"),
        3,
        "the three readable files are in the snapshot: {out}"
    );

    let list = repo.snapshots();
    assert_eq!(list.len(), 1, "the incomplete snapshot is saved");
    assert_eq!(list[0]["complete"], false, "{}", list[0]);
    assert_eq!(list[0]["skipped"], 1, "{}", list[0]);

    let listed: BTreeSet<String> = repo
        .ok(&["ls", "latest"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = ["a.bin", "secret", "secret/b.bin", "z", "z/c.bin"]
        .map(String::from)
        .into();
    assert_eq!(listed, want);

    let dest = repo.scratch("restored");
    who.writable_dir(&dest);
    repo.restore("latest", &dest);
    for f in ["a.bin", "secret/b.bin", "z/c.bin"] {
        assert!(same_content(&src.join(f), &dest.join(f)), "{f} restored differently");
    }
    assert!(!dest.join("secret/private.key").exists());
    fs::set_permissions(src.join("secret/private.key"), fs::Permissions::from_mode(old)).unwrap();
}

#[test]
fn unreadable_directory_makes_an_incomplete_snapshot() {
    let mut repo = Repo::uninitialised();
    let who = Unprivileged::setup(&mut repo);
    repo.init_here();
    let src = unreadable_tree(&repo);
    let old = who.deny(&src.join("secret"));

    let out = repo.run(&["snapshot", src.to_str().unwrap()]);
    out.expect_code(3);
    let v = out.json();
    assert_eq!(v["complete"], false, "{out}");
    let paths: Vec<&str> = v["skipped_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["secret"], "{out}");
    assert_eq!(num(&v, "files"), 2, "{out}");
    let list = repo.snapshots();
    assert_eq!(
        (list[0]["complete"].clone(), list[0]["skipped"].clone()),
        (Value::Bool(false), Value::from(1))
    );
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(old)).unwrap();
}

// ---------------------------------------------------------------------------------------
// A damaged pack.

const FOOTER_LEN: usize = 16;
const HEADER_LEN: usize = 16;

#[test]
fn flipped_bit_in_a_pack_fails_only_the_affected_file() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xB17F);
    let names: Vec<String> = (0..5).map(|i| format!("dir{}/file{i}.bin", i % 2)).collect();
    for (i, n) in names.iter().enumerate() {
        write_random(&src.join(n), 3 * 1024 * 1024 + 1000 * i as u64, &mut rng);
    }
    repo.snapshot(&src, &[]);

    let packs = crate::common::files_under(&repo.path.join("data"));
    assert_eq!(packs.len(), 1, "15 MiB of chunks fit one data pack: {packs:?}");
    let pack = &packs[0];
    let mut bytes = fs::read(pack).unwrap();
    let len = bytes.len();
    assert_eq!(&bytes[..8], b"AMBRPACK");
    assert_eq!(&bytes[len - 8..], b"AMBRPEND");
    let dir_len = u32::from_le_bytes(bytes[len - FOOTER_LEN..len - FOOTER_LEN + 4].try_into().unwrap()) as usize;
    let blob_end = len - FOOTER_LEN - dir_len;
    assert!(
        blob_end > HEADER_LEN + 1024 * 1024,
        "the blob area should hold the chunks"
    );
    let at = (HEADER_LEN + blob_end) / 2;
    bytes[at] ^= 0x10;
    let mut perms = fs::metadata(pack).unwrap().permissions();
    let mode = perms.mode();
    perms.set_mode(0o600);
    fs::set_permissions(pack, perms).unwrap();
    fs::write(pack, &bytes).unwrap();
    fs::set_permissions(pack, fs::Permissions::from_mode(mode)).unwrap();

    let dest = repo.scratch("restored");
    let out = repo.run(&["restore", "latest", dest.to_str().unwrap()]);
    out.expect_code(3);
    let v = out.json();
    let failed: BTreeSet<String> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(!failed.is_empty(), "a flipped bit must be detected\n{out}");
    assert!(
        failed.len() < names.len(),
        "only the file(s) using the damaged chunk fail\n{out}"
    );
    for f in &failed {
        assert!(
            names.contains(f),
            "error names {f:?}, which is not one of the files\n{out}"
        );
        assert!(out.stderr.contains(f.as_str()), "stderr should name {f}\n{out}");
        assert!(!dest.join(f).exists(), "{f} failed verification but was left on disk");
    }
    for n in names.iter().filter(|n| !failed.contains(*n)) {
        assert!(same_content(&src.join(n), &dest.join(n)), "{n} should restore intact");
    }
    assert_eq!(num(&v, "files") as usize, names.len() - failed.len(), "{out}");

    // An intact file alone restores cleanly; the damage is reported again otherwise.
    let good = names.iter().find(|n| !failed.contains(*n)).unwrap();
    let dest2 = repo.scratch("restored-one");
    let v = repo.ok(&["restore", "latest", dest2.to_str().unwrap(), "--include", good]);
    assert_eq!(num(&v, "files"), 1, "{v}");
    assert!(same_content(&src.join(good), &dest2.join(good)));
    repo.snapshots();
}
