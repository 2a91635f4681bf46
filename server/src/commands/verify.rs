//! `amber verify` (also `amber check`): is every snapshot restorable? Prints what is
//! damaged or lost with what it affects; exits 0 when clean, 3 when damaged, 1 when the
//! check could not run.

use std::process::ExitCode;

use amber_engine::ops::display_path;
use amber_engine::ops::verify::{self, Affected, DataCheck, Problem, Subset, VerifyOptions, VerifyReport};
use anyhow::Result;
use serde_json::{Map, Value, json};

use crate::cli::{Global, VerifyArgs};
use crate::commands::EXIT_INCOMPLETE;
use crate::context;
use crate::output::{bytes, emit, put_path};

/// Runs `amber verify` on the repository.
///
/// # Errors
/// A bad `--read-data-subset`; when the store or the index cannot be read at all.
pub fn run(g: &Global, args: &VerifyArgs) -> Result<ExitCode> {
    let read_data = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => DataCheck::Subset(Subset::parse(s)?),
        (None, true) => DataCheck::All,
        (None, false) => DataCheck::None,
    };
    let opts = VerifyOptions {
        read_data,
        warm_up: args.warm_up,
    };
    let repo = context::open(g)?;
    let report = verify::verify(&repo, &opts)?;
    for p in &report.problems {
        eprintln!("amber: {}", problem_line(p));
    }
    emit(g.json, &report_json(&report), || report_text(&report));
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    })
}

fn report_json(r: &VerifyReport) -> Value {
    json!({
        "clean": r.clean(),
        "snapshots": r.snapshots,
        "chunks": r.chunks,
        "packs": r.packs,
        "packs_read": r.packs_read,
        "bytes_read": r.bytes_read,
        "cold_not_read": r.cold_not_read,
        "warm_up_requested": r.warm_up_requested,
        "unreferenced_packs": r.unreferenced_packs,
        "damaged_snapshots": r.damaged_snapshots.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "problems": r.problems.iter().map(problem_json).collect::<Vec<_>>(),
    })
}

fn problem_json(p: &Problem) -> Value {
    let mut obj = Map::new();
    obj.insert("kind".into(), json!(p.kind.name()));
    obj.insert("pack".into(), json!(p.pack.map(|id| id.to_string())));
    obj.insert("object".into(), json!(p.object));
    obj.insert("detail".into(), json!(p.detail));
    obj.insert("affected".into(), p.affected.iter().map(affected_json).collect());
    obj.insert("affected_total".into(), json!(p.affected_total));
    Value::Object(obj)
}

fn affected_json(a: &Affected) -> Value {
    let mut obj = Map::new();
    obj.insert("snapshot".into(), json!(a.snapshot.to_string()));
    put_path(&mut obj, "path", &a.path);
    if let Some((offset, len)) = a.range {
        obj.insert("offset".into(), json!(offset));
        obj.insert("length".into(), json!(len));
    }
    Value::Object(obj)
}

/// One line per problem for stderr: what, where, and how much it affects.
fn problem_line(p: &Problem) -> String {
    let mut line = p.kind.name().to_string();
    if let Some(pack) = &p.pack {
        line.push_str(&format!(" in pack {pack}"));
    }
    if let Some(object) = p.object.as_deref().filter(|o| !o.is_empty()) {
        line.push_str(&format!(" ({object})"));
    }
    line.push_str(&format!(": {}", p.detail));
    if p.affected_total > 0 {
        line.push_str(&format!("; affects {} place(s)", p.affected_total));
    }
    line
}

fn report_text(r: &VerifyReport) -> String {
    let mut out = format!(
        "{} snapshots, {} packs; {} packs read ({})",
        r.snapshots,
        r.packs,
        r.packs_read,
        bytes(r.bytes_read)
    );
    if r.cold_not_read > 0 {
        out.push_str(&format!(
            "; {} archived packs not read ({} restores asked for)",
            r.cold_not_read, r.warm_up_requested
        ));
    }
    if r.clean() {
        out.push_str("\nno problems found");
        return out;
    }
    out.push_str(&format!(
        "\n{} problems; {} snapshots affected:",
        r.problems.len(),
        r.damaged_snapshots.len()
    ));
    for p in &r.problems {
        out.push_str(&format!("\n  {}", problem_line(p)));
        for a in &p.affected {
            let range = a.range.map_or(String::new(), |(o, l)| format!(" bytes {o}..{}", o + l));
            out.push_str(&format!("\n    {} {}{range}", a.snapshot, display_path(&a.path)));
        }
        let more = p.affected_total.saturating_sub(p.affected.len() as u64);
        if more > 0 {
            out.push_str(&format!("\n    … and {more} more"));
        }
    }
    out
}
