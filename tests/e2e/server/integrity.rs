//! What independent checks found (issue 8), through a real server: names that are not
//! UTF-8 pushed and restored, the root directory's metadata over the wire, FIFOs in a
//! restore plan, `latest` within an environment, a hundred sidecars at once, and holes
//! that cross the wire as runs instead of bytes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use super::harness::{Server, s};
use crate::common::{assert_same_tree, set_mtime};
use crate::integrity::{colliding_names, run_within};

#[test]
fn names_that_are_not_utf8_are_pushed_and_restored_exactly() {
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    let (raw, replaced) = colliding_names(&src.join("sub"));
    let v = server.push(&admin, &[s(&src)]);
    let id = v["id"].as_str().unwrap().to_string();
    let dest = server.scratch("out");
    server.ok(&admin, &["restore", &id, s(&dest)]);
    assert_same_tree(&src, &dest);
    let back_raw = dest.join("sub").join(raw.file_name().unwrap());
    let back_replaced = dest.join("sub").join(replaced.file_name().unwrap());
    assert_eq!(fs::read(back_raw).unwrap(), b"latin-1 name\n");
    assert_eq!(fs::read(back_replaced).unwrap(), b"replacement character name\n");
    let listed = server.ok(&admin, &["ls", &id]).to_string();
    assert!(
        listed.contains("path_base64"),
        "ls through the server carries the exact bytes: {listed}"
    );
}

#[test]
fn the_root_directory_metadata_crosses_the_wire() {
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o711)).unwrap();
    set_mtime(&src, 1_500_000_000, 42);
    let v = server.push(&admin, &[s(&src)]);
    let id = v["id"].as_str().unwrap().to_string();
    let dest = server.scratch("out");
    server.ok(&admin, &["restore", &id, s(&dest)]);
    let m = fs::metadata(&dest).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o711);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 42));
}

#[test]
fn a_restore_through_the_server_does_not_hang_on_a_fifo() {
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    fs::create_dir_all(&src).unwrap();
    assert!(Command::new("mkfifo").arg(src.join("pipe")).status().unwrap().success());
    fs::write(src.join("z"), b"after the pipe").unwrap();
    let v = server.push(&admin, &[s(&src)]);
    let id = v["id"].as_str().unwrap().to_string();
    let dest = server.scratch("out");
    for _ in 0..2 {
        let out = run_within(
            server.client(&admin, &["restore", &id, s(&dest)]),
            Duration::from_secs(60),
        );
        out.expect_code(0);
    }
    assert_eq!(fs::read(dest.join("z")).unwrap(), b"after the pipe");
}

#[test]
fn latest_resolves_within_the_environment_through_a_server() {
    let server = Server::start();
    let admin = server.admin();
    let envs = ["e1", "e2", "e3", "e90"];
    for env in envs {
        let src = server.scratch(&format!("src-{env}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("which"), env).unwrap();
        server.push(&admin, &["--env", env, s(&src)]);
    }
    for env in envs {
        let dest = server.scratch(&format!("out-{env}"));
        server.ok(&admin, &["restore", "latest", "--env", env, s(&dest)]);
        assert_eq!(fs::read_to_string(dest.join("which")).unwrap(), env, "latest of {env}");
        let listed = server.ok(&admin, &["ls", "latest", "--env", env]).to_string();
        assert!(listed.contains("which"), "{listed}");
    }
}

#[test]
fn a_hundred_sidecars_at_once_all_commit_with_the_default_limits() {
    let server = Server::start();
    let admin = server.admin();
    let pushes = 100;
    let mut children = Vec::new();
    for i in 0..pushes {
        let src = server.scratch(&format!("side-{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("notebook.ipynb"), format!("{{\"cell\": {i}}}")).unwrap();
        let mut cmd = server.client(&admin, &["--json", "push", "--env", &format!("lab-{i}"), s(&src)]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let mut failed = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        if !out.status.success() {
            failed.push((i, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {pushes} pushes failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(server.snapshot_ids(&admin).len(), pushes);
}

#[test]
fn holes_cross_the_wire_as_runs_and_restore_sparse() {
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    fs::create_dir_all(&src).unwrap();
    let sparse = src.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(16 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"data in the middle", 8 << 20).unwrap();
    drop(f);
    let v = server.push(&admin, &[s(&src)]);
    let sent = v["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < 2 << 20,
        "a 16 MiB sparse file sends its data, not its holes: {v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let dest = server.scratch("out");
    server.ok(&admin, &["restore", &id, s(&dest)]);
    let back = fs::read(dest.join("sparse.img")).unwrap();
    assert_eq!(back, fs::read(&sparse).unwrap());
    let allocated = fs::metadata(dest.join("sparse.img")).unwrap().blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "the restored file is sparse: {allocated} bytes allocated"
    );
}
