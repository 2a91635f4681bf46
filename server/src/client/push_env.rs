//! `env snapshot --server`: every part pushed at once, then the environment committed.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Instant;

use amber_engine::ops::environment::PartKind;
use amber_proto::v1 as pb;
use amber_proto::v1::push_response::Frame as Answer;
use anyhow::{Context, Result, bail};

use super::push::{Outcome, PushStream, header};
use crate::cli::{EnvCommand, EnvSnapshotArgs, Global, PushArgs, SnapshotArgs};
use crate::client::{Remote, block_on};
use crate::commands::env::{part_json, part_labels, print_committed, record_labels};
use crate::output::ProgressDisplay;

type Pushing<'a> = Pin<Box<dyn Future<Output = Result<(PartKind, String, Outcome)>> + 'a>>;

/// Runs an `env` command against `--server`.
///
/// # Errors
/// A part that fails (no environment snapshot is committed), or the server's refusal.
pub fn run(g: &Global, cmd: &EnvCommand) -> Result<ExitCode> {
    match cmd {
        EnvCommand::Snapshot(a) => block_on(snapshot(g, a)),
        EnvCommand::Restore { snapshot, into } => super::pull_env::restore(g, snapshot, into),
    }
}

/// Push arguments of one part: the environment's labels, and the part as the only source.
fn part_args(a: &EnvSnapshotArgs, image: Option<PathBuf>, tree: Option<PathBuf>, block: Option<PathBuf>) -> PushArgs {
    PushArgs {
        snap: SnapshotArgs {
            paths: tree.into_iter().collect(),
            exclude: Vec::new(),
            exclude_file: Vec::new(),
            tar: None,
            block,
            image,
            changed_ranges: None,
            tags: a.tags.clone(),
            lab: a.lab.clone(),
            researcher: a.researcher.clone(),
            metadata: a.metadata.clone(),
            parent: None,
            force: false,
        },
        resume_key: None,
    }
}

async fn snapshot(g: &Global, a: &EnvSnapshotArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let labels = part_labels(g, a)?;
    let env = Some(labels.environment.as_str());
    let remote = Remote::connect(g).await?;
    let display = ProgressDisplay::start_logged("push", std::time::Duration::from_secs(10));
    let remote = Remote {
        progress: Some(display.counters()),
        ..remote
    };
    let mut jobs: Vec<(PartKind, String, PushArgs)> = Vec::new();
    if let Some(p) = &a.image {
        jobs.push((
            PartKind::Image,
            String::new(),
            part_args(a, Some(p.clone()), None, None),
        ));
    }
    for (mount, dir) in &a.trees {
        jobs.push((
            PartKind::Tree,
            mount.clone(),
            part_args(a, None, Some(dir.clone()), None),
        ));
    }
    if let Some((mount, image)) = &a.volume {
        jobs.push((
            PartKind::Volume,
            mount.clone(),
            part_args(a, None, None, Some(image.clone())),
        ));
    }
    if jobs.is_empty() {
        bail!("give the environment's parts: --image PATH, --tree MOUNT=DIR, --volume MOUNT=IMAGE");
    }
    let pushes: Vec<Pushing<'_>> = jobs
        .iter()
        .map(|(kind, mount, args)| push_part(&remote, *kind, mount, args, env))
        .collect();
    let done = futures::future::try_join_all(pushes).await;
    display.finish();
    let done = done?;
    let parts: Vec<pb::EnvironmentPart> = done
        .iter()
        .map(|(kind, mount, o)| pb::EnvironmentPart {
            kind: kind.name().into(),
            snapshot_id: o.committed.snapshot_id.clone(),
            mount: mount.clone(),
        })
        .collect();
    let args = part_args(a, None, None, None);
    let record = record_labels(&labels, a);
    let source = pb::push_header::Source::Environment(pb::EnvironmentHeader { parts });
    let mut head = header(&remote, &args, env, "environment".into(), source);
    head.labels = Some(pb::Labels {
        environment: record.environment.clone(),
        lab: record.lab.clone(),
        researcher: record.researcher.clone(),
        tags: record.tags.clone(),
        metadata: amber_server::serve::convert::wire_metadata(&record.metadata),
    });
    let (mut stream, _) = PushStream::open(&remote, head).await?;
    let Answer::Committed(committed) = stream.recv().await? else {
        bail!("the server answered out of protocol");
    };
    let shown = done
        .iter()
        .map(|(kind, mount, o)| {
            let mut v = part_json(
                *kind,
                mount,
                &o.committed.snapshot_id,
                o.committed.stats.unwrap_or_default().bytes_new,
            );
            if let Some(obj) = v.as_object_mut() {
                obj.insert("bytes_sent".into(), o.bytes_sent.into());
            }
            v
        })
        .collect();
    print_committed(g, &committed.snapshot_id, &record.environment, shown, started);
    Ok(ExitCode::SUCCESS)
}

fn push_part<'a>(
    remote: &'a Remote,
    kind: PartKind,
    mount: &'a str,
    args: &'a PushArgs,
    env: Option<&'a str>,
) -> Pushing<'a> {
    Box::pin(async move {
        let what = || format!("part {} {mount}", kind.name());
        let outcome = match kind {
            PartKind::Image => {
                let path = args.snap.image.as_deref().context("no image")?;
                super::push_image::push(remote, args, env, path)
                    .await
                    .with_context(what)?
            }
            PartKind::Tree => super::push_tree::push(remote, args, env, &args.snap.paths)
                .await
                .with_context(what)?,
            PartKind::Volume => {
                let path = args.snap.block.as_deref().context("no volume")?;
                super::push_volume::push(remote, args, env, path)
                    .await
                    .with_context(what)?
            }
        };
        if outcome.skipped > 0 {
            bail!(
                "part {} {mount}: {} paths could not be read; no environment snapshot was committed",
                kind.name(),
                outcome.skipped
            );
        }
        Ok((kind, mount.to_string(), outcome))
    })
}
