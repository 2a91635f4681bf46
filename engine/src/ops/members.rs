//! The members of a stored layer, read from its layout without writing anything: what
//! `tar -t` shows, as tree entries (for `ls` of a layer snapshot, locally and through the
//! catalog). PAX `path`, `linkpath`, `mtime` and `size` records and GNU long names apply
//! to the next member exactly as they do when the layer is extracted.

use crate::error::{Error, Result};
use crate::format::layout::Record;
use crate::format::tarhdr::{self, TarHeader, TarKind};
use crate::format::tree::{Content, Entry, EntryKind, Timestamp};
use crate::id::SnapshotId;
use crate::ops::tar::{for_each_record, layer_layout};
use crate::repo::Repository;

/// Metadata records waiting for the member they describe.
#[derive(Default)]
struct Pending {
    header: Option<TarHeader>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_mtime: Option<i64>,
    pax_size: Option<u64>,
}

/// Turns a layer's layout records into its members, applying PAX `path`, `linkpath`,
/// `mtime` and `size` and GNU long names to the member they precede: the one reading of a
/// stored layer that listing and extraction share.
#[derive(Default)]
pub(crate) struct MemberReader {
    pending: Pending,
}

impl MemberReader {
    /// Feeds one record; returns the member it completes, if any: its header with the
    /// overrides applied (`size` the effective one) and its content (`None` when empty).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a stored header or PAX record that does not parse.
    pub(crate) fn record(&mut self, rec: Record) -> Result<Option<(TarHeader, Option<Content>)>> {
        match rec {
            Record::Header(block) => {
                let h = tarhdr::parse_header(&block)
                    .map_err(|e| Error::InvalidArgument(format!("stored tar header: {e}")))?;
                let size = self.pending.pax_size.unwrap_or(h.size);
                if size == 0 && !h.kind.is_meta() {
                    return Ok(Some(self.member(h, None)));
                }
                self.pending.header = Some(h);
                Ok(None)
            }
            Record::Raw(data) => self.meta_data(&data).map(|()| None),
            Record::Member { content, .. } => Ok(self.pending.header.take().map(|h| self.member(h, Some(content)))),
            Record::Zeros(_) | Record::Tail { .. } | Record::End => Ok(None),
        }
    }

    /// Data of a PAX or GNU record: remembered for the next member.
    fn meta_data(&mut self, data: &[u8]) -> Result<()> {
        let Some(h) = self.pending.header.take() else {
            return Ok(()); // non-zero padding
        };
        let text = data
            .get(..data.iter().position(|&b| b == 0).unwrap_or(data.len()))
            .unwrap_or_default();
        match h.kind {
            TarKind::GnuLongName => self.pending.long_name = Some(text.to_vec()),
            TarKind::GnuLongLink => self.pending.long_link = Some(text.to_vec()),
            TarKind::PaxLocal => self.pax(data)?,
            _ => {}
        }
        Ok(())
    }

    fn pax(&mut self, data: &[u8]) -> Result<()> {
        let records = tarhdr::parse_pax(data).map_err(|e| Error::InvalidArgument(format!("PAX header: {e}")))?;
        for (k, v) in records {
            let number = || std::str::from_utf8(&v).ok().map(str::to_string);
            match k.as_slice() {
                b"path" => self.pending.pax_path = Some(v),
                b"linkpath" => self.pending.pax_link = Some(v),
                b"size" => self.pending.pax_size = number().and_then(|s| s.parse().ok()),
                b"mtime" => self.pending.pax_mtime = number().and_then(|s| s.split('.').next()?.parse().ok()),
                _ => {}
            }
        }
        Ok(())
    }

    fn member(&mut self, mut h: TarHeader, content: Option<Content>) -> (TarHeader, Option<Content>) {
        let p = std::mem::take(&mut self.pending);
        if let Some(name) = p.pax_path.or(p.long_name) {
            h.name = name;
        }
        if let Some(link) = p.pax_link.or(p.long_link) {
            h.link = link;
        }
        if let Some(m) = p.pax_mtime {
            h.mtime = m;
        }
        if let Some(size) = p.pax_size {
            h.size = size;
        }
        (h, content)
    }
}

/// Visits every member of layer snapshot `id` in stream order, with its path (raw bytes,
/// `./` components and leading or trailing `/` dropped; `..` is kept as it is) and an
/// entry: its name, kind, mode, owner ids, size, mtime (seconds, as extraction sets it),
/// link target, device number and content. A hard-link member is a regular file of size 0
/// whose `link_target` names the member it links to. The archive's own `./` entry and
/// members of other types (kept verbatim, never extracted) are not visited.
///
/// # Errors
/// [`Error::InvalidArgument`] when `id` is not a layer snapshot or a stored header does
/// not parse; store and corruption errors; what `visit` returns.
pub fn for_each_member(
    repo: &Repository,
    id: SnapshotId,
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    let snap = repo.load_snapshot(id)?;
    let layout = layer_layout(repo, id, &snap)?;
    for_each_member_of_layout(repo, &layout, visit)
}

/// Visits the members of the layer whose layout is `layout`, as [`for_each_member`] does.
///
/// # Errors
/// As [`for_each_member`].
pub fn for_each_member_of_layout(
    repo: &Repository,
    layout: &Content,
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    let mut reader = MemberReader::default();
    for_each_record(repo, layout, &mut |rec| {
        let Some((h, content)) = reader.record(rec)? else {
            return Ok(());
        };
        let path = member_path(&h.name);
        match member_entry(&h, &path, content.unwrap_or(Content::None)) {
            Some(entry) => visit(&path, &entry),
            None => Ok(()),
        }
    })
}

/// Every member of layer snapshot `id`, as [`for_each_member`] visits them.
///
/// # Errors
/// As [`for_each_member`].
pub fn layer_members(repo: &Repository, id: SnapshotId) -> Result<Vec<(Vec<u8>, Entry)>> {
    let mut out = Vec::new();
    for_each_member(repo, id, &mut |path, e| {
        out.push((path.to_vec(), e.clone()));
        Ok(())
    })?;
    Ok(out)
}

/// Visits the members below `dir` (raw bytes, `/`-separated; empty for the whole layer):
/// every member strictly below it, or with `recursive` false only its direct children,
/// in stream order.
///
/// # Errors
/// [`Error::NoSuchPath`] when `dir` is not empty and no member is `dir` or below it; as
/// [`for_each_member`].
pub fn for_each_member_below(
    repo: &Repository,
    id: SnapshotId,
    dir: &[u8],
    recursive: bool,
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    let dir = member_path(dir);
    let mut found = dir.is_empty();
    for_each_member(repo, id, &mut |path, e| {
        let rest = if dir.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(dir.as_slice()).and_then(|r| r.strip_prefix(b"/"))
        };
        found |= rest.is_some() || path == dir.as_slice();
        match rest {
            Some(rest) if recursive || !rest.contains(&b'/') => visit(path, e),
            _ => Ok(()),
        }
    })?;
    if !found {
        return Err(Error::NoSuchPath(crate::ops::display_path(&dir)));
    }
    Ok(())
}

/// A member's path: its components without empty ones and `.`.
fn member_path(name: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    parts.join(&b'/')
}

/// The entry describing a member; `None` for the archive root and unextractable types.
fn member_entry(h: &TarHeader, path: &[u8], content: Content) -> Option<Entry> {
    let kind = match h.kind {
        TarKind::File | TarKind::HardLink => EntryKind::File,
        TarKind::Dir => EntryKind::Dir,
        TarKind::Symlink => EntryKind::Symlink,
        TarKind::Fifo => EntryKind::Fifo,
        TarKind::CharDevice => EntryKind::CharDevice,
        TarKind::BlockDevice => EntryKind::BlockDevice,
        _ => return None,
    };
    if path.is_empty() {
        return None;
    }
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default().to_vec();
    let mut e = Entry::new(name, kind);
    e.mode = h.mode & 0o7777;
    e.uid = u32::try_from(h.uid).unwrap_or(u32::MAX);
    e.gid = u32::try_from(h.gid).unwrap_or(u32::MAX);
    e.mtime = Timestamp { sec: h.mtime, nsec: 0 };
    match h.kind {
        TarKind::File => {
            e.size = h.size;
            e.content = content;
        }
        TarKind::HardLink => e.link_target = member_path(&h.link),
        TarKind::Symlink => e.link_target.clone_from(&h.link),
        TarKind::CharDevice | TarKind::BlockDevice => {
            e.rdev = nix::sys::stat::makedev(u64::from(h.dev.0), u64::from(h.dev.1));
        }
        _ => {}
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_normalised() {
        assert_eq!(member_path(b"./a/b/"), b"a/b".to_vec());
        assert_eq!(member_path(b"./"), Vec::<u8>::new());
        assert_eq!(member_path(b"/etc//passwd"), b"etc/passwd".to_vec());
        assert_eq!(member_path(b"../x"), b"../x".to_vec());
        assert_eq!(member_path(b"d\xffe/f"), b"d\xffe/f".to_vec());
    }
}
