//! `amber verify` (also `amber check`): is every snapshot restorable? On the repository
//! (with the passphrase) or through `--server` (an admin token), the same report: what is
//! damaged or lost with what it affects; exits 0 when clean, 3 when damaged, 1 when the
//! check could not run.

use std::process::ExitCode;

use amber_engine::ops::display_path;
use amber_engine::ops::progress::Step;
use amber_engine::ops::verify::verify_with_progress;
use amber_proto::v1 as pb;
use amber_server::serve::verify::{options, to_wire};
use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use crate::cli::{Global, VerifyArgs};
use crate::client::{Remote, block_on, failed};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{StepPrinter, bytes, emit, put_path};

/// A verification as both modes print it.
#[derive(Default)]
struct Found {
    summary: pb::VerifySummary,
    problems: Vec<pb::VerifyProblem>,
}

impl Found {
    fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs `amber verify` on the repository, or on `--server`.
///
/// # Errors
/// A bad `--read-data-subset`; when the store, the index or the server cannot be used.
pub fn run(g: &Global, args: &VerifyArgs) -> Result<ExitCode> {
    let subset = args.read_data_subset.clone().unwrap_or_default();
    let steps = StepPrinter::new("verify");
    let found = if g.server.is_some() {
        remote(g, args, &subset, &steps)?
    } else {
        let opts = options(args.read_data, &subset, args.warm_up)?;
        let repo = context::open(g)?;
        let show = |s: Step| steps.show(s.phase, s.done, s.total);
        let (summary, problems) = to_wire(&verify_with_progress(&repo, &opts, &show)?);
        Found { summary, problems }
    };
    steps.finish();
    for p in &found.problems {
        eprintln!("amber: {}", problem_line(p));
    }
    emit(g.json, &report_json(&found), || report_text(&found));
    Ok(if found.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn remote(g: &Global, args: &VerifyArgs, subset: &str, steps: &StepPrinter) -> Result<Found> {
    block_on(async {
        let remote = Remote::connect(g).await?;
        let req = pb::VerifyRequest {
            vault: remote.vault.clone(),
            read_data: args.read_data,
            read_data_subset: subset.to_string(),
            warm_up: args.warm_up,
        };
        let mut stream = remote
            .admin()
            .verify(remote.request(req))
            .await
            .map_err(|s| failed("cannot verify the vault", &s))?
            .into_inner();
        let mut found = Found::default();
        let mut finished = false;
        while let Some(msg) = stream.message().await.map_err(|s| failed("verifying failed", &s))? {
            if let Some(s) = &msg.step {
                steps.show(&s.phase, s.done, s.total);
            }
            found.problems.extend(msg.problem);
            if let Some(summary) = msg.summary {
                found.summary = summary;
                finished = true;
            }
        }
        if !finished {
            bail!("the server ended the verification without its summary");
        }
        Ok(found)
    })
}

fn report_json(f: &Found) -> Value {
    let s = &f.summary;
    json!({
        "clean": f.clean(),
        "snapshots": s.snapshots,
        "chunks": s.chunks,
        "packs": s.packs,
        "packs_read": s.packs_read,
        "bytes_read": s.bytes_read,
        "cold_not_read": s.cold_not_read,
        "warm_up_requested": s.warm_up_requested,
        "unreferenced_packs": s.unreferenced_packs,
        "damaged_snapshots": s.damaged_snapshots,
        "problems": f.problems.iter().map(problem_json).collect::<Vec<_>>(),
        "marked": s.marked.iter().map(marked_json).collect::<Vec<_>>(),
        "marked_total": s.marked_total,
        "healed": s.healed,
    })
}

fn marked_json(m: &pb::VerifyMarked) -> Value {
    let mut obj = Map::new();
    obj.insert("snapshot".into(), json!(m.snapshot));
    put_path(&mut obj, "path", &m.path);
    obj.insert("lost_bytes".into(), json!(m.lost_bytes));
    Value::Object(obj)
}

fn or_null(text: &str) -> Value {
    if text.is_empty() { Value::Null } else { json!(text) }
}

fn problem_json(p: &pb::VerifyProblem) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(p.kind));
    obj.insert("pack".into(), or_null(&p.pack));
    obj.insert("object".into(), or_null(&p.object));
    obj.insert("detail".into(), json!(p.detail));
    obj.insert("affected".into(), p.affected.iter().map(place_json).collect());
    obj.insert("affected_total".into(), json!(p.affected_total));
    Value::Object(obj)
}

fn place_json(a: &pb::VerifyPlace) -> Value {
    let mut obj = Map::new();
    obj.insert("snapshot".into(), json!(a.snapshot));
    put_path(&mut obj, "path", &a.path);
    if a.has_range {
        obj.insert("offset".into(), json!(a.offset));
        obj.insert("length".into(), json!(a.length));
    }
    Value::Object(obj)
}

/// One line per problem for stderr: what, where, and how much it affects.
fn problem_line(p: &pb::VerifyProblem) -> String {
    let mut line = p.kind.clone();
    if !p.pack.is_empty() {
        line.push_str(&format!(" in pack {}", p.pack));
    }
    if !p.object.is_empty() {
        line.push_str(&format!(" ({})", p.object));
    }
    line.push_str(&format!(": {}", p.detail));
    if p.affected_total > 0 {
        line.push_str(&format!("; affects {} place(s)", p.affected_total));
    }
    line
}

fn report_text(f: &Found) -> String {
    let s = &f.summary;
    let mut out = format!(
        "{} snapshots, {} packs; {} packs read ({})",
        s.snapshots,
        s.packs,
        s.packs_read,
        bytes(s.bytes_read)
    );
    if s.cold_not_read > 0 {
        out.push_str(&format!(
            "; {} archived packs not read ({} restores asked for)",
            s.cold_not_read, s.warm_up_requested
        ));
    }
    if s.marked_total > 0 || s.healed > 0 {
        out.push_str(&format!(
            "\n{} entries marked damaged by a repair are still short of data; {} have healed",
            s.marked_total, s.healed
        ));
    }
    if f.clean() {
        out.push_str("\nno problems found");
        return out;
    }
    out.push_str(&format!(
        "\n{} problems; {} snapshots affected:",
        f.problems.len(),
        s.damaged_snapshots.len()
    ));
    for p in &f.problems {
        out.push_str(&format!("\n  {}", problem_line(p)));
        for a in &p.affected {
            let range = if a.has_range {
                format!(" bytes {}..{}", a.offset, a.offset + a.length)
            } else {
                String::new()
            };
            out.push_str(&format!("\n    {} {}{range}", a.snapshot, display_path(&a.path)));
        }
        let more = p.affected_total.saturating_sub(p.affected.len() as u64);
        if more > 0 {
            out.push_str(&format!("\n    … and {more} more"));
        }
    }
    out
}
