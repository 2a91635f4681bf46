//! `amber tier plan|apply`, and the gate every local restore passes: a restore that needs
//! archived packs prints its cold plan and exits with [`EXIT_COLD`] unless told to warm
//! them up and wait (`--warm-up`, `--resume`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use amber_engine::backend::{PutMode, RetrievalTier, StorageClass};
use amber_engine::ops::cold;
use amber_engine::ops::tier::{self, ApplyReport, PriceTable, TierPlan, TierPolicy};
use amber_engine::repo::{Repository, now_secs};
use amber_proto::v1 as pb;
use amber_server::serve::cold::to_wire;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cli::{ColdArgs, Global, TierCommand};
use crate::commands::EXIT_COLD;
use crate::context;
use crate::output::emit;

/// The clock tiering reads: `AMBER_TEST_NOW` (seconds since the epoch; for tests, which
/// move time forward without touching the system clock), else the system clock.
fn now() -> Result<i64> {
    match std::env::var("AMBER_TEST_NOW") {
        Ok(v) if !v.is_empty() => v.parse().with_context(|| format!("AMBER_TEST_NOW={v} is not a number")),
        _ => Ok(now_secs()),
    }
}

/// Runs `tier plan` or `tier apply`.
///
/// # Errors
/// A bad policy or price table; store errors.
pub fn run(g: &Global, cmd: &TierCommand) -> Result<ExitCode> {
    let (args, apply, force) = match cmd {
        TierCommand::Plan(a) => (a, false, false),
        TierCommand::Apply { args, force } => (args, true, *force),
    };
    let policy = TierPolicy::parse(&args.policy)?;
    let prices = load_prices(args.prices.as_deref())?;
    let repo = context::open(g)?;
    let now = now()?;
    let plan = tier::plan(&repo, &policy, &prices, now)?;
    let mut doc = plan_doc(&plan, &policy, now);
    if !apply {
        emit(g.json, &doc, || plan_text(&plan, &policy));
        return Ok(ExitCode::SUCCESS);
    }
    let report = tier::apply(&repo, &plan, force)?;
    record(&repo, &report, now)?;
    doc = json!({
        "plan": doc,
        "moved": report.moved.len(),
        "held_by_minimum": report.held_by_minimum.len(),
        "held_archived": report.held_archived.len(),
        "early_cost": report.early_cost,
        "forced": force,
    });
    emit(g.json, &doc, || apply_text(&report));
    Ok(ExitCode::SUCCESS)
}

fn load_prices(path: Option<&Path>) -> Result<PriceTable> {
    let mut table = PriceTable::default();
    let Some(path) = path else { return Ok(table) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read price table {}", path.display()))?;
    let parsed: BTreeMap<String, BTreeMap<String, f64>> =
        toml::from_str(&text).with_context(|| format!("invalid price table {}", path.display()))?;
    for (section, rows) in parsed {
        let target = match section.as_str() {
            "storage" => &mut table.storage,
            "retrieval_standard" => &mut table.retrieval_standard,
            "retrieval_bulk" => &mut table.retrieval_bulk,
            other => bail!("price table {}: unknown section [{other}]", path.display()),
        };
        for (class, price) in rows {
            target.insert(StorageClass::parse(&class), price);
        }
    }
    Ok(table)
}

fn class_bytes(map: &BTreeMap<StorageClass, u64>) -> Value {
    Value::Array(
        map.iter()
            .map(|(c, b)| json!({ "class": c.as_str(), "bytes": b }))
            .collect(),
    )
}

fn plan_doc(plan: &TierPlan, policy: &TierPolicy, now: i64) -> Value {
    let moves: Vec<Value> = plan
        .moves
        .iter()
        .map(|m| {
            json!({
                "pack": m.key,
                "bytes": m.size,
                "from": m.from.as_str(),
                "to": m.to.as_str(),
                "age_days": m.age_days,
                "days_in_class": m.days_in_class,
                "minimum_left_days": m.minimum_left_days,
                "early_cost": m.early_cost,
                "needs_restore": m.needs_restore,
            })
        })
        .collect();
    json!({
        "policy": policy.to_string(),
        "now_unix": now,
        "moves": moves,
        "bytes_before": class_bytes(&plan.bytes_before),
        "bytes_after": class_bytes(&plan.bytes_after),
        "monthly_cost_before": plan.monthly_before,
        "monthly_cost_after": plan.monthly_after,
        "data_packs": plan.data_packs,
        "unreferenced_packs": plan.unreferenced_packs,
    })
}

fn plan_text(plan: &TierPlan, policy: &TierPolicy) -> String {
    let mut out = format!("policy: {policy}\n");
    for m in &plan.moves {
        out.push_str(&format!(
            "{}  {} → {}  {} bytes, newest use {} days ago{}\n",
            m.key,
            m.from,
            m.to,
            m.size,
            m.age_days,
            if m.minimum_left_days > 0 {
                format!(
                    ", {} days of minimum duration left (${:.4} to move early)",
                    m.minimum_left_days, m.early_cost
                )
            } else {
                String::new()
            }
        ));
    }
    for (title, map) in [("before", &plan.bytes_before), ("after", &plan.bytes_after)] {
        let parts: Vec<String> = map.iter().map(|(c, b)| format!("{c} {b}")).collect();
        out.push_str(&format!("bytes {title}: {}\n", parts.join(", ")));
    }
    out.push_str(&format!(
        "monthly storage cost: ${:.6} before, ${:.6} after; {} packs to move",
        plan.monthly_before,
        plan.monthly_after,
        plan.moves.len()
    ));
    out
}

fn apply_text(r: &ApplyReport) -> String {
    format!(
        "moved {} packs; held {} within their minimum storage duration (use --force), {} archived; early-move cost ${:.4}",
        r.moved.len(),
        r.held_by_minimum.len(),
        r.held_archived.len(),
        r.early_cost
    )
}

/// Records the moves in the store: `tiering/<unix seconds, 16 hex>-<8 random bytes hex>`,
/// one JSON line per moved pack (no plaintext: pack keys and classes only).
fn record(repo: &Repository, report: &ApplyReport, now: i64) -> Result<()> {
    if report.moved.is_empty() {
        return Ok(());
    }
    let mut body = String::new();
    for m in &report.moved {
        body.push_str(
            &json!({ "time_unix": now, "pack": m.key, "from": m.from.as_str(), "to": m.to.as_str() }).to_string(),
        );
        body.push('\n');
    }
    let rand: [u8; 8] = amber_engine::crypto::random_array()?;
    let key = format!("tiering/{:016x}-{}", now.max(0), hex::encode(rand));
    repo.backend().put(&key, body.as_bytes(), PutMode::CreateOnly)?;
    Ok(())
}

/// Passes a local restore of `name` through the cold check: `None` when it may run now
/// (nothing archived, or everything warmed up), else the exit code after the plan is printed.
///
/// # Errors
/// Store and metadata errors; a bad `--retrieval`.
pub fn cold_gate(g: &Global, name: &str, args: &ColdArgs) -> Result<Option<ExitCode>> {
    let tier = retrieval(&args.retrieval)?;
    let repo = context::open_read(g)?;
    let (id, _) = repo.resolve_snapshot(name, g.env.as_deref())?;
    let mut plan = cold::plan(&repo, id)?;
    if plan.ready() {
        return Ok(None);
    }
    let asked = if args.warm_up {
        cold::warm_up(&repo, &plan, args.warm_days, tier)?
    } else {
        0
    };
    cold::refresh(&repo, &mut plan)?;
    if plan.ready() {
        return Ok(None);
    }
    let limit = Duration::from_secs(args.wait_seconds);
    let mut say = |n: usize| eprintln!("amber: waiting for {n} archived packs to be restored");
    if args.resume && cold::wait_until_ready(&repo, &mut plan, limit, Duration::from_secs(1), &mut say)? {
        return Ok(None);
    }
    Ok(Some(print_cold(g, &to_wire(id, &plan, tier, asked, 0), args.warm_up)))
}

/// `--retrieval`: `bulk` or `standard`.
///
/// # Errors
/// Anything else.
pub fn retrieval(text: &str) -> Result<RetrievalTier> {
    match text {
        "bulk" => Ok(RetrievalTier::Bulk),
        "standard" => Ok(RetrievalTier::Standard),
        other => bail!("--retrieval {other}: use bulk or standard"),
    }
}

/// Prints a cold plan that is not ready (locally or from a server alike) and returns
/// [`EXIT_COLD`].
pub fn print_cold(g: &Global, job: &pb::ColdRestoreJob, warmed: bool) -> ExitCode {
    let packs: Vec<Value> = job
        .archived
        .iter()
        .map(|p| json!({ "pack": p.pack, "bytes": p.bytes, "class": p.class, "status": p.status }))
        .collect();
    let doc = json!({
        "snapshot": job.snapshot,
        "packs_needed": job.packs_needed,
        "archived": packs,
        "bytes_waiting": job.bytes_waiting,
        "retrieval": job.retrieval,
        "estimated_cost": job.estimated_cost,
        "expected_wait": job.expected_wait,
        "requested": job.requested,
    });
    emit(g.json, &doc, || cold_text(job));
    let waiting = job.archived.iter().filter(|p| p.status != "readable").count();
    eprintln!(
        "amber: snapshot {} needs {waiting} archived packs ({} bytes) that are not readable yet: {}",
        job.snapshot.get(..8).unwrap_or(&job.snapshot),
        job.bytes_waiting,
        if warmed {
            "restores were requested; run again with --resume"
        } else {
            "run again with --warm-up, then --resume"
        }
    );
    ExitCode::from(EXIT_COLD)
}

fn cold_text(job: &pb::ColdRestoreJob) -> String {
    let waiting = job.archived.iter().filter(|p| p.status != "readable").count();
    format!(
        "cold restore plan: {waiting} of {} data packs archived, {} bytes to bring back; {} retrieval: ${:.4}, expected wait {}; {} restore requests sent",
        job.packs_needed, job.bytes_waiting, job.retrieval, job.estimated_cost, job.expected_wait, job.requested
    )
}
