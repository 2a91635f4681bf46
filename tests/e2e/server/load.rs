//! Load: many pushes at once. Twenty `amber push` processes started together, each with
//! its own tree, all commit, every snapshot restores exactly, and the server's peak
//! resident memory stays within a bound that grows with the number of open streams.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::faults::{METRICS_ENV, MIB, finish, metric, restore_exact, snapshot_id, spawn_push};
use super::harness::Server;
use crate::common::{Rng, num, write_random};

/// Pushes started at once.
const STREAMS: u64 = 20;

/// Peak RSS of the server before any push: measured at about 80 MiB, nearly all of it
/// the Argon2id key derivation (64 MiB) that creates or opens the vault at start, plus the
/// runtime. 128 MiB leaves room for the runtime's threads and the allocator's arenas.
const RSS_BASE_MIB: u64 = 128;

/// What one open tree push may hold, by construction of the server:
/// - the session's inbox: `QUEUE_FRAMES` = 4 client frames of at most
///   `max_frame_bytes` = 1 MiB, plus the one the forwarding task holds and the HTTP/2
///   receive window: about 6 MiB;
/// - the chunk being cut, at most the chunker maximum (4 MiB), and its compressed and
///   sealed copies, each dropped once handed on: a few MiB;
/// - the packer queue (`PACKER_QUEUE` = 32 sealed blobs): nearly empty while the packer
///   keeps up, which it does at a few MiB per stream;
/// - the open data pack, kept in memory until it reaches `data_pack_target` (32 MiB) or
///   the push finishes: with the 4-8 MiB trees here, the whole tree, at most 8 MiB;
/// - a session thread and a packer thread (stacks, their share of the malloc arenas).
///
/// About 6 + 4 + 8 + 2 = 20 MiB at worst for these trees; measured: about 10 MiB per
/// stream (271 MiB peak for 20 streams of 6 MiB on average, from 80 MiB). 24 MiB per
/// stream keeps the bound meaningful with margin: 128 + 20 × 24 = 608 MiB. (For trees
/// above 32 MiB the open pack alone can reach 32 MiB per stream; the bound is for this
/// test's trees.)
const RSS_PER_STREAM_MIB: u64 = 24;

/// Writes a tree of 4 to 8 MiB (seeded): random files of 16 KiB to 1.5 MiB in a few
/// nested directories, and a few empty and tiny ones. Returns its content size.
fn load_tree(root: &Path, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let target = 4 * MIB + rng.below(4 * MIB);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < target {
        let size = (16 * 1024 + rng.below(MIB + MIB / 2)).min(target - written);
        let dir = match i % 4 {
            0 => "lib".to_string(),
            1 => format!("lib/pkg{}", i % 3),
            2 => format!("data/part{}", i % 2),
            _ => "data/raw/deep".to_string(),
        };
        write_random(&root.join(format!("{dir}/f{i:03}.bin")), size, &mut rng);
        written += size;
        i += 1;
    }
    std::fs::write(root.join("README"), format!("tree {seed}\n")).expect("write");
    std::fs::write(root.join("lib/empty"), "").expect("write");
    written + format!("tree {seed}\n").len() as u64
}

#[test]
fn twenty_concurrent_pushes_all_commit_within_a_memory_bound() {
    let server = Server::start_with(&[], &[METRICS_ENV]);
    let admin = server.admin();
    let trees: Vec<(PathBuf, u64)> = (0..STREAMS)
        .map(|i| {
            let dir = server.scratch(&format!("tree{i:02}"));
            let bytes = load_tree(&dir, 0x10AD_0000 + i);
            (dir, bytes)
        })
        .collect();
    let total: u64 = trees.iter().map(|(_, b)| b).sum();
    let rss_before = server.peak_rss_kib();

    // Watch how many streams are open at once while the pushes run.
    let stop = AtomicBool::new(false);
    let most_open = AtomicU64::new(0);

    let started = Instant::now();
    let children: Vec<_> = trees.iter().map(|(dir, _)| spawn_push(&server, &admin, dir)).collect();
    let mut summaries = Vec::new();
    std::thread::scope(|scope| {
        let (stop, most_open, server) = (&stop, &most_open, &server);
        scope.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let open = metric(server, "amber_streams_active");
                most_open.fetch_max(open, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        for (i, child) in children.into_iter().enumerate() {
            let out = finish(child, &format!("amber push tree{i:02}"));
            out.expect_code(0);
            summaries.push(out.json());
        }
        stop.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    let rss_after = server.peak_rss_kib();
    let most_open = most_open.load(Ordering::SeqCst);
    let bound_mib = RSS_BASE_MIB + STREAMS * RSS_PER_STREAM_MIB;
    eprintln!(
        "load: {STREAMS} pushes of {total} bytes in all ({:.1} MiB) took {elapsed:?}; at most {most_open} streams \
         open at once (sampled); server peak RSS {:.1} MiB before, {:.1} MiB after (bound {bound_mib} MiB = \
         {RSS_BASE_MIB} + {STREAMS} x {RSS_PER_STREAM_MIB})",
        total as f64 / MIB as f64,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
    );

    for (v, (_, bytes)) in summaries.iter().zip(&trees) {
        assert_eq!(num(v, "bytes_received_by_server"), *bytes, "{v}");
        assert_eq!(
            num(v, "reused") + num(v, "sent") + num(v, "empty_files"),
            num(v, "files"),
            "{v}"
        );
    }
    let mut ids: Vec<String> = summaries.iter().map(snapshot_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), STREAMS as usize, "every push made its own snapshot");
    let mut listed = server.snapshot_ids(&admin);
    listed.sort();
    assert_eq!(listed, ids);
    assert!(
        most_open >= 2,
        "the pushes should have overlapped (at most {most_open} open at once)"
    );
    assert!(
        rss_after <= bound_mib * 1024,
        "the server's peak RSS {:.1} MiB exceeds {bound_mib} MiB",
        rss_after as f64 / 1024.0
    );

    for (i, (v, (dir, _))) in summaries.iter().zip(&trees).enumerate() {
        restore_exact(&server, &admin, &snapshot_id(v), dir, &format!("restored{i:02}"));
    }
}
