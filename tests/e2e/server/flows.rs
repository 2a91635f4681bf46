//! The everyday flows against a real server, driven by the real client: trees (a varied
//! sample and a real Python environment) pushed and restored bit-exact; unchanged re-pushes
//! that send next to nothing (by the client's count and by the server's own metric); tar
//! layers plain and gzip; same-named streams with different content; block volumes with and
//! without changed ranges and seeded restores; catalog calls against local semantics;
//! sharing between vaults; and restores that resume over a damaged target. Those that touch
//! the store's every path run on the local store and on S3.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::harness::{Server, s};
use crate::common::{
    Repo, Rng, assert_same_tree, dir_size, python_venv, run_command, same_content, sample_tree, set_mtime, write_random,
};
use crate::stores::{Store, on_every_store};

/// Environment that makes the server print its metrics address.
const METRICS_ENV: [(&str, &str); 1] = [("AMBER_METRICS_LISTEN", "127.0.0.1:0")];

/// A server with a `/metrics` listener.
fn server_with_metrics() -> Server {
    Store::Local.server("", &[], &METRICS_ENV)
}

/// A server with a `/metrics` listener on `store`.
fn server_with_metrics_on(store: Store, hint: &str) -> Server {
    store.server(hint, &[], &METRICS_ENV)
}

on_every_store! {
    tree_push_restores_bit_exact => tree_push_restores_bit_exact_on,
    tar_layers_plain_and_gzip_restore_exactly_and_dedup => tar_layers_on,
    block_volume_changed_ranges_digests_and_seed => block_volume_on,
    catalog_matches_local_semantics => catalog_on,
    share_copies_a_snapshot_into_another_vault => share_on,
    restore_resumes_over_a_damaged_target => restore_resumes_on,
}

/// One counter of the server's `/metrics`, read with a plain HTTP GET.
pub fn metric(server: &Server, name: &str) -> u64 {
    let addr = server
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .expect("the server printed its metrics address")
        .trim()
        .trim_end_matches("/metrics")
        .to_string();
    let mut conn = TcpStream::connect(&addr).expect("connect to /metrics");
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "metrics answer: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not a number ({e})\n{text}"))
}

/// Content bytes the server has received so far.
fn received(server: &Server) -> u64 {
    metric(server, "amber_bytes_received_total")
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field {field:?} is not a number in {v}"))
}

fn snapshot_id(v: &Value) -> String {
    let id = v["id"].as_str().unwrap_or_else(|| panic!("no snapshot_id in {v}"));
    assert_eq!(id.len(), 64, "a full snapshot id: {v}");
    id.to_string()
}

#[track_caller]
fn assert_same_file(a: &Path, b: &Path) {
    assert_eq!(
        fs::metadata(a).unwrap().len(),
        fs::metadata(b).unwrap().len(),
        "{} and {} differ in length",
        a.display(),
        b.display()
    );
    assert!(same_content(a, b), "{} and {} differ", a.display(), b.display());
}

/// Restores a tree snapshot into `dest` and returns the summary.
fn restore_tree(server: &Server, token: &str, id: &str, dest: &Path) -> Value {
    server.ok(token, &["restore", id, s(dest)])
}

#[test]
fn an_interrupted_layer_download_resumes_and_a_damaged_one_is_discarded() {
    let server = server_with_metrics();
    let admin = server.admin();
    let (tar, _) = make_layer(&server, 27);
    let v = push_and_check_layer(&server, &admin, &tar, &tar);
    let id = snapshot_id(&v);
    let size = fs::metadata(&tar).unwrap().len();
    let out = server.scratch("resumed.tar");
    let partial = server.scratch("resumed.tar.amber-partial");
    // An earlier download stopped halfway: its bytes are kept beside OUT.
    let mut head = vec![0u8; usize::try_from(size / 2).unwrap()];
    File::open(&tar).unwrap().read_exact(&mut head).unwrap();
    fs::write(&partial, &head).unwrap();
    let r = server.ok(&admin, &["restore", &id, "--tar", s(&out)]);
    assert_eq!(num(&r, "resumed_from"), size / 2, "{r}");
    assert_eq!(num(&r, "bytes_fetched"), size - size / 2, "{r}");
    assert_same_file(&tar, &out);
    assert!(!partial.exists());
    // A partial download whose bytes are wrong is caught by the digest and discarded;
    // the next run fetches everything.
    let out2 = server.scratch("damaged.tar");
    let partial2 = server.scratch("damaged.tar.amber-partial");
    head[100] ^= 0xff;
    fs::write(&partial2, &head).unwrap();
    server
        .run(&admin, &["restore", &id, "--tar", s(&out2)])
        .expect_error(&["discarded"]);
    assert!(
        !out2.exists() && !partial2.exists(),
        "nothing that looks complete is left"
    );
    let r = server.ok(&admin, &["restore", &id, "--tar", s(&out2)]);
    assert_eq!(num(&r, "bytes_fetched"), size, "{r}");
    assert_same_file(&tar, &out2);
}

// ---------------------------------------------------------------------------------------
// 1. Trees.

/// Fails while the hard-link bug described at `hard_links_restore_via_the_server` stands
/// (the sample tree holds a hard-linked pair).
fn tree_push_restores_bit_exact_on(store: Store) {
    let server = store.server("tree", &[], &[]);
    let admin = server.admin();
    let src = server.scratch("src");
    sample_tree(&src, 11);
    let mut rng = Rng::new(12);
    write_random(
        &src.join("nested/one/two/three/random-3m.bin"),
        3 * 1024 * 1024,
        &mut rng,
    );
    File::create(src.join("nested/one/empty")).unwrap();
    std::os::unix::fs::symlink("two/three/random-3m.bin", src.join("nested/one/link")).unwrap();
    let total = dir_size(&src);

    let v = server.push(&admin, &[s(&src)]);
    let id = snapshot_id(&v);
    assert_eq!(v["already_stored"], false, "{v}");
    assert!(
        num(&v, "bytes_sent") >= total,
        "every byte had to cross: {v} (tree {total} bytes)"
    );
    assert_eq!(num(&v, "bytes_received_by_server"), total, "{v}");
    assert_eq!(server.snapshot_ids(&admin), vec![id.clone()]);

    let dest = server.scratch("dest");
    let r = restore_tree(&server, &admin, &id, &dest);
    assert_same_tree(&src, &dest);
    assert_eq!(num(&r, "chunks_kept"), 0, "a fresh target holds nothing: {r}");
    eprintln!(
        "sample tree: {total} bytes, push sent {}, restore fetched {}",
        v["bytes_sent"], r["bytes_fetched"]
    );
}

/// A hard-linked pair restores through the server as one file with two names (the client
/// links the second name only once the first name's content is in place).
#[test]
fn hard_links_restore_via_the_server() {
    let server = Server::start();
    let admin = server.admin();
    let src = server.scratch("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "shared by two names\n").unwrap();
    fs::hard_link(src.join("a.txt"), src.join("sub/b.txt")).unwrap();
    let id = snapshot_id(&server.push(&admin, &[s(&src)]));
    let dest = server.scratch("dest");
    let out = server.run(&admin, &["--json", "restore", &id, s(&dest)]);
    assert_eq!(out.code, Some(0), "restore of a hard-linked pair via the server\n{out}");
    assert_same_tree(&src, &dest);
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    assert_eq!(ino(&dest.join("a.txt")), ino(&dest.join("sub/b.txt")), "still one file");
}

#[test]
fn python_venv_push_restores_exactly() {
    let venv = python_venv();
    let server = Server::start();
    let admin = server.admin();
    let total = dir_size(&venv);
    let v = server.push(&admin, &[s(&venv)]);
    let id = snapshot_id(&v);
    assert!(num(&v, "files") > 1000, "the venv has many files: {v}");
    let dest = server.scratch("venv-restored");
    let r = restore_tree(&server, &admin, &id, &dest);
    assert_same_tree(&venv, &dest);
    eprintln!(
        "venv: {total} bytes, {} files; push sent {} ({} new), restore fetched {} in {} s",
        v["files"], v["bytes_sent"], v["bytes_new"], r["bytes_fetched"], r["duration_seconds"]
    );
}

// ---------------------------------------------------------------------------------------
// 2. Unchanged re-push.

#[test]
fn unchanged_venv_repush_sends_under_one_percent() {
    let venv = python_venv();
    let server = server_with_metrics();
    let admin = server.admin();
    let total = dir_size(&venv);
    let before = received(&server);
    let first = server.push(&admin, &[s(&venv)]);
    let after_first = received(&server);
    assert_eq!(
        after_first - before,
        total,
        "the first push carries every byte: {first}"
    );

    let again = server.push(&admin, &[s(&venv)]);
    let after_again = received(&server);
    let sent = num(&again, "bytes_sent");
    let grew = after_again - after_first;
    eprintln!(
        "venv {total} bytes: first push sent {}, re-push sent {sent} ({:.3}%), server received {grew}, reused {} files, sent {} files",
        first["bytes_sent"],
        sent as f64 * 100.0 / total as f64,
        again["reused"],
        again["sent"]
    );
    assert!(
        sent * 100 < total,
        "re-push sent {sent} bytes of a {total}-byte tree: {again}"
    );
    assert!(
        grew * 100 < total,
        "server received {grew} bytes on a re-push of {total}"
    );
    assert_eq!(num(&again, "sent"), 0, "no file changed: {again}");
    assert_eq!(num(&again, "bytes_new"), 0, "nothing new to store: {again}");
    assert_ne!(
        snapshot_id(&again),
        snapshot_id(&first),
        "a new snapshot of the same content"
    );
    let snaps = server.ok(&admin, &["snapshots"]);
    let parent = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == again["id"])
        .map(|x| x["parent"].clone())
        .unwrap();
    assert_eq!(parent, first["id"], "the first push is the parent");
}

// ---------------------------------------------------------------------------------------
// 3. Tar layers.

/// A plain tar (made by the system `tar`) of a sample tree, and its gzip; returns
/// (plain, gzip).
fn make_layer(server: &Server, seed: u64) -> (PathBuf, PathBuf) {
    let src = server.scratch(&format!("layer-src-{seed}"));
    sample_tree(&src, seed);
    // GNU tar writes a pre-1970 mtime as a negative base-256 number, which the engine's tar
    // parser refuses (format/tarhdr.rs); see the report. Keep these layers to positive times.
    set_mtime(&src.join("pkg3/mod5.py"), 86_400, 999_999_999);
    let tar = server.scratch(&format!("layer-{seed}.tar"));
    sh(&format!("tar -cf {} -C {} .", s(&tar), s(&src)));
    sh(&format!("gzip -k -n {}", s(&tar)));
    (tar.clone(), PathBuf::from(format!("{}.gz", s(&tar))))
}

/// Pushes `layer`, restores it with `--tar`, compares with `plain`; returns the summary.
fn push_and_check_layer(server: &Server, token: &str, layer: &Path, plain: &Path) -> Value {
    let v = server.push(token, &["--tar", s(layer)]);
    let id = snapshot_id(&v);
    let out = server.scratch(&format!("out-{}.tar", &id[..12]));
    let _ = fs::remove_file(&out);
    server.ok(token, &["restore", &id, "--tar", s(&out)]);
    assert_same_file(plain, &out);
    v
}

/// Pushes `layer` again: recognised by its digest, next to nothing crosses the wire.
#[track_caller]
fn assert_repush_skipped(server: &Server, token: &str, layer: &Path, id: &str) {
    let size = fs::metadata(layer).unwrap().len();
    let m0 = received(server);
    let again = server.push(token, &["--tar", s(layer)]);
    let grew = received(server) - m0;
    eprintln!(
        "re-push of the {size}-byte layer {}: sent {} bytes, server received {grew}",
        layer.display(),
        again["bytes_sent"]
    );
    assert_eq!(again["already_stored"], true, "{again}");
    assert_eq!(snapshot_id(&again), id, "the stored layer is named: {again}");
    assert!(num(&again, "bytes_sent") < 64 * 1024, "{again}");
    assert!(grew < 64 * 1024, "server received {grew} bytes");
}

fn tar_layers_on(store: Store) {
    let server = server_with_metrics_on(store, "layers");
    let admin = server.admin();
    let (tar, gz) = make_layer(&server, 21);
    let v = push_and_check_layer(&server, &admin, &tar, &tar);
    assert_eq!(v["already_stored"], false, "{v}");
    assert_eq!(num(&v, "bytes_received_by_server"), fs::metadata(&tar).unwrap().len());
    assert_repush_skipped(&server, &admin, &tar, &snapshot_id(&v));

    // A gzip layer: restored as its uncompressed stream; its re-push is skipped too.
    let (tar2, gz2) = make_layer(&server, 23);
    let g = push_and_check_layer(&server, &admin, &gz2, &tar2);
    assert_eq!(g["already_stored"], false, "{g}");
    assert_repush_skipped(&server, &admin, &gz2, &snapshot_id(&g));

    // The gzip of a layer stored plain: a snapshot of its own (it restores as those gzip
    // bytes), sharing every chunk of content with the plain one.
    let g1 = push_and_check_layer(&server, &admin, &gz, &tar);
    assert_eq!(g1["already_stored"], false, "{g1}");
    assert_ne!(g1["id"], v["id"], "{g1}");
    assert!(
        num(&g1, "bytes_new") < 64 * 1024,
        "only its recipe and root are new: {g1}"
    );
    assert_eq!(server.snapshot_ids(&admin).len(), 3);
}

/// A layer held with a pack lost (found by verify) is not reused by its digest: its next
/// push sends the stream again, which stores the lost data anew, and the layer restores.
#[test]
fn a_layer_held_in_part_is_sent_again_instead_of_reused_by_its_digest() {
    let server = server_with_metrics_on(Store::Local, "held-in-part");
    let admin = server.admin();
    let data_dir = server.data().join("vaults/default/data");
    let (tar, _) = make_layer(&server, 31);
    let before = crate::common::files_under(&data_dir);
    let v = push_and_check_layer(&server, &admin, &tar, &tar);
    let id = snapshot_id(&v);
    let written: Vec<PathBuf> = crate::common::files_under(&data_dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!written.is_empty(), "the layer's data packs");
    for p in &written {
        fs::remove_file(p).unwrap();
    }
    server.run(&admin, &["--json", "verify"]).expect_code(3);
    let again = server.push(&admin, &["--tar", s(&tar)]);
    assert_eq!(snapshot_id(&again), id, "the same layer: {again}");
    let size = fs::metadata(&tar).unwrap().len();
    assert!(num(&again, "bytes_sent") >= size, "sent again: {again}");
    let out = server.scratch("healed.tar");
    server.ok(&admin, &["restore", &id, "--tar", s(&out)]);
    assert_same_file(&tar, &out);
    assert_repush_skipped(&server, &admin, &tar, &id);
}

/// Once a layer is held (here: pushed plain), its gzip is sent once (its files are not
/// stored again: only its recipe is new), and its digest is remembered, so its next push
/// is not sent at all.
#[test]
fn gzip_of_a_held_layer_is_skipped_on_its_next_push() {
    let server = server_with_metrics();
    let admin = server.admin();
    let (tar, gz) = make_layer(&server, 25);
    push_and_check_layer(&server, &admin, &tar, &tar);
    let g = push_and_check_layer(&server, &admin, &gz, &tar);
    assert!(num(&g, "bytes_new") < 64 * 1024, "the content is shared: {g}");
    assert_repush_skipped(&server, &admin, &gz, &snapshot_id(&g));
}

// ---------------------------------------------------------------------------------------
// 4. Same name, different content.

/// A tar of one file `data.bin` of `len` random bytes from `seed`, with a fixed mtime.
fn one_file_tar(server: &Server, name: &str, seed: u64, len: u64) -> PathBuf {
    let dir = server.scratch(&format!("{name}-dir"));
    write_random(&dir.join("data.bin"), len, &mut Rng::new(seed));
    let tar = server.scratch(name);
    sh(&format!(
        "tar --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -cf {} -C {} data.bin",
        s(&tar),
        s(&dir)
    ));
    tar
}

fn push_stdin(server: &Server, token: &str, input: &Path) -> Value {
    let mut cmd = server.client(token, &["--json", "push", "--tar", "-"]);
    cmd.stdin(Stdio::from(File::open(input).unwrap()));
    let out = run_command(cmd);
    out.expect_code(0);
    out.json()
}

#[test]
fn same_name_different_streams_are_distinct_snapshots() {
    let server = Server::start();
    let admin = server.admin();
    let a = one_file_tar(&server, "a.tar", 41, 300_000);
    let b = one_file_tar(&server, "b.tar", 42, 300_000);
    assert_eq!(fs::metadata(&a).unwrap().len(), fs::metadata(&b).unwrap().len());
    assert!(!same_content(&a, &b));

    let va = push_stdin(&server, &admin, &a);
    let vb = push_stdin(&server, &admin, &b);
    let (ia, ib) = (snapshot_id(&va), snapshot_id(&vb));
    assert_ne!(ia, ib, "different streams on stdin are different snapshots");
    assert_eq!(vb["already_stored"], false, "{vb}");
    for (id, want) in [(&ia, &a), (&ib, &b)] {
        let out = server.scratch(&format!("out-{}.tar", &id[..8]));
        server.ok(&admin, &["restore", id, "--tar", s(&out)]);
        assert_same_file(want, &out);
    }

    // One file path, rewritten with other content of the same size.
    let path = server.scratch("layer.tar");
    fs::copy(&a, &path).unwrap();
    let v1 = server.push(&admin, &["--tar", s(&path)]);
    fs::copy(&b, &path).unwrap();
    // (Rng::new ignores the lowest bit of the seed: 42 and 43 would give the same bytes.)
    let c = one_file_tar(&server, "c.tar", 45, 300_000);
    fs::copy(&c, &path).unwrap();
    let v2 = server.push(&admin, &["--tar", s(&path)]);
    assert_eq!(v1["already_stored"], true, "a.tar was stored from stdin already: {v1}");
    assert_eq!(snapshot_id(&v1), ia);
    assert_eq!(v2["already_stored"], false, "{v2}");
    let i2 = snapshot_id(&v2);
    assert!(i2 != ia && i2 != ib);
    let out = server.scratch("out-c.tar");
    server.ok(&admin, &["restore", &i2, "--tar", s(&out)]);
    assert_same_file(&c, &out);
    let out = server.scratch("out-a-again.tar");
    server.ok(&admin, &["restore", &ia, "--tar", s(&out)]);
    assert_same_file(&a, &out);
    assert_eq!(server.snapshot_ids(&admin).len(), 3);
}

// ---------------------------------------------------------------------------------------
// 5. Block volumes.

const MIB: u64 = 1024 * 1024;

/// Overwrites `ranges` of `img` with random bytes.
fn scribble(img: &Path, ranges: &[(u64, u64)], rng: &mut Rng) {
    let f = OpenOptions::new().write(true).open(img).unwrap();
    for &(off, len) in ranges {
        let mut buf = vec![0u8; len as usize];
        rng.fill(&mut buf);
        f.write_all_at(&buf, off).unwrap();
    }
    f.sync_all().unwrap();
}

/// `n` disjoint ranges of `len` bytes at unaligned random offsets in `size` bytes.
fn scattered(n: u64, len: u64, size: u64, rng: &mut Rng) -> Vec<(u64, u64)> {
    let slot = size / n;
    (0..n)
        .map(|i| {
            let off = i * slot + rng.below(slot - len);
            (off, len)
        })
        .collect()
}

fn write_ranges(path: &Path, ranges: &[(u64, u64)]) {
    let text: String = ranges.iter().map(|(o, l)| format!("{o} {l}\n")).collect();
    fs::write(path, text).unwrap();
}

fn block_volume_on(store: Store) {
    let server = server_with_metrics_on(store, "block");
    let admin = server.admin();
    let size = 64 * MIB;
    let img = server.scratch("disk.img");
    let f = File::create(&img).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let mut rng = Rng::new(51);
    scribble(&img, &scattered(6, MIB, size, &mut rng), &mut rng);
    scribble(&img, &[(0, 4096), (size - 5000, 5000)], &mut rng);

    let m0 = received(&server);
    let v1 = server.push(&admin, &["--block", s(&img)]);
    let id1 = snapshot_id(&v1);
    eprintln!("first volume push: {v1}, server received {}", received(&server) - m0);
    assert!(num(&v1, "bytes_sent") < 16 * MIB, "holes are not sent: {v1}");
    // Every block is either sent or reused (holes counted once).
    let blocks = size / (256 * 1024);
    assert_eq!(num(&v1, "reused") + num(&v1, "sent"), blocks, "{v1}");
    let out1 = server.scratch("out1.img");
    server.ok(&admin, &["restore", &id1, "--block", s(&out1)]);
    assert_same_file(&img, &out1);
    let old = server.scratch("old.img");
    fs::copy(&img, &old).unwrap();

    // About 2 MiB changed in 32 scattered ranges, vouched for by a range list.
    let ranges = scattered(32, 64 * 1024, size, &mut rng);
    let changed: u64 = ranges.iter().map(|r| r.1).sum();
    scribble(&img, &ranges, &mut rng);
    let list = server.scratch("ranges.txt");
    write_ranges(&list, &ranges);
    let m1 = received(&server);
    let v2 = server.push(&admin, &["--block", s(&img), "--changed-ranges", s(&list)]);
    let grew = received(&server) - m1;
    let sent = num(&v2, "bytes_sent");
    eprintln!(
        "changed ranges: {changed} bytes changed, client sent {sent} (+{:.2}%), server received {grew}",
        (sent as f64 / changed as f64 - 1.0) * 100.0
    );
    assert!(sent >= changed, "{v2}");
    assert_eq!(num(&v2, "reused") + num(&v2, "sent"), blocks, "{v2}");
    assert!(
        sent * 100 <= changed * 105,
        "sent {sent} for {changed} changed bytes: {v2}"
    );
    assert!(
        grew >= changed && grew * 100 <= changed * 105,
        "server received {grew} for {changed}"
    );
    let id2 = snapshot_id(&v2);
    let out2 = server.scratch("out2.img");
    server.ok(&admin, &["restore", &id2, "--block", s(&out2)]);
    assert_same_file(&img, &out2);
    let again1 = server.scratch("again1.img");
    server.ok(&admin, &["restore", &id1, "--block", s(&again1)]);
    assert_same_file(&old, &again1);

    // Changed again, no range list: digests find the changed blocks.
    let mid = server.scratch("mid.img");
    fs::copy(&img, &mid).unwrap();
    let ranges = scattered(8, 100_000, size, &mut rng);
    scribble(&img, &ranges, &mut rng);
    let m2 = received(&server);
    let v3 = server.push(&admin, &["--block", s(&img)]);
    let grew = received(&server) - m2;
    eprintln!("digest mode after 800 kB of changes: {v3}, server received {grew}");
    assert!(num(&v3, "bytes_sent") < size / 8, "{v3}");
    assert!(grew < size / 8, "server received {grew}");
    let id3 = snapshot_id(&v3);
    let out3 = server.scratch("out3.img");
    server.ok(&admin, &["restore", &id3, "--block", s(&out3)]);
    assert_same_file(&img, &out3);

    // A seeded restore takes the unchanged blocks from an older image: from the previous
    // one, only the blocks the last 8 ranges touched are fetched.
    let block = 256 * 1024;
    let seeded = server.scratch("seeded.img");
    let r = server.ok(&admin, &["restore", &id3, "--block", s(&seeded), "--seed", s(&mid)]);
    eprintln!("restore seeded with the previous image: {r}");
    assert_same_file(&img, &seeded);
    assert!(num(&r, "from_seed") > 0, "{r}");
    assert!(num(&r, "bytes_fetched") <= 16 * block, "{r}");
    // Seeded with the first image (older, more differs): still exact.
    let seeded_old = server.scratch("seeded-old.img");
    let r = server.ok(&admin, &["restore", &id3, "--block", s(&seeded_old), "--seed", s(&old)]);
    eprintln!("restore seeded with the first image: {r}");
    assert_same_file(&img, &seeded_old);
    assert!(num(&r, "from_seed") > 0, "{r}");
}

// ---------------------------------------------------------------------------------------
// 6. Catalog and sharing.

/// Strips what legitimately differs between a server and a local repository listing.
fn comparable_snapshot(v: &Value) -> Value {
    serde_json::json!({
        "kind": v["kind"], "files": v["files"], "dirs": v["dirs"], "bytes": v["bytes"],
        "complete": v["complete"], "hostname": v["hostname"], "path": v["path"], "tags": v["tags"],
        "environment": v["environment"],
    })
}

fn catalog_on(store: Store) {
    let server = store.server("catalog", &[], &[]);
    let admin = server.admin();
    let repo = Repo::init();
    let src = server.scratch("tree");
    sample_tree(&src, 61);

    let s1 = snapshot_id(&server.push(&admin, &[s(&src), "--tag", "t1"]));
    let l1 = repo.snapshot(&src, &["--tag", "t1"])["id"]
        .as_str()
        .unwrap()
        .to_string();

    fs::write(src.join("added.txt"), "new file\n").unwrap();
    fs::write(src.join("pkg0/mod0.py"), "changed content of another length\n").unwrap();
    fs::remove_file(src.join("pkg1/mod1.py")).unwrap();
    let s2 = snapshot_id(&server.push(&admin, &[s(&src), "--tag", "t2"]));
    let l2 = repo.snapshot(&src, &["--tag", "t2"])["id"]
        .as_str()
        .unwrap()
        .to_string();

    // ls: the same entries, field for field.
    for (sid, lid) in [(&s1, &l1), (&s2, &l2)] {
        let remote = server.ok(&admin, &["ls", sid]);
        let local = repo.ok(&["ls", lid]);
        assert!(remote.as_array().unwrap().len() > 30, "{remote}");
        assert_eq!(remote, local, "ls via the server differs from the local ls");
    }
    let sub = server.ok(&admin, &["ls", &s1, "pkg0"]);
    assert_eq!(sub, repo.ok(&["ls", &l1, "pkg0"]), "ls of a subdirectory");

    // diff: the same changes; the added and modified paths are there.
    let remote = server.ok(&admin, &["diff", &s1, &s2]);
    let local = repo.ok(&["diff", &l1, &l2]);
    assert_eq!(remote["changes"], local["changes"], "diff via the server differs");
    for key in ["added", "removed", "modified", "metadata", "type_changed"] {
        assert_eq!(remote[key], local[key], "{key}");
    }
    let has = |path: &str, change: &str| {
        remote["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == path && c["change"] == change)
    };
    assert!(has("added.txt", "added"), "{remote}");
    assert!(has("pkg0/mod0.py", "modified"), "{remote}");
    assert!(has("pkg1/mod1.py", "removed"), "{remote}");
    // A unique prefix works as on a local repository.
    let by_prefix = server.ok(&admin, &["diff", &s1[..12], &s2[..12]]);
    assert_eq!(by_prefix["changes"], remote["changes"]);

    // snapshots: the same descriptions.
    let remote = server.ok(&admin, &["snapshots"]);
    let local = repo.ok(&["snapshots"]);
    let (r, l) = (remote.as_array().unwrap(), local.as_array().unwrap());
    assert_eq!(r.len(), 2);
    assert_eq!(
        r.iter().map(comparable_snapshot).collect::<Vec<_>>(),
        l.iter().map(comparable_snapshot).collect::<Vec<_>>()
    );
    let second = r.iter().find(|x| x["id"] == s2.as_str()).unwrap();
    assert_eq!(second["parent"], s1.as_str(), "{second}");
    // A nonexistent snapshot is NOT_FOUND, as clearly as locally.
    server
        .run(&admin, &["--json", "ls", &"0".repeat(64)])
        .expect_error(&["(NotFound)"]);
}

fn two_vault_server(store: Store) -> (Server, tempfile::TempDir) {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("amber.toml");
    fs::write(&cfg, "vaults = [\"lab-a\", \"lab-b\"]\n").unwrap();
    let server = store.server("share", &["--config", s(&cfg)], &[]);
    (server, cfg_dir)
}

fn share_on(store: Store) {
    let (server, _cfg) = two_vault_server(store);
    let (a, b) = (server.admin_of("lab-a"), server.admin_of("lab-b"));
    let src = server.scratch("tree");
    sample_tree(&src, 62);
    let id = snapshot_id(&server.push(&a, &[s(&src)]));

    let mut cmd = server.client(&a, &["--json", "share", &id, "--to", "lab-b"]);
    cmd.env("AMBER_TARGET_TOKEN", &b);
    let out = run_command(cmd);
    out.expect_code(0);
    let shared = out.json();
    let new_id = snapshot_id(&shared);
    assert_eq!(shared["vault"], "lab-b");

    let reader = server.token(&b, "restore");
    assert_eq!(server.snapshot_ids(&reader), vec![new_id.clone()]);
    let dest = server.scratch("from-b");
    restore_tree(&server, &reader, &new_id, &dest);
    assert_same_tree(&src, &dest);
    // lab-a still holds only its own.
    assert_eq!(server.snapshot_ids(&a), vec![id.clone()]);

    for (vault, admin) in [("lab-a", &a), ("lab-b", &b)] {
        let lines = server.audit(admin);
        assert!(
            lines
                .iter()
                .any(|l| l["call"] == "/amber.v1.Admin/ShareSnapshot" && l["result"] == "ok"),
            "the {vault} audit log records the share:\n{lines:#?}"
        );
    }

    // Without the target's consent (a lab-a token as the target token) nothing is copied.
    let mut cmd = server.client(&a, &["--json", "share", &id, "--to", "lab-b"]);
    cmd.env("AMBER_TARGET_TOKEN", &a);
    run_command(cmd).expect_error(&["(PermissionDenied)"]);
    assert_eq!(server.snapshot_ids(&reader), vec![new_id]);
}

#[test]
fn layers_and_volumes_are_shared_too() {
    let (server, _cfg) = two_vault_server(Store::Local);
    let (a, b) = (server.admin_of("lab-a"), server.admin_of("lab-b"));
    let share = |id: &str| {
        let mut cmd = server.client(&a, &["--json", "share", id, "--to", "lab-b"]);
        cmd.env("AMBER_TARGET_TOKEN", &b);
        snapshot_id(&run_command(cmd).expect_code(0).json())
    };
    let (tar, gz) = make_layer(&server, 64);
    let layer = snapshot_id(&server.push(&a, &["--tar", s(&gz)]));
    let shared_layer = share(&layer);
    let out = server.scratch("shared.tar");
    server.ok(&b, &["restore", &shared_layer, "--tar", s(&out)]);
    assert_same_file(&tar, &out);

    let img = server.scratch("vol.img");
    File::create(&img).unwrap().set_len(24 * 1024 * 1024 + 4096).unwrap();
    let mut rng = Rng::new(66);
    scribble(
        &img,
        &[(0, 300_000), (5_000_000, 1_000_000), (24 * 1024 * 1024, 4096)],
        &mut rng,
    );
    let vol = snapshot_id(&server.push(&a, &["--block", s(&img)]));
    let shared_vol = share(&vol);
    let back = server.scratch("shared.img");
    server.ok(&b, &["restore", &shared_vol, "--block", s(&back)]);
    assert_same_file(&img, &back);
    let listed = server.snapshot_ids(&b);
    assert!(
        listed.contains(&shared_layer) && listed.contains(&shared_vol),
        "{listed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Resumed restore.

fn restore_resumes_on(store: Store) {
    let server = store.server("resume", &[], &[]);
    let admin = server.admin();
    let src = server.scratch("tree");
    let mut rng = Rng::new(71);
    write_random(&src.join("big/model.bin"), 12 * MIB, &mut rng);
    write_random(&src.join("big/weights.bin"), 3 * MIB, &mut rng);
    write_random(&src.join("data/table.bin"), 2 * MIB, &mut rng);
    for i in 0..20 {
        write_random(&src.join(format!("small/f{i:02}.bin")), 10_000 + i * 3_000, &mut rng);
    }
    let total = dir_size(&src);
    let id = snapshot_id(&server.push(&admin, &[s(&src)]));

    let dest = server.scratch("dest");
    let first = restore_tree(&server, &admin, &id, &dest);
    assert_same_tree(&src, &dest);
    assert_eq!(num(&first, "bytes_fetched"), total, "{first}");

    // Corrupt a few bytes in the middle of the big file, truncate another, delete a third.
    let big = OpenOptions::new().write(true).open(dest.join("big/model.bin")).unwrap();
    big.write_all_at(b"CORRUPTED", 5 * MIB + 123).unwrap();
    drop(big);
    let w = OpenOptions::new()
        .write(true)
        .open(dest.join("big/weights.bin"))
        .unwrap();
    w.set_len(MIB).unwrap();
    drop(w);
    fs::remove_file(dest.join("data/table.bin")).unwrap();
    fs::remove_file(dest.join("small/f03.bin")).unwrap();

    let again = restore_tree(&server, &admin, &id, &dest);
    eprintln!("resumed restore of a {total}-byte tree: {again}");
    assert_same_tree(&src, &dest);
    assert!(num(&again, "chunks_kept") > 0, "{again}");
    let fetched = num(&again, "bytes_fetched");
    assert!(fetched < total, "{again}");
    // What had to come again: the damaged chunk(s), the truncated and deleted files.
    assert!(fetched >= 5 * MIB + 10_000, "{again}");
    // At most two chunks (4 MiB at most each) of the big file besides the lost files.
    assert!(
        fetched <= 5 * MIB + 19_000 + 8 * MIB,
        "only the damage is fetched again: {again}"
    );
}
