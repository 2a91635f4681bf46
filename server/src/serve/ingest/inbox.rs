//! The synchronous ends of a push stream: a session thread reads client frames from a
//! bounded queue and sends its answers through another.

use std::sync::Arc;

use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use amber_proto::v1::{PushRequest, PushResponse};
use tokio::sync::mpsc;
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
    /// empty message, RESOURCE_EXHAUSTED for a data frame over the cap.
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
        if payload == 0 || payload > self.max_frame {
            return Err(Status::resource_exhausted(format!(
                "a data frame of {payload} bytes: frames carry 1 to {} bytes",
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
}

impl Outbox {
    /// Wraps the sending end of the answer queue.
    pub fn new(tx: mpsc::Sender<Result<PushResponse, Status>>) -> Self {
        Outbox { tx }
    }

    /// Sends one answer, waiting while the client does not read.
    ///
    /// # Errors
    /// CANCELLED when the client has gone.
    pub fn send(&self, frame: Answer) -> Result<(), Status> {
        self.tx
            .blocking_send(Ok(PushResponse { frame: Some(frame) }))
            .map_err(|_| Status::cancelled("the client went away"))
    }

    /// Ends the stream with an error status.
    pub fn fail(&self, status: Status) {
        let _ = self.tx.blocking_send(Err(status));
    }
}
