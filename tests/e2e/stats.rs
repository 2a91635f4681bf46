//! `amber stats`: restore size, distinct content and stored bytes, in all, per kind and per
//! environment; the same counts through a server.

use crate::common::{Repo, Rng, num, write_random};
use crate::server::harness::{Server, s};

const MIB: u64 = 1 << 20;

#[test]
fn stats_count_restore_size_distinct_content_and_what_is_stored() {
    let repo = Repo::init();
    let mut rng = Rng::new(0x57A7);
    let src = repo.scratch("src");
    write_random(&src.join("a.bin"), 2 * MIB, &mut rng);
    write_random(&src.join("sub/b.bin"), MIB + 17, &mut rng);
    let tree = 3 * MIB + 17;
    repo.snapshot(&src, &["--env", "lab-x"]);
    // The same tree again, re-read: twice the restore size, no new distinct content.
    repo.snapshot(&src, &["--force"]);
    let image = repo.scratch("vol.img");
    write_random(&image, 4 * MIB, &mut rng);
    let v = repo.ok(&["snapshot", "--block", image.to_str().unwrap()]);
    assert_eq!(v["complete"], true, "{v}");

    let st = repo.ok(&["stats"]);
    crate::cli::check("stats", &st, crate::cli::Mode::Local);
    let trees = &st["by_kind"]["tree"];
    assert_eq!(num(trees, "snapshots"), 2, "{st}");
    assert_eq!(num(trees, "restore_bytes"), 2 * tree, "{st}");
    assert_eq!(num(trees, "unique_bytes"), tree, "random content shares nothing: {st}");
    assert!((trees["dedup_ratio"].as_f64().unwrap() - 2.0).abs() < 1e-9, "{st}");
    let block = &st["by_kind"]["block"];
    assert_eq!(
        (num(block, "snapshots"), num(block, "restore_bytes")),
        (1, 4 * MIB),
        "{st}"
    );
    assert_eq!(num(&st["total"], "snapshots"), 3, "{st}");
    assert_eq!(num(&st["total"], "unique_bytes"), tree + 4 * MIB, "{st}");
    assert_eq!(num(&st["by_environment"]["lab-x"], "snapshots"), 1, "{st}");
    // Random data does not compress: the store holds a little more than the content.
    let stored = num(&st, "stored_bytes");
    assert!(stored > tree + 4 * MIB && stored < (tree + 4 * MIB) * 11 / 10, "{st}");
}

#[test]
fn stats_through_a_server_count_the_same() {
    let server = Server::start();
    let admin = server.admin();
    let mut rng = Rng::new(0x57A8);
    let src = server.scratch("src");
    write_random(&src.join("a.bin"), 2 * MIB, &mut rng);
    server.push(&admin, &[s(&src), "--env", "lab-y"]);
    server.push(&admin, &[s(&src), "--env", "lab-y", "--force"]);
    let reader = server.token(&admin, "restore");
    let st = server.ok(&reader, &["stats"]);
    crate::cli::check("stats", &st, crate::cli::Mode::Server);
    let env = &st["by_environment"]["lab-y"];
    assert_eq!((num(env, "snapshots"), num(env, "restore_bytes")), (2, 4 * MIB), "{st}");
    assert_eq!(num(env, "unique_bytes"), 2 * MIB, "{st}");
    let sidecar = server.token(&admin, "sidecar");
    server
        .run(&sidecar, &["--json", "stats"])
        .expect_error(&["(PermissionDenied)"]);
}
