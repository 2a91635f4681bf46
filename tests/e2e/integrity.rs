//! What independent checks found (issue 8), on a local repository: names that are not
//! UTF-8, the root directory's own metadata, FIFOs that hung a restore, a tar hard link to
//! itself, damage that must neither block a vault nor spread into new snapshots, an index
//! rebuild that must always be the way out, and arguments that selected nothing.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Out, Repo, Rng, assert_same_tree, files_under, id_of, p, set_mtime, write_random};

/// Runs `cmd`, killing it (and failing) if it takes longer than `limit`.
#[track_caller]
pub fn run_within(mut cmd: Command, limit: Duration) -> Out {
    let cmdline = format!("{cmd:?}");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmdline} hung: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        cmdline,
    }
}

/// Two names that a lossy conversion to text makes equal: `caf\xe9` and `caf\u{fffd}`.
pub fn colliding_names(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let raw = dir.join(OsStr::from_bytes(b"caf\xe9"));
    let replaced = dir.join(OsStr::from_bytes("caf\u{fffd}".as_bytes()));
    fs::write(&raw, b"latin-1 name\n").unwrap();
    fs::write(&replaced, b"replacement character name\n").unwrap();
    (raw, replaced)
}

#[test]
fn names_that_are_not_utf8_survive_snapshot_restore_ls_and_diff() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let (raw, replaced) = colliding_names(&src.join("sub"));
    let first = id_of(&repo.snapshot(&src, &[]));
    let dest = repo.scratch("out");
    repo.restore(&first, &dest);
    assert_same_tree(&src, &dest);
    let listed = repo.ok(&["ls", &first]).to_string();
    assert!(
        listed.contains("caf\\\\xe9"),
        "ls shows the raw byte as \\xe9: {listed}"
    );
    assert!(listed.contains("path_base64"), "ls carries the exact bytes: {listed}");
    // A diff names the changed one exactly.
    fs::write(&raw, b"changed\n").unwrap();
    let second = id_of(&repo.snapshot(&src, &[]));
    let diff = repo.ok(&["diff", &first, &second]).to_string();
    // base64 of the exact bytes `sub/caf\xe9`.
    assert!(
        diff.contains("c3ViL2NhZuk="),
        "the diff names sub/caf\\xe9 by its bytes: {diff}"
    );
    assert!(!diff.contains("caf\u{fffd}"), "only the changed file is listed: {diff}");
    assert_eq!(
        fs::read(dest.join("sub").join(replaced.file_name().unwrap())).unwrap(),
        b"replacement character name\n"
    );
}

#[test]
fn the_root_directory_keeps_its_own_metadata() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
    let xattr_ok = xattr::set(&src, "user.amber-test", b"root").is_ok();
    set_mtime(&src, 1_600_000_000, 123_456_789);
    let id = id_of(&repo.snapshot(&src, &[]));
    let dest = repo.scratch("out");
    repo.restore(&id, &dest);
    let m = fs::metadata(&dest).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o750, "the restored root has the source's mode");
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    if xattr_ok {
        assert_eq!(
            xattr::get(&dest, "user.amber-test").unwrap().as_deref(),
            Some(&b"root"[..])
        );
    }
}

#[test]
fn a_fifo_is_restored_without_opening_it() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("before"), b"1").unwrap();
    assert!(Command::new("mkfifo").arg(src.join("pipe")).status().unwrap().success());
    fs::write(src.join("zafter"), b"2").unwrap();
    let id = id_of(&repo.snapshot(&src, &[]));
    let dest = repo.scratch("out");
    for _ in 0..2 {
        // Twice: a rerun over the restored FIFO must not open it either.
        let out = run_within(repo.command(&["restore", &id, p(&dest)]), Duration::from_secs(60));
        out.expect_code(0);
    }
    assert!(
        fs::symlink_metadata(dest.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    assert_eq!(fs::read(dest.join("zafter")).unwrap(), b"2");
    // A layer with a FIFO member extracts too.
    let layer = repo.scratch("layer.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let tar_id = id_of(&repo.ok(&["snapshot", "--tar", p(&layer)]));
    let out = run_within(
        repo.command(&["restore", &tar_id, p(&repo.scratch("layer-out"))]),
        Duration::from_secs(60),
    );
    out.expect_code(0);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_tar_hard_link_to_itself_extracts_as_gnu_tar_does() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("twice.txt"), b"archived twice\n").unwrap();
    let layer = repo.scratch("twice.tar");
    // GNU tar writes the second copy of a path as a hard link to itself.
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .args(["twice.txt", "twice.txt"])
        .status()
        .unwrap();
    assert!(st.success());
    let id = id_of(&repo.ok(&["snapshot", "--tar", p(&layer)]));
    let dest = repo.scratch("out");
    repo.ok(&["restore", &id, p(&dest)]);
    assert_eq!(fs::read(dest.join("twice.txt")).unwrap(), b"archived twice\n");
}

/// A repository with one snapshot of a tree holding a few MiB in files.
fn repo_with_data() -> (Repo, PathBuf, String) {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xDA3A);
    for i in 0..4 {
        write_random(&src.join(format!("f{i}.bin")), 700_000, &mut rng);
    }
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    let id = id_of(&repo.snapshot(&src, &[]));
    (repo, src, id)
}

/// Flips one byte in the middle of a file.
fn flip_byte(path: &Path, at_fraction: f64) {
    let mut bytes = fs::read(path).unwrap();
    let at = ((bytes.len() as f64) * at_fraction) as usize;
    bytes[at] ^= 0x55;
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200)).unwrap();
    fs::write(path, bytes).unwrap();
}

fn data_packs(repo: &Repo) -> Vec<PathBuf> {
    files_under(&repo.path.join("data"))
}

#[test]
fn one_damaged_snapshot_object_does_not_block_the_vault() {
    let (repo, src, first) = repo_with_data();
    fs::write(src.join("more.txt"), b"more\n").unwrap();
    let second = id_of(&repo.snapshot(&src, &[]));
    flip_byte(&repo.path.join("snapshots").join(&first), 0.5);
    let out = repo.run(&["snapshots"]);
    out.expect_code(3);
    assert!(out.stderr.contains(&first), "the damaged snapshot is named: {out}");
    assert!(out.stdout.contains(&second), "the others are listed: {out}");
    repo.restore(&second, &repo.scratch("out"));
    // A new snapshot without --force works (its parent choice skips the damaged one).
    fs::write(src.join("third.txt"), b"3\n").unwrap();
    let third = id_of(&repo.snapshot(&src, &[]));
    let dest = repo.scratch("out3");
    repo.restore(&third, &dest);
    assert_same_tree(&src, &dest);
}

#[test]
fn a_flipped_reserved_byte_of_a_snapshot_file_is_detected() {
    let (repo, _src, id) = repo_with_data();
    let path = repo.path.join("snapshots").join(&id);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 1;
    fs::write(&path, bytes).unwrap();
    let out = repo.run(&["snapshots"]);
    out.expect_code(3);
    assert!(out.stderr.contains(&id), "{out}");
}

/// The files of the damage tests: after damage, the next snapshot of the unchanged tree
/// (no --force) must restore bit-exact.
fn assert_next_snapshot_is_whole(repo: &Repo, src: &Path) {
    let next = repo.run(&["snapshot", p(src)]);
    next.expect_code(0);
    let id = id_of(&next.json());
    let dest = repo.scratch(&format!("healed-{}", &id[..8]));
    let out = repo.run(&["restore", &id, p(&dest)]);
    out.expect_code(0);
    assert_same_tree(src, &dest);
}

#[test]
fn damage_in_a_data_pack_does_not_spread_into_new_snapshots() {
    let (repo, src, id) = repo_with_data();
    for pack in data_packs(&repo) {
        flip_byte(&pack, 0.3);
    }
    let out = repo.run(&["restore", &id, p(&repo.scratch("broken"))]);
    out.expect_code(3);
    assert_next_snapshot_is_whole(&repo, &src);
}

#[test]
fn a_deleted_or_truncated_pack_does_not_spread_into_new_snapshots() {
    for truncate in [false, true] {
        let (repo, src, _) = repo_with_data();
        for pack in data_packs(&repo) {
            if truncate {
                let len = fs::metadata(&pack).unwrap().len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(&pack)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            } else {
                fs::remove_file(&pack).unwrap();
            }
        }
        assert_next_snapshot_is_whole(&repo, &src);
    }
}

#[test]
fn index_rebuild_skips_a_truncated_pack_and_leaves_a_working_index() {
    let (repo, src, _) = repo_with_data();
    let pack = data_packs(&repo).into_iter().next().unwrap();
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let out = repo.run(&["index", "rebuild"]);
    out.expect_code(3);
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(out.stderr.contains(&name), "the unreadable pack is named: {out}");
    assert_eq!(repo.snapshots().len(), 1, "the index works after the rebuild");
    assert_next_snapshot_is_whole(&repo, &src);
    // A flipped byte in a pack header is caught by the rebuild too (it is authenticated).
    let meta = files_under(&repo.path.join("meta")).into_iter().next().unwrap();
    let mut bytes = fs::read(&meta).unwrap();
    bytes[12] ^= 1;
    fs::write(&meta, bytes).unwrap();
    let out = repo.run(&["index", "rebuild"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains(&meta.file_name().unwrap().to_string_lossy().to_string()),
        "{out}"
    );
}

#[test]
fn an_include_that_matches_nothing_is_refused() {
    let (repo, _src, id) = repo_with_data();
    let dest = repo.scratch("none");
    let out = repo.run(&["restore", &id, p(&dest), "--include", "no-such-*"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("matches no path") || out.stderr.contains("matches no path"),
        "{out}"
    );
    assert!(!dest.exists(), "nothing was created");
}

#[test]
fn changed_ranges_of_zero_length_are_refused_and_an_empty_list_means_nothing_changed() {
    let repo = Repo::init();
    let img = repo.scratch("vol.img");
    let mut rng = Rng::new(5);
    write_random(&img, 1 << 20, &mut rng);
    let parent = id_of(&repo.ok(&["snapshot", "--block", p(&img)]));
    let ranges = repo.scratch("ranges");
    fs::write(&ranges, "0 0\n").unwrap();
    let out = repo.run(&[
        "snapshot",
        "--block",
        p(&img),
        "--changed-ranges",
        p(&ranges),
        "--parent",
        &parent,
    ]);
    out.expect_code(1);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("length"), "{out}");
    fs::write(&ranges, "# nothing changed\n").unwrap();
    let out = repo.run(&[
        "snapshot",
        "--block",
        p(&img),
        "--changed-ranges",
        p(&ranges),
        "--parent",
        &parent,
    ]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("nothing changed"),
        "an empty list is said to mean no change: {out}"
    );
}

#[test]
fn several_paths_and_excludes_in_one_snapshot() {
    let repo = Repo::init();
    let notebooks = repo.scratch("notebooks");
    let data = repo.scratch("data");
    fs::create_dir_all(notebooks.join(".ipynb_checkpoints")).unwrap();
    fs::write(notebooks.join("a.ipynb"), b"{}").unwrap();
    fs::write(notebooks.join(".ipynb_checkpoints/a-checkpoint.ipynb"), b"{}").unwrap();
    fs::create_dir_all(data.join("raw")).unwrap();
    fs::write(data.join("raw/big.bin"), b"raw").unwrap();
    fs::write(data.join("clean.csv"), b"x\n").unwrap();
    let excludes = repo.scratch("excludes");
    fs::write(&excludes, "# cache\n.ipynb_checkpoints\n").unwrap();
    let v = repo.ok(&[
        "snapshot",
        p(&notebooks),
        p(&data),
        "--exclude",
        "data/raw",
        "--exclude-file",
        p(&excludes),
    ]);
    let id = id_of(&v);
    let dest = repo.scratch("out");
    repo.restore(&id, &dest);
    assert_eq!(fs::read(dest.join("notebooks/a.ipynb")).unwrap(), b"{}");
    assert_eq!(fs::read(dest.join("data/clean.csv")).unwrap(), b"x\n");
    assert!(!dest.join("notebooks/.ipynb_checkpoints").exists());
    assert!(!dest.join("data/raw").exists());
}

#[test]
fn a_sparse_file_costs_nothing_for_its_holes_and_restores_sparse() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    fs::create_dir_all(&src).unwrap();
    let sparse = src.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"a little data", 40 << 20).unwrap();
    drop(f);
    let v = repo.snapshot(&src, &[]);
    let stored = crate::common::num(&v, "bytes_new");
    assert!(stored < 1 << 20, "64 MiB of mostly holes store almost nothing: {v}");
    let dest = repo.scratch("out");
    repo.restore(&id_of(&v), &dest);
    assert_eq!(fs::read(dest.join("sparse.img")).unwrap(), fs::read(&sparse).unwrap());
    let allocated = fs::metadata(dest.join("sparse.img")).unwrap().blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "the restored file is sparse: {allocated} bytes allocated"
    );
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        if !crate::common::running_as_root() {
            eprintln!("skipped: mounting a size-limited tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of the disk; returns the filler to delete later.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .args(["bs=1M", "status=none"])
            .status();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_keeps_reading_refuses_writing_clearly_and_recovers() {
    let Some(disk) = SmallDisk::mount(48) else { return };
    let mut repo = Repo::uninitialised();
    repo.path = disk.path().join("repo");
    repo.init_here();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0xF0);
    write_random(&src.join("a.bin"), 3 << 20, &mut rng);
    let first = id_of(&repo.snapshot(&src, &[]));
    let filler = disk.fill();

    // Reading works on a full disk.
    assert_eq!(repo.snapshots().len(), 1);
    repo.ok(&["ls", &first]);
    let dest = repo.scratch("out");
    repo.restore(&first, &dest);
    assert_same_tree(&src, &dest);

    // Writing fails with a message naming ENOSPC, and commits nothing.
    write_random(&src.join("b.bin"), 4 << 20, &mut rng);
    let out = repo.run(&["snapshot", p(&src)]);
    out.expect_code(1);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("ENOSPC"), "{out}");
    assert_ne!(out.code, Some(134), "no abort");

    // With room again, work resumes and the repository is intact.
    fs::remove_file(filler).unwrap();
    assert_eq!(repo.snapshots().len(), 1, "the failed snapshot left nothing behind");
    let second = id_of(&repo.snapshot(&src, &[]));
    let dest = repo.scratch("out2");
    repo.restore(&second, &dest);
    assert_same_tree(&src, &dest);
}

#[test]
fn reads_run_while_a_snapshot_runs_and_two_snapshots_both_succeed() {
    let repo = Repo::init();
    let small = repo.scratch("small");
    fs::create_dir_all(&small).unwrap();
    fs::write(small.join("x"), b"x").unwrap();
    let first = id_of(&repo.snapshot(&small, &[]));
    let big = repo.scratch("big");
    let mut rng = Rng::new(0xB16);
    for i in 0..6 {
        write_random(&big.join(format!("part{i}.bin")), 40 << 20, &mut rng);
    }
    let mut slow = repo.command(&["--threads", "1", "snapshot", p(&big)]);
    slow.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let slow = slow.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile: listing, ls, diff and restore work at once.
    let started = Instant::now();
    let out = repo.run(&["snapshots"]);
    out.expect_code(0);
    repo.ok(&["ls", &first]);
    repo.ok(&["diff", &first, &first]);
    repo.restore(&first, &repo.scratch("during"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "reads did not wait for the snapshot"
    );
    // A second snapshot at the same time waits for the index, then succeeds.
    fs::write(small.join("y"), b"y").unwrap();
    let second = repo.run(&["snapshot", p(&small)]);
    let slow = slow.wait_with_output().unwrap();
    assert!(slow.status.success(), "{}", String::from_utf8_lossy(&slow.stderr));
    second.expect_code(0);
    assert_eq!(repo.snapshots().len(), 3);
    let dest = repo.scratch("small-out");
    repo.restore(&id_of(&second.json()), &dest);
    assert_same_tree(&small, &dest);
}

#[test]
fn messages_name_the_store_by_its_path() {
    let repo = Repo::init();
    let out = repo.run(&["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"]);
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains("LocalBackend"), "{out}");
    assert!(
        text.contains(p(&repo.path)),
        "the message names the repository's path: {out}"
    );
}

/// A ustar header block (checksum filled in).
fn tar_header(name: &str, flag: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0001750\0");
    h[116..124].copy_from_slice(b"0000144\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"14540360000\0");
    h[148..156].copy_from_slice(b"        ");
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn a_member_sized_only_by_its_pax_record_is_read_by_that_size() {
    // Go's archive/tar and Python's tarfile write the size of members of 8 GiB and more
    // only in a PAX record, with 0 in the header: the same shape at a small size.
    let data = b"thirteen byte";
    let mut layer = Vec::new();
    let record = format!("{} size={}\n", 11, data.len());
    assert_eq!(record.len(), 11);
    layer.extend_from_slice(&tar_header("PaxHeaders/big.txt", b'x', record.len() as u64));
    padded(&mut layer, record.as_bytes());
    layer.extend_from_slice(&tar_header("big.txt", b'0', 0));
    padded(&mut layer, data);
    layer.extend_from_slice(&tar_header("after.txt", b'0', 5));
    padded(&mut layer, b"after");
    layer.resize(layer.len() + 1024, 0);
    let repo = Repo::init();
    let path = repo.scratch("pax.tar");
    fs::write(&path, &layer).unwrap();
    let id = id_of(&repo.ok(&["snapshot", "--tar", p(&path)]));
    let rebuilt = repo.scratch("rebuilt.tar");
    repo.ok(&["restore", &id, "--tar", p(&rebuilt)]);
    assert!(fs::read(&rebuilt).unwrap() == layer, "rebuilt byte for byte");
    let dest = repo.scratch("out");
    repo.ok(&["restore", &id, p(&dest)]);
    assert_eq!(fs::read(dest.join("big.txt")).unwrap(), data);
    assert_eq!(fs::read(dest.join("after.txt")).unwrap(), b"after");
}

#[test]
fn a_broken_index_cache_still_lists_and_index_rebuild_is_the_way_out() {
    let (repo, src, id) = repo_with_data();
    // Garbage in every file of the RocksDB directory.
    for f in files_under(&repo.path.join("cache")) {
        if f.file_name().is_some_and(|n| n != "damaged.log") {
            fs::write(&f, b"not rocksdb").unwrap();
        }
    }
    assert_eq!(repo.snapshots().len(), 1, "reading works from the store alone");
    repo.restore(&id, &repo.scratch("from-store"));
    let out = repo.run(&["index", "rebuild"]);
    out.expect_code(0);
    assert_next_snapshot_is_whole(&repo, &src);
}
