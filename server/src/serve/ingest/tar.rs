//! Layer pushes: skipped entirely when the vault holds a layer with the same digest,
//! otherwise streamed into the engine's tar ingest as it arrives.

use std::io::Read;

use amber_engine::crypto::SealKey;
use amber_engine::format::snapshot::SourceKind;
use amber_engine::ops::tar::{DIGEST_KEY, TarOptions, held_whole, snapshot_tar};
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use ring::digest::{Context, SHA256};
use tonic::{Code, Status};

use super::inbox::{Inbox, Outbox};
use super::journal::resume_base;
use super::session::Push;
use super::spool::{Replay, Spool};
use crate::serve::convert;
use crate::serve::status::from_engine;

/// Stream bytes spooled between syncs of the spool.
const SPOOL_SYNC_BYTES: u64 = 64 * 1024 * 1024;

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
    let (spool, replay) = open_spool(push, &digest);
    let resume_offset = spool.as_ref().map_or(0, |s| s.len);
    outbox.send(Answer::Accepted(pb::Accepted {
        tar_resume_offset: resume_offset,
        ..accepted(false)
    }))?;
    let mut reader = WireTar {
        inbox,
        sha: Context::new(&SHA256),
        offset: 0,
        pending: Vec::new(),
        at: 0,
        expected_digest: digest,
        failure: None,
        finished: false,
        key: &repo.keys().seal_key,
        spool,
        replay,
        since_sync: 0,
    };
    let opts = TarOptions {
        labels: push.labels.clone(),
        progress: None,
        confine_paths: true,
    };
    let result = snapshot_tar(repo, &mut reader, &push.header.source_path, &opts);
    let failure = reader.failure.take();
    let summary = match (failure, result) {
        (None, Ok(summary)) if reader.finished => summary,
        (failure, result) => {
            // Keep what arrived for a retry when the stream broke; not when it was refused.
            let refused = |c: Code| {
                matches!(
                    c,
                    Code::InvalidArgument
                        | Code::FailedPrecondition
                        | Code::ResourceExhausted
                        | Code::OutOfRange
                        | Code::DataLoss
                )
            };
            let broke = failure.as_ref().is_some_and(|f| !refused(f.code()));
            reader.keep_or_drop_spool(broke);
            return Err(match (failure, result) {
                (Some(status), _) => status,
                (None, Err(e)) => from_engine(&e),
                (None, Ok(_)) => Status::internal("the layer was stored before its Finish arrived"),
            });
        }
    };
    if let Some(spool) = reader.spool.take() {
        spool.remove();
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
        bytes_received: reader.offset - resume_offset,
        reused: 0,
        sent: 1,
        empty_files: 0,
    })
}

/// The spool for this push, resumed when an earlier attempt left one for the same digest.
fn open_spool(push: &Push, digest: &str) -> (Option<Spool>, Option<Replay>) {
    let h = &push.header;
    let base = resume_base(
        push.vault(),
        &push.caller.principal.token_id,
        &h.resume_key,
        &h.source_path,
    );
    let Some(path) = base.filter(|_| !digest.is_empty()).map(|b| b.with_extension("spool")) else {
        return (None, None);
    };
    if let Some((spool, replay)) = Spool::resume(&path, digest) {
        return (Some(spool), Some(replay));
    }
    (Spool::create(&path, digest).ok(), None)
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
    let found = match recorded.map(|id| (id, repo.load_snapshot(id))) {
        Some((id, Ok(snap))) if snap.source == SourceKind::TarLayer => Some((id, snap)),
        _ => {
            let all = repo.snapshots().map_err(|e| from_engine(&e))?;
            all.into_iter().find(|(_, s)| {
                s.source == SourceKind::TarLayer && s.metadata.iter().any(|(k, v)| k == DIGEST_KEY && v == digest)
            })
        }
    };
    // Held in part only (a pack lost, damaged, archived or condemned): the stream is taken
    // in again, which stores what is missing anew.
    match found {
        Some((id, snap)) if held_whole(repo, id, &snap).map_err(|e| from_engine(&e))? => Ok(Some((id, snap))),
        _ => Ok(None),
    }
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
    /// Seals the spool.
    key: &'a SealKey,
    /// Where the stream is kept for a retry (pushes that announce a digest and a key).
    spool: Option<Spool>,
    /// What an earlier attempt spooled, read before the wire.
    replay: Option<Replay>,
    since_sync: u64,
}

impl WireTar<'_> {
    fn refill(&mut self) -> Result<bool, Status> {
        if let Some(data) = self.replayed()? {
            self.take(data);
            return Ok(true);
        }
        match self.inbox.next()? {
            Frame::TarData(d) => {
                if d.offset != self.offset {
                    return Err(Status::invalid_argument(format!(
                        "a tar frame at offset {} where {} was expected",
                        d.offset, self.offset
                    )));
                }
                self.spool_frame(&d.data)?;
                self.take(d.data);
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

    fn take(&mut self, data: Vec<u8>) {
        self.offset += data.len() as u64;
        self.sha.update(&data);
        self.pending = data;
        self.at = 0;
    }

    /// The next piece an earlier attempt spooled, if any is left.
    fn replayed(&mut self) -> Result<Option<Vec<u8>>, Status> {
        let Some(replay) = self.replay.as_mut() else {
            return Ok(None);
        };
        match replay.next(self.key) {
            Ok(Some(data)) => Ok(Some(data)),
            Ok(None) => {
                self.replay = None;
                Ok(None)
            }
            Err(e) => Err(Status::data_loss(format!(
                "the stream kept from an earlier attempt is damaged ({e:#}); push again to send it whole"
            ))),
        }
    }

    fn spool_frame(&mut self, data: &[u8]) -> Result<(), Status> {
        let Some(spool) = self.spool.as_mut() else {
            return Ok(());
        };
        let kept = spool.append(self.key, data).and_then(|()| {
            self.since_sync += data.len() as u64;
            if self.since_sync >= SPOOL_SYNC_BYTES {
                self.since_sync = 0;
                spool.sync()?;
            }
            Ok(())
        });
        kept.map_err(|e| Status::unavailable(format!("cannot keep the stream for a retry: {e:#}")))
    }

    /// After a failure: keeps the spool durable for a retry when the stream broke, and
    /// deletes it when the stream was refused or the spool itself failed.
    fn keep_or_drop_spool(&mut self, broke: bool) {
        let Some(mut spool) = self.spool.take() else { return };
        if !broke || self.replay.is_some() || spool.sync().is_err() {
            spool.remove();
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
