//! `amber restore --server SNAPSHOT --image OUT [--format F]`: the image as one tar
//! stream, checked against the server's digest of it, then written as a docker archive or
//! unpacked into an OCI layout whose every blob is checked against its name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::ops::image::source::unpack_archive;
use amber_proto::v1 as pb;
use anyhow::{Context, Result, bail};
use ring::digest::{Context as Sha, SHA256};
use serde_json::{Value, json};

use super::pull_tar::resolve_id;
use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::commands::inspect::extend;
use crate::commands::restore::restore_head;
use crate::output::{bytes, emit};

/// Restores an image from the server into `out`.
///
/// # Errors
/// Connection, server and I/O errors; a stream or blob that does not match its digest
/// (nothing is left looking complete).
pub fn run(g: &Global, snapshot: &str, out: &Path, format: Option<&str>) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let started = Instant::now();
        let id = resolve_id(&remote, snapshot, g.env.as_deref()).await?;
        let (layout, fetched) = fetch(&remote, &id, out, format).await?;
        let written = if layout { "unpacked".to_string() } else { bytes(fetched) };
        let mut obj = restore_head(&id, "image", out);
        extend(
            &mut obj,
            json!({
                "format": if layout { "oci" } else { "docker-archive" },
                "bytes_fetched": fetched,
                "duration_seconds": started.elapsed().as_secs_f64(),
            }),
        );
        emit(g.json, &Value::Object(obj), || {
            format!(
                "restored image {} to {} ({written}); every digest verified",
                id.get(..8).unwrap_or(&id),
                out.display()
            )
        });
        Ok(ExitCode::SUCCESS)
    })
}

/// Fetches image `id` (a full id) into `out`: returns whether it was an OCI layout
/// (unpacked) rather than a docker archive (written as a file), and the bytes fetched.
///
/// # Errors
/// Server and I/O errors; a stream or blob that does not match its digest.
pub async fn fetch(remote: &Remote, id: &str, out: &Path, format: Option<&str>) -> Result<(bool, u64)> {
    if out.exists() && !(out.is_dir() && std::fs::read_dir(out)?.next().is_none()) {
        bail!("{} exists and is not an empty directory", out.display());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let partial = PathBuf::from(format!("{}.amber-partial", out.display()));
    let req = pb::ReadImageRequest {
        vault: remote.vault.clone(),
        snapshot: id.to_string(),
        format: format.unwrap_or_default().to_string(),
        environment: String::new(),
    };
    let mut stream = remote
        .restore()
        .read_image(remote.request(req))
        .await
        .map_err(|s| failed("cannot read the image", &s))?
        .into_inner();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let mut sha = Sha::new(&SHA256);
    let (mut fetched, mut end) = (0u64, None);
    while let Some(piece) = stream
        .message()
        .await
        .map_err(|s| failed("reading the image failed", &s))?
    {
        sha.update(&piece.data);
        file.write_all(&piece.data).context("cannot write the image")?;
        fetched += piece.data.len() as u64;
        if !piece.digest.is_empty() {
            end = Some((piece.digest, piece.length));
        }
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let (digest, length) = end.context("the image stream ended early")?;
    let got = format!("sha256:{}", hex::encode(sha.finish().as_ref()));
    if got != digest || fetched != length {
        std::fs::remove_file(&partial)?;
        bail!("the image stream has {got} ({fetched} bytes), the server sent {digest} ({length} bytes): discarded");
    }
    let layout = format != Some("docker-archive") && is_layout(&partial)?;
    if layout {
        let n = unpack_archive(&partial, out);
        std::fs::remove_file(&partial)?;
        n?;
    } else {
        std::fs::rename(&partial, out)?;
    }
    Ok((layout, fetched))
}

/// An archive holding `oci-layout` at its root is a layout's files, not a docker archive.
fn is_layout(archive: &Path) -> Result<bool> {
    Ok(amber_engine::ops::image::source::archive_has(archive, b"oci-layout")?)
}
