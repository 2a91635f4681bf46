//! `amber restore --server SNAPSHOT --tar OUT`: the layer's tar stream, resumed from what
//! OUT already holds and checked against the layer's digest at the end.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use amber_proto::v1 as pb;
use anyhow::{Context, Result};
use ring::digest::{Context as Sha, SHA256};
use serde_json::{Value, json};

use crate::cli::Global;
use crate::client::{Remote, block_on, failed, hash_all};
use crate::commands::inspect::extend;
use crate::commands::restore::restore_head;
use crate::output::{bytes, emit, failure};

/// Restores a layer into `out` (`-`: standard output, no resumption).
///
/// # Errors
/// Connection, server and I/O errors; a digest mismatch (the output is then renamed
/// aside, never left looking complete).
pub fn run(g: &Global, snapshot: &str, out: &Path) -> Result<ExitCode> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let started = Instant::now();
        // The full id first: `latest` could name another snapshot by the time the stream starts.
        let id = resolve_id(&remote, snapshot, g.env.as_deref()).await?;
        let stdout = out.as_os_str() == "-";
        let mut sha = Sha::new(&SHA256);
        let mut sink: Box<dyn Write> = if stdout {
            crate::output::stdout_is_data();
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(open_partial(out, &mut sha)?)
        };
        let offset = if stdout {
            0
        } else {
            std::fs::metadata(partial(out)).map_or(0, |m| m.len())
        };
        let req = pb::ReadTarRequest {
            vault: remote.vault.clone(),
            snapshot: id.clone(),
            offset,
            environment: String::new(),
        };
        let mut stream = remote
            .restore()
            .read_tar(remote.request(req))
            .await
            .map_err(|s| failed("cannot read the layer", &s))?
            .into_inner();
        let mut fetched = 0u64;
        let mut end = None;
        while let Some(piece) = stream
            .message()
            .await
            .map_err(|s| failed("reading the layer failed", &s))?
        {
            sha.update(&piece.data);
            sink.write_all(&piece.data).context("cannot write the layer")?;
            fetched += piece.data.len() as u64;
            if !piece.digest.is_empty() {
                end = Some((piece.digest, piece.length));
            }
        }
        sink.flush()?;
        drop(sink);
        let (digest, length) = end.context("the layer stream ended early")?;
        let got = format!("sha256:{}", hex::encode(sha.finish().as_ref()));
        if got != digest || offset + fetched != length {
            if !stdout {
                let _ = std::fs::remove_file(partial(out));
            }
            let why = format!("the restored layer has {got}, the snapshot records {digest}: discarded");
            return Err(failure("corrupt", why));
        }
        if !stdout {
            std::fs::rename(partial(out), out).with_context(|| format!("cannot rename into {}", out.display()))?;
        }
        let mut obj = restore_head(&id, "tar", out);
        let counts = json!({
            "bytes": length,
            "diff_id": digest,
            "duration_seconds": started.elapsed().as_secs_f64(),
            "bytes_fetched": fetched,
            "resumed_from": offset,
        });
        extend(&mut obj, counts);
        emit(g.json, &Value::Object(obj), || {
            format!(
                "restored layer {digest}: {} ({} fetched) in {:.1} s",
                bytes(length),
                bytes(fetched),
                started.elapsed().as_secs_f64()
            )
        });
        Ok(ExitCode::SUCCESS)
    })
}

/// The full id of `snapshot` (an id, a prefix or `latest`, within `env`).
///
/// # Errors
/// The server's refusal (NOT_FOUND, an ambiguous prefix).
pub async fn resolve_id(remote: &Remote, snapshot: &str, env: Option<&str>) -> Result<String> {
    Ok(get_snapshot(remote, snapshot, env).await?.id)
}

/// The catalog's description of `snapshot` (an id, a prefix or `latest`, within `env`).
///
/// # Errors
/// The server's refusal (NOT_FOUND, an ambiguous prefix).
pub async fn get_snapshot(remote: &Remote, snapshot: &str, env: Option<&str>) -> Result<pb::SnapshotInfo> {
    let req = pb::GetSnapshotRequest {
        vault: remote.vault.clone(),
        snapshot: snapshot.to_string(),
        environment: env.unwrap_or_default().to_string(),
    };
    let info = remote
        .catalog()
        .get_snapshot(remote.request(req))
        .await
        .map_err(|s| failed("cannot find the snapshot", &s))?
        .into_inner();
    Ok(info)
}

/// Where an unfinished download is kept: beside OUT, renamed into place when verified.
fn partial(out: &Path) -> std::path::PathBuf {
    let mut name = out.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".amber-partial");
    out.with_file_name(name)
}

/// Opens the partial download for appending and hashes what it already holds.
fn open_partial(out: &Path, sha: &mut Sha) -> Result<std::fs::File> {
    let path = partial(out);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    hash_all(&mut file, sha).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(file)
}
