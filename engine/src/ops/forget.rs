//! `amber forget`: which snapshots a retention policy keeps, and removing the others.
//!
//! Policies act on **units**: every snapshot that is not a part of another (an image's
//! layers and an environment's parts are parts). Units are grouped by environment name,
//! or, without one, by kind, host and source path; within a group the policy keeps, as
//! restic's `forget` does, the newest `last` snapshots, the newest of each of the newest
//! `hourly`/`daily`/`weekly`/`monthly`/`yearly` periods (UTC; weeks from Monday) that have
//! one, every snapshot within `within` of the group's newest, and every snapshot with a
//! kept tag. A protected snapshot is always kept. A part is kept while any kept snapshot
//! names it, and goes with the last one that did. Removing deletes snapshot objects only
//! (units first, then their parts, so an interruption never leaves a unit without a part);
//! the space comes back with compaction.

use crate::ops::progress::Step;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::backend::{BackendError, PutMode};
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::id::SnapshotId;
use crate::ops::reach::reach;
use crate::repo::Repository;
use crate::repo::layout::snapshot_key;

/// The store prefix of protection markers: `protected/<snapshot id>`, empty objects.
pub const PROTECTED_PREFIX: &str = "protected/";

/// What to keep. Nothing set keeps nothing but protected snapshots (and is refused by
/// the command line unless asked for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N.
    pub last: u32,
    /// The newest of each of the newest N hours that have a snapshot.
    pub hourly: u32,
    /// … days.
    pub daily: u32,
    /// … weeks.
    pub weekly: u32,
    /// … months.
    pub monthly: u32,
    /// … years.
    pub yearly: u32,
    /// Everything up to this many seconds older than the group's newest.
    pub within_secs: Option<u64>,
    /// Everything with one of these tags.
    pub tags: Vec<String>,
}

impl Policy {
    /// Whether the policy keeps anything at all.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within_secs.is_none()
            && self.tags.is_empty()
    }
}

/// A snapshot the policy keeps, with every reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its group.
    pub group: String,
    /// Why: `last`, `daily 2026-12-01`, `within`, `tag t`, `protected`, `part of <id>`.
    pub reasons: Vec<String>,
}

/// What forgetting decided (and, unless a dry run, did).
#[derive(Clone, Debug, Default)]
pub struct ForgetReport {
    /// Kept, oldest first.
    pub kept: Vec<Kept>,
    /// Removed (or, in a dry run, to be removed), units first, then parts.
    pub removed: Vec<(SnapshotId, String)>,
}

/// Decides what `policy` keeps and, unless `dry_run`, removes the rest.
///
/// # Errors
/// Store errors listing or deleting; metadata errors finding parts. A snapshot object
/// that cannot be read is neither kept nor removed (`amber verify` names it).
pub fn forget(repo: &Repository, policy: &Policy, dry_run: bool) -> Result<ForgetReport> {
    forget_with_progress(repo, policy, dry_run, &|_| {})
}

/// [`forget`], calling `progress` in phase `snapshots` (each snapshot read for the parts
/// it names) and `removed` (each snapshot object deleted; not in a dry run).
///
/// # Errors
/// As [`forget`].
pub fn forget_with_progress(
    repo: &Repository,
    policy: &Policy,
    dry_run: bool,
    progress: &dyn Fn(Step),
) -> Result<ForgetReport> {
    let list = repo.snapshot_list()?;
    let snaps: HashMap<SnapshotId, &Snapshot> = list.snapshots.iter().map(|(id, s)| (*id, s)).collect();
    let mut parts: HashMap<SnapshotId, Vec<SnapshotId>> = HashMap::new();
    let total = list.snapshots.len() as u64;
    for (done, (id, snap)) in (0..).zip(&list.snapshots) {
        progress(Step::new("snapshots", done, total));
        parts.insert(*id, parts_of(repo, snap)?);
    }
    progress(Step::new("snapshots", total, total));
    let is_part: HashSet<SnapshotId> = parts.values().flatten().copied().collect();
    let protected = protected(repo)?;
    let mut groups: BTreeMap<String, Vec<SnapshotId>> = BTreeMap::new();
    for (id, snap) in &list.snapshots {
        if !is_part.contains(id) {
            groups.entry(group_of(snap)).or_default().push(*id);
        }
    }
    let mut reasons: BTreeMap<SnapshotId, (String, Vec<String>)> = BTreeMap::new();
    for (group, mut ids) in groups {
        ids.sort_by_key(|id| std::cmp::Reverse(snaps.get(id).map_or(0, |s| s.time_ns)));
        for (id, why) in keep_in_group(&ids, &snaps, policy, &protected) {
            reasons
                .entry(id)
                .or_insert_with(|| (group.clone(), Vec::new()))
                .1
                .extend(why);
        }
    }
    keep_parts(&parts, &mut reasons);
    let report = decide(&list.snapshots, &is_part, reasons);
    if !dry_run {
        let total = report.removed.len() as u64;
        for (done, (id, _)) in (0..).zip(&report.removed) {
            progress(Step::new("removed", done, total));
            match repo.backend().delete(&snapshot_key(id)) {
                Ok(()) | Err(BackendError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        progress(Step::new("removed", total, total));
    }
    Ok(report)
}

/// The snapshots `snap` is made of: none unless it is an image or an environment. One
/// whose tree node is lost names none that can be known (its parts then stand as units of
/// their own), rather than stopping the retention of the whole vault.
fn parts_of(repo: &Repository, snap: &Snapshot) -> Result<Vec<SnapshotId>> {
    if !matches!(snap.source, SourceKind::Image | SourceKind::Environment) {
        return Ok(Vec::new());
    }
    match reach(repo, snap) {
        Ok(r) => Ok(r.parts),
        Err(e) if crate::repo::is_damage(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The kept with their reasons (oldest first) and the removed (units first).
fn decide(
    all: &[(SnapshotId, Snapshot)],
    is_part: &HashSet<SnapshotId>,
    mut reasons: BTreeMap<SnapshotId, (String, Vec<String>)>,
) -> ForgetReport {
    let mut report = ForgetReport::default();
    let mut removed_parts = Vec::new();
    for (id, snap) in all {
        match reasons.remove(id) {
            Some((group, reasons)) => report.kept.push(Kept {
                id: *id,
                group,
                reasons,
            }),
            None if is_part.contains(id) => removed_parts.push((*id, group_of(snap))),
            None => report.removed.push((*id, group_of(snap))),
        }
    }
    report.removed.extend(removed_parts);
    report
}

/// A part is kept while a kept snapshot names it (an image of an environment, its layers).
fn keep_parts(parts: &HashMap<SnapshotId, Vec<SnapshotId>>, reasons: &mut BTreeMap<SnapshotId, (String, Vec<String>)>) {
    let mut todo: Vec<SnapshotId> = reasons.keys().copied().collect();
    let mut seen: HashSet<SnapshotId> = todo.iter().copied().collect();
    while let Some(id) = todo.pop() {
        let group = reasons.get(&id).map(|r| r.0.clone()).unwrap_or_default();
        for part in parts.get(&id).into_iter().flatten() {
            let entry = reasons.entry(*part).or_insert_with(|| (group.clone(), Vec::new()));
            entry.1.push(format!("part of {id}"));
            if seen.insert(*part) {
                todo.push(*part);
            }
        }
    }
}

/// The group a unit is judged in.
fn group_of(snap: &Snapshot) -> String {
    if snap.environment.is_empty() {
        format!("{} {}:{}", snap.source.name(), snap.hostname, snap.source_path)
    } else {
        format!("environment {}", snap.environment)
    }
}

/// A kind of period: how many to keep, its name, and the period a time (seconds) is in.
type Period = (u32, &'static str, fn(i64) -> String);

/// What the policy keeps of one group (`ids` newest first), with why.
fn keep_in_group(
    ids: &[SnapshotId],
    snaps: &HashMap<SnapshotId, &Snapshot>,
    policy: &Policy,
    protected: &HashSet<SnapshotId>,
) -> Vec<(SnapshotId, Vec<String>)> {
    let time = |id: &SnapshotId| snaps.get(id).map_or(0, |s| s.time_ns);
    let newest = ids.first().map_or(0, time);
    let periods: [Period; 5] = [
        (policy.hourly, "hourly", |s| {
            format!("{} {:02}h", day(s), (s / 3600).rem_euclid(24))
        }),
        (policy.daily, "daily", day),
        (policy.weekly, "weekly", |s| {
            format!("week of {}", day(s - (s.div_euclid(86_400) + 3).rem_euclid(7) * 86_400))
        }),
        (policy.monthly, "monthly", |s| {
            day(s).get(..7).unwrap_or_default().to_string()
        }),
        (policy.yearly, "yearly", |s| {
            day(s).get(..4).unwrap_or_default().to_string()
        }),
    ];
    let mut seen_periods: Vec<BTreeSet<String>> = vec![BTreeSet::new(); periods.len()];
    let mut out = Vec::new();
    for (rank, id) in ids.iter().enumerate() {
        let snap = snaps.get(id);
        let secs = time(id).div_euclid(1_000_000_000);
        let mut why = Vec::new();
        if protected.contains(id) {
            why.push("protected".to_string());
        }
        if rank < policy.last as usize {
            why.push("last".to_string());
        }
        for ((count, name, bucket), seen) in periods.iter().zip(seen_periods.iter_mut()) {
            let key = bucket(secs);
            if seen.len() < *count as usize && !seen.contains(&key) {
                why.push(format!("{name} {key}"));
                seen.insert(key);
            }
        }
        if let Some(within) = policy.within_secs {
            let age = (newest - time(id)).div_euclid(1_000_000_000);
            if age >= 0 && age.unsigned_abs() <= within {
                why.push("within".to_string());
            }
        }
        for tag in &policy.tags {
            if snap.is_some_and(|s| s.tags.contains(tag)) {
                why.push(format!("tag {tag}"));
            }
        }
        if !why.is_empty() {
            out.push((*id, why));
        }
    }
    out
}

/// `YYYY-MM-DD` (UTC) of a time in seconds since the epoch.
fn day(secs: i64) -> String {
    crate::civil::date_of(secs)
}

/// Protected snapshots.
///
/// # Errors
/// Store errors listing.
pub fn protected(repo: &Repository) -> Result<HashSet<SnapshotId>> {
    let mut out = HashSet::new();
    for obj in repo.backend().list(PROTECTED_PREFIX)? {
        if let Some(id) = obj
            .key
            .strip_prefix(PROTECTED_PREFIX)
            .and_then(|h| SnapshotId::from_hex(h).ok())
        {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Protects snapshot `id` from every policy (`true`) or lifts that (`false`).
///
/// # Errors
/// Store errors.
pub fn set_protected(repo: &Repository, id: SnapshotId, on: bool) -> Result<()> {
    let key = format!("{PROTECTED_PREFIX}{id}");
    if on {
        repo.backend().put(&key, b"", PutMode::CreateOnly)?;
        return Ok(());
    }
    match repo.backend().delete(&key) {
        Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Hash32;

    #[test]
    fn a_part_is_kept_while_a_kept_snapshot_names_it() {
        let id = |n: u8| SnapshotId::new(Hash32::from_bytes([n; 32]));
        // 1 (an environment) names 2 (an image), which names 3 (a layer); 4 names 3 too.
        let parts = HashMap::from([(id(1), vec![id(2)]), (id(2), vec![id(3)]), (id(4), vec![id(3)])]);
        let mut reasons = BTreeMap::from([(id(1), ("g".to_string(), vec!["last".to_string()]))]);
        keep_parts(&parts, &mut reasons);
        let keys: Vec<SnapshotId> = reasons.keys().copied().collect();
        assert_eq!(keys, vec![id(1), id(2), id(3)]);
        assert_eq!(reasons[&id(3)].1, vec![format!("part of {}", id(2))]);
    }
}
