//! Snapshot → restore gives back the same tree: a real Python environment, a varied small
//! tree, partial restores, and `diff`; the last three on the local store and on S3.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{Kind, Node, Repo, assert_same_tree, id_of, num, python_venv, sample_tree, walk_tree};
use crate::stores::{Store, on_every_store};

on_every_store! {
    varied_tree_round_trip => varied_tree_round_trip_on,
    restore_include_restores_only_matching_paths => restore_include_restores_only_matching_paths_on,
    incremental_snapshot_and_diff => incremental_snapshot_and_diff_on,
}

/// Checks `amber ls` against the tree on disk: same paths, types, sizes, mtimes, targets.
fn assert_ls_matches(repo: &Repo, snapshot: &str, tree: &BTreeMap<PathBuf, Node>) {
    let listed = match repo.ok(&["ls", snapshot]) {
        Value::Array(a) => a,
        other => panic!("`amber ls` did not print an array: {other}"),
    };
    assert_eq!(
        listed.len(),
        tree.len(),
        "`amber ls` lists as many entries as the tree has"
    );
    for e in &listed {
        let path = e["path"].as_str().expect("path");
        let node = tree
            .get(Path::new(path))
            .unwrap_or_else(|| panic!("`amber ls` lists {path:?}, which is not in the tree"));
        let letter = match node.kind {
            Kind::File => "-",
            Kind::Dir => "d",
            Kind::Symlink => "l",
            Kind::Other(_) => "?",
        };
        assert_eq!(e["type"], letter, "type of {path}: {e}");
        if node.kind == Kind::File {
            assert_eq!(num(e, "size"), node.size, "size of {path}: {e}");
        }
        let nanos = i128::from(node.mtime) * 1_000_000_000 + i128::from(node.mtime_nsec);
        assert_eq!(
            e["mtime_unix_nanos"].as_i64().map(i128::from),
            Some(nanos),
            "mtime of {path}: {e}"
        );
        let mode = u32::from_str_radix(e["mode"].as_str().expect("mode"), 8).expect("octal mode");
        if node.kind != Kind::Symlink {
            assert_eq!(mode & 0o7777, node.mode, "mode of {path}: {e}");
        }
        let target = node
            .target
            .as_ref()
            .map(|t| t.to_str().expect("UTF-8 target").to_string());
        assert_eq!(
            e["link_target"].as_str().map(str::to_string),
            target,
            "link target of {path}"
        );
    }
}

#[test]
fn python_environment_round_trip() {
    let venv = python_venv();
    let tree = walk_tree(&venv);
    let files = tree.values().filter(|n| n.kind == Kind::File).count() as u64;
    let dirs = tree.values().filter(|n| n.kind == Kind::Dir).count() as u64;
    let symlinks = tree.values().filter(|n| n.kind == Kind::Symlink).count();
    let bytes: u64 = tree.values().filter(|n| n.kind == Kind::File).map(|n| n.size).sum();
    assert!(
        tree.len() > 10_000,
        "the venv should have over 10000 entries, has {}",
        tree.len()
    );
    assert!(symlinks >= 1, "the venv should have symlinks (bin/python)");
    assert_eq!(tree.get(Path::new("bin/python")).map(|n| n.kind), Some(Kind::Symlink));

    let repo = Repo::init();
    let snap = repo.snapshot(
        &venv,
        &[
            "--tag",
            "venv",
            "--lab",
            "ml-lab",
            "--researcher",
            "ada",
            "--meta",
            "experiment=e2e",
        ],
    );
    let id = id_of(&snap);
    assert_eq!(num(&snap, "files"), files, "files counted: {snap}");
    assert_eq!(num(&snap, "dirs"), dirs, "dirs counted: {snap}");
    assert_eq!(num(&snap, "bytes"), bytes, "bytes counted: {snap}");
    assert_eq!(
        num(&snap, "bytes_read"),
        bytes,
        "first snapshot reads everything: {snap}"
    );

    let list = repo.snapshots();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["kind"], "tree");
    assert_eq!(s["tags"], serde_json::json!(["venv"]));
    assert_eq!(s["lab"], "ml-lab");
    assert_eq!(s["researcher"], "ada");
    assert_eq!(s["metadata"]["experiment"], "e2e");
    assert_eq!(s["path"], fs::canonicalize(&venv).unwrap().to_str().unwrap());
    assert_eq!(s["complete"], true);
    assert_eq!(num(s, "files"), files);

    let dest = repo.scratch("restored");
    let r = repo.restore(&id, &dest);
    assert_eq!(num(&r, "files"), files, "restore count: {r}");
    assert_eq!(num(&r, "bytes"), bytes, "restore bytes: {r}");
    assert_same_tree(&venv, &dest);
    assert_ls_matches(&repo, &id[..12], &tree);
}

fn varied_tree_round_trip_on(store: Store) {
    let repo = store.repo("varied");
    let src = repo.scratch("src");
    let entries = sample_tree(&src, 1);
    let snap = repo.snapshot(&src, &[]);
    let dest = repo.scratch("restored");
    repo.restore("latest", &dest);
    assert_same_tree(&src, &dest);
    let tree = walk_tree(&src);
    assert_eq!(tree.len(), entries);
    assert_ls_matches(&repo, &id_of(&snap), &tree);

    // Hard links come back as hard links.
    let restored = walk_tree(&dest);
    assert_eq!(
        restored[Path::new("hard-a")].inode,
        restored[Path::new("pkg0/hard-b")].inode,
        "a hard-linked pair should be restored as one inode"
    );

    // `ls` below a path lists only that subtree.
    let sub = repo.ok(&["ls", "latest", "pkg0/sub"]);
    let paths: Vec<&str> = sub
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["pkg0/sub/deeper", "pkg0/sub/deeper/data.bin"], "{sub}");
}

fn restore_include_restores_only_matching_paths_on(store: Store) {
    let repo = store.repo("include");
    let src = repo.scratch("src");
    sample_tree(&src, 2);
    repo.snapshot(&src, &[]);
    let dest = repo.scratch("partial");
    repo.ok(&[
        "restore",
        "latest",
        dest.to_str().unwrap(),
        "--include",
        "pkg1",
        "--include",
        "*.sh",
    ]);
    let got = walk_tree(&dest);
    let want: BTreeMap<_, _> = walk_tree(&src)
        .into_iter()
        .filter(|(p, _)| p.starts_with("pkg1") || p == Path::new("run.sh"))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "--include pkg1 --include '*.sh' should restore exactly pkg1/** and run.sh"
    );
    assert!(crate::common::same_content(
        &src.join("pkg1/mod3.py"),
        &dest.join("pkg1/mod3.py")
    ));
}

fn incremental_snapshot_and_diff_on(store: Store) {
    let repo = store.repo("incremental");
    let src = repo.scratch("src");
    sample_tree(&src, 3);
    let a = repo.snapshot(&src, &[]);

    // One change of each kind.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(src.join("pkg0/mod0.py"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"\nappended line\n").unwrap();
    drop(f);
    fs::remove_file(src.join("pkg1/mod1.py")).unwrap();
    fs::write(src.join("new.txt"), "a new file\n").unwrap();
    fs::set_permissions(src.join("pkg2/mod0.py"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(src.join("link-rel")).unwrap();
    fs::write(src.join("link-rel"), "now a regular file\n").unwrap();

    let b = repo.snapshot(&src, &[]);
    assert_eq!(
        b["parent"], a["id"],
        "the earlier snapshot of the same path is the parent: {b}"
    );
    // Re-read: the appended file, the new file, the type-changed path, and the chmod-ed
    // file (its ctime changed). Everything else comes from the parent unread.
    let reread = ["pkg0/mod0.py", "new.txt", "link-rel", "pkg2/mod0.py"];
    let reread_bytes: u64 = reread.iter().map(|r| fs::metadata(src.join(r)).unwrap().len()).sum();
    assert_eq!(num(&b, "files_unchanged"), num(&b, "files") - 4, "{b}");
    assert_eq!(num(&b, "bytes_read"), reread_bytes, "{b}");

    let d = repo.ok(&["diff", &id_of(&a), &id_of(&b)]);
    let mut paths: Vec<&str> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    paths.sort_unstable();
    let twice: Vec<&str> = paths.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
    assert!(
        twice.is_empty(),
        "each changed path is reported once, these twice: {twice:?}\n{d}"
    );
    let change = |path: &str| -> Option<String> {
        d["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == path)
            .map(|c| c["change"].as_str().unwrap().to_string())
    };
    assert_eq!(change("pkg0/mod0.py").as_deref(), Some("modified"), "{d}");
    assert_eq!(change("pkg1/mod1.py").as_deref(), Some("removed"), "{d}");
    assert_eq!(change("new.txt").as_deref(), Some("added"), "{d}");
    assert_eq!(change("pkg2/mod0.py").as_deref(), Some("metadata"), "{d}");
    assert_eq!(change("link-rel").as_deref(), Some("type"), "{d}");
    assert_eq!(change("big.bin"), None, "untouched files are not reported: {d}");
    assert_eq!(
        (num(&d, "added"), num(&d, "removed"), num(&d, "modified")),
        (1, 1, 1),
        "{d}"
    );
    assert_eq!(num(&d, "type_changed"), 1, "{d}");

    let dest = repo.scratch("restored");
    repo.restore(&id_of(&b), &dest);
    assert_same_tree(&src, &dest);
}

/// The comparator the round-trip tests rely on notices each kind of difference.
#[test]
fn tree_comparison_detects_every_kind_of_difference() {
    use crate::common::{copy_tree, set_mtime, tree_differences};
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    sample_tree(&a, 50);
    let fresh = |name: &str| {
        let b = tmp.path().join(name);
        copy_tree(&a, &b);
        for (rel, n) in walk_tree(&a).iter().rev() {
            set_mtime(&b.join(rel), n.mtime, n.mtime_nsec as u32);
        }
        for (rel, n) in walk_tree(&a) {
            if n.kind == Kind::File && !n.xattrs.is_empty() {
                for (k, v) in &n.xattrs {
                    xattr::set(b.join(&rel), k, v).unwrap();
                }
            }
        }
        assert_eq!(
            tree_differences(&a, &b),
            Vec::<String>::new(),
            "a faithful copy compares equal"
        );
        b
    };
    let expect = |b: &Path, what: &str| {
        let d = tree_differences(&a, b);
        assert!(
            d.iter().any(|l| l.contains(what)),
            "expected a {what:?} difference, got {d:?}"
        );
    };
    let b = fresh("content");
    let m = fs::metadata(b.join("pkg0/mod0.py")).unwrap();
    let mut bytes = fs::read(b.join("pkg0/mod0.py")).unwrap();
    bytes[0] ^= 1;
    fs::write(b.join("pkg0/mod0.py"), bytes).unwrap();
    set_mtime(&b.join("pkg0/mod0.py"), m.mtime(), m.mtime_nsec() as u32);
    expect(&b, "content differs");
    let b = fresh("mode");
    fs::set_permissions(b.join("run.sh"), fs::Permissions::from_mode(0o744)).unwrap();
    expect(&b, "mode");
    let b = fresh("mtime");
    set_mtime(&b.join("pkg0/sub"), 1, 2);
    expect(&b, "mtime");
    let b = fresh("target");
    fs::remove_file(b.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("elsewhere", b.join("link-rel")).unwrap();
    expect(&b, "link target");
    let b = fresh("missing");
    fs::remove_file(b.join("empty.txt")).unwrap();
    expect(&b, "only in");
}

/// Restore must exit with its status whatever the timing: many restores at once (each
/// with its own index cache, so they do not share a RocksDB lock) load the machine so
/// that worker threads finish late. Every run must exit 0; the files are compared on the
/// last round only, to keep the load on amber.
#[test]
fn many_concurrent_restores_all_exit_cleanly() {
    const PROCESSES: usize = 8;
    const ROUNDS: usize = 20;
    let repo = Repo::init();
    let src = repo.scratch("src");
    let mut rng = crate::common::Rng::new(0xE817);
    for i in 0..5 {
        crate::common::write_random(&src.join(format!("f{i}.bin")), 3 * 1024 * 1024 + i, &mut rng);
    }
    repo.snapshot(&src, &[]);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..PROCESSES)
            .map(|i| {
                let repo = &repo;
                let src = &src;
                s.spawn(move || {
                    let cache = repo.scratch(&format!("cache-{i}"));
                    let dest = repo.scratch(&format!("restored-{i}"));
                    let mut failed = Vec::new();
                    for round in 0..ROUNDS {
                        if dest.exists() {
                            fs::remove_dir_all(&dest).unwrap();
                        }
                        let out = crate::common::run_command(repo.command(&[
                            "--cache-dir",
                            cache.to_str().unwrap(),
                            "restore",
                            "latest",
                            dest.to_str().unwrap(),
                        ]));
                        if out.code != Some(0) {
                            failed.push(format!("process {i} round {round}:\n{out}"));
                        } else if round + 1 == ROUNDS && !crate::common::tree_differences(src, &dest).is_empty() {
                            failed.push(format!("process {i} round {round}: restored tree differs"));
                        }
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} restores failed; the first:\n{}",
        failures.len(),
        PROCESSES * ROUNDS,
        failures[0]
    );
}
