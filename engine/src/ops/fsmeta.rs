//! File-system metadata: reading it into tree entries and applying it on restore.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use filetime::FileTime;

use crate::format::tree::{Entry, EntryKind, MAX_XATTR_VALUE, Timestamp};

/// Permission and special bits kept in `mode`.
const MODE_BITS: u32 = 0o7777;

/// The entry kind of a file type.
pub fn kind_of(meta: &Metadata) -> EntryKind {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_char_device() {
        EntryKind::CharDevice
    } else if ft.is_block_device() {
        EntryKind::BlockDevice
    } else if ft.is_socket() {
        EntryKind::Socket
    } else {
        EntryKind::File
    }
}

fn timestamp(sec: i64, nsec: i64) -> Timestamp {
    Timestamp {
        sec,
        nsec: u32::try_from(nsec.clamp(0, 999_999_999)).unwrap_or(0),
    }
}

/// Caches uid/gid → name look-ups.
#[derive(Default, Debug)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Vec<u8>>>,
    groups: Mutex<HashMap<u32, Vec<u8>>>,
}

impl NameCache {
    fn user(&self, uid: u32) -> Vec<u8> {
        let Ok(mut map) = self.users.lock() else {
            return Vec::new();
        };
        map.entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name.into_bytes())
                    .unwrap_or_default()
            })
            .clone()
    }
    fn group(&self, gid: u32) -> Vec<u8> {
        let Ok(mut map) = self.groups.lock() else {
            return Vec::new();
        };
        map.entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name.into_bytes())
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Builds an entry (without content) from `lstat` metadata, reading the symlink target
/// and extended attributes from `path`.
///
/// # Errors
/// The I/O error from reading a symlink target.
pub fn entry_from(name: &[u8], path: &Path, meta: &Metadata, names: &NameCache) -> std::io::Result<Entry> {
    let kind = kind_of(meta);
    let mut e = Entry::new(name.to_vec(), kind);
    e.mode = meta.mode() & MODE_BITS;
    e.uid = meta.uid();
    e.gid = meta.gid();
    e.user = names.user(e.uid);
    e.group = names.group(e.gid);
    e.mtime = timestamp(meta.mtime(), meta.mtime_nsec());
    e.ctime = timestamp(meta.ctime(), meta.ctime_nsec());
    e.inode = meta.ino();
    e.device = meta.dev();
    e.nlink = u32::try_from(meta.nlink()).unwrap_or(u32::MAX);
    e.rdev = meta.rdev();
    e.size = if kind == EntryKind::File { meta.len() } else { 0 };
    if kind == EntryKind::Symlink {
        e.link_target = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec();
    }
    e.xattrs = read_xattrs(path);
    Ok(e)
}

/// Extended attributes of `path` (not following symlinks), sorted; empty where unsupported.
pub fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            (value.len() <= MAX_XATTR_VALUE).then(|| (n.as_bytes().to_vec(), value))
        })
        .collect();
    out.sort();
    out.truncate(usize::from(u16::MAX));
    out
}

/// Whether this process may set owners (it runs as root).
pub fn can_chown() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Applies owner, mode, extended attributes and times to a restored path. Returns
/// warnings for what could not be applied (for example xattrs on a file system
/// without them); the content is already in place, so these are not failures.
pub fn apply(path: &Path, e: &Entry, chown: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    let is_link = e.kind == EntryKind::Symlink;
    if chown && let Err(err) = std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid)) {
        warnings.push(format!("owner: {err}"));
    }
    if !is_link && let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode)) {
        warnings.push(format!("mode: {err}"));
    }
    for (k, v) in &e.xattrs {
        let name = std::ffi::OsStr::from_bytes(k);
        if let Err(err) = xattr::set(path, name, v) {
            warnings.push(format!("xattr {}: {err}", String::from_utf8_lossy(k)));
        }
    }
    // utimensat without following links, for every kind: `filetime::set_file_times`
    // opens the path, which blocks forever on a FIFO.
    let mtime = FileTime::from_unix_time(e.mtime.sec, e.mtime.nsec);
    if let Err(err) = filetime::set_symlink_file_times(path, mtime, mtime) {
        warnings.push(format!("times: {err}"));
    }
    warnings
}
