//! `amber push`: the shared part of every push stream.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use amber_engine::ops::progress::Progress;
use std::time::Instant;

use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Result, anyhow, bail};
use prost::Message;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::cli::{Global, PushArgs};
use crate::client::{Remote, block_on, failed};
use crate::output::{ProgressDisplay, bytes, emit};

/// Bytes of gRPC framing before each message (compression flag and length).
const GRPC_PREFIX: u64 = 5;
/// Largest data frame sent.
pub const FRAME: usize = 1024 * 1024;

/// Runs `amber push`.
///
/// # Errors
/// Connection, source and server errors.
pub fn run(g: &Global, args: &PushArgs) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let display = ProgressDisplay::start_logged("push", std::time::Duration::from_secs(10));
        let remote = Remote {
            progress: Some(display.counters()),
            ..remote
        };
        let env = g.env.as_deref();
        let outcome = if let Some(image) = &args.snap.image {
            super::push_image::push(&remote, args, env, image).await?
        } else if let Some(layer) = &args.snap.tar {
            super::push_tar::push(&remote, args, env, layer).await?
        } else if let Some(image) = &args.snap.block {
            super::push_volume::push(&remote, args, env, image).await?
        } else if !args.snap.paths.is_empty() {
            super::push_tree::push(&remote, args, env, &args.snap.paths).await?
        } else {
            bail!("give a directory, --tar FILE or --block FILE");
        };
        display.finish();
        report(g, &outcome);
        Ok(if outcome.skipped == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::commands::EXIT_INCOMPLETE)
        })
    })
}

/// What a push did, for the summary.
pub struct Outcome {
    /// The server's last message.
    pub committed: pb::Committed,
    /// Source bytes read.
    pub bytes_read: u64,
    /// Bytes sent on the stream (encoded messages with their gRPC framing).
    pub bytes_sent: u64,
    /// Paths that could not be read.
    pub skipped: u64,
    /// When the push started.
    pub started: Instant,
}

/// Prints the "snapshot" document of `docs/json.md`, as `amber snapshot` does, with the
/// fields only a push has (bytes on the wire, files reused and sent).
fn report(g: &Global, o: &Outcome) {
    let c = &o.committed;
    let stats = c.stats.unwrap_or_default();
    let secs = o.started.elapsed().as_secs_f64();
    // A layer already held: nothing was written, whatever the stored snapshot recorded.
    let (bytes_new, blobs_new) = if c.already_stored {
        (0, 0)
    } else {
        (stats.bytes_new, stats.blobs_new)
    };
    let created = crate::commands::snapshot::Created {
        id: c.snapshot_id.clone(),
        already_stored: c.already_stored,
        files: stats.files,
        dirs: stats.dirs,
        bytes: stats.bytes,
        bytes_read: o.bytes_read,
        bytes_new,
        blobs_new,
        skipped: o.skipped,
        duration_seconds: secs,
    };
    let mut value = created.json();
    let wire = json!({
        "bytes_sent": o.bytes_sent,
        "bytes_received_by_server": c.bytes_received,
        "reused": c.reused,
        "sent": c.sent,
        "empty_files": c.empty_files,
    });
    crate::commands::snapshot::extend_value(&mut value, wire);
    emit(g.json, &value, || {
        let verb = if c.already_stored {
            "already stored as"
        } else {
            "snapshot"
        };
        format!(
            "{verb} {}\n{} read, {} sent, {} new, {} reused, {} sent items in {secs:.1} s",
            c.snapshot_id,
            bytes(o.bytes_read),
            bytes(o.bytes_sent),
            bytes(bytes_new),
            c.reused,
            c.sent
        )
    });
}

/// The header fields every kind shares.
pub fn header(
    remote: &Remote,
    args: &PushArgs,
    env: Option<&str>,
    source_path: String,
    source: pb::push_header::Source,
) -> pb::PushHeader {
    let s = &args.snap;
    let hostname = amber_engine::ops::ingest::hostname();
    let (parent_mode, parent_id) = match (&s.parent, s.force) {
        (_, true) => (pb::ParentMode::None, String::new()),
        (Some(id), false) => (pb::ParentMode::Given, id.clone()),
        (None, false) => (pb::ParentMode::Auto, String::new()),
    };
    let kind = match &source {
        pb::push_header::Source::Tree(_) => "tree",
        pb::push_header::Source::Tar(_) => "tar",
        pb::push_header::Source::Volume(_) => "volume",
        pb::push_header::Source::Image(_) => "image",
        pb::push_header::Source::Environment(_) => "environment",
    };
    let resume_key = args.resume_key.clone().unwrap_or_else(|| {
        let key = blake3::hash(format!("{kind}\0{hostname}\0{source_path}").as_bytes());
        key.to_hex().to_string()
    });
    pb::PushHeader {
        vault: remote.vault.clone(),
        labels: Some(pb::Labels {
            environment: env.unwrap_or_default().to_string(),
            lab: s.lab.clone(),
            researcher: s.researcher.clone(),
            tags: s.tags.clone(),
            metadata: amber_server::serve::convert::wire_metadata(&s.metadata),
        }),
        hostname,
        source_path,
        parent_mode: parent_mode as i32,
        parent_id,
        resume_key: resume_key.into_bytes(),
        source: Some(source),
    }
}

/// Attempts at opening a push stream while the server is busy.
pub const OPEN_ATTEMPTS: u32 = 8;

/// Why a push stream did not open.
enum OpenError {
    /// The server is busy: worth asking again.
    Busy(tonic::Status),
    Other(anyhow::Error),
}

impl OpenError {
    fn from_status(status: tonic::Status) -> Self {
        match status.code() {
            // Busy: worth asking again. (A draining server, UNAVAILABLE, is going away:
            // the user is told at once and retries with the same resume key.)
            tonic::Code::ResourceExhausted => OpenError::Busy(status),
            _ => OpenError::Other(failed("push refused", &status)),
        }
    }
}

/// The wait before attempt `attempt + 1`: 0.5 s doubling up to 30 s, times a random
/// factor from 0.5 to 1.5 so that sidecars refused together do not return together.
fn backoff(attempt: u32) -> std::time::Duration {
    let base = (0.5 * f64::from(1u32 << attempt.min(6))).min(30.0);
    let [jitter]: [u8; 1] = amber_engine::crypto::random_array().unwrap_or([128]);
    std::time::Duration::from_secs_f64(base * (0.5 + f64::from(jitter) / 255.0))
}

/// One push stream, counting what it sends.
pub struct PushStream {
    tx: mpsc::Sender<pb::PushRequest>,
    rx: Streaming<pb::PushResponse>,
    /// Encoded bytes sent, with gRPC framing.
    pub sent: u64,
    progress: Arc<Progress>,
}

impl PushStream {
    /// Opens the stream, sends the header and waits for the server's acceptance. A server
    /// that is busy (RESOURCE_EXHAUSTED: its queue is full or the wait timed out) is asked
    /// again after an exponential backoff with jitter,
    /// [`OPEN_ATTEMPTS`] times in all, so a fleet of sidecars all get through.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn open(remote: &Remote, header: pb::PushHeader) -> Result<(PushStream, pb::Accepted)> {
        let mut attempt = 1u32;
        loop {
            match Self::open_once(remote, header.clone()).await {
                Err(OpenError::Busy(status)) if attempt < OPEN_ATTEMPTS => {
                    let wait = backoff(attempt);
                    eprintln!(
                        "amber: the server is busy ({}); trying again in {:.1} s",
                        status.message(),
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(OpenError::Busy(status)) => return Err(failed("push refused", &status)),
                Err(OpenError::Other(e)) => return Err(e),
                Ok(opened) => return Ok(opened),
            }
        }
    }

    async fn open_once(remote: &Remote, header: pb::PushHeader) -> Result<(PushStream, pb::Accepted), OpenError> {
        let (tx, rx) = mpsc::channel(4);
        let first = pb::PushRequest {
            frame: Some(Frame::Header(header)),
        };
        let sent = first.encoded_len() as u64 + GRPC_PREFIX;
        tx.send(first)
            .await
            .map_err(|_| OpenError::Other(anyhow!("the push stream closed at once")))?;
        let rx = remote
            .ingest()
            .push(remote.request(ReceiverStream::new(rx)))
            .await
            .map_err(OpenError::from_status)?
            .into_inner();
        let mut stream = PushStream {
            tx,
            rx,
            sent,
            progress: remote.progress.clone().unwrap_or_default(),
        };
        match stream.rx.message().await {
            Ok(Some(pb::PushResponse {
                frame: Some(Answer::Accepted(a)),
            })) => Ok((stream, a)),
            Err(status) => Err(OpenError::from_status(status)),
            Ok(_) => Err(OpenError::Other(anyhow!(
                "the server answered the header out of protocol"
            ))),
        }
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// The server's status when it ended the stream.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        match &frame {
            Frame::FileEnd(_) => self.progress.files.fetch_add(1, Ordering::Relaxed),
            Frame::FileData(d) => self.progress.bytes.fetch_add(d.data.len() as u64, Ordering::Relaxed),
            Frame::TarData(d) => self.progress.bytes.fetch_add(d.data.len() as u64, Ordering::Relaxed),
            Frame::BlockData(d) => self.progress.bytes.fetch_add(d.data.len() as u64, Ordering::Relaxed),
            _ => 0,
        };
        let msg = pb::PushRequest { frame: Some(frame) };
        self.sent += msg.encoded_len() as u64 + GRPC_PREFIX;
        if self.tx.send(msg).await.is_err() {
            return Err(self.server_error().await);
        }
        Ok(())
    }

    /// The next answer.
    ///
    /// # Errors
    /// The server's status, or an early end of the stream.
    pub async fn recv(&mut self) -> Result<Answer> {
        match self.rx.message().await {
            Ok(Some(pb::PushResponse { frame: Some(a) })) => Ok(a),
            Ok(Some(_)) => bail!("the server sent an empty message"),
            Ok(None) => bail!("the server ended the push without committing it"),
            Err(s) => Err(failed("push failed", &s)),
        }
    }

    async fn server_error(&mut self) -> anyhow::Error {
        match self.rx.message().await {
            Err(s) => failed("push failed", &s),
            _ => anyhow!("the server closed the push stream"),
        }
    }

    /// Sends Finish and waits for the commit.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn finish(mut self, finish: pb::Finish) -> Result<(pb::Committed, u64)> {
        self.send(Frame::Finish(finish)).await?;
        loop {
            if let Answer::Committed(c) = self.recv().await? {
                return Ok((c, self.sent));
            }
        }
    }
}
