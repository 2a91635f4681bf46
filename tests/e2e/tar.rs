//! Container layers: tars of a real Python environment made with the system `tar` (GNU long
//! names and PAX headers present), plain, gzip and zstd; rebuilt byte for byte; extracted;
//! deduplicated against the same files stored as a tree.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{Kind, Repo, id_of, num, p, python_venv, walk_tree};

/// A directory name long enough that every member needs a long-name record.
const LONG: &str = "a-directory-name-long-enough-to-push-every-member-past-the-one-hundred-byte-ustar-name-field";

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap()
    )
}

/// `tar` of the venv in the given format, every name under the long prefix.
fn make_tar(repo: &Repo, format: &str) -> PathBuf {
    let venv = python_venv();
    let out = repo.scratch(&format!("layer-{format}.tar"));
    let parent = venv.parent().unwrap();
    let name = venv.file_name().unwrap().to_str().unwrap();
    sh(&format!(
        "tar --format={format} --transform 's,^,{LONG}/,S' -cf {} -C {} {name}",
        p(&out),
        p(parent)
    ));
    out
}

fn has_record(tar: &Path, flag: u8) -> bool {
    let bytes = fs::read(tar).unwrap();
    bytes
        .chunks(512)
        .any(|b| b.len() == 512 && b[257..262] == *b"ustar" && b[156] == flag)
}

/// Same paths, types, sizes, bytes and symlink targets (tar keeps mtimes to the second only).
fn assert_same_files(a: &Path, b: &Path) {
    let (ta, tb) = (walk_tree(a), walk_tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "same paths"
    );
    for (rel, na) in &ta {
        let nb = &tb[rel];
        assert_eq!(
            (na.kind, na.size, &na.target),
            (nb.kind, nb.size, &nb.target),
            "{}",
            rel.display()
        );
        if na.kind == Kind::File {
            assert!(
                fs::read(a.join(rel)).unwrap() == fs::read(b.join(rel)).unwrap(),
                "content of {}",
                rel.display()
            );
        }
    }
}

#[test]
fn layers_rebuild_exactly_in_every_compression() {
    let repo = Repo::init();
    let gnu = make_tar(&repo, "gnu");
    let pax = make_tar(&repo, "pax");
    assert!(has_record(&gnu, b'L'), "the GNU tar has long-name records");
    assert!(has_record(&pax, b'x'), "the PAX tar has extended headers");
    sh(&format!("gzip -k -n {}", p(&pax)));
    sh(&format!("zstd -q -3 {} -o {}.zst", p(&pax), p(&pax)));
    let gz = PathBuf::from(format!("{}.gz", p(&pax)));
    let zst = PathBuf::from(format!("{}.zst", p(&pax)));

    for (input, plain, compression) in [
        (&gnu, &gnu, "none"),
        (&gz, &pax, "gzip"),
        (&zst, &pax, "zstd"),
        (&pax, &pax, "none"),
    ] {
        let v = repo.ok(&["snapshot", "--tar", p(input)]);
        assert_eq!(v["compression"], compression, "{v}");
        assert_eq!(
            v["diff_id"],
            sha256(plain),
            "diff id is the SHA-256 of the uncompressed stream: {v}"
        );
        assert_eq!(v["digest"], sha256(input), "digest of the input as given: {v}");
        let out = repo.scratch("rebuilt.tar");
        repo.ok(&["restore", &id_of(&v), "--tar", p(&out)]);
        assert_eq!(sha256(&out), sha256(plain), "rebuilt {} differs", p(input));
    }
    // The PAX layer arrived three times as three streams (plain, gzip, zstd): one snapshot
    // each, since each restores as its own bytes, all sharing the same content.
    let layers: Vec<Value> = repo.snapshots().into_iter().filter(|s| s["kind"] == "tar").collect();
    assert_eq!(layers.len(), 4, "one snapshot per distinct stream");
    assert_eq!(layers.iter().filter(|s| s["diff_id"] == sha256(&pax)).count(), 3);

    // The rebuilt stream, extracted by the system tar, gives the environment back.
    let gnu_id = id_of(&layers[0]);
    let out = repo.scratch("again.tar");
    repo.ok(&["restore", &gnu_id, "--tar", p(&out)]);
    let x = repo.scratch("x-system");
    fs::create_dir_all(&x).unwrap();
    sh(&format!("tar -xf {} -C {}", p(&out), p(&x)));
    let venv = python_venv();
    let venv_name = venv.file_name().unwrap();
    assert_same_files(&venv, &x.join(LONG).join(venv_name));

    // Amber's own extraction gives the same tree.
    let y = repo.scratch("x-amber");
    repo.ok(&["restore", &gnu_id, p(&y)]);
    assert_same_files(&venv, &y.join(LONG).join(venv_name));
}

#[test]
fn a_layer_of_a_stored_tree_adds_under_five_percent() {
    let repo = Repo::init();
    let venv = python_venv();
    repo.snapshot(&venv, &[]);
    let tar = make_tar(&repo, "pax");
    let before = repo.size_of("");
    let v = repo.ok(&["snapshot", "--tar", p(&tar)]);
    let grown = repo.size_of("") - before;
    let size = fs::metadata(&tar).unwrap().len();
    assert!(
        num(&v, "bytes_new") * 20 < size,
        "layer stored {} new bytes of {size}: {v}",
        num(&v, "bytes_new")
    );
    assert!(
        grown * 20 < size,
        "repository grew by {grown} bytes for a {size} byte layer"
    );
}

#[test]
fn layers_from_stdin_and_bad_layers() {
    let repo = Repo::init();
    let src = repo.scratch("small");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/file.txt"), "hello layer\n".repeat(1000)).unwrap();
    let tar = repo.scratch("small.tar");
    sh(&format!("tar -cf {} -C {} .", p(&tar), p(&src)));

    let mut cmd = repo.command(&["snapshot", "--tar", "-"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&fs::read(&tar).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["diff_id"], sha256(&tar));
    let before = repo.listing();

    let bytes = fs::read(&tar).unwrap();
    let truncated = repo.scratch("truncated.tar");
    fs::write(&truncated, &bytes[..bytes.len().min(700)]).unwrap();
    repo.run(&["snapshot", "--tar", p(&truncated)])
        .expect_error(&["malformed tar"]);
    let mut corrupt = bytes.clone();
    corrupt[10] ^= 0x55; // inside the first header's name: its checksum no longer matches
    let corrupt_path = repo.scratch("corrupt.tar");
    fs::write(&corrupt_path, &corrupt).unwrap();
    repo.run(&["snapshot", "--tar", p(&corrupt_path)])
        .expect_error(&["checksum"]);
    let short = repo.scratch("short.tar");
    let file_header = bytes.chunks(512).position(|b| b.starts_with(b"./d/file.txt")).unwrap() * 512;
    fs::write(&short, &bytes[..file_header + 512 + 100]).unwrap();
    repo.run(&["snapshot", "--tar", p(&short)]).expect_error(&["claims"]);
    assert_eq!(repo.listing(), before, "failed layers leave nothing behind");

    // A member escaping the target is refused at extraction.
    let evil = repo.scratch("evil.tar");
    let script = format!(
        "import tarfile, io\nt = tarfile.open('{}', 'w')\ni = tarfile.TarInfo('../escaped')\ni.size = 3\nt.addfile(i, io.BytesIO(b'bad'))\nt.close()\n",
        p(&evil)
    );
    let status = Command::new("python3").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    let id = id_of(&repo.ok(&["snapshot", "--tar", p(&evil)]));
    let dest = repo.scratch("dest/inner");
    repo.run(&["restore", &id, p(&dest)])
        .expect_error(&["leaves the target"]);
    assert!(!repo.scratch("dest/escaped").exists());
}
