//! `amber forget`, `amber protect`, `amber unprotect`: retention on a repository.

use std::process::ExitCode;

use amber_engine::ops::forget::{self, ForgetReport, Policy};
use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::{ForgetArgs, Global};
use crate::context;
use crate::output::emit;

/// Runs `amber forget`.
///
/// # Errors
/// An empty policy or a bad `--keep-within`; store and metadata errors.
pub fn run(g: &Global, args: &ForgetArgs) -> Result<ExitCode> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within_secs: args.keep_within.as_deref().map(duration_secs).transpose()?,
        tags: args.keep_tag.clone(),
    };
    if policy.is_empty() {
        bail!("give at least one --keep-* option: this policy would remove every snapshot that is not protected");
    }
    let repo = context::open(g)?;
    let report = forget::forget(&repo, &policy, args.dry_run)?;
    emit(g.json, &report_json(&report, args.dry_run), || {
        report_text(&report, args.dry_run)
    });
    Ok(ExitCode::SUCCESS)
}

/// Runs `amber protect` (`on`) or `amber unprotect`.
///
/// # Errors
/// An unknown snapshot; store errors.
pub fn protect(g: &Global, snapshot: &str, on: bool) -> Result<ExitCode> {
    let repo = context::open(g)?;
    let (id, _) = repo.resolve_snapshot(snapshot, g.env.as_deref())?;
    context::audit_target(&id.to_string());
    forget::set_protected(&repo, id, on)?;
    let doc = json!({ "snapshot": id.to_string(), "protected": on });
    emit(g.json, &doc, || {
        format!(
            "snapshot {} {}",
            id,
            if on { "protected" } else { "no longer protected" }
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `7d`, `2w`, `36h`, `1y6m` as seconds (y = 365 days, m = 30 days, w, d, h).
fn duration_secs(text: &str) -> Result<u64> {
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
            _ => bail!("--keep-within {text:?}: use numbers with y, m, w, d or h (`7d`, `1y6m`)"),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| anyhow::anyhow!("--keep-within {text:?}: a unit without a number"))?;
        total = total.saturating_add(n.saturating_mul(per));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        bail!("--keep-within {text:?}: every number needs a unit (y, m, w, d or h)");
    }
    Ok(total)
}

fn report_json(r: &ForgetReport, dry_run: bool) -> Value {
    let kept: Vec<Value> = r
        .kept
        .iter()
        .map(|k| json!({ "id": k.id.to_string(), "group": k.group, "reasons": k.reasons }))
        .collect();
    let removed: Vec<Value> = r
        .removed
        .iter()
        .map(|(id, group)| json!({ "id": id.to_string(), "group": group }))
        .collect();
    json!({ "dry_run": dry_run, "kept": kept, "removed": removed })
}

fn report_text(r: &ForgetReport, dry_run: bool) -> String {
    let mut out = Vec::new();
    for k in &r.kept {
        out.push(format!(
            "keep   {}  {}  ({})",
            &k.id.to_string()[..12],
            k.group,
            k.reasons.join(", ")
        ));
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for (id, group) in &r.removed {
        out.push(format!("{verb} {}  {group}", &id.to_string()[..12]));
    }
    out.push(format!("{} kept, {} {verb}", r.kept.len(), r.removed.len()));
    out.join("\n")
}
