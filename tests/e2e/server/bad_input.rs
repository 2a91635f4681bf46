//! Malformed pushes from a raw gRPC client: every one ends with the documented status,
//! leaves no snapshot, and the server goes on serving a normal `amber push`.

use std::fs;
use std::path::PathBuf;

use amber_proto::v1 as pb;
use amber_proto::v1::ingest_client::IngestClient;
use amber_proto::v1::push_header::Source;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::harness::{Server, s};

const MIB: usize = 1024 * 1024;

/// One push stream opened by hand.
struct Raw {
    tx: Option<mpsc::Sender<pb::PushRequest>>,
    rx: Streaming<pb::PushResponse>,
}

impl Raw {
    /// Opens a push with `header` as its first message; the error when the call itself
    /// is refused.
    async fn open(url: &str, token: &str, header: pb::PushHeader) -> Result<Raw, Status> {
        let channel = Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap();
        let mut client = IngestClient::new(channel)
            .max_encoding_message_size(64 * MIB)
            .max_decoding_message_size(64 * MIB);
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::PushRequest {
            frame: Some(Frame::Header(header)),
        })
        .await
        .unwrap();
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let rx = client.push(req).await?.into_inner();
        Ok(Raw { tx: Some(tx), rx })
    }

    /// Sends a frame; a closed stream is not an error here (the status comes on `recv`).
    async fn send(&mut self, frame: Frame) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(pb::PushRequest { frame: Some(frame) }).await;
        }
    }

    /// The next answer, `Ok(None)` at a clean end.
    async fn recv(&mut self) -> Result<Option<Answer>, Status> {
        Ok(self.rx.message().await?.and_then(|m| m.frame))
    }

    /// Reads answers until the stream ends; returns the final status (Ok when it ended
    /// cleanly) and whether a Committed arrived.
    async fn outcome(&mut self) -> (Result<(), Status>, bool) {
        let mut committed = false;
        loop {
            match self.recv().await {
                Ok(Some(Answer::Committed(_))) => committed = true,
                Ok(Some(_)) => {}
                Ok(None) => return (Ok(()), committed),
                Err(status) => return (Err(status), committed),
            }
        }
    }

    /// Ends the client's side of the stream.
    fn close(&mut self) {
        self.tx = None;
    }
}

fn header(source: Source) -> pb::PushHeader {
    pb::PushHeader {
        hostname: "test-host".into(),
        source_path: "/raw/source".into(),
        source: Some(source),
        ..Default::default()
    }
}

fn tree_header() -> pb::PushHeader {
    header(Source::Tree(pb::TreeHeader::default()))
}

fn tar_header() -> pb::PushHeader {
    header(Source::Tar(pb::TarHeader { digest: String::new() }))
}

fn file_entry(name: &[u8], size: u64) -> pb::TreeEntry {
    pb::TreeEntry {
        parent: 0,
        name: name.to_vec(),
        meta: Some(pb::EntryMeta {
            kind: pb::EntryKind::File as i32,
            mode: 0o644,
            size,
            mtime: Some(pb::Timestamp {
                sec: 1_700_000_000,
                nsec: 0,
            }),
            ..Default::default()
        }),
    }
}

fn entries(list: Vec<pb::TreeEntry>) -> Frame {
    Frame::Entries(pb::TreeEntries {
        entries: list,
        skipped: Vec::new(),
        last: true,
    })
}

/// The test's server, a runtime, and the checks every case ends with.
struct Fixture {
    server: Server,
    admin: String,
    rt: Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::on(Server::start())
    }

    fn on(server: Server) -> Fixture {
        let admin = server.admin();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Fixture { server, admin, rt }
    }

    fn open(&self, header: pb::PushHeader) -> Raw {
        self.rt
            .block_on(Raw::open(&self.server.url, &self.admin, header))
            .expect("the push is accepted for a start")
    }

    /// Opens a tree push and reads Accepted.
    fn tree(&self) -> Raw {
        let mut raw = self.open(tree_header());
        match self.rt.block_on(raw.recv()) {
            Ok(Some(Answer::Accepted(_))) => raw,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    /// Opens a tree push of one file of `size` bytes and reads FilesWanted [1].
    fn one_file(&self, size: u64) -> Raw {
        let mut raw = self.tree();
        self.rt.block_on(raw.send(entries(vec![file_entry(b"f", size)])));
        match self.rt.block_on(raw.recv()) {
            Ok(Some(Answer::FilesWanted(w))) => assert_eq!(w.entries, vec![1]),
            other => panic!("expected FilesWanted, got {other:?}"),
        }
        raw
    }

    /// Opens a layer push and reads Accepted.
    fn tar(&self) -> Raw {
        let mut raw = self.open(tar_header());
        match self.rt.block_on(raw.recv()) {
            Ok(Some(Answer::Accepted(a))) => assert!(!a.layer_already_stored),
            other => panic!("expected Accepted, got {other:?}"),
        }
        raw
    }

    /// Sends `frames`, then reads the stream's end; asserts it failed with `code`.
    #[track_caller]
    fn expect(&self, raw: &mut Raw, frames: Vec<Frame>, code: Code, what: &str) -> Status {
        let (result, committed) = self.rt.block_on(async {
            for f in frames {
                raw.send(f).await;
            }
            raw.outcome().await
        });
        assert!(!committed, "{what}: committed");
        let status = result.expect_err(what);
        eprintln!("{what}: {:?} {}", status.code(), status.message());
        assert_eq!(status.code(), code, "{what}: {status:?}");
        self.nothing_stored(what);
        status
    }

    #[track_caller]
    fn nothing_stored(&self, what: &str) {
        assert!(
            self.server.snapshot_ids(&self.admin).is_empty(),
            "{what}: a snapshot was stored"
        );
    }

    /// A normal push still works.
    fn still_serves(&self) {
        let dir = self.server.scratch("normal");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ok.txt"), "the server still serves\n").unwrap();
        let v = self.server.push(&self.admin, &[s(&dir)]);
        assert_eq!(
            self.server.snapshot_ids(&self.admin),
            vec![v["id"].as_str().unwrap().to_string()]
        );
    }
}

#[test]
fn oversized_frames_and_messages_are_refused() {
    let f = Fixture::new();
    // A 2 MiB data frame in a message under the 4 MiB cap.
    let size = 2 * MIB as u64;
    let mut raw = f.one_file(size);
    let frame = Frame::FileData(pb::FileData {
        entry: 1,
        offset: 0,
        data: vec![7u8; 2 * MIB],
    });
    f.expect(&mut raw, vec![frame], Code::ResourceExhausted, "a 2 MiB FileData frame");

    // A 5 MiB message that is no data frame: a symlink entry with a huge target.
    let mut raw = f.tree();
    let mut big = file_entry(b"link", 0);
    let meta = big.meta.as_mut().unwrap();
    meta.kind = pb::EntryKind::Symlink as i32;
    meta.link_target = vec![b'x'; 5 * MIB];
    let (result, committed) = f.rt.block_on(async {
        raw.send(entries(vec![big])).await;
        raw.outcome().await
    });
    assert!(!committed);
    let status = result.expect_err("a 5 MiB message must fail");
    eprintln!(
        "a 5 MiB message: {:?} {} (the contract says RESOURCE_EXHAUSTED)",
        status.code(),
        status.message()
    );
    assert_ne!(status.code(), Code::Ok);
    f.nothing_stored("5 MiB message");

    // A 5 MiB FileData message likewise.
    let mut raw = f.one_file(5 * MIB as u64);
    let (result, _) = f.rt.block_on(async {
        raw.send(Frame::FileData(pb::FileData {
            entry: 1,
            offset: 0,
            data: vec![1u8; 5 * MIB],
        }))
        .await;
        raw.outcome().await
    });
    let status = result.expect_err("a 5 MiB FileData message must fail");
    eprintln!("a 5 MiB FileData message: {:?} {}", status.code(), status.message());
    f.nothing_stored("5 MiB FileData");
    f.still_serves();
}

#[test]
fn totals_and_offsets_must_match() {
    let f = Fixture::new();
    // FileEnd announcing more than arrived.
    let mut raw = f.one_file(100);
    f.expect(
        &mut raw,
        vec![
            Frame::FileData(pb::FileData {
                entry: 1,
                offset: 0,
                data: vec![1u8; 60],
            }),
            Frame::FileEnd(pb::FileEnd {
                entry: 1,
                size: 100,
                error: String::new(),
            }),
        ],
        Code::InvalidArgument,
        "FileEnd announcing 100 of 60 bytes",
    );
    // A FileData frame with a gap.
    let mut raw = f.one_file(100);
    f.expect(
        &mut raw,
        vec![
            Frame::FileData(pb::FileData {
                entry: 1,
                offset: 0,
                data: vec![1u8; 50],
            }),
            Frame::FileData(pb::FileData {
                entry: 1,
                offset: 60,
                data: vec![1u8; 40],
            }),
        ],
        Code::InvalidArgument,
        "FileData at a wrong offset",
    );
    // Finish counting more entries than were sent.
    let mut raw = f.one_file(3);
    f.expect(
        &mut raw,
        vec![
            Frame::FileData(pb::FileData {
                entry: 1,
                offset: 0,
                data: b"abc".to_vec(),
            }),
            Frame::FileEnd(pb::FileEnd {
                entry: 1,
                size: 3,
                error: String::new(),
            }),
            Frame::Finish(pb::Finish {
                count: 5,
                digest: String::new(),
            }),
        ],
        Code::InvalidArgument,
        "tree Finish counting 5 of 1 entries",
    );

    let layer = tar_bytes(&[("data.bin", &vec![9u8; 300_000])]);
    // A TarData frame at a wrong offset.
    let mut raw = f.tar();
    f.expect(
        &mut raw,
        vec![
            Frame::TarData(pb::TarData {
                offset: 0,
                data: layer[..4096].to_vec(),
            }),
            Frame::TarData(pb::TarData {
                offset: 5000,
                data: layer[5000..10_000].to_vec(),
            }),
        ],
        Code::InvalidArgument,
        "TarData at a wrong offset",
    );
    // A tar Finish announcing more than arrived.
    let mut raw = f.tar();
    let mut frames = tar_frames(&layer);
    frames.push(Frame::Finish(pb::Finish {
        count: layer.len() as u64 + 512,
        digest: String::new(),
    }));
    f.expect(
        &mut raw,
        frames,
        Code::InvalidArgument,
        "tar Finish counting 512 bytes too many",
    );
    // A tar Finish with a wrong digest.
    let mut raw = f.tar();
    let mut frames = tar_frames(&layer);
    frames.push(Frame::Finish(pb::Finish {
        count: layer.len() as u64,
        digest: format!("sha256:{}", "0".repeat(64)),
    }));
    f.expect(
        &mut raw,
        frames,
        Code::InvalidArgument,
        "tar Finish with a wrong digest",
    );
    // Control: the same layer sent correctly is stored.
    let mut raw = f.tar();
    let mut frames = tar_frames(&layer);
    frames.push(Frame::Finish(pb::Finish {
        count: layer.len() as u64,
        digest: String::new(),
    }));
    let (result, committed) = f.rt.block_on(async {
        for fr in frames {
            raw.send(fr).await;
        }
        raw.outcome().await
    });
    result.expect("a correct raw layer push");
    assert!(committed);
    assert_eq!(f.server.snapshot_ids(&f.admin).len(), 1);
}

#[test]
fn bad_entry_names_are_invalid() {
    let f = Fixture::new();
    for name in [&b"../x"[..], b"..", b".", b"a/b", b"", b"nul\0byte"] {
        let mut raw = f.tree();
        let what = format!("entry name {:?}", String::from_utf8_lossy(name));
        f.expect(
            &mut raw,
            vec![entries(vec![file_entry(name, 0)])],
            Code::InvalidArgument,
            &what,
        );
    }
    // Names out of order under one parent.
    let mut raw = f.tree();
    f.expect(
        &mut raw,
        vec![entries(vec![file_entry(b"b", 0), file_entry(b"a", 0)])],
        Code::InvalidArgument,
        "names out of order",
    );
    // A parent that is not an open directory.
    let mut raw = f.tree();
    let mut child = file_entry(b"c", 0);
    child.parent = 1;
    f.expect(
        &mut raw,
        vec![entries(vec![file_entry(b"a", 0), child])],
        Code::InvalidArgument,
        "a file as a parent",
    );
    f.still_serves();
}

/// A minimal ustar archive of regular files (names up to 100 bytes), with its two zero
/// blocks at the end.
fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", 1_700_000_000u64).as_bytes());
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_frames(layer: &[u8]) -> Vec<Frame> {
    layer
        .chunks(256 * 1024)
        .enumerate()
        .map(|(i, c)| {
            Frame::TarData(pb::TarData {
                offset: (i * 256 * 1024) as u64,
                data: c.to_vec(),
            })
        })
        .collect()
}

fn write_tar(f: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
    let path = f.server.scratch(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_layer_leaving_its_root_is_refused() {
    let f = Fixture::new();
    // The test's own archive is a valid tar: the system tar lists it.
    let good = write_tar(&f, "good.tar", &tar_bytes(&[("fine.txt", b"fine\n")]));
    let out = std::process::Command::new("tar")
        .args(["-tf", s(&good)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fine.txt\n",
        "the ustar writer is sound"
    );

    for (i, name) in ["../evil", "a/../../evil", "./../evil"].into_iter().enumerate() {
        let layer = tar_bytes(&[("ok.txt", b"harmless\n"), (name, b"escaped\n")]);
        // Raw.
        let mut raw = f.tar();
        let mut frames = tar_frames(&layer);
        frames.push(Frame::Finish(pb::Finish {
            count: layer.len() as u64,
            digest: String::new(),
        }));
        f.expect(&mut raw, frames, Code::InvalidArgument, &format!("a member {name:?}"));
        // Through the client.
        let path = write_tar(&f, &format!("evil-{i}.tar"), &layer);
        f.server
            .run(&f.admin, &["--json", "push", "--tar", s(&path)])
            .expect_error(&["(InvalidArgument)"]);
        f.nothing_stored("evil layer via the client");
    }
    assert!(!f.server.data().join("evil").exists());
    assert!(!f.server.dir.path().join("evil").exists());
    f.still_serves();
}

#[test]
fn another_or_unknown_vault_in_the_header_is_denied() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("amber.toml");
    fs::write(&cfg, "vaults = [\"lab-a\", \"lab-b\"]\n").unwrap();
    let server = Server::start_with(&["--config", s(&cfg)], &[]);
    let f = Fixture::on(server);
    let a = f.server.admin_of("lab-a");
    assert_eq!(f.admin, a);
    let b = f.server.admin_of("lab-b");
    let mut messages = Vec::new();
    for vault in ["lab-b", "no-such-vault"] {
        let mut h = tree_header();
        h.vault = vault.into();
        let status = f.rt.block_on(async {
            match Raw::open(&f.server.url, &a, h).await {
                Err(status) => status,
                Ok(mut raw) => {
                    raw.send(entries(vec![file_entry(b"f", 0)])).await;
                    let (result, committed) = raw.outcome().await;
                    assert!(!committed);
                    result.expect_err("another vault must be refused")
                }
            }
        });
        eprintln!("header naming {vault}: {:?} {}", status.code(), status.message());
        assert_eq!(status.code(), Code::PermissionDenied, "{vault}: {status:?}");
        messages.push(status.message().replace(vault, "VAULT"));
    }
    assert_eq!(
        messages[0], messages[1],
        "an unknown vault is answered like an existing one"
    );
    assert!(f.server.snapshot_ids(&a).is_empty());
    assert!(f.server.snapshot_ids(&b).is_empty());
    f.still_serves();
}

#[test]
fn a_stream_that_stops_after_the_header_leaves_nothing() {
    let f = Fixture::new();
    // The client ends its side after Accepted.
    let mut raw = f.tree();
    raw.close();
    let (result, committed) = f.rt.block_on(raw.outcome());
    assert!(!committed);
    let status = result.expect_err("a push without Finish is not OK");
    eprintln!(
        "stream closed after the header: {:?} {}",
        status.code(),
        status.message()
    );
    f.nothing_stored("closed after the header");

    // The client ends its side mid-file.
    let mut raw = f.one_file(1000);
    f.rt.block_on(raw.send(Frame::FileData(pb::FileData {
        entry: 1,
        offset: 0,
        data: vec![3u8; 500],
    })));
    raw.close();
    let (result, committed) = f.rt.block_on(raw.outcome());
    assert!(!committed);
    assert!(result.is_err());
    f.nothing_stored("closed mid-file");

    // The client drops everything at once, without reading a thing.
    for _ in 0..3 {
        let raw = f.open(tree_header());
        drop(raw);
        let raw = f.open(tar_header());
        drop(raw);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    f.nothing_stored("dropped streams");
    assert!(f.server.stderr().len() < 1_000_000, "the server log stays small");
    f.still_serves();
}

fn volume_header(size: u64, changed_ranges: bool) -> pb::PushHeader {
    header(Source::Volume(pb::VolumeHeader {
        size,
        changed_ranges,
        meta: None,
    }))
}

#[test]
fn bad_volume_pushes_are_refused() {
    let f = Fixture::new();
    // Changed ranges need a parent volume: there is none yet.
    let mut raw = f.open(volume_header(1 << 20, true));
    let (result, _) = f.rt.block_on(raw.outcome());
    let status = result.expect_err("ranges without a parent");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    f.nothing_stored("ranges without a parent");

    // Digests: a batch that does not start at the next block, and a block whose bytes do
    // not match its digest.
    let mut raw = f.open(volume_header(1 << 20, false));
    let Ok(Some(Answer::Accepted(_))) = f.rt.block_on(raw.recv()) else {
        panic!("expected Accepted")
    };
    let skip = Frame::Digests(pb::BlockDigests {
        first_block: 1,
        digests: vec![vec![7u8; 32]],
        last: false,
    });
    f.expect(
        &mut raw,
        vec![skip],
        Code::InvalidArgument,
        "digests from the wrong block",
    );

    let mut raw = f.open(volume_header(4096, false));
    let Ok(Some(Answer::Accepted(a))) = f.rt.block_on(raw.recv()) else {
        panic!("expected Accepted")
    };
    let key: [u8; 32] = a.digest_key.as_slice().try_into().unwrap();
    let real = vec![9u8; 4096];
    let digest = blake3::keyed_hash(&key, &real).as_bytes().to_vec();
    f.rt.block_on(raw.send(Frame::Digests(pb::BlockDigests {
        first_block: 0,
        digests: vec![digest],
        last: true,
    })));
    let Ok(Some(Answer::BlocksWanted(w))) = f.rt.block_on(raw.recv()) else {
        panic!("expected BlocksWanted")
    };
    assert_eq!(w.runs.len(), 1);
    let forged = Frame::BlockData(pb::BlockData {
        block: 0,
        offset: 0,
        data: vec![8u8; 4096],
    });
    f.expect(
        &mut raw,
        vec![forged],
        Code::InvalidArgument,
        "a block that does not match its digest",
    );
    f.still_serves();
}

#[test]
fn a_file_longer_than_declared_an_empty_frame_and_a_parent_prefix_are_refused_clearly() {
    let f = Fixture::new();
    // More bytes than the entry declared (the file grew): refused, the client sends only
    // the declared size.
    let mut raw = f.one_file(10);
    let status = f.expect(
        &mut raw,
        vec![Frame::FileData(pb::FileData {
            entry: 1,
            offset: 0,
            data: vec![1u8; 20],
        })],
        Code::InvalidArgument,
        "20 bytes for a file declared 10",
    );
    assert!(status.message().contains("declared"), "{status:?}");
    // Zeros beyond the declared size, likewise.
    let mut raw = f.one_file(10);
    f.expect(
        &mut raw,
        vec![Frame::FileZeros(pb::FileZeros {
            entry: 1,
            offset: 0,
            length: 11,
        })],
        Code::InvalidArgument,
        "11 zero bytes for a file declared 10",
    );
    // An empty data frame is a malformed frame, not an exhausted resource.
    let mut raw = f.one_file(10);
    let status = f.expect(
        &mut raw,
        vec![Frame::FileData(pb::FileData {
            entry: 1,
            offset: 0,
            data: Vec::new(),
        })],
        Code::InvalidArgument,
        "an empty FileData frame",
    );
    assert!(
        !status.message().contains("invalid argument"),
        "the code is not repeated: {status:?}"
    );
    // A parent given as a prefix: asked for the full id.
    let mut header = tree_header();
    header.parent_mode = pb::ParentMode::Given as i32;
    header.parent_id = "abcdef12".into();
    let mut raw = f.open(header);
    let (result, _) = f.rt.block_on(raw.outcome());
    let status = result.expect_err("a prefix as parent");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("full id"), "{status:?}");
    f.still_serves();
}

#[test]
fn zeros_count_as_content_and_an_unknown_chunk_is_a_bad_request() {
    let f = Fixture::new();
    // A file of 3 MiB sent as data, a run of zeros, and data again.
    let mut raw = f.one_file(3 * MIB as u64);
    let (result, committed) = f.rt.block_on(async {
        raw.send(Frame::FileData(pb::FileData {
            entry: 1,
            offset: 0,
            data: vec![7u8; MIB],
        }))
        .await;
        raw.send(Frame::FileZeros(pb::FileZeros {
            entry: 1,
            offset: MIB as u64,
            length: MIB as u64,
        }))
        .await;
        raw.send(Frame::FileData(pb::FileData {
            entry: 1,
            offset: 2 * MIB as u64,
            data: vec![9u8; MIB],
        }))
        .await;
        raw.send(Frame::FileEnd(pb::FileEnd {
            entry: 1,
            size: 3 * MIB as u64,
            error: String::new(),
        }))
        .await;
        raw.send(Frame::Finish(pb::Finish {
            count: 1,
            digest: String::new(),
        }))
        .await;
        raw.outcome().await
    });
    assert!(committed, "{result:?}");
    let dest = f.server.scratch("zeros-out");
    f.server.ok(&f.admin, &["restore", "latest", s(&dest)]);
    let back = fs::read(dest.join("f")).unwrap();
    let mut want = vec![7u8; MIB];
    want.extend(vec![0u8; MIB]);
    want.extend(vec![9u8; MIB]);
    assert!(back == want, "the zeros run is part of the file");
    // A chunk id the vault never held is NOT_FOUND without talk of lost data.
    let status = f.rt.block_on(async {
        let channel = Channel::from_shared(f.server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::restore_client::RestoreClient::new(channel);
        let mut req = tonic::Request::new(pb::ReadChunksRequest {
            vault: String::new(),
            ids: vec![vec![0x42; 32]],
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {}", f.admin).parse().unwrap());
        let mut stream = client.read_chunks(req).await.unwrap().into_inner();
        stream.message().await.expect_err("an unknown chunk")
    });
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(!status.message().contains("index rebuild"), "{status:?}");
}

/// An image header is checked by the server: a blob that does not hash to its name, a
/// path that leaves the image, a layer snapshot the vault does not hold, or a tree given as
/// a layer: refused, nothing committed.
#[test]
fn image_headers_are_checked() {
    let f = Fixture::new();
    let dir = f.server.scratch("tree");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a"), b"a").unwrap();
    let tree = f.server.push(&f.admin, &[dir.to_str().unwrap()]);
    let tree_id = tree["id"].as_str().unwrap().to_string();
    let before = f.server.snapshot_ids(&f.admin).len();
    let file = |path: &str, data: &[u8]| pb::ImageFile {
        path: path.as_bytes().to_vec(),
        data: data.to_vec(),
    };
    let wrong = format!("blobs/sha256/{}", "0".repeat(64));
    let cases: Vec<(&str, pb::ImageHeader)> = vec![
        (
            "does not match its digest",
            pb::ImageHeader {
                format: "oci".into(),
                files: vec![file(&wrong, b"not those bytes")],
                ..Default::default()
            },
        ),
        (
            "not a plain relative path",
            pb::ImageHeader {
                format: "oci".into(),
                files: vec![file("../escape", b"x")],
                ..Default::default()
            },
        ),
        (
            "leaves the archive",
            pb::ImageHeader {
                format: "docker-archive".into(),
                links: vec![pb::ImageLink {
                    path: b"a/layer.tar".to_vec(),
                    target: b"../../etc/passwd".to_vec(),
                }],
                ..Default::default()
            },
        ),
        (
            "not a tar layer",
            pb::ImageHeader {
                format: "oci".into(),
                layers: vec![pb::ImageLayer {
                    path: b"layer".to_vec(),
                    snapshot_id: tree_id.clone(),
                    size: 1,
                }],
                ..Default::default()
            },
        ),
        (
            "not found",
            pb::ImageHeader {
                format: "oci".into(),
                layers: vec![pb::ImageLayer {
                    path: b"layer".to_vec(),
                    snapshot_id: "ab".repeat(32),
                    size: 1,
                }],
                ..Default::default()
            },
        ),
        (
            "image format",
            pb::ImageHeader {
                format: "tarball".into(),
                ..Default::default()
            },
        ),
    ];
    for (needle, image) in cases {
        let (result, committed) = f.rt.block_on(async {
            let mut raw = Raw::open(&f.server.url, &f.admin, header(Source::Image(image)))
                .await
                .unwrap();
            raw.outcome().await
        });
        let status = result.expect_err(needle);
        assert!(
            status.message().to_lowercase().contains(needle),
            "{needle}: {:?} {}",
            status.code(),
            status.message()
        );
        assert!(!committed, "{needle}");
    }
    assert_eq!(f.server.snapshot_ids(&f.admin).len(), before, "nothing committed");
}
