//! Restoring archived data through a server: before reading a snapshot, the client asks
//! `Restore/ColdRestore` for its cold plan. Not ready: the plan is printed and the exit
//! status is 4, as locally; `--warm-up` starts the server-side restore job, `--resume`
//! polls it (backing off from 1 s to 5 minutes, up to `--wait-seconds`) until every pack
//! is readable. The job lives in the vault's store, so a restart of the server (or another
//! server of the cluster) answers for it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use amber_proto::v1 as pb;
use anyhow::Result;
use tonic::Code;

use crate::cli::{ColdArgs, Global};
use crate::client::{Remote, block_on, failed};
use crate::commands::tier::{print_cold, retrieval};

/// The longest pause between two polls.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// `None` when the restore of `snapshot` may read now; else the exit code after the plan
/// is printed.
///
/// # Errors
/// A bad `--retrieval`; connection and server errors.
pub fn gate(g: &Global, snapshot: &str, args: &ColdArgs) -> Result<Option<ExitCode>> {
    retrieval(&args.retrieval)?;
    block_on(async {
        let remote = Remote::connect(g).await?;
        let ask = |warm_up: bool| pb::ColdRestoreRequest {
            vault: remote.vault.clone(),
            snapshot: snapshot.to_string(),
            environment: g.env.clone().unwrap_or_default(),
            warm_up,
            retrieval: args.retrieval.clone(),
            days: args.warm_days,
        };
        let mut job = match remote.restore().cold_restore(remote.request(ask(args.warm_up))).await {
            Ok(r) => r.into_inner(),
            // A server from before cold restores: its reads say what is archived.
            Err(s) if s.code() == Code::Unimplemented => return Ok(None),
            Err(s) => return Err(failed("cannot plan the restore", &s)),
        };
        let deadline = Instant::now() + Duration::from_secs(args.wait_seconds);
        let mut pause = Duration::from_secs(1);
        while args.resume && !job.ready && !never_asked(&job) && Instant::now() < deadline {
            let waiting = job.archived.iter().filter(|p| p.status != "readable").count();
            eprintln!("amber: waiting for {waiting} archived packs to be restored");
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(MAX_PAUSE);
            job = remote
                .restore()
                .cold_restore(remote.request(ask(false)))
                .await
                .map_err(|s| failed("cannot read the restore job", &s))?
                .into_inner();
        }
        Ok((!job.ready).then(|| print_cold(g, &job, args.warm_up)))
    })
}

/// Some pack was never asked to be restored: waiting would never end.
fn never_asked(job: &pb::ColdRestoreJob) -> bool {
    job.archived.iter().any(|p| p.status == "archived")
}
