//! `amber forget`, `amber protect`, `amber unprotect`: retention, on the repository (with
//! its passphrase) or through `--server` (an admin token), printing the same documents.

use std::process::ExitCode;

use amber_engine::ops::forget::forget_with_progress;
use amber_engine::ops::progress::Step;
use amber_proto::v1 as pb;
use amber_server::serve::retention;
use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::{ForgetArgs, Global};
use crate::client::{Remote, block_on, failed};
use crate::context;
use crate::output::{StepPrinter, emit};

/// Runs `amber forget`.
///
/// # Errors
/// An empty policy or a bad `--keep-within`; store, metadata and server errors.
pub fn run(g: &Global, args: &ForgetArgs) -> Result<ExitCode> {
    let req = pb::ForgetRequest {
        vault: String::new(),
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within_seconds: args
            .keep_within
            .as_deref()
            .map(|t| duration_secs("--keep-within", t))
            .transpose()?
            .unwrap_or(0),
        keep_tags: args.keep_tag.clone(),
        dry_run: args.dry_run,
    };
    if retention::policy(&req).is_empty() {
        bail!("give at least one --keep-* option: this policy would remove every snapshot that is not protected");
    }
    let steps = StepPrinter::new("forget");
    let done = if g.server.is_some() {
        remote_forget(g, req, &steps)?
    } else {
        let repo = context::open(g)?;
        let show = |s: Step| steps.show(s.phase, s.done, s.total);
        let report = forget_with_progress(&repo, &retention::policy(&req), args.dry_run, &show)?;
        retention::report_to_wire(&report, args.dry_run)
    };
    steps.finish();
    emit(g.json, &report_json(&done), || report_text(&done));
    Ok(ExitCode::SUCCESS)
}

/// `amber forget --server`: the same run through `Admin/Forget`, its progress shown.
fn remote_forget(g: &Global, mut req: pb::ForgetRequest, steps: &StepPrinter) -> Result<pb::ForgetResponse> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        req.vault = remote.vault.clone();
        let mut stream = remote
            .admin()
            .forget(remote.request(req))
            .await
            .map_err(|s| failed("cannot forget", &s))?
            .into_inner();
        while let Some(event) = stream.message().await.map_err(|s| failed("forgetting failed", &s))? {
            if let Some(s) = event.step {
                steps.show(&s.phase, s.done, s.total);
            }
            if let Some(done) = event.done {
                return Ok(done);
            }
        }
        bail!("the server ended the forget without its report")
    })
}

/// Runs `amber protect` (`on`) or `amber unprotect`.
///
/// # Errors
/// An unknown snapshot; store and server errors.
pub fn protect(g: &Global, snapshot: &str, on: bool) -> Result<ExitCode> {
    let mut req = pb::ProtectRequest {
        vault: String::new(),
        snapshot: snapshot.to_string(),
        protect: on,
        environment: g.env.clone().unwrap_or_default(),
    };
    let done = if g.server.is_some() {
        block_on(async {
            let remote = Remote::connect(g).await?;
            req.vault = remote.vault.clone();
            Ok(remote
                .admin()
                .protect(remote.request(req))
                .await
                .map_err(|s| failed("cannot change the protection", &s))?
                .into_inner())
        })?
    } else {
        let repo = context::open(g)?;
        let (id, _) = repo.resolve_snapshot(snapshot, g.env.as_deref())?;
        amber_engine::ops::forget::set_protected(&repo, id, on)?;
        pb::ProtectResponse {
            snapshot: id.to_string(),
            protected: on,
        }
    };
    context::audit_target(&done.snapshot);
    let doc = json!({ "snapshot": done.snapshot, "protected": done.protected });
    emit(g.json, &doc, || {
        let state = if done.protected {
            "protected"
        } else {
            "no longer protected"
        };
        format!("snapshot {} {state}", done.snapshot)
    });
    Ok(ExitCode::SUCCESS)
}

/// `7d`, `2w`, `36h`, `1y6m`, `30s` as seconds (y = 365 days, m = 30 days, w, d, h, s),
/// for the option `flag`.
pub(crate) fn duration_secs(flag: &str, text: &str) -> Result<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let per: u64 = match c {
            'y' => 365 * 86_400,
            'm' => 30 * 86_400,
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            's' => 1,
            _ => bail!("{flag} {text:?}: use numbers with y, m, w, d, h or s (`7d`, `1y6m`)"),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag} {text:?}: a unit without a number"))?;
        total = total.saturating_add(n.saturating_mul(per));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        bail!("{flag} {text:?}: every number needs a unit (y, m, w, d, h or s)");
    }
    Ok(total)
}

fn report_json(r: &pb::ForgetResponse) -> Value {
    let kept: Vec<Value> = r
        .kept
        .iter()
        .map(|k| json!({ "id": k.id, "group": k.group, "reasons": k.reasons }))
        .collect();
    let removed: Vec<Value> = r
        .removed
        .iter()
        .map(|x| json!({ "id": x.id, "group": x.group }))
        .collect();
    json!({ "dry_run": r.dry_run, "kept": kept, "removed": removed })
}

fn report_text(r: &pb::ForgetResponse) -> String {
    let short = |id: &str| id.get(..12).unwrap_or(id).to_string();
    let mut out = Vec::new();
    for k in &r.kept {
        out.push(format!(
            "keep   {}  {}  ({})",
            short(&k.id),
            k.group,
            k.reasons.join(", ")
        ));
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for x in &r.removed {
        out.push(format!("{verb} {}  {}", short(&x.id), x.group));
    }
    out.push(format!("{} kept, {} {verb}", r.kept.len(), r.removed.len()));
    out.join("\n")
}
