//! The synchronous ends of a push stream: a session thread reads client frames from a
//! bounded queue and sends its answers through another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use amber_proto::v1::{PushRequest, PushResponse};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tonic::Status;

use crate::serve::metrics::Metrics;

/// Client frames queued between the network and the session: the backpressure bound.
pub const QUEUE_FRAMES: usize = 4;

/// Frames from the client, in order.
pub struct Inbox {
    rx: mpsc::Receiver<Result<PushRequest, Status>>,
    metrics: Arc<Metrics>,
    /// Content bytes received so far.
    pub received: u64,
    max_frame: usize,
}

impl Inbox {
    /// Wraps the receiving end of the queue.
    pub fn new(rx: mpsc::Receiver<Result<PushRequest, Status>>, metrics: Arc<Metrics>, max_frame: usize) -> Self {
        Inbox {
            rx,
            metrics,
            received: 0,
            max_frame,
        }
    }

    /// The next frame. A stream that ends here, before Finish, is CANCELLED.
    ///
    /// # Errors
    /// The transport's status, CANCELLED at the end of the stream, INVALID_ARGUMENT for an
    /// empty message or an empty data frame, RESOURCE_EXHAUSTED for a data frame over the cap.
    pub fn next(&mut self) -> Result<Frame, Status> {
        let msg = match self.rx.blocking_recv() {
            Some(msg) => msg?,
            None => {
                return Err(Status::cancelled(
                    "the stream ended before Finish: nothing was committed",
                ));
            }
        };
        let frame = msg
            .frame
            .ok_or_else(|| Status::invalid_argument("a message with no frame"))?;
        let payload = match &frame {
            Frame::FileData(d) => d.data.len(),
            Frame::TarData(d) => d.data.len(),
            Frame::BlockData(d) => d.data.len(),
            _ => return Ok(frame),
        };
        if payload == 0 {
            return Err(Status::invalid_argument(
                "an empty data frame: frames carry at least 1 byte (end a file with FileEnd)",
            ));
        }
        if payload > self.max_frame {
            return Err(Status::resource_exhausted(format!(
                "a data frame of {payload} bytes: frames carry at most {} bytes",
                self.max_frame
            )));
        }
        self.received += payload as u64;
        self.metrics.add_received(payload as u64);
        Ok(frame)
    }
}

/// Answers to the client.
pub struct Outbox {
    tx: mpsc::Sender<Result<PushResponse, Status>>,
    /// How long an answer may wait for a client that does not read.
    patience: Duration,
}

impl Outbox {
    /// Wraps the sending end of the answer queue.
    pub fn new(tx: mpsc::Sender<Result<PushResponse, Status>>, patience: Duration) -> Self {
        Outbox { tx, patience }
    }

    /// Sends one answer, waiting while the client does not read, but not for ever: a
    /// client that keeps its stream open without reading would otherwise hold a session.
    ///
    /// # Errors
    /// CANCELLED when the client has gone, ABORTED when it stopped reading.
    pub fn send(&self, frame: Answer) -> Result<(), Status> {
        let mut msg = Ok(PushResponse { frame: Some(frame) });
        let started = Instant::now();
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Status::cancelled("the client went away")),
                Err(TrySendError::Full(back)) => msg = back,
            }
            if started.elapsed() > self.patience {
                return Err(Status::aborted(format!(
                    "the client read no answer for {} s",
                    self.patience.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ends the stream with an error status.
    pub fn fail(&self, status: Status) {
        // Best effort: a client that does not read gets the status as the stream's end
        // when its queue has room, and otherwise just the end of the stream.
        let _ = self.tx.try_send(Err(status));
    }
}
