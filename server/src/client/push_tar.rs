//! Pushing a container layer: not at all when the server holds its digest, else streamed.

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Context, Result, bail};
use ring::digest::{Context as Sha, SHA256};

use super::push::{FRAME, Outcome, PushStream, header};
use crate::cli::PushArgs;
use crate::client::{Remote, hash_all};

/// Pushes the layer in `layer` (`-`: standard input, sent without a digest check first).
///
/// # Errors
/// An unreadable source, or the server's refusal.
pub async fn push(remote: &Remote, args: &PushArgs, env: Option<&str>, layer: &Path) -> Result<Outcome> {
    if layer.as_os_str() == "-" {
        return push_stdin(remote, args, env, Instant::now()).await;
    }
    let digest = file_digest(layer)?;
    let name = layer.to_string_lossy().into_owned();
    let open_at = |from: u64| -> Result<Box<dyn Read>> {
        let mut file = std::fs::File::open(layer).with_context(|| format!("cannot open {}", layer.display()))?;
        file.seek(SeekFrom::Start(from))?;
        Ok(Box::new(file))
    };
    push_from(remote, args, env, name, digest, &open_at).await
}

/// Pushes a layer read from `open_at(offset)`, announced with `digest` (it is not sent when
/// the vault holds that digest; a resumed push sends only the rest).
///
/// # Errors
/// An unreadable source, or the server's refusal.
pub async fn push_from(
    remote: &Remote,
    args: &PushArgs,
    env: Option<&str>,
    name: String,
    digest: String,
    open_at: &dyn Fn(u64) -> Result<Box<dyn Read>>,
) -> Result<Outcome> {
    let started = Instant::now();
    let source = pb::push_header::Source::Tar(pb::TarHeader { digest: digest.clone() });
    let (mut stream, accepted) = PushStream::open(remote, header(remote, args, env, name, source)).await?;
    if accepted.layer_already_stored {
        return already_stored(stream, started).await;
    }
    let from = accepted.tar_resume_offset;
    let (end, _) = send_all(&mut stream, &mut *open_at(from)?, from).await?;
    // A resumed push sends the rest; Finish still names the whole stream.
    let (committed, bytes_sent) = stream.finish(pb::Finish { count: end, digest }).await?;
    Ok(Outcome {
        committed,
        bytes_read: end - from,
        bytes_sent,
        skipped: 0,
        started,
    })
}

async fn push_stdin(remote: &Remote, args: &PushArgs, env: Option<&str>, started: Instant) -> Result<Outcome> {
    let source = pb::push_header::Source::Tar(pb::TarHeader { digest: String::new() });
    let (mut stream, accepted) = PushStream::open(remote, header(remote, args, env, "-".into(), source)).await?;
    if accepted.layer_already_stored {
        return already_stored(stream, started).await;
    }
    let (count, digest) = send_all(&mut stream, &mut std::io::stdin().lock(), 0).await?;
    let (committed, bytes_sent) = stream.finish(pb::Finish { count, digest }).await?;
    Ok(Outcome {
        committed,
        bytes_read: count,
        bytes_sent,
        skipped: 0,
        started,
    })
}

async fn already_stored(mut stream: PushStream, started: Instant) -> Result<Outcome> {
    let Answer::Committed(committed) = stream.recv().await? else {
        bail!("the server answered out of protocol");
    };
    Ok(Outcome {
        committed,
        bytes_read: 0,
        bytes_sent: stream.sent,
        skipped: 0,
        started,
    })
}

fn file_digest(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut sha = Sha::new(&SHA256);
    hash_all(&mut file, &mut sha).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("sha256:{}", hex::encode(sha.finish().as_ref())))
}

/// Sends `src` as the stream from `offset` on; returns the end offset and the SHA-256 of
/// what was sent.
async fn send_all(stream: &mut PushStream, src: &mut dyn Read, mut offset: u64) -> Result<(u64, String)> {
    let mut sha = Sha::new(&SHA256);
    let mut buf = vec![0u8; FRAME];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read the layer"),
        };
        let data = buf.get(..n).unwrap_or_default().to_vec();
        sha.update(&data);
        stream.send(Frame::TarData(pb::TarData { offset, data })).await?;
        offset += n as u64;
    }
    Ok((offset, format!("sha256:{}", hex::encode(sha.finish().as_ref()))))
}
