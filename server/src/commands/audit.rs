//! `amber audit`: a vault's audit log, read from its store (with the passphrase) or from a
//! server (with an admin token), every chain checked.

use std::process::ExitCode;

use amber_engine::repo::audit::{AuditLog, read_audit};
use amber_proto::v1 as pb;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::Global;
use crate::client::{Remote, block_on, failed};
use crate::context;
use crate::output::{emit, put_time, time_text};

/// A log as both modes print it.
#[derive(Default)]
struct Listing {
    records: Vec<pb::AuditRecord>,
    problems: Vec<pb::AuditProblem>,
}

/// Runs `amber audit` on the repository, or on `--server`.
///
/// # Errors
/// A bad `--since`; store, connection and server errors.
pub fn run(g: &Global, since: Option<&str>) -> Result<ExitCode> {
    let since_ms = since.map(parse_since).transpose()?.unwrap_or(0);
    let listing = if g.server.is_some() {
        remote(g, since_ms)?
    } else {
        local(g, since_ms)?
    };
    print(g, &listing);
    if listing.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(crate::commands::EXIT_INCOMPLETE))
    }
}

fn local(g: &Global, since_ms: i64) -> Result<Listing> {
    let repo = context::open(g)?;
    let since = (since_ms > 0).then_some(since_ms);
    let log = read_audit(repo.backend().as_ref(), &repo.keys().audit_key, since)?;
    Ok(wire(log))
}

fn remote(g: &Global, since_ms: i64) -> Result<Listing> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::ListAuditRequest {
            vault: remote.vault.clone(),
            since_unix_ms: since_ms,
        };
        let mut stream = remote
            .admin()
            .list_audit(remote.request(req))
            .await
            .map_err(|s| failed("cannot read the audit log", &s))?
            .into_inner();
        let mut listing = Listing::default();
        while let Some(batch) = stream
            .message()
            .await
            .map_err(|s| failed("reading the audit log failed", &s))?
        {
            listing.records.extend(batch.records);
            listing.problems.extend(batch.problems);
        }
        Ok(listing)
    })
}

/// The engine's log in the wire's terms, so both modes print through one function.
fn wire(log: AuditLog) -> Listing {
    let records = log
        .entries
        .into_iter()
        .map(|e| pb::AuditRecord {
            time_unix_ms: e.record.time_unix_ms,
            writer: format!("{:016x}", e.writer),
            seq: e.record.seq,
            request_id: e.record.event.request_id,
            token_id: e.record.event.token_id,
            role: e.record.event.role,
            call: e.record.event.call,
            target: e.record.event.target,
            result: e.record.event.result,
            detail: e.record.event.detail,
        })
        .collect();
    let problems = log
        .problems
        .into_iter()
        .map(|p| pb::AuditProblem {
            key: p.key,
            detail: p.detail,
        })
        .collect();
    Listing { records, problems }
}

fn record_json(r: &pb::AuditRecord) -> Value {
    let mut obj = Map::new();
    put_time(&mut obj, "time", r.time_unix_ms.saturating_mul(1_000_000));
    for (key, value) in [
        ("writer", &r.writer),
        ("request_id", &r.request_id),
        ("token_id", &r.token_id),
        ("role", &r.role),
        ("call", &r.call),
        ("target", &r.target),
        ("result", &r.result),
        ("detail", &r.detail),
    ] {
        obj.insert(key.into(), json!(value));
    }
    obj.insert("seq".into(), json!(r.seq));
    Value::Object(obj)
}

fn print(g: &Global, listing: &Listing) {
    for p in &listing.problems {
        eprintln!("amber: audit log damaged at {}: {}", p.key, p.detail);
    }
    let problems: Vec<Value> = listing
        .problems
        .iter()
        .map(|p| json!({"key": p.key, "detail": p.detail}))
        .collect();
    let value = json!({
        "records": listing.records.iter().map(record_json).collect::<Vec<_>>(),
        "problems": problems,
    });
    emit(g.json, &value, || {
        listing
            .records
            .iter()
            .map(|r| {
                let actor = if r.token_id.is_empty() {
                    r.role.clone()
                } else {
                    format!("{} {}", r.role, r.token_id)
                };
                let detail = if r.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.detail.replace('\n', " "))
                };
                format!(
                    "{}  {:<24} {:<36} {:<20} {}{detail}",
                    time_text(r.time_unix_ms.saturating_mul(1_000_000)),
                    actor,
                    r.call,
                    r.result,
                    r.target
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}

/// `--since`: an age (`90m`, `12h`, `7d`, `4w`) before now, or an RFC 3339 time
/// (`2026-12-01T08:00:00Z`), as milliseconds since the epoch.
fn parse_since(text: &str) -> Result<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("--since {text:?}: give an age like 12h, 7d, 4w, or a time like 2026-12-01T08:00:00Z"),
    };
    let n: i64 = number
        .parse()
        .with_context(|| format!("--since {text:?}: {number:?} is not a number"))?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    Ok(now_ms.saturating_sub(n.saturating_mul(seconds_per).saturating_mul(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ages_and_times() {
        assert_eq!(parse_since("2026-12-01T00:00:00Z").unwrap(), 1_796_083_200_000);
        let now = jiff::Timestamp::now().as_millisecond();
        let day = parse_since("1d").unwrap();
        assert!((now - 86_400_000 - day).abs() < 5_000);
        assert!(parse_since("7x").is_err());
        assert!(parse_since("d").is_err());
    }
}
