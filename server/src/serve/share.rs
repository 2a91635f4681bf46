//! Sharing: a snapshot copied into another vault of this server by the engine's copy
//! (`amber_engine::ops::copy`), re-chunked and re-encrypted under that vault's keys.

use amber_engine::format::snapshot::SourceKind;
use amber_engine::ops::copy::{copy_snapshot, labels_of};
use amber_proto::v1 as pb;
use tonic::Status;

use crate::serve::reader::resolve;
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

pub use amber_engine::ops::copy::SHARED_FROM_KEY;

/// Copies snapshot `name` (resolved within `environment` when not empty) of `from` into `to`.
///
/// # Errors
/// NOT_FOUND for an unknown snapshot; engine errors.
pub fn share_snapshot(
    from: &Vault,
    to: &Vault,
    name: &str,
    environment: &str,
) -> Result<pb::ShareSnapshotResponse, Status> {
    let (id, snap) = resolve(&from.repo, name, environment)?;
    if matches!(snap.source, SourceKind::Image | SourceKind::Environment) {
        return Err(Status::failed_precondition(format!(
            "snapshot {id} is a {} snapshot; sharing those is not supported yet",
            snap.source.name()
        )));
    }
    let mut labels = labels_of(&snap, Some((SHARED_FROM_KEY, format!("{}:{}", from.name, id.to_hex()))));
    // A share is a new snapshot of the target vault, taken now.
    labels.time_ns = None;
    let (new_id, bytes) = copy_snapshot(&from.repo, &to.repo, id, &labels).map_err(|e| from_engine(&e))?;
    Ok(pb::ShareSnapshotResponse {
        snapshot_id: new_id.to_hex(),
        bytes,
    })
}
