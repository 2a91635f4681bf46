//! Helpers for calls that stream data out: a blocking producer feeding a bounded queue.

use std::sync::Arc;

use amber_engine::format::snapshot::Snapshot;
use amber_engine::id::SnapshotId;
use amber_engine::repo::Repository;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::serve::state::{Caller, State};
use crate::serve::status::from_engine;

/// Messages queued ahead of a slow reader.
pub const QUEUE_MESSAGES: usize = 8;

/// The sending side of a streamed answer, usable from a blocking thread.
pub struct Out<T> {
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Out<T> {
    /// Sends one message; false when the client has gone.
    pub fn send(&self, msg: T) -> bool {
        self.tx.blocking_send(Ok(msg)).is_ok()
    }
}

/// Runs `produce` on the blocking pool, streaming what it sends; its error (if any) ends
/// the stream, and the call is audited when it ends.
pub fn stream<T: Send + 'static>(
    state: &Arc<State>,
    caller: Caller,
    target: String,
    produce: impl FnOnce(&Out<T>) -> Result<(), Status> + Send + 'static,
) -> ReceiverStream<Result<T, Status>> {
    let (tx, rx) = mpsc::channel(QUEUE_MESSAGES);
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let out = Out { tx: tx.clone() };
        match produce(&out) {
            Ok(()) => caller.finish_ok(&state, &target, ""),
            Err(status) => {
                caller.finish(&state, &target, &status);
                let _ = tx.blocking_send(Err(status));
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Finds a snapshot by full id, unique prefix or `latest`, within `environment` when it
/// is not empty: the same rule as the command line's (`Repository::resolve_snapshot`).
///
/// # Errors
/// NOT_FOUND; INVALID_ARGUMENT when ambiguous.
pub fn resolve(repo: &Repository, name: &str, environment: &str) -> Result<(SnapshotId, Snapshot), Status> {
    let env = (!environment.is_empty()).then_some(environment);
    repo.resolve_snapshot(name, env).map_err(|e| from_engine(&e))
}

/// Runs blocking work off the executor, mapping a panic-free join failure to INTERNAL.
///
/// # Errors
/// What `work` returns.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("a worker stopped: {e}")))?
}
