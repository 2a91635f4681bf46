//! Throughput of Amber's engine, in MB/s: the chunker, the per-chunk seal pipeline (and
//! its parts), and whole-tree snapshot and restore against a local repository.
//!
//! Run with `cargo bench -p amber-benches`; `cargo bench -p amber-benches -- chunker`
//! runs one group. See `benches/README.md`.

// A bench whose setup fails has nothing to measure: stopping with the reason is the point.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_benches::{TreeSpec, generate_tree, random_bytes, text_bytes};
use amber_engine::backend::local::LocalBackend;
use amber_engine::chunker::{ChunkerParams, ContentChunker, GearTable, chunk_all};
use amber_engine::compress::{DEFAULT_LEVEL, compress};
use amber_engine::crypto::{KdfParams, SealKey};
use amber_engine::format::blob::{BlobKind, seal_blob};
use amber_engine::hash::IdKey;
use amber_engine::id::TreeId;
use amber_engine::ops::block::{BlockOptions, BlockRestoreOptions, restore_block, snapshot_block};
use amber_engine::ops::ingest::{ParentChoice, READ_BUFFER, SnapshotSummary, TreeOptions, snapshot_tree};
use amber_engine::ops::restore::{RestoreOptions, restore_tree};
use amber_engine::ops::tar::{TarOptions, restore_tar, snapshot_tar};
use amber_engine::repo::{InitOptions, Repository};
use criterion::{Bencher, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

/// Size of the in-memory inputs.
const DATA_LEN: usize = 64 * 1024 * 1024;
const GEAR_KEY: [u8; 32] = [0x11; 32];
const ID_KEY: [u8; 32] = [0x22; 32];
const SEAL_KEY: [u8; 32] = [0x33; 32];
const PASSWORD: &[u8] = b"pw";

/// The two kinds of content: incompressible, and text that zstd -3 shrinks several-fold.
fn inputs() -> [(&'static str, Vec<u8>); 2] {
    [("random", random_bytes(1, DATA_LEN)), ("text", text_bytes(2, DATA_LEN))]
}

fn gear() -> Arc<GearTable> {
    Arc::new(GearTable::keyed(&GEAR_KEY))
}

/// Streams `data` through the chunker as ingest does: one read buffer at a time,
/// draining chunks between pushes. Returns the number of chunks.
fn chunk_stream(table: &Arc<GearTable>, data: &[u8]) -> usize {
    let mut chunker = ContentChunker::new(ChunkerParams::DEFAULT, table.clone());
    let mut chunks = 0;
    for piece in data.chunks(READ_BUFFER) {
        chunker.push(piece);
        while let Some(chunk) = chunker.next_chunk() {
            black_box(&chunk);
            chunks += 1;
        }
    }
    chunker.finish();
    while let Some(chunk) = chunker.next_chunk() {
        black_box(&chunk);
        chunks += 1;
    }
    chunks
}

fn bench_chunker(c: &mut Criterion) {
    let table = gear();
    let mut group = c.benchmark_group("chunker");
    group.sample_size(10).throughput(Throughput::Bytes(DATA_LEN as u64));
    for (name, data) in inputs() {
        group.bench_function(name, |b| b.iter(|| chunk_stream(&table, &data)));
    }
    group.finish();
}

/// The work ingest does for each new chunk: keyed BLAKE3 id, zstd -3, AES-256-GCM.
fn seal_all(id_key: &IdKey, seal_key: &SealKey, chunks: &[Vec<u8>]) -> usize {
    chunks
        .iter()
        .map(|chunk| {
            let id = id_key.hash(chunk);
            seal_blob(seal_key, BlobKind::Chunk, &id, chunk, Some(DEFAULT_LEVEL))
                .expect("seal")
                .len()
        })
        .sum()
}

fn bench_seal(c: &mut Criterion) {
    let table = gear();
    let id_key = IdKey::from_bytes(ID_KEY);
    let seal_key = SealKey::new(&SEAL_KEY).expect("seal key");
    let mut group = c.benchmark_group("seal");
    group.sample_size(10).throughput(Throughput::Bytes(DATA_LEN as u64));
    for (name, data) in inputs() {
        let chunks = chunk_all(ChunkerParams::DEFAULT, table.clone(), &data);
        drop(data);
        let sealed = seal_all(&id_key, &seal_key, &chunks);
        println!(
            "seal/{name}: {} chunks, stored size {:.1}% of input",
            chunks.len(),
            percent(sealed as u64, DATA_LEN as u64)
        );
        group.bench_function(format!("pipeline/{name}"), |b| {
            b.iter(|| seal_all(&id_key, &seal_key, &chunks))
        });
        // Its parts, to see where the time goes.
        group.bench_function(format!("hash/{name}"), |b| {
            b.iter(|| {
                for chunk in &chunks {
                    black_box(id_key.hash(chunk));
                }
            })
        });
        group.bench_function(format!("zstd3/{name}"), |b| {
            b.iter(|| {
                chunks
                    .iter()
                    .map(|ch| compress(ch, DEFAULT_LEVEL).map_or(0, |z| z.len()))
                    .sum::<usize>()
            })
        });
        let id = id_key.hash(b"");
        group.bench_function(format!("aes_gcm/{name}"), |b| {
            b.iter(|| {
                chunks
                    .iter()
                    .map(|ch| {
                        seal_blob(&seal_key, BlobKind::Chunk, &id, ch, None)
                            .expect("seal")
                            .len()
                    })
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// The generated source tree, kept for the whole run.
struct Source {
    _dir: TempDir,
    path: PathBuf,
    bytes: u64,
}

fn source_tree() -> Source {
    let dir = tempfile::tempdir().expect("temp dir for the source tree");
    let path = dir.path().join("src");
    let stats = generate_tree(&path, &TreeSpec::DEFAULT).expect("generate the source tree");
    println!(
        "tree: {} files, {:.1} MiB at {}",
        stats.files,
        stats.bytes as f64 / (1024.0 * 1024.0),
        path.display()
    );
    Source {
        _dir: dir,
        path,
        bytes: stats.bytes,
    }
}

/// A fresh repository (store and index cache) in its own temporary directory.
fn fresh_repo() -> (TempDir, Repository) {
    let dir = tempfile::tempdir().expect("temp dir for a repository");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("create the store directory");
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        },
        label: "bench".into(),
        ..InitOptions::default()
    };
    let repo = Repository::init(
        Arc::new(LocalBackend::new(store)),
        &dir.path().join("cache"),
        PASSWORD,
        &opts,
    )
    .expect("init a repository");
    (dir, repo)
}

/// A snapshot that reads every file (no parent to skip unchanged ones).
fn snapshot(repo: &Repository, source: &Path) -> SnapshotSummary {
    let opts = TreeOptions {
        parent: ParentChoice::None,
        ..TreeOptions::default()
    };
    snapshot_tree(repo, source, &opts).expect("snapshot the tree")
}

/// Whole-tree benches take seconds per iteration: few samples, one iteration each.
fn tree_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    bytes: u64,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes(bytes));
    group
}

/// Times `routine` once per iteration on a fresh temporary directory (and input) made by
/// `setup`, outside the timing. What the routine returns is dropped outside the timing too,
/// and the directories are kept in `kept` rather than deleted between iterations: on ext4,
/// creating thousands of files just after deleting thousands costs the kernel more (its
/// recently-deleted inode check), which would charge one iteration for the previous one.
fn iter_fresh<T, R>(
    b: &mut Bencher<'_>,
    kept: &mut Vec<TempDir>,
    mut setup: impl FnMut() -> (TempDir, T),
    mut routine: impl FnMut(&Path, T) -> R,
) {
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let (dir, input) = setup();
            let start = Instant::now();
            let output = routine(dir.path(), input);
            timed += start.elapsed();
            drop(black_box(output));
            kept.push(dir);
        }
        timed
    });
}

fn bench_tree(c: &mut Criterion) {
    let source = source_tree();
    let mut kept = Vec::new();
    let mut group = tree_group(c, "tree", source.bytes);

    // Every iteration snapshots into a new repository.
    group.bench_function("ingest_fresh", |b| {
        iter_fresh(b, &mut kept, fresh_repo, |_, repo| {
            let summary = snapshot(&repo, &source.path);
            (repo, summary)
        })
    });

    let (repo_dir, repo) = fresh_repo();
    let first = snapshot(&repo, &source.path);
    assert_eq!(first.bytes_read, source.bytes, "the snapshot read the whole tree");
    assert!(first.skipped.is_empty(), "nothing skipped: {:?}", first.skipped);
    println!(
        "tree: stored {:.1}% of the source ({} new blobs)",
        percent(first.written.bytes_new, source.bytes),
        first.written.blobs_new
    );

    // Everything is already stored: reading, chunking and hashing, but no sealing or writing.
    group.bench_function("ingest_dedup", |b| b.iter(|| snapshot(&repo, &source.path)));

    // Every iteration restores into a new empty directory.
    let root = TreeId::new(first.snapshot.root);
    let new_dir = || (tempfile::tempdir().expect("temp dir for a restore"), ());
    group.bench_function("restore", |b| {
        iter_fresh(b, &mut kept, new_dir, |dest, ()| {
            let report =
                restore_tree(&repo, root, &dest.join("out"), &RestoreOptions::default()).expect("restore the tree");
            assert!(report.errors.is_empty(), "restore errors: {:?}", report.errors);
            report
        })
    });
    group.finish();
    drop((repo, repo_dir, kept));
}

/// A tar of the generated tree, made by the system `tar`, held in memory.
fn source_tar(source: &Source) -> Vec<u8> {
    let parent = source.path.parent().expect("the tree has a parent");
    let out = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(parent)
        .arg("src")
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

fn bench_layer(c: &mut Criterion) {
    let source = source_tree();
    let tar = source_tar(&source);
    let mut kept = Vec::new();
    let mut group = tree_group(c, "layer", tar.len() as u64);
    group.bench_function("ingest_fresh", |b| {
        iter_fresh(b, &mut kept, fresh_repo, |_, repo| {
            let summary = snapshot_tar(&repo, &mut tar.as_slice(), "bench.tar", &TarOptions::default())
                .expect("snapshot the layer");
            (repo, summary)
        })
    });
    let (repo_dir, repo) = fresh_repo();
    let first = snapshot_tar(&repo, &mut tar.as_slice(), "bench.tar", &TarOptions::default()).expect("snapshot");
    group.bench_function("rebuild", |b| {
        b.iter(|| restore_tar(&repo, first.id, &mut std::io::sink()).expect("rebuild the layer"))
    });
    group.finish();
    drop((repo, repo_dir, kept));
}

/// A sparse 256 MiB image: every fourth 4 MiB stretch holds random or text data.
fn source_image() -> (TempDir, PathBuf, u64) {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("temp dir for the image");
    let path = dir.path().join("volume.img");
    let size: u64 = 256 << 20;
    let file = std::fs::File::create(&path).expect("create the image");
    file.set_len(size).expect("size the image");
    for (i, offset) in (0..size).step_by(16 << 20).enumerate() {
        let data = if i % 2 == 0 {
            random_bytes(i as u64, 4 << 20)
        } else {
            text_bytes(i as u64, 4 << 20)
        };
        file.write_all_at(&data, offset).expect("write the image");
    }
    (dir, path, size)
}

fn bench_volume(c: &mut Criterion) {
    let (_image_dir, image, size) = source_image();
    let mut kept = Vec::new();
    let mut group = tree_group(c, "volume", size);
    group.bench_function("ingest_fresh", |b| {
        iter_fresh(b, &mut kept, fresh_repo, |_, repo| {
            let summary = snapshot_block(&repo, &image, &BlockOptions::default()).expect("snapshot the volume");
            (repo, summary)
        })
    });
    let (repo_dir, repo) = fresh_repo();
    let first = snapshot_block(&repo, &image, &BlockOptions::default()).expect("snapshot the volume");
    let new_dir = || (tempfile::tempdir().expect("temp dir for a restore"), ());
    group.bench_function("restore", |b| {
        iter_fresh(b, &mut kept, new_dir, |dest, ()| {
            restore_block(&repo, first.id, &dest.join("out.img"), &BlockRestoreOptions::default())
                .expect("restore the volume")
        })
    });
    group.finish();
    drop((repo, repo_dir, kept));
}

criterion_group!(
    benches,
    bench_chunker,
    bench_seal,
    bench_tree,
    bench_layer,
    bench_volume
);
criterion_main!(benches);
