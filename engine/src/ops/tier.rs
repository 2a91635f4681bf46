//! Tiering: moving data packs between storage classes by age, with what it costs.
//!
//! A data pack's age is the age of the newest snapshot that needs it ([`reach::newest_use`]):
//! a pack shared with a recent snapshot stays hot. Metadata packs always stay `STANDARD`,
//! so listing, diffing and planning never touch an archive. Packs no snapshot needs are
//! left where they are (compaction's business). A pack is never moved before its current
//! class's minimum storage duration has passed, unless forced, and then the plan says what
//! the early move costs.

use std::collections::BTreeMap;

use crate::backend::{ObjectInfo, StorageClass};
use crate::error::{Error, Result};
use crate::format::pack::PackKind;
use crate::id::PackId;
use crate::ops::reach;
use crate::repo::Repository;
use crate::repo::layout::id_of_key;

const DAY: i64 = 86_400;
const GB: f64 = 1_000_000_000.0;

/// Classes by age: `[(STANDARD, Some(30)), (STANDARD_IA, Some(365)), (DEEP_ARCHIVE, None)]`
/// keeps a pack 30 days in STANDARD, then 365 in STANDARD_IA, then in DEEP_ARCHIVE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierPolicy {
    /// Each class and the days a pack spends in it (`None`: the last, for good).
    pub steps: Vec<(StorageClass, Option<u32>)>,
}

impl TierPolicy {
    /// Parses `STANDARD:30d,STANDARD_IA:365d,DEEP_ARCHIVE` (also `→` or `->` between steps,
    /// and a space instead of `:`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown class, a missing or bad duration, or a last
    /// step with one.
    pub fn parse(text: &str) -> Result<TierPolicy> {
        let bad = |why: String| Error::InvalidArgument(format!("tier policy {text:?}: {why}"));
        let normal = text.replace("→", ",").replace("->", ",");
        let parts: Vec<&str> = normal.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        let mut steps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let (class, days) = match part.split_once([':', ' ']) {
                Some((c, d)) => (c.trim(), Some(d.trim())),
                None => (*part, None),
            };
            let class = StorageClass::parse(class);
            if matches!(class, StorageClass::Other(_)) {
                return Err(bad(format!("{class} is not a storage class")));
            }
            let last = i + 1 == parts.len();
            let days = match (days, last) {
                (None, true) => None,
                (Some(d), false) => Some(
                    d.trim_end_matches('d')
                        .parse::<u32>()
                        .map_err(|_| bad(format!("{d:?} is not a number of days like 30d")))?,
                ),
                (None, false) => return Err(bad(format!("{class} needs a duration (like {class}:30d)"))),
                (Some(_), true) => return Err(bad(format!("the last class, {class}, keeps packs for good"))),
            };
            steps.push((class, days));
        }
        if steps.is_empty() {
            return Err(bad("no classes".into()));
        }
        Ok(TierPolicy { steps })
    }

    /// The class of a pack `age_days` old.
    pub fn class_at(&self, age_days: i64) -> StorageClass {
        let mut until = 0i64;
        for (class, days) in &self.steps {
            match days {
                Some(d) => {
                    until += i64::from(*d);
                    if age_days < until {
                        return class.clone();
                    }
                }
                None => return class.clone(),
            }
        }
        self.steps.last().map_or(StorageClass::Standard, |s| s.0.clone())
    }
}

impl std::fmt::Display for TierPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(c, d)| d.map_or_else(|| c.to_string(), |d| format!("{c} {d}d")))
            .collect();
        f.write_str(&parts.join(" → "))
    }
}

/// Prices in USD: storage per GB-month by class, retrieval per GB by class and speed.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceTable {
    /// Storage, USD per GB-month.
    pub storage: BTreeMap<StorageClass, f64>,
    /// Retrieval from an archive class with the Standard speed, USD per GB.
    pub retrieval_standard: BTreeMap<StorageClass, f64>,
    /// Retrieval with the Bulk speed, USD per GB.
    pub retrieval_bulk: BTreeMap<StorageClass, f64>,
}

impl Default for PriceTable {
    /// AWS S3 list prices for us-east-1 (first 50 TB tier), as published by AWS in 2025;
    /// see `docs/tiering.md` for the date and for how to give your own table.
    fn default() -> Self {
        use StorageClass::*;
        let storage = [
            (Standard, 0.023),
            (IntelligentTiering, 0.023),
            (StandardIa, 0.0125),
            (OneZoneIa, 0.01),
            (GlacierIr, 0.004),
            (Glacier, 0.0036),
            (DeepArchive, 0.00099),
        ];
        PriceTable {
            storage: storage.into_iter().collect(),
            retrieval_standard: [(Glacier, 0.01), (DeepArchive, 0.02)].into_iter().collect(),
            retrieval_bulk: [(Glacier, 0.0), (DeepArchive, 0.0025)].into_iter().collect(),
        }
    }
}

impl PriceTable {
    /// Monthly storage cost of `bytes` in `class`.
    pub fn monthly(&self, class: &StorageClass, bytes: u64) -> f64 {
        self.storage.get(class).copied().unwrap_or(0.0) * bytes as f64 / GB
    }
}

/// What tiering would do with one data pack.
#[derive(Clone, Debug, PartialEq)]
pub struct PackMove {
    /// The pack.
    pub pack: PackId,
    /// Its store key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its class now.
    pub from: StorageClass,
    /// The class the policy gives it.
    pub to: StorageClass,
    /// Age in days of the newest snapshot needing it.
    pub age_days: i64,
    /// Days it has been in its class (since it was written or last moved).
    pub days_in_class: i64,
    /// Days of the current class's minimum storage duration still to run (0: none).
    pub minimum_left_days: i64,
    /// What moving it now costs for that remainder, USD.
    pub early_cost: f64,
    /// Whether it must be restored before it can be moved (it is in an archive class).
    pub needs_restore: bool,
}

/// A tiering plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierPlan {
    /// Packs whose class would change.
    pub moves: Vec<PackMove>,
    /// Bytes per class now (data and metadata packs).
    pub bytes_before: BTreeMap<StorageClass, u64>,
    /// Bytes per class after the moves.
    pub bytes_after: BTreeMap<StorageClass, u64>,
    /// Monthly storage cost now, USD.
    pub monthly_before: f64,
    /// Monthly storage cost after, USD.
    pub monthly_after: f64,
    /// Data packs in the store.
    pub data_packs: u64,
    /// Data packs no snapshot needs (left alone).
    pub unreferenced_packs: u64,
}

/// Plans tiering at time `now` (seconds since the epoch).
///
/// # Errors
/// Store and metadata errors.
pub fn plan(repo: &Repository, policy: &TierPolicy, prices: &PriceTable, now: i64) -> Result<TierPlan> {
    let snapshots = repo.snapshots()?;
    let newest = reach::newest_use(repo, &snapshots)?;
    let mut out = TierPlan::default();
    for (kind, obj) in packs(repo)? {
        let Some(h) = id_of_key(&obj.key) else { continue };
        let pack = PackId::new(h);
        *out.bytes_before.entry(obj.class.clone()).or_default() += obj.size;
        let target = match kind {
            PackKind::Meta => Some(StorageClass::Standard),
            PackKind::Data => {
                out.data_packs += 1;
                let used = newest.get(&pack).copied();
                if used.is_none() {
                    out.unreferenced_packs += 1;
                }
                used.map(|t| policy.class_at((now - t / 1_000_000_000).max(0) / DAY))
            }
        };
        let to = target.unwrap_or_else(|| obj.class.clone());
        *out.bytes_after.entry(to.clone()).or_default() += obj.size;
        if to != obj.class {
            out.moves.push(pack_move(pack, &obj, to, &newest, prices, now));
        }
    }
    out.monthly_before = out.bytes_before.iter().map(|(c, b)| prices.monthly(c, *b)).sum();
    out.monthly_after = out.bytes_after.iter().map(|(c, b)| prices.monthly(c, *b)).sum();
    Ok(out)
}

fn packs(repo: &Repository) -> Result<Vec<(PackKind, ObjectInfo)>> {
    let mut out = Vec::new();
    for kind in [PackKind::Data, PackKind::Meta] {
        for obj in repo.backend().list(&format!("{}/", kind.prefix()))? {
            out.push((kind, obj));
        }
    }
    Ok(out)
}

fn pack_move(
    pack: PackId,
    obj: &ObjectInfo,
    to: StorageClass,
    newest: &std::collections::HashMap<PackId, i64>,
    prices: &PriceTable,
    now: i64,
) -> PackMove {
    let days_in_class = obj.modified.map_or(0, |m| (now - m).max(0) / DAY);
    let minimum_left_days = (i64::from(obj.class.minimum_days()) - days_in_class).max(0);
    let early_cost = prices.monthly(&obj.class, obj.size) * minimum_left_days as f64 / 30.0;
    let age_days = newest.get(&pack).map_or(0, |t| (now - t / 1_000_000_000).max(0) / DAY);
    PackMove {
        pack,
        key: obj.key.clone(),
        size: obj.size,
        from: obj.class.clone(),
        to,
        age_days,
        days_in_class,
        minimum_left_days,
        early_cost,
        needs_restore: obj.class.is_archive(),
    }
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyReport {
    /// Packs moved.
    pub moved: Vec<PackMove>,
    /// Packs left because their minimum storage duration has not passed (no `force`).
    pub held_by_minimum: Vec<PackMove>,
    /// Packs left because they are archived and must be restored first.
    pub held_archived: Vec<PackMove>,
    /// What the forced early moves cost, USD.
    pub early_cost: f64,
}

/// Carries out `plan`: each pack is copied onto itself in its new class (its bytes and
/// name unchanged), unless held back.
///
/// # Errors
/// Store errors; packs moved before the error stay moved (each move is whole).
pub fn apply(repo: &Repository, plan: &TierPlan, force: bool) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    for m in &plan.moves {
        if m.needs_restore {
            report.held_archived.push(m.clone());
        } else if m.minimum_left_days > 0 && !force {
            report.held_by_minimum.push(m.clone());
        } else {
            repo.backend().set_storage_class(&m.key, &m.to)?;
            report.early_cost += if m.minimum_left_days > 0 { m.early_cost } else { 0.0 };
            report.moved.push(m.clone());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_give_classes_by_age() {
        let p = TierPolicy::parse("STANDARD:30d, STANDARD_IA:365d, DEEP_ARCHIVE").unwrap();
        assert_eq!(
            p,
            TierPolicy::parse("STANDARD 30d → STANDARD_IA 365d → DEEP_ARCHIVE").unwrap()
        );
        assert_eq!(p.class_at(0), StorageClass::Standard);
        assert_eq!(p.class_at(29), StorageClass::Standard);
        assert_eq!(p.class_at(30), StorageClass::StandardIa);
        assert_eq!(p.class_at(394), StorageClass::StandardIa);
        assert_eq!(p.class_at(395), StorageClass::DeepArchive);
        assert_eq!(p.to_string(), "STANDARD 30d → STANDARD_IA 365d → DEEP_ARCHIVE");
        for bad in [
            "",
            "COLD:3d,STANDARD",
            "STANDARD,DEEP_ARCHIVE",
            "STANDARD:x,GLACIER",
            "GLACIER:3d",
        ] {
            assert!(TierPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_give_monthly_costs() {
        let t = PriceTable::default();
        assert!((t.monthly(&StorageClass::Standard, 1_000_000_000_000) - 23.0).abs() < 1e-9);
        assert!((t.monthly(&StorageClass::DeepArchive, 1_000_000_000_000) - 0.99).abs() < 1e-9);
    }
}
