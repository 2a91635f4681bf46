//! Pushing a container image: each layer blob as a layer (not sent when the vault holds
//! its digest), then the image's small files naming those layers (`ImageHeader`).

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use amber_engine::ops::image::source::{ImageSource, Item, Span, read_image, sha256_of};
use amber_proto::v1 as pb;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Result, bail};

use super::push::{Outcome, PushStream, header};
use super::push_tar::push_from;
use crate::cli::PushArgs;
use crate::client::Remote;

/// Pushes the image at `path` (an OCI layout directory or a docker archive).
///
/// # Errors
/// A malformed image (checked here before anything is sent), or the server's refusal.
pub async fn push(remote: &Remote, args: &PushArgs, env: Option<&str>, path: &Path) -> Result<Outcome> {
    let started = Instant::now();
    let image = read_image(path)?;
    let mut head = pb::ImageHeader {
        format: image.format.name().to_string(),
        ..Default::default()
    };
    let (mut bytes_read, mut bytes_sent) = (0u64, 0u64);
    for (name, item) in &image.items {
        match item {
            Item::Layer(span) => {
                let pushed = push_layer(remote, args, env, path, &image, name, span).await?;
                bytes_read += pushed.bytes_read;
                bytes_sent += pushed.bytes_sent;
                head.layers.push(pb::ImageLayer {
                    path: name.clone(),
                    snapshot_id: pushed.committed.snapshot_id,
                    size: span.len,
                });
            }
            Item::File(span) => {
                let mut data = Vec::new();
                span.open()?.read_to_end(&mut data)?;
                bytes_read += data.len() as u64;
                head.files.push(pb::ImageFile {
                    path: name.clone(),
                    data,
                });
            }
            Item::Symlink(target) => head.links.push(pb::ImageLink {
                path: name.clone(),
                target: target.clone(),
            }),
        }
    }
    let source = pb::push_header::Source::Image(head);
    let name = path.to_string_lossy().into_owned();
    let (mut stream, _) = PushStream::open(remote, header(remote, args, env, name, source)).await?;
    let Answer::Committed(committed) = stream.recv().await? else {
        bail!("the server answered out of protocol");
    };
    Ok(Outcome {
        committed,
        bytes_read,
        bytes_sent: bytes_sent + stream.sent,
        skipped: 0,
        started,
    })
}

async fn push_layer(
    remote: &Remote,
    args: &PushArgs,
    env: Option<&str>,
    path: &Path,
    image: &ImageSource,
    name: &[u8],
    span: &Span,
) -> Result<Outcome> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let digest = match image.layer_digests.get(name) {
        Some(d) => d.clone(),
        None => sha256_of(&mut span.open()?, &shown)?.0,
    };
    let open_at = |from: u64| -> Result<Box<dyn Read>> {
        let mut part = span.clone();
        part.offset += from;
        part.len = part.len.saturating_sub(from);
        Ok(Box::new(part.open()?))
    };
    push_from(
        remote,
        args,
        env,
        format!("{}/{shown}", path.display()),
        digest,
        &open_at,
    )
    .await
}
