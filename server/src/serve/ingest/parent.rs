//! Choosing the parent snapshot of a push.

use amber_engine::format::snapshot::{Snapshot, SourceKind};
use amber_engine::id::SnapshotId;
use amber_proto::v1::ParentMode;
use tonic::Status;

use super::session::Push;
use crate::serve::status::from_engine;

/// The parent of a push of `kind`: by the header's mode, among this vault's snapshots.
/// `fits` adds a kind-specific condition (a volume's size).
///
/// # Errors
/// INVALID_ARGUMENT for a given parent that is not a full id; FAILED_PRECONDITION for one
/// that is missing or of another kind (one message for both, so nothing is learnt about
/// other snapshots).
pub fn choose(
    push: &Push,
    kind: SourceKind,
    fits: &dyn Fn(&Snapshot) -> bool,
) -> Result<Option<(SnapshotId, Snapshot)>, Status> {
    let repo = &push.vault().repo;
    let h = &push.header;
    match ParentMode::try_from(h.parent_mode).unwrap_or(ParentMode::Auto) {
        ParentMode::None => Ok(None),
        ParentMode::Given => {
            let refused = || {
                Status::failed_precondition(format!(
                    "{:?} is not a {} snapshot of this vault",
                    h.parent_id,
                    kind.name()
                ))
            };
            let id = SnapshotId::from_hex(&h.parent_id).map_err(|_| {
                Status::invalid_argument(format!(
                    "parent {:?}: give the parent's full id (64 hex characters), not a prefix or a name",
                    h.parent_id
                ))
            })?;
            let snap = repo.load_snapshot(id).map_err(|_| refused())?;
            if snap.source != kind || !fits(&snap) {
                return Err(refused());
            }
            Ok(Some((id, snap)))
        }
        ParentMode::Auto | ParentMode::Unspecified => {
            let all = repo.snapshots().map_err(|e| from_engine(&e))?;
            Ok(all.into_iter().rev().find(|(_, s)| {
                s.source == kind
                    && s.hostname == h.hostname
                    && s.source_path == h.source_path
                    && s.environment == push.labels.environment
                    && fits(s)
            }))
        }
    }
}
