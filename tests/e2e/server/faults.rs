//! Faults during a push: the client killed, the server killed, the server stopped with
//! SIGTERM (drained, or cut when the drain period is over). Nothing half-done is listed,
//! earlier snapshots stay whole, and a retry of the same `amber push DIR` resumes: it
//! sends only what the server had not made durable. The client and server kills run on the
//! local store and on S3.
//!
//! Progress is read from the server's `/metrics` (`AMBER_METRICS_LISTEN=127.0.0.1:0`):
//! `amber_bytes_received_total` counts the content bytes the push session has taken from
//! its queue, `amber_streams_active` the pushes still open. Where the order of events
//! matters, the client is paused with SIGSTOP so that no timing can reorder them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Server, s};
use crate::common::{Out, Rng, assert_same_tree, num, sample_tree, write_random};
use crate::stores::{Store, on_every_store};

pub(crate) const MIB: u64 = 1024 * 1024;
/// Largest file of the big trees: a push in progress has at most this much of one file
/// received but not completed (so not journaled).
const MAX_FILE: u64 = 4 * MIB;
/// Content the server receives between two checkpoints (`CHECKPOINT_BYTES` in
/// `server/src/serve/ingest/tree.rs`).
const CHECKPOINT: u64 = 64 * MIB;
/// Slack for what a push sends besides file content: gRPC framing (5 bytes per message),
/// the frame headers (a few bytes per 1 MiB frame) and the entry batches.
const OVERHEAD: u64 = MIB;
/// How long to wait for a push to make progress, or a server to log something.
const PATIENCE: Duration = Duration::from_secs(120);

/// Environment that makes the server serve `/metrics` on a free loopback port.
pub(crate) const METRICS_ENV: (&str, &str) = ("AMBER_METRICS_LISTEN", "127.0.0.1:0");

/// Writes random files of 1 to 4 MiB (seeded) under `root` in a few directories until
/// at least `total` bytes; returns the exact number of bytes written.
pub(crate) fn random_tree(root: &Path, seed: u64, total: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < total {
        let size = MIB + rng.below(MAX_FILE - MIB + 1);
        write_random(&root.join(format!("d{}/s{}/f{i:03}.bin", i % 3, i % 2)), size, &mut rng);
        written += size;
        i += 1;
    }
    written
}

/// The tree a fault test starts from: [`sample_tree`] (with its hard-linked pair, which a
/// restore through the server must also recreate).
pub(crate) fn small_tree(root: &Path, seed: u64) {
    sample_tree(root, seed);
}

/// `host:port` of the server's metrics listener (the last one it announced).
fn metrics_addr(server: &Server) -> String {
    let line = server
        .stdout_lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .expect("the server announced no metrics listener: start it with METRICS_ENV");
    line.trim().trim_end_matches("/metrics").to_string()
}

/// The value of the un-labelled metric `name` (0 when absent).
pub(crate) fn metric(server: &Server, name: &str) -> u64 {
    let mut conn = TcpStream::connect(metrics_addr(server)).expect("connect to /metrics");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: amber\r\n\r\n")
        .expect("send the request");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// Polls `cond` every 20 ms until it holds; panics after [`PATIENCE`] naming `what`.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `amber --json push DIR` as a child process, output captured.
pub(crate) fn spawn_push(server: &Server, token: &str, dir: &Path) -> Child {
    server
        .client(token, &["--json", "push", s(dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn amber push")
}

/// Waits for a child spawned by [`spawn_push`] and collects its output.
pub(crate) fn finish(child: Child, what: &str) -> Out {
    let o = child.wait_with_output().expect("wait for amber push");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmdline: what.to_string(),
    }
}

/// Sends `signal` (a `kill` name: TERM, STOP, CONT, ...) to `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// The snapshot id of a push summary.
pub(crate) fn snapshot_id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot_id in {v}"))
        .to_string()
}

/// Restores `id` into a fresh scratch directory and compares it with `original`.
pub(crate) fn restore_exact(server: &Server, token: &str, id: &str, original: &Path, name: &str) {
    let dest = server.scratch(name);
    let v = server.ok(token, &["restore", id, s(&dest)]);
    assert_eq!(v["snapshot"].as_str(), Some(id), "{v}");
    assert_same_tree(original, &dest);
    std::fs::remove_dir_all(&dest).expect("remove the restored tree");
}

/// A server configuration file (TOML) in its own temporary directory.
pub(crate) fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.toml");
    std::fs::write(&path, text).expect("write the server config");
    (dir, path)
}

/// Waits until the server has logged `needle` on stderr.
fn wait_for_log(server: &Server, needle: &str) {
    wait_until(&format!("the server to log {needle:?}"), || {
        server.stderr().contains(needle)
    });
}

/// A push started and then paused (SIGSTOP) after the server received at least `after`
/// bytes of it; returns the child and what the server had received when it settled.
fn push_then_pause(server: &Server, token: &str, dir: &Path, tree_bytes: u64, after: u64) -> (Child, u64) {
    let base = metric(server, "amber_bytes_received_total");
    let mut child = spawn_push(server, token, dir);
    wait_until("the push to make progress", || {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the push ended before it could be paused: make the tree bigger"
        );
        metric(server, "amber_bytes_received_total") - base >= after
    });
    signal(child.id(), "STOP");
    // Let the server drain what was already in flight so the figure below is settled.
    std::thread::sleep(Duration::from_millis(300));
    let received = metric(server, "amber_bytes_received_total") - base;
    assert!(
        received < tree_bytes,
        "the push is paused before its end: {received} of {tree_bytes} bytes"
    );
    (child, received)
}

on_every_store! {
    a_client_killed_mid_push_leaves_no_snapshot_and_the_retry_resumes => client_killed_on,
    a_server_killed_mid_push_keeps_its_checkpoints => server_killed_on,
}

fn client_killed_on(store: Store) {
    let server = store.server("client-kill", &[], &[METRICS_ENV]);
    let admin = server.admin();
    let small = server.scratch("small");
    small_tree(&small, 41);
    let earlier = snapshot_id(&server.push(&admin, &[s(&small)]));

    let big = server.scratch("big");
    let tree_bytes = random_tree(&big, 0xFA01, 120 * MIB);
    let base = metric(&server, "amber_bytes_received_total");
    let mut child = spawn_push(&server, &admin, &big);
    let started = Instant::now();
    wait_until("the push to reach 40% of the tree", || {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the push ended before it could be killed: make the tree bigger"
        );
        metric(&server, "amber_bytes_received_total") - base >= tree_bytes * 2 / 5
    });
    child.kill().expect("SIGKILL the client");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the killed push should not succeed: {status}");
    let killed_after = started.elapsed();
    // The server notices the broken stream, flushes and journals, then closes the session.
    wait_until("the server to close the broken push", || {
        metric(&server, "amber_streams_active") == 0
    });
    let received = metric(&server, "amber_bytes_received_total") - base;

    assert_eq!(
        server.snapshot_ids(&admin),
        vec![earlier.clone()],
        "a killed push lists nothing"
    );
    restore_exact(&server, &admin, &earlier, &small, "earlier");

    let retry = server.push(&admin, &[s(&big)]);
    let sent = num(&retry, "bytes_sent");
    eprintln!(
        "faults/client-kill: tree {tree_bytes} bytes; client killed after {killed_after:?} with {received} bytes \
         received; the retry sent {sent} bytes ({:.1}% of the tree; reused {} files, sent {}) in {:.2} s",
        100.0 * sent as f64 / tree_bytes as f64,
        num(&retry, "reused"),
        num(&retry, "sent"),
        retry["duration_seconds"].as_f64().unwrap_or_default()
    );
    assert!(
        sent < tree_bytes * 9 / 10,
        "the retry resent nearly everything: {retry}"
    );
    // Every file completed before the kill was journaled; at most the one in progress is
    // sent again besides those never received.
    assert!(
        sent <= tree_bytes - received + MAX_FILE + OVERHEAD,
        "the retry sent {sent} bytes although {received} of {tree_bytes} had arrived: {retry}"
    );
    assert!(num(&retry, "reused") > 0, "{retry}");
    assert_eq!(server.snapshot_ids(&admin).len(), 2);
    restore_exact(&server, &admin, &snapshot_id(&retry), &big, "big-restored");
    restore_exact(&server, &admin, &earlier, &small, "earlier-again");
}

fn server_killed_on(store: Store) {
    let mut server = store.server("server-kill", &[], &[METRICS_ENV]);
    let admin = server.admin();
    let small = server.scratch("small");
    small_tree(&small, 42);
    let earlier = snapshot_id(&server.push(&admin, &[s(&small)]));

    let big = server.scratch("big");
    let tree_bytes = random_tree(&big, 0xFA02, 200 * MIB);
    let base = metric(&server, "amber_bytes_received_total");
    let mut child = spawn_push(&server, &admin, &big);
    let started = Instant::now();
    // Past the first checkpoint (64 MiB, taken at the end of the file that crossed it, on
    // the session thread, before it takes the next frame) with room to spare.
    let threshold = CHECKPOINT + 2 * MAX_FILE;
    wait_until("the push to pass its first checkpoint", || {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the push ended before the server could be killed: make the tree bigger"
        );
        metric(&server, "amber_bytes_received_total") - base >= threshold
    });
    let received = metric(&server, "amber_bytes_received_total") - base;
    server.kill();
    let killed_after = started.elapsed();
    let out = finish(child, "amber push (server killed)");
    assert_ne!(out.code, Some(0), "a push whose server died cannot succeed\n{out}");
    assert!(out.stderr.starts_with("amber: "), "a clear error\n{out}");

    server.restart();
    assert_eq!(
        server.snapshot_ids(&admin),
        vec![earlier.clone()],
        "a broken push lists nothing"
    );
    restore_exact(&server, &admin, &earlier, &small, "earlier");

    let retry = server.push(&admin, &[s(&big)]);
    let sent = num(&retry, "bytes_sent");
    eprintln!(
        "faults/server-kill: tree {tree_bytes} bytes; server killed after {killed_after:?} with at least \
         {received} bytes received; the retry sent {sent} bytes ({:.1}% of the tree; reused {} files, sent {}) \
         in {:.2} s",
        100.0 * sent as f64 / tree_bytes as f64,
        num(&retry, "reused"),
        num(&retry, "sent"),
        retry["duration_seconds"].as_f64().unwrap_or_default()
    );
    // The checkpoint journaled at least 64 MiB of completed files, durable before the kill.
    assert!(
        sent <= tree_bytes - CHECKPOINT + OVERHEAD,
        "the retry should skip the checkpointed {CHECKPOINT} bytes: sent {sent} of {tree_bytes}: {retry}"
    );
    assert!(num(&retry, "reused") > 0, "{retry}");
    assert_eq!(server.snapshot_ids(&admin).len(), 2);
    restore_exact(&server, &admin, &snapshot_id(&retry), &big, "big-restored");
}

#[test]
fn sigterm_lets_an_open_push_finish_and_refuses_new_ones() {
    let (_cfg_dir, cfg) = config_file("[limits]\ndrain_seconds = 30\n");
    let mut server = Server::start_with(&["--config", s(&cfg)], &[METRICS_ENV]);
    let admin = server.admin();
    let big = server.scratch("big");
    let tree_bytes = random_tree(&big, 0xFA03, 100 * MIB);
    let small = server.scratch("small");
    small_tree(&small, 43);

    // The first push is open (and paused, so it cannot finish early) when SIGTERM comes.
    let (child, received) = push_then_pause(&server, &admin, &big, tree_bytes, 8 * MIB);
    let pid = server.pid();
    signal(pid, "TERM");
    let term_at = Instant::now();
    wait_for_log(&server, "draining");

    // A push begun after SIGTERM is refused.
    let refused = server.run(&admin, &["push", s(&small)]);
    refused.expect_error(&["shutting down", "Unavailable"]);

    // The open one goes on and commits.
    signal(child.id(), "CONT");
    let out = finish(child, "amber push (open at SIGTERM)");
    out.expect_code(0);
    let v = out.json();
    let id = snapshot_id(&v);
    let pushed_after = term_at.elapsed();
    assert_eq!(num(&v, "bytes_received_by_server"), tree_bytes, "{v}");

    // Then the server stops on its own, with status 0.
    let status: Option<ExitStatus> = server.terminate(Duration::from_secs(60));
    let stopped_after = term_at.elapsed();
    eprintln!(
        "faults/drain: {received} of {tree_bytes} bytes received at SIGTERM; the push committed {pushed_after:?} \
         after SIGTERM, the server exited {stopped_after:?} after it: {status:?}"
    );
    let status = status.expect("the server was running");
    assert!(
        status.success(),
        "the server should exit 0 after draining: {status}\n{}",
        server.stderr()
    );
    assert!(
        stopped_after < Duration::from_secs(30),
        "the server should stop once the open push ended, not wait out the drain period"
    );

    server.restart();
    assert_eq!(server.snapshot_ids(&admin), vec![id.clone()]);
    restore_exact(&server, &admin, &id, &big, "big-restored");
}

#[test]
fn sigterm_cuts_a_push_that_outlasts_the_drain_period() {
    let (_cfg_dir, cfg) = config_file("[limits]\ndrain_seconds = 1\n");
    let mut server = Server::start_with(&["--config", s(&cfg)], &[METRICS_ENV]);
    let admin = server.admin();
    let small = server.scratch("small");
    small_tree(&small, 44);
    let earlier = snapshot_id(&server.push(&admin, &[s(&small)]));

    let big = server.scratch("big");
    let tree_bytes = random_tree(&big, 0xFA04, 100 * MIB);
    let (child, received) = push_then_pause(&server, &admin, &big, tree_bytes, 24 * MIB);
    signal(server.pid(), "TERM");
    let term_at = Instant::now();
    wait_for_log(&server, "cutting open pushes");
    signal(child.id(), "CONT");

    let out = finish(child, "amber push (cut by the drain)");
    out.expect_error(&["shut down", "Unavailable"]);
    let status = server
        .terminate(Duration::from_secs(60))
        .expect("the server was running");
    let stopped_after = term_at.elapsed();
    eprintln!(
        "faults/drain-cut: {received} of {tree_bytes} bytes received when the push was cut; the server exited \
         {stopped_after:?} after SIGTERM: {status}"
    );
    assert!(
        status.success(),
        "the server should exit 0 after cutting: {status}\n{}",
        server.stderr()
    );

    server.restart();
    assert_eq!(
        server.snapshot_ids(&admin),
        vec![earlier.clone()],
        "a cut push lists nothing"
    );
    restore_exact(&server, &admin, &earlier, &small, "earlier");
    let retry = server.push(&admin, &[s(&big)]);
    let sent = num(&retry, "bytes_sent");
    eprintln!(
        "faults/drain-cut: the retry sent {sent} bytes of {tree_bytes} ({:.1}%; reused {} files, sent {})",
        100.0 * sent as f64 / tree_bytes as f64,
        num(&retry, "reused"),
        num(&retry, "sent")
    );
    // The cut push flushed and journaled the files it had completed.
    assert!(
        sent <= tree_bytes - received + MAX_FILE + OVERHEAD,
        "the retry sent {sent} bytes although {received} of {tree_bytes} had arrived: {retry}"
    );
    restore_exact(&server, &admin, &snapshot_id(&retry), &big, "big-restored");
}

/// A tar layer of random files (seeded), about `total` bytes; returns its path and size.
fn random_layer(server: &Server, seed: u64, total: u64) -> (std::path::PathBuf, u64) {
    let dir = server.scratch(&format!("layer-src-{seed}"));
    random_tree(&dir, seed, total);
    let layer = server.scratch(&format!("layer-{seed}.tar"));
    let status = Command::new("tar")
        .arg("cf")
        .arg(&layer)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
    let size = std::fs::metadata(&layer).expect("layer").len();
    (layer, size)
}

#[test]
fn a_layer_push_killed_midway_resumes_from_what_the_server_kept() {
    let server = Server::start_with(&[], &[METRICS_ENV]);
    let admin = server.admin();
    let (layer, size) = random_layer(&server, 0x7A2, 96 * MIB);
    let base = metric(&server, "amber_bytes_received_total");
    let mut child = server
        .client(&admin, &["--json", "push", "--tar", s(&layer)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn amber push --tar");
    wait_until("the layer push to reach half the stream", || {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the push ended first: make the layer bigger"
        );
        metric(&server, "amber_bytes_received_total") - base >= size / 2
    });
    child.kill().expect("SIGKILL the client");
    let _ = child.wait();
    wait_until("the server to close the broken push", || {
        metric(&server, "amber_streams_active") == 0
    });
    let received = metric(&server, "amber_bytes_received_total") - base;
    assert!(
        server.snapshot_ids(&admin).is_empty(),
        "a killed layer push lists nothing"
    );

    let retry = server.push(&admin, &["--tar", s(&layer)]);
    let sent = num(&retry, "bytes_sent");
    eprintln!(
        "faults/layer-client-kill: layer {size} bytes; {received} received before the kill; the retry sent {sent} \
         bytes ({:.1}% of the layer)",
        100.0 * sent as f64 / size as f64
    );
    assert!(
        sent <= size - received + OVERHEAD,
        "the retry sent {sent} bytes although {received} of {size} had arrived: {retry}"
    );
    let out = server.scratch("layer-back.tar");
    server.ok(&admin, &["restore", &snapshot_id(&retry), "--tar", s(&out)]);
    assert!(
        crate::common::same_content(&layer, &out),
        "the resumed layer restores byte for byte"
    );
    // A push of other bytes under the same name and digest cannot reuse the kept prefix:
    // nothing is kept after a commit, and the next push of the same layer is skipped.
    let again = server.push(&admin, &["--tar", s(&layer)]);
    assert_eq!(again["already_stored"], true, "{again}");
    let leftovers: Vec<_> = std::fs::read_dir(server.data().join("vaults/default/resume"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a committed push leaves no resume file: {leftovers:?}"
    );
}
