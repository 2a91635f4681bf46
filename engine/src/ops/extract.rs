//! Extracting a stored layer into a directory, as `tar -x` would, with OCI whiteouts
//! applied when asked. Every path is checked: no absolute paths, no `..`, and nothing is
//! ever written through a symlink.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

use crate::error::{Error, Result};
use crate::format::layout::Record;
use crate::format::tarhdr::{TarHeader, TarKind};
use crate::format::tree::Content;
use crate::id::SnapshotId;
use crate::ops::members::MemberReader;
use crate::ops::tar::{for_each_record, layer_layout, write_content};
use crate::ops::{display_path, fsmeta};
use crate::repo::Repository;

/// OCI whiteout prefix.
const WHITEOUT: &[u8] = b".wh.";
/// OCI opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What an extraction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Members written.
    pub members: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Members skipped (device nodes when not root, unknown types), with the reason.
    pub skipped: Vec<(String, String)>,
}

struct Extractor<'a> {
    repo: &'a Repository,
    /// Paths this layer created: whiteouts hide lower layers only.
    created: std::collections::HashSet<PathBuf>,
    dest: PathBuf,
    whiteouts: bool,
    chown: bool,
    members: MemberReader,
    dirs: Vec<(PathBuf, u32, i64)>,
    report: ExtractReport,
}

/// Extracts layer snapshot `id` into `dest` (created if missing).
///
/// # Errors
/// [`Error::InvalidArgument`] for a member whose path leaves `dest` (absolute, `..`, or
/// through a symlink); store, corruption and I/O errors.
pub fn extract_layer(repo: &Repository, id: SnapshotId, dest: &Path, apply_whiteouts: bool) -> Result<ExtractReport> {
    let snap = repo.load_snapshot(id)?;
    let layout = layer_layout(repo, id, &snap)?;
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut x = Extractor {
        repo,
        created: std::collections::HashSet::new(),
        dest: dest.to_path_buf(),
        whiteouts: apply_whiteouts,
        chown: fsmeta::can_chown(),
        members: MemberReader::default(),
        dirs: Vec::new(),
        report: ExtractReport::default(),
    };
    for_each_record(repo, &layout, &mut |rec| x.record(rec))?;
    for (path, mode, mtime) in x.dirs.iter().rev() {
        let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(*mode));
        let t = FileTime::from_unix_time(*mtime, 0);
        let _ = filetime::set_symlink_file_times(path, t, t);
    }
    Ok(x.report)
}

impl Extractor<'_> {
    fn record(&mut self, rec: Record) -> Result<()> {
        match self.members.record(rec)? {
            Some((h, content)) => self.member(&h, content.as_ref()),
            None => Ok(()),
        }
    }

    fn member(&mut self, h: &TarHeader, content: Option<&Content>) -> Result<()> {
        let rel = safe_relative(&h.name)?;
        if rel.as_os_str().is_empty() {
            return Ok(()); // "./" itself
        }
        let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if self.whiteouts && name.starts_with(WHITEOUT) {
            return self.whiteout(&rel, name);
        }
        let path = self.checked_target(&rel)?;
        self.create(h, &path, content)?;
        self.created.insert(path);
        self.report.members += 1;
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, name: &[u8]) -> Result<()> {
        let parent = self.checked_target(rel.parent().unwrap_or(Path::new("")))?;
        if name == OPAQUE {
            if let Ok(entries) = fs::read_dir(&parent) {
                for e in entries.flatten() {
                    let path = e.path();
                    if !self.created.contains(&path) {
                        remove_any(&path).map_err(|err| Error::io(&path, err))?;
                    }
                }
            }
        } else {
            let hidden = name.get(WHITEOUT.len()..).unwrap_or_default();
            if crate::format::tree::validate_name(hidden).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "whiteout {} does not name an entry of its directory",
                    rel.display()
                )));
            }
            let path = parent.join(OsStr::from_bytes(hidden));
            if !self.created.contains(&path) {
                remove_any(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        self.report.whiteouts += 1;
        Ok(())
    }

    /// `dest/rel`, after checking that no existing component on the way is a symlink.
    fn checked_target(&self, rel: &Path) -> Result<PathBuf> {
        let mut at = self.dest.clone();
        let parts: Vec<_> = rel.components().collect();
        for (i, c) in parts.iter().enumerate() {
            at.push(c.as_os_str());
            let last = i + 1 == parts.len();
            if let Ok(m) = fs::symlink_metadata(&at)
                && m.file_type().is_symlink()
                && !last
            {
                return Err(Error::InvalidArgument(format!(
                    "member {} would be written through the symlink {}",
                    rel.display(),
                    at.display()
                )));
            }
        }
        Ok(at)
    }

    fn create(&mut self, h: &TarHeader, path: &Path, content: Option<&Content>) -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        if h.kind == TarKind::HardLink {
            return self.hard_link(h, path);
        }
        if h.kind != TarKind::Dir {
            remove_any(path).map_err(|e| Error::io(path, e))?;
        }
        let io = |e| Error::io(path, e);
        match h.kind {
            TarKind::Dir => {
                if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                    let _ = remove_any(path);
                    fs::create_dir(path).map_err(io)?;
                }
                self.dirs.push((path.to_path_buf(), h.mode, h.mtime));
                return Ok(());
            }
            TarKind::File => {
                let mut f = File::create(path).map_err(io)?;
                if let Some(c) = content {
                    write_content(self.repo, c, &mut f)?;
                }
            }
            TarKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&h.link), path).map_err(io)?;
                let t = FileTime::from_unix_time(h.mtime, 0);
                let _ = filetime::set_symlink_file_times(path, t, t);
                return Ok(());
            }
            TarKind::Fifo | TarKind::CharDevice | TarKind::BlockDevice => {
                if let Err(why) = make_special(h, path, self.chown) {
                    self.report
                        .skipped
                        .push((display_path(path.as_os_str().as_bytes()), why));
                    return Ok(());
                }
            }
            other => {
                self.report.skipped.push((
                    display_path(path.as_os_str().as_bytes()),
                    format!("unsupported member type {other:?}"),
                ));
                return Ok(());
            }
        }
        self.finish_metadata(h, path);
        Ok(())
    }

    /// A hard link to an extracted path. A link that names itself, or a path already
    /// linked to its target (GNU tar writes such a member when a path is archived twice),
    /// is left as it is, as GNU tar does.
    fn hard_link(&self, h: &TarHeader, path: &Path) -> Result<()> {
        let target = self.checked_target(&safe_relative(&h.link)?)?;
        if same_file(&target, path) {
            return Ok(());
        }
        remove_any(path).map_err(|e| Error::io(path, e))?;
        fs::hard_link(&target, path).map_err(|e| Error::io(path, e))
    }

    fn finish_metadata(&self, h: &TarHeader, path: &Path) {
        if self.chown {
            let (uid, gid) = (u32::try_from(h.uid).unwrap_or(0), u32::try_from(h.gid).unwrap_or(0));
            let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        }
        let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(h.mode));
        let t = FileTime::from_unix_time(h.mtime, 0);
        let _ = filetime::set_symlink_file_times(path, t, t);
    }
}

fn make_special(h: &TarHeader, path: &Path, root: bool) -> std::result::Result<(), String> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let kind = match h.kind {
        TarKind::Fifo => SFlag::S_IFIFO,
        _ if !root => return Err("device nodes need root".into()),
        TarKind::CharDevice => SFlag::S_IFCHR,
        _ => SFlag::S_IFBLK,
    };
    let dev = makedev(u64::from(h.dev.0), u64::from(h.dev.1));
    mknod(path, kind, Mode::from_bits_truncate(h.mode & 0o777), dev).map_err(|e| e.to_string())
}

/// Whether `a` and `b` both exist and are the same file (device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A member path as a relative path with only normal components (`./` prefixes and
/// trailing slashes dropped).
///
/// # Errors
/// [`Error::InvalidArgument`] for absolute paths and `..` components.
pub fn safe_relative(name: &[u8]) -> Result<PathBuf> {
    let path = Path::new(OsStr::from_bytes(name));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(Error::InvalidArgument(format!(
                    "member path {:?} leaves the target directory (absolute or '..')",
                    String::from_utf8_lossy(name)
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(safe_relative(b"./a/b/").unwrap(), PathBuf::from("a/b"));
        assert!(safe_relative(b"../x").is_err());
        assert!(safe_relative(b"a/../../x").is_err());
        assert!(safe_relative(b"/etc/passwd").is_err());
    }
}
