//! Pushing a block volume: with changed ranges only the blocks they touch, else digests
//! of every block and only the blocks the server lacks.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use amber_engine::ops::fsmeta::{NameCache, entry_from};
use amber_engine::ops::ranges::{ByteRange, NOTHING_CHANGED, block_pieces, load_ranges};
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Context, Result, bail};

use super::push::{FRAME, Outcome, PushStream, header};
use crate::cli::PushArgs;
use crate::client::Remote;
use amber_server::serve::convert;

/// Digests per batch (the server's cap).
const DIGEST_BATCH: u64 = 4096;
/// Ranges per message (the server's cap).
const RANGES_PER_MESSAGE: usize = 65_536;

struct Image {
    file: File,
    size: u64,
    block: u64,
    bytes_read: u64,
}

impl Image {
    fn block_len(&self, i: u64) -> u64 {
        self.block.min(self.size - i * self.block)
    }

    fn read_block(&mut self, i: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(self.block_len(i))?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, i * self.block)
            .with_context(|| format!("cannot read block {i}"))?;
        self.bytes_read += len as u64;
        Ok(buf)
    }
}

/// Pushes the image or block device at `path`.
///
/// # Errors
/// An unreadable source, a malformed range list, or the server's refusal.
pub async fn push(remote: &Remote, args: &PushArgs, env: Option<&str>, path: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.seek(SeekFrom::End(0))?;
    let ranges = match &args.snap.changed_ranges {
        Some(f) => Some(load_ranges(f)?),
        None => None,
    };
    if ranges.as_ref().is_some_and(Vec::is_empty) {
        eprintln!("amber: {NOTHING_CHANGED}");
    }
    let meta = std::fs::metadata(path)?;
    let entry = entry_from(b"volume", path, &meta, &NameCache::default())?;
    let source = pb::push_header::Source::Volume(pb::VolumeHeader {
        size,
        changed_ranges: ranges.is_some(),
        meta: Some(convert::meta(&entry)),
    });
    let canonical = std::fs::canonicalize(path)?.to_string_lossy().into_owned();
    let (mut stream, accepted) = PushStream::open(remote, header(remote, args, env, canonical, source)).await?;
    let mut image = Image {
        file,
        size,
        block: u64::from(accepted.block_size.max(1)),
        bytes_read: 0,
    };
    let sent = match ranges {
        Some(r) => send_ranges(&mut stream, &mut image, &r).await?,
        None => send_by_digest(&mut stream, &mut image, &accepted.digest_key).await?,
    };
    let (committed, bytes_sent) = stream
        .finish(pb::Finish {
            count: sent,
            digest: String::new(),
        })
        .await?;
    Ok(Outcome {
        committed,
        bytes_read: image.bytes_read,
        bytes_sent,
        skipped: 0,
        started,
    })
}

async fn send_ranges(stream: &mut PushStream, image: &mut Image, ranges: &[ByteRange]) -> Result<u64> {
    let wire: Vec<pb::ByteRange> = ranges
        .iter()
        .map(|r| pb::ByteRange {
            offset: r.offset,
            length: r.len,
        })
        .collect();
    let mut messages = wire.chunks(RANGES_PER_MESSAGE).peekable();
    if messages.peek().is_none() {
        stream
            .send(Frame::Ranges(pb::VolumeRanges {
                ranges: Vec::new(),
                last: true,
            }))
            .await?;
    }
    while let Some(piece) = messages.next() {
        let last = messages.peek().is_none();
        stream
            .send(Frame::Ranges(pb::VolumeRanges {
                ranges: piece.to_vec(),
                last,
            }))
            .await?;
    }
    loop {
        match stream.recv().await? {
            Answer::BlocksWanted(w) if w.last => break,
            Answer::BlocksWanted(_) => {}
            _ => bail!("the server answered the ranges out of protocol"),
        }
    }
    // Only the changed bytes cross the wire; the server takes the rest of each block from
    // the parent. Both sides cut the list into pieces the same way.
    let pieces = block_pieces(ranges, image.size, image.block)?;
    let mut blocks = 0;
    let mut last_block = None;
    for (i, start, len) in pieces {
        send_piece(stream, image, i, start, len).await?;
        if last_block != Some(i) {
            blocks += 1;
            last_block = Some(i);
        }
    }
    Ok(blocks)
}

async fn send_piece(stream: &mut PushStream, image: &mut Image, i: u64, start: u64, len: u64) -> Result<()> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(FRAME as u64);
        let mut data = vec![0u8; usize::try_from(n)?];
        let at = i * image.block + start + done;
        image
            .file
            .read_exact_at(&mut data, at)
            .with_context(|| format!("cannot read bytes at {at}"))?;
        image.bytes_read += n;
        let frame = pb::BlockData {
            block: i,
            offset: start + done,
            data,
        };
        stream.send(Frame::BlockData(frame)).await?;
        done += n;
    }
    Ok(())
}

async fn send_runs(stream: &mut PushStream, image: &mut Image, runs: &[pb::BlockRun]) -> Result<u64> {
    let mut sent = 0;
    for run in runs {
        for i in run.first..run.first.saturating_add(run.count) {
            send_block(stream, image, i).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

async fn send_block(stream: &mut PushStream, image: &mut Image, i: u64) -> Result<()> {
    let len = image.block_len(i);
    send_piece(stream, image, i, 0, len).await
}

async fn send_by_digest(stream: &mut PushStream, image: &mut Image, key: &[u8]) -> Result<u64> {
    let key: [u8; 32] = key.try_into().context("the server sent no digest key")?;
    let count = image.size.div_ceil(image.block);
    let mut sent = 0;
    let mut first = 0u64;
    while first < count || (count == 0 && first == 0) {
        let end = (first + DIGEST_BATCH).min(count);
        let mut digests = Vec::new();
        for i in first..end {
            let data = image.read_block(i)?;
            let zero = data.iter().all(|&b| b == 0);
            digests.push(if zero {
                Vec::new()
            } else {
                blake3::keyed_hash(&key, &data).as_bytes().to_vec()
            });
        }
        let last = end == count;
        stream
            .send(Frame::Digests(pb::BlockDigests {
                first_block: first,
                digests,
                last,
            }))
            .await?;
        let Answer::BlocksWanted(w) = stream.recv().await? else {
            bail!("the server answered digests out of protocol");
        };
        sent += send_runs(stream, image, &w.runs).await?;
        if last {
            break;
        }
        first = end;
    }
    Ok(sent)
}
