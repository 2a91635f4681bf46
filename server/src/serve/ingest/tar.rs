//! Layer pushes: skipped entirely when the vault holds a layer with the same digest,
//! otherwise streamed into the engine's tar ingest as it arrives.

use std::io::Read;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::ops::tar::{DIGEST_KEY, TarOptions, snapshot_tar};
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use ring::digest::{Context, SHA256};
use tonic::Status;

use super::inbox::{Inbox, Outbox};
use super::session::Push;
use crate::serve::convert;
use crate::serve::status::from_engine;

/// Runs a layer push after its header.
pub fn run(push: &Push, header: &pb::TarHeader, inbox: &mut Inbox, outbox: &Outbox) -> Result<pb::Committed, Status> {
    let repo = &push.vault().repo;
    let digest = header.digest.to_ascii_lowercase();
    if !digest.is_empty() && !is_sha256(&digest) {
        return Err(Status::invalid_argument(format!("{digest:?} is not a sha256: digest")));
    }
    let accepted = |stored| pb::Accepted {
        request_id: push.caller.request_id.clone(),
        layer_already_stored: stored,
        ..Default::default()
    };
    if let Some((id, snap)) = held_layer(push, &digest)? {
        outbox.send(Answer::Accepted(accepted(true)))?;
        return Ok(pb::Committed {
            snapshot_id: id.to_hex(),
            already_stored: true,
            stats: convert::snapshot_info(id, &snap).stats,
            ..Default::default()
        });
    }
    outbox.send(Answer::Accepted(accepted(false)))?;
    let mut reader = WireTar {
        inbox,
        sha: Context::new(&SHA256),
        offset: 0,
        pending: Vec::new(),
        at: 0,
        expected_digest: digest,
        failure: None,
        finished: false,
    };
    let opts = TarOptions {
        labels: push.labels.clone(),
        progress: None,
        confine_paths: true,
    };
    let result = snapshot_tar(repo, &mut reader, &push.header.source_path, &opts);
    if let Some(status) = reader.failure.take() {
        return Err(status);
    }
    let summary = result.map_err(|e| from_engine(&e))?;
    if !reader.finished {
        return Err(Status::internal("the layer was stored before its Finish arrived"));
    }
    // Remember this stream's digest for the snapshot, so the next push of the same bytes
    // is not sent at all (also when the layer was recognised by its diff id).
    repo.index()
        .put_layer_digest(&summary.digest, summary.id)
        .map_err(|e| from_engine(&e))?;
    Ok(pb::Committed {
        snapshot_id: summary.id.to_hex(),
        already_stored: summary.already_stored,
        stats: convert::snapshot_info(summary.id, &summary.snapshot).stats,
        bytes_received: reader.offset,
        reused: 0,
        sent: 1,
    })
}

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn held_layer(
    push: &Push,
    digest: &str,
) -> Result<Option<(amber_engine::id::SnapshotId, amber_engine::format::snapshot::Snapshot)>, Status> {
    if digest.is_empty() {
        return Ok(None);
    }
    let repo = &push.vault().repo;
    let recorded = repo.index().layer_digest(digest).map_err(|e| from_engine(&e))?;
    if let Some(id) = recorded
        && let Ok(snap) = repo.load_snapshot(id)
        && snap.source == SourceKind::TarLayer
    {
        return Ok(Some((id, snap)));
    }
    let all = repo.snapshots().map_err(|e| from_engine(&e))?;
    Ok(all.into_iter().find(|(_, s)| {
        s.source == SourceKind::TarLayer && s.metadata.iter().any(|(k, v)| k == DIGEST_KEY && v == digest)
    }))
}

/// The tar stream as a reader over the push's TarData frames. It reports the end of the
/// stream only after Finish has been checked against what arrived, so a short, long or
/// altered stream fails the ingest before anything is committed.
struct WireTar<'a> {
    inbox: &'a mut Inbox,
    sha: Context,
    offset: u64,
    pending: Vec<u8>,
    at: usize,
    expected_digest: String,
    /// The protocol error that made a read fail, reported instead of the engine's.
    failure: Option<Status>,
    finished: bool,
}

impl WireTar<'_> {
    fn refill(&mut self) -> Result<bool, Status> {
        match self.inbox.next()? {
            Frame::TarData(d) => {
                if d.offset != self.offset {
                    return Err(Status::invalid_argument(format!(
                        "a tar frame at offset {} where {} was expected",
                        d.offset, self.offset
                    )));
                }
                self.offset += d.data.len() as u64;
                self.sha.update(&d.data);
                self.pending = d.data;
                self.at = 0;
                Ok(true)
            }
            Frame::Finish(f) => {
                self.check_finish(&f)?;
                self.finished = true;
                Ok(false)
            }
            _ => Err(Status::failed_precondition("only tar data or Finish may come here")),
        }
    }

    fn check_finish(&self, f: &pb::Finish) -> Result<(), Status> {
        if f.count != self.offset {
            return Err(Status::invalid_argument(format!(
                "Finish announces {} bytes but {} arrived",
                f.count, self.offset
            )));
        }
        let got = format!("sha256:{}", hex::encode(self.sha.clone().finish().as_ref()));
        let claimed = f.digest.to_ascii_lowercase();
        for expected in [&claimed, &self.expected_digest] {
            if !expected.is_empty() && *expected != got {
                return Err(Status::invalid_argument(format!(
                    "the stream's digest is {got}, not {expected}"
                )));
            }
        }
        Ok(())
    }
}

impl Read for WireTar<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            if self.finished {
                return Ok(0);
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(status) => {
                    let msg = status.message().to_string();
                    self.failure = Some(status);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let rest = self.pending.get(self.at..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}
