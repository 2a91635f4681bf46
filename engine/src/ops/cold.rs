//! Restores from cold storage: a plan first (which packs of a snapshot are archived, how
//! many bytes, what bringing them back costs and how long it takes), then restore
//! requests, then a wait, then the restore.

use crate::backend::{RestoreStatus, RetrievalTier, StorageClass};
use crate::error::Result;
use crate::format::pack::PackKind;
use crate::id::SnapshotId;
use crate::ops::reach::data_packs_with_parts;
use crate::ops::tier::PriceTable;
use crate::repo::Repository;
use crate::repo::layout::pack_key;

/// One archived pack a restore needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdPack {
    /// Its store key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its class.
    pub class: StorageClass,
    /// Whether it can be read now.
    pub status: RestoreStatus,
}

/// What restoring a snapshot needs from archive classes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColdPlan {
    /// Data packs the snapshot needs.
    pub packs_needed: u64,
    /// The archived ones among them.
    pub archived: Vec<ColdPack>,
}

impl ColdPlan {
    /// Archived packs not readable yet.
    pub fn waiting(&self) -> impl Iterator<Item = &ColdPack> {
        self.archived.iter().filter(|p| p.status != RestoreStatus::Readable)
    }

    /// Whether the restore can run now.
    pub fn ready(&self) -> bool {
        self.waiting().next().is_none()
    }

    /// Bytes still to bring back.
    pub fn bytes_waiting(&self) -> u64 {
        self.waiting().map(|p| p.size).sum()
    }

    /// What bringing back the waiting packs costs at `tier`, USD.
    pub fn cost(&self, prices: &PriceTable, tier: RetrievalTier) -> f64 {
        let table = match tier {
            RetrievalTier::Standard => &prices.retrieval_standard,
            RetrievalTier::Bulk => &prices.retrieval_bulk,
        };
        self.waiting()
            .map(|p| table.get(&p.class).copied().unwrap_or(0.0) * p.size as f64 / 1e9)
            .sum()
    }

    /// The provider's stated wait at `tier`, for the slowest class waited on.
    pub fn expected_wait(&self, tier: RetrievalTier) -> &'static str {
        let deep = self.waiting().any(|p| p.class == StorageClass::DeepArchive);
        match (deep, tier) {
            (false, _) if self.ready() => "none",
            (true, RetrievalTier::Standard) => "within 12 hours",
            (true, RetrievalTier::Bulk) => "within 48 hours",
            (false, RetrievalTier::Standard) => "3 to 5 hours",
            (false, RetrievalTier::Bulk) => "5 to 12 hours",
        }
    }
}

/// The cold plan for snapshot `id`. A store with no archived data pack answers from one
/// listing; otherwise the snapshot's metadata (always hot) says which packs it needs.
///
/// # Errors
/// Store and metadata errors.
pub fn plan(repo: &Repository, id: SnapshotId) -> Result<ColdPlan> {
    let listed = repo.backend().list(&format!("{}/", PackKind::Data.prefix()))?;
    if !listed.iter().any(|o| o.class.is_archive()) {
        return Ok(ColdPlan::default());
    }
    let needed = data_packs_with_parts(repo, id)?;
    let mut out = ColdPlan {
        packs_needed: needed.len() as u64,
        archived: Vec::new(),
    };
    for pack in needed {
        let key = pack_key(PackKind::Data, &pack);
        let Some(obj) = listed.iter().find(|o| o.key == key) else {
            continue;
        };
        if obj.class.is_archive() {
            out.archived.push(ColdPack {
                key: key.clone(),
                size: obj.size,
                class: obj.class.clone(),
                status: repo.backend().restore_status(&key)?,
            });
        }
    }
    out.archived.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Asks for every archived pack not yet readable or under way to be restored for `days`.
///
/// # Errors
/// Store errors.
pub fn warm_up(repo: &Repository, plan: &ColdPlan, days: u32, tier: RetrievalTier) -> Result<u64> {
    let mut asked = 0;
    for p in plan.archived.iter().filter(|p| p.status == RestoreStatus::Archived) {
        repo.backend().request_restore(&p.key, days, tier)?;
        asked += 1;
    }
    Ok(asked)
}

/// Reads the restore status of every archived pack of `plan` again.
///
/// # Errors
/// Store errors.
pub fn refresh(repo: &Repository, plan: &mut ColdPlan) -> Result<()> {
    for p in &mut plan.archived {
        p.status = repo.backend().restore_status(&p.key)?;
    }
    Ok(())
}

/// Polls until every archived pack of `plan` is readable (`true`), or `limit` passes or a
/// pack turns out never to have been asked for (`false`). Waits back off from `first` to
/// five minutes; `on_wait` hears how many packs are still waited for before each wait.
///
/// # Errors
/// Store errors.
pub fn wait_until_ready(
    repo: &Repository,
    plan: &mut ColdPlan,
    limit: std::time::Duration,
    first: std::time::Duration,
    on_wait: &mut dyn FnMut(usize),
) -> Result<bool> {
    let start = std::time::Instant::now();
    let mut pause = first;
    loop {
        refresh(repo, plan)?;
        if plan.ready() {
            return Ok(true);
        }
        let never_asked = plan.archived.iter().any(|p| p.status == RestoreStatus::Archived);
        if never_asked || start.elapsed() + pause > limit {
            return Ok(false);
        }
        on_wait(plan.waiting().count());
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(300));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, RestoreStatus, RetrievalTier, StorageClass};
    use crate::ops::ingest::{TreeOptions, snapshot_tree};
    use crate::repo::{InitOptions, Repository};

    #[test]
    fn a_cold_snapshot_plans_then_warms_up_then_waits_until_its_packs_are_restored() {
        let store = Arc::new(MemoryBackend::with_restore_polls(3));
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data.bin"), vec![7u8; 300_000]).unwrap();
        let opts = InitOptions {
            kdf: crate::crypto::KdfParams {
                memory_kib: 8192,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        let repo = Repository::init(store.clone(), &dir.path().join("cache"), b"pw", &opts).unwrap();
        let id = snapshot_tree(&repo, &src, &TreeOptions::default()).unwrap().id;
        assert!(super::plan(&repo, id).unwrap().ready(), "nothing archived yet");
        for o in store.list("data/").unwrap() {
            store.set_storage_class(&o.key, &StorageClass::DeepArchive).unwrap();
        }
        let mut plan = super::plan(&repo, id).unwrap();
        assert!(!plan.ready());
        assert_eq!(plan.archived.len() as u64, plan.packs_needed);
        assert!(plan.bytes_waiting() > 0);
        assert_eq!(plan.expected_wait(RetrievalTier::Bulk), "within 48 hours");
        // Never asked for: waiting is pointless and says so at once.
        let mut waits = 0;
        let short = Duration::from_millis(1);
        assert!(
            !super::wait_until_ready(&repo, &mut plan, Duration::from_secs(5), short, &mut |_| waits += 1).unwrap()
        );
        assert_eq!(
            super::warm_up(&repo, &plan, 1, RetrievalTier::Bulk).unwrap(),
            plan.archived.len() as u64
        );
        super::refresh(&repo, &mut plan).unwrap();
        assert!(plan.archived.iter().all(|p| p.status == RestoreStatus::InProgress));
        assert!(super::wait_until_ready(&repo, &mut plan, Duration::from_secs(5), short, &mut |_| waits += 1).unwrap());
        assert!(waits >= 1, "the restore was in progress for a while");
        let out = dir.path().join("out");
        crate::ops::restore::restore_tree(
            &repo,
            crate::id::TreeId::new(repo.load_snapshot(id).unwrap().root),
            &out,
            &crate::ops::restore::RestoreOptions::default(),
        )
        .unwrap();
        assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), vec![7u8; 300_000]);
    }
}
