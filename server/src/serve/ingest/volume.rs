//! Volume pushes: with changed ranges only the blocks they touch cross the wire; without,
//! the client sends keyed digests and only the blocks the vault lacks.

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::{ChunkId, Hash32};
use amber_engine::ops::ranges::{ByteRange, block_pieces};
use amber_engine::ops::volume_build::{VolumeBuilder, wire_digest, wire_digest_key};
use amber_engine::repo::index::Index;
use amber_engine::repo::writer::BlobWriter;
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use tonic::Status;

use super::inbox::{Inbox, Outbox};
use super::parent;
use super::session::Push;
use crate::serve::convert;
use crate::serve::status::{from_engine, invalid, out_of_turn};

/// Most ranges per VolumeRanges message.
const MAX_RANGES_PER_MESSAGE: usize = 65_536;
/// Most ranges per push.
const MAX_RANGES: usize = 1 << 22;
/// Most digests per batch.
const MAX_DIGESTS: usize = 4096;
/// Most runs per BlocksWanted message (each run encodes in at most 24 bytes).
const RUNS_PER_MESSAGE: usize = 65_536;

/// Runs a volume push after its header.
pub fn run(push: &Push, v: &pb::VolumeHeader, inbox: &mut Inbox, outbox: &Outbox) -> Result<pb::Committed, Status> {
    let repo = &push.vault().repo;
    let size = v.size;
    let parent = parent::choose(push, SourceKind::BlockVolume, &|s| s.stats.bytes == size)?;
    if v.changed_ranges && parent.is_none() {
        return Err(out_of_turn("changed ranges need a parent volume of the same size"));
    }
    let key = wire_digest_key(repo);
    outbox.send(Answer::Accepted(pb::Accepted {
        request_id: push.caller.request_id.clone(),
        parent_id: parent.as_ref().map(|(id, _)| id.to_hex()).unwrap_or_default(),
        block_size: repo.config().block_size,
        digest_key: if v.changed_ranges { Vec::new() } else { key.to_vec() },
        ..Default::default()
    }))?;
    let writer = BlobWriter::new(repo).map_err(|e| from_engine(&e))?;
    let mut b =
        VolumeBuilder::new(&writer, size, parent.as_ref().map(|(id, s)| (*id, s))).map_err(|e| from_engine(&e))?;
    let received = if v.changed_ranges {
        let block = u64::from(repo.config().block_size);
        by_ranges(&mut b, size, block, inbox, outbox)
    } else {
        by_digest(&mut b, repo.index(), &key, inbox, outbox)
    };
    let sent = match received.and_then(|sent| finish_frame(inbox, sent)) {
        Ok(sent) => sent,
        Err(status) => {
            // Keep what arrived: its wire digests become valid, so a retry in digest mode
            // does not send those blocks again.
            let _ = writer.flush();
            return Err(status);
        }
    };
    let name = std::path::Path::new(&push.header.source_path)
        .file_name()
        .map_or_else(|| b"volume".to_vec(), |n| n.as_encoded_bytes().to_vec());
    let entry = convert::entry(
        name,
        v.meta.as_ref().or(Some(&pb::EntryMeta {
            kind: 1,
            ..Default::default()
        })),
    )?;
    let built = b
        .finish(&push.labels, entry, push.header.source_path.clone())
        .map_err(|e| from_engine(&e))?;
    writer.finish().map_err(|e| from_engine(&e))?;
    let c = built.counts;
    Ok(pb::Committed {
        snapshot_id: built.id.to_hex(),
        already_stored: false,
        stats: convert::snapshot_info(built.id, &built.snapshot).stats,
        bytes_received: inbox.received,
        // Every block not sent was reused: inherited, named by digest, or a hole.
        reused: c.blocks.saturating_sub(sent),
        sent,
        empty_files: 0,
    })
}

fn finish_frame(inbox: &mut Inbox, sent: u64) -> Result<u64, Status> {
    match inbox.next()? {
        Frame::Finish(f) if f.count == sent => Ok(sent),
        Frame::Finish(f) => Err(invalid(format!("Finish counts {} blocks but {sent} arrived", f.count))),
        _ => Err(out_of_turn("only Finish may come here")),
    }
}

fn by_ranges(b: &mut VolumeBuilder, size: u64, block: u64, inbox: &mut Inbox, outbox: &Outbox) -> Result<u64, Status> {
    let mut ranges = Vec::new();
    loop {
        let Frame::Ranges(r) = inbox.next()? else {
            return Err(out_of_turn(
                "changed ranges were announced: VolumeRanges must come here",
            ));
        };
        if r.ranges.len() > MAX_RANGES_PER_MESSAGE || ranges.len() + r.ranges.len() > MAX_RANGES {
            return Err(Status::resource_exhausted(
                "too many ranges: merge them or push with digests",
            ));
        }
        if r.ranges.iter().any(|x| x.length == 0) {
            return Err(invalid(
                "a changed range of length 0: every range holds at least 1 byte",
            ));
        }
        ranges.extend(r.ranges.iter().map(|x| ByteRange {
            offset: x.offset,
            len: x.length,
        }));
        if r.last {
            break;
        }
    }
    let pieces = block_pieces(&ranges, size, block).map_err(|e| from_engine(&e))?;
    drop(ranges);
    send_runs(outbox, &runs_of(pieces.iter().map(|p| p.0)))?;
    let mut pending = pieces.into_iter().peekable();
    let mut sent = 0;
    for i in 0..b.block_count() {
        let mut mine = Vec::new();
        while let Some((_, start, len)) = pending.next_if(|p| p.0 == i) {
            mine.push((start, receive_piece(inbox, i, start, len)?));
        }
        let whole = matches!(mine.as_slice(), [(0, d)] if d.len() as u64 == b.block_len(i));
        let stored = match (mine.is_empty(), whole) {
            (true, _) => b.inherit(i),
            (false, true) => b.data(i, mine.first().map(|m| m.1.as_slice()).unwrap_or_default()),
            (false, false) => b.patch(i, &mine),
        };
        stored.map_err(|e| from_engine(&e))?;
        sent += u64::from(!mine.is_empty());
    }
    Ok(sent)
}

/// Receives the changed bytes [start, start + len) of block `i`, in contiguous frames.
fn receive_piece(inbox: &mut Inbox, i: u64, start: u64, len: u64) -> Result<Vec<u8>, Status> {
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (data.len() as u64) < len {
        let Frame::BlockData(d) = inbox.next()? else {
            return Err(out_of_turn(format!("changed bytes of block {i} were expected")));
        };
        let at = start + data.len() as u64;
        if d.block != i || d.offset != at || data.len() as u64 + d.data.len() as u64 > len {
            return Err(invalid(format!(
                "block {} at offset {} ({} bytes) where block {i} at offset {at} (at most {} bytes) was expected",
                d.block,
                d.offset,
                d.data.len(),
                len - data.len() as u64
            )));
        }
        data.extend_from_slice(&d.data);
    }
    Ok(data)
}

/// Receives block `i` (`len` bytes) in contiguous frames.
fn receive_block(inbox: &mut Inbox, i: u64, len: u64) -> Result<Vec<u8>, Status> {
    receive_piece(inbox, i, 0, len)
}

/// What a digest says about one block.
enum Need {
    Hole,
    Held(ChunkId),
    Send(Hash32),
}

fn by_digest(
    b: &mut VolumeBuilder,
    index: &Index,
    key: &[u8; 32],
    inbox: &mut Inbox,
    outbox: &Outbox,
) -> Result<u64, Status> {
    let mut sent = 0;
    loop {
        let Frame::Digests(d) = inbox.next()? else {
            return Err(out_of_turn("block digests must come here"));
        };
        if d.first_block != b.next_block() {
            return Err(invalid(format!(
                "digests from block {} where {} was expected",
                d.first_block,
                b.next_block()
            )));
        }
        if d.digests.len() > MAX_DIGESTS || d.first_block + d.digests.len() as u64 > b.block_count() {
            return Err(invalid(
                "a digest batch over 4096 digests or past the end of the volume",
            ));
        }
        let needs = d
            .digests
            .iter()
            .map(|x| need(index, x))
            .collect::<Result<Vec<_>, Status>>()?;
        let wanted = needs
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n, Need::Send(_)))
            .map(|(k, _)| d.first_block + k as u64);
        send_runs(outbox, &runs_of(wanted))?;
        for (k, n) in needs.into_iter().enumerate() {
            let i = d.first_block + k as u64;
            match n {
                Need::Hole => b.hole(i).map(|_| ()),
                Need::Held(id) => b.known(i, id).map(|_| ()),
                Need::Send(digest) => {
                    let data = receive_block(inbox, i, b.block_len(i))?;
                    if wire_digest(key, &data) != digest {
                        return Err(invalid(format!("block {i} does not match its digest")));
                    }
                    sent += 1;
                    b.data(i, &data).map(|_| ())
                }
            }
            .map_err(|e| from_engine(&e))?;
        }
        let at_end = b.next_block() == b.block_count();
        if d.last != at_end {
            return Err(invalid(
                "`last` must be set on the batch that ends the volume, and only there",
            ));
        }
        if at_end {
            return Ok(sent);
        }
    }
}

fn need(index: &Index, digest: &[u8]) -> Result<Need, Status> {
    if digest.is_empty() {
        return Ok(Need::Hole);
    }
    let digest = Hash32::from_slice(digest).map_err(|_| invalid("a block digest that is not 32 bytes"))?;
    let held = index.wire_digest(&digest).map_err(|e| from_engine(&e))?;
    // A block known damaged, or kept only in an archived pack, is asked for again.
    let good = |id: ChunkId| index.holds_good(&id.into()).unwrap_or(false);
    Ok(match held {
        Some(id) if good(id) => Need::Held(id),
        _ => Need::Send(digest),
    })
}

/// Sorted block indices (repeats allowed: one per changed piece) as sorted, disjoint runs.
fn runs_of(blocks: impl Iterator<Item = u64>) -> Vec<pb::BlockRun> {
    let mut runs: Vec<pb::BlockRun> = Vec::new();
    for i in blocks {
        match runs.last_mut() {
            Some(r) if i < r.first + r.count => {}
            Some(r) if r.first + r.count == i => r.count += 1,
            _ => runs.push(pb::BlockRun { first: i, count: 1 }),
        }
    }
    runs
}

fn send_runs(outbox: &Outbox, runs: &[pb::BlockRun]) -> Result<(), Status> {
    let mut pieces = runs.chunks(RUNS_PER_MESSAGE).peekable();
    if pieces.peek().is_none() {
        return outbox.send(Answer::BlocksWanted(pb::BlocksWanted {
            runs: Vec::new(),
            last: true,
        }));
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        outbox.send(Answer::BlocksWanted(pb::BlocksWanted {
            runs: piece.to_vec(),
            last,
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_runs_are_sorted_and_disjoint_with_several_pieces_per_block() {
        let runs: Vec<(u64, u64)> = runs_of([0, 0, 1, 7, 7, 8].into_iter())
            .iter()
            .map(|r| (r.first, r.count))
            .collect();
        assert_eq!(runs, vec![(0, 2), (7, 2)]);
    }
}
