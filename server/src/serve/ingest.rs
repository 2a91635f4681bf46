//! The Ingest service: one session thread per push stream, fed through bounded queues so
//! that chunking, hashing and sealing never run on the async executor.

mod environment;
mod image;
mod inbox;
pub mod journal;
mod parent;
mod session;
pub mod spool;
mod tar;
mod tree;
mod volume;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amber_proto::v1::{PushRequest, PushResponse, ingest_server::Ingest};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::serve::state::{Access, State};
use inbox::{Inbox, Outbox, QUEUE_FRAMES};

const PUSH: &str = "/amber.v1.Ingest/Push";

/// The Ingest service.
pub struct IngestService {
    state: Arc<State>,
    /// Becomes true when open streams must be cut (the drain period is over).
    abort: watch::Receiver<bool>,
}

impl IngestService {
    /// A service over the server state.
    pub fn new(state: Arc<State>, abort: watch::Receiver<bool>) -> Self {
        IngestService { state, abort }
    }
}

/// Counts a push waiting in the queue while it lives.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl IngestService {
    /// A stream permit: at once when one is free, else after waiting in a bounded queue
    /// (at most `max_queued_pushes` waiting, each at most `queue_timeout_seconds`).
    async fn wait_for_stream(&self) -> Result<OwnedSemaphorePermit, Status> {
        let streams = self.state.streams.clone();
        if let Ok(permit) = streams.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let limits = &self.state.limits;
        let waiting = self.state.queued.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&self.state.queued);
        if waiting >= limits.max_queued_pushes {
            return Err(Status::resource_exhausted(format!(
                "{} pushes are running and {waiting} waiting, the most this server queues; retry later",
                limits.max_streams
            )));
        }
        let wait = Duration::from_secs(limits.queue_timeout_seconds);
        let permit = match tokio::time::timeout(wait, streams.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Status::unavailable("the server is shutting down; retry later")),
            Err(_) => {
                return Err(Status::resource_exhausted(format!(
                    "waited {} s for one of the {} push streams; retry later",
                    wait.as_secs(),
                    limits.max_streams
                )));
            }
        };
        if self.state.is_draining() {
            return Err(Status::unavailable(
                "the server is shutting down; retry later with the same resume key",
            ));
        }
        Ok(permit)
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type PushStream = ReceiverStream<Result<PushResponse, Status>>;

    async fn push(&self, req: Request<Streaming<PushRequest>>) -> Result<Response<Self::PushStream>, Status> {
        if self.state.is_draining() {
            return Err(Status::unavailable(
                "the server is shutting down; retry later with the same resume key",
            ));
        }
        let caller = self.state.authorize(&req, PUSH, Access::Write, "")?;
        let permit = match self.wait_for_stream().await {
            Ok(p) => p,
            Err(status) => {
                caller.finish(&self.state, "", &status);
                return Err(status);
            }
        };
        let (in_tx, in_rx) = mpsc::channel(QUEUE_FRAMES);
        let (out_tx, out_rx) = mpsc::channel(QUEUE_FRAMES);
        let idle = Duration::from_secs(self.state.limits.idle_timeout_seconds);
        tokio::spawn(forward(req.into_inner(), in_tx, idle, self.abort.clone()));
        let state = self.state.clone();
        let spawned = std::thread::Builder::new().name("amber-push".into()).spawn(move || {
            state.metrics.stream_started();
            let mut inbox = Inbox::new(in_rx, state.metrics.clone(), state.limits.max_frame_bytes);
            let outbox = Outbox::new(out_tx, idle);
            match session::run(&state, &caller, &mut inbox, &outbox) {
                Ok(target) => caller.finish_ok(&state, &target, ""),
                Err((target, status)) => {
                    caller.finish(&state, &target, &status);
                    outbox.fail(status);
                }
            }
            state.metrics.stream_ended();
            // The permit goes last: once every permit is back the server may exit, and it
            // must then hold the only references to the vaults, so it closes their RocksDB
            // indexes itself rather than this thread racing the process exit.
            drop((inbox, outbox, caller, state));
            drop(permit);
        });
        spawned.map_err(|e| Status::resource_exhausted(format!("cannot start a session thread: {e}")))?;
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

/// Moves client messages into the session's bounded queue. Waits while the queue is full
/// (HTTP/2 flow control then holds the client back), ends the stream after `idle` without
/// a message, and cuts it when the drain period is over.
async fn forward(
    mut stream: Streaming<PushRequest>,
    tx: mpsc::Sender<Result<PushRequest, Status>>,
    idle: Duration,
    mut abort: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            msg = tokio::time::timeout(idle, stream.message()) => msg,
            () = async { let _ = abort.wait_for(|cut| *cut).await; } => {
                let _ = tx.send(Err(Status::unavailable("the server shut down before this push finished; retry with the same resume key"))).await;
                return;
            }
        };
        let item = match next {
            Err(_) => Err(Status::aborted(format!("no message for {} s", idle.as_secs()))),
            Ok(Ok(Some(msg))) => Ok(msg),
            Ok(Ok(None)) => return,
            Ok(Err(status)) => Err(status),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}
