//! One push, from header to commit, on its own thread.

use std::path::PathBuf;

use amber_engine::ops::Labels;
use amber_proto::v1 as pb;
use amber_proto::v1::push_header::Source;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use tonic::Status;

use super::inbox::{Inbox, Outbox};
use super::{environment, image, tar, tree, volume};
use crate::serve::convert;
use crate::serve::state::{Caller, State};
use crate::serve::status::from_engine;
use crate::serve::vaults::Vault;

/// Longest host name accepted.
const MAX_HOSTNAME: usize = 255;
/// Longest source path accepted.
const MAX_SOURCE_PATH: usize = 4096;
/// Longest resume key accepted.
const MAX_RESUME_KEY: usize = 64;

/// What a session knows about its push.
pub struct Push<'a> {
    /// Who pushes.
    pub caller: &'a Caller,
    /// The header.
    pub header: pb::PushHeader,
    /// Labels to record.
    pub labels: Labels,
}

impl Push<'_> {
    /// The target vault.
    pub fn vault(&self) -> &Vault {
        &self.caller.vault
    }
}

/// Runs a push; returns the audit target, with the error status on failure.
pub fn run(state: &State, caller: &Caller, inbox: &mut Inbox, outbox: &Outbox) -> Result<String, (String, Status)> {
    let header = match inbox.next() {
        Ok(Frame::Header(h)) => h,
        Ok(_) => {
            return Err((
                String::new(),
                Status::failed_precondition("the first message must be a header"),
            ));
        }
        Err(status) => return Err((String::new(), status)),
    };
    let target = format!("push {}", header.source_path);
    let push = match check_header(caller, header) {
        Ok(p) => p,
        Err(status) => return Err((target, status)),
    };
    let committed = match push.header.source.clone() {
        Some(Source::Tree(_)) => tree::run(&push, inbox, outbox),
        Some(Source::Tar(t)) => tar::run(&push, &t, inbox, outbox),
        Some(Source::Volume(v)) => volume::run(&push, &v, inbox, outbox),
        Some(Source::Image(i)) => image::run(&push, &i, outbox),
        Some(Source::Environment(e)) => environment::run(&push, &e, outbox),
        None => Err(Status::invalid_argument(
            "the header names no source (tree, tar, volume, image or environment)",
        )),
    };
    let committed = committed.map_err(|s| (target.clone(), s))?;
    let target = format!("{target} -> snapshot {}", committed.snapshot_id);
    state
        .metrics
        .add_new(committed.stats.as_ref().map_or(0, |s| s.bytes_new));
    state
        .metrics
        .add_logical(committed.stats.as_ref().map_or(0, |s| s.bytes));
    outbox
        .send(Answer::Committed(committed))
        .map_err(|s| (target.clone(), s))?;
    Ok(target)
}

fn check_header(caller: &Caller, header: pb::PushHeader) -> Result<Push<'_>, Status> {
    if !header.vault.is_empty() && header.vault != caller.principal.vault {
        return Err(Status::permission_denied(format!(
            "this token is not valid for vault {:?}",
            header.vault
        )));
    }
    if header.hostname.len() > MAX_HOSTNAME || header.source_path.len() > MAX_SOURCE_PATH {
        return Err(Status::invalid_argument("hostname or source path too long"));
    }
    if header.resume_key.len() > MAX_RESUME_KEY {
        return Err(Status::invalid_argument("a resume key longer than 64 bytes"));
    }
    let labels = convert::labels(header.labels.as_ref(), &header.hostname);
    labels.check().map_err(|e| from_engine(&e))?;
    Ok(Push { caller, header, labels })
}

/// Where a vault keeps the journals of unfinished pushes.
pub fn journal_dir(vault: &Vault) -> PathBuf {
    vault.state.join("resume")
}
