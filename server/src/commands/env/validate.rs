//! After an environment is restored: is everything there? Image digests, tree file
//! counts and notebooks, `e2fsck -fn` of an ext4 volume, and the packages the record lists.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use amber_engine::format::snapshot::Snapshot;
use amber_engine::id::SnapshotId;
use amber_engine::ops::environment::{Part, PartKind};
use amber_engine::ops::image::view;
use amber_engine::repo::Repository;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::mounted_at;

/// The steps of a restore job, each with its outcome.
#[derive(Default)]
pub struct Report {
    /// `{part, mount, step, ok, detail}` per step.
    pub steps: Vec<Value>,
    /// Notebooks found in the restored trees, as paths in the environment.
    pub notebooks: Vec<String>,
}

impl Report {
    /// Records one step of `part`.
    pub fn step(&mut self, part: &Part, step: &str, outcome: Result<(String, Value)>) {
        self.record(part.kind.name(), &part.mount, step, outcome);
    }

    fn record(&mut self, part: &str, mount: &str, step: &str, outcome: Result<(String, Value)>) {
        let (ok, detail) = match outcome {
            Ok((detail, _)) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        self.steps.push(json!({
            "part": part,
            "mount": (!mount.is_empty()).then_some(mount),
            "step": step,
            "ok": ok,
            "detail": detail,
        }));
    }

    /// Every step passed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s["ok"] == true)
    }

    /// One line per step, failures first named.
    pub fn text(&self, id: &str, into: &Path) -> String {
        let mut lines: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}: {}: {}",
                    if s["ok"] == true { "ok    " } else { "FAILED" },
                    s["part"].as_str().unwrap_or_default(),
                    s["mount"].as_str().unwrap_or(""),
                    s["step"].as_str().unwrap_or_default(),
                    s["detail"].as_str().unwrap_or_default()
                )
            })
            .collect();
        lines.push(format!(
            "environment {} restored into {}: {} notebooks; {}",
            id.get(..8).unwrap_or(id),
            into.display(),
            self.notebooks.len(),
            if self.ok() {
                "every check passed"
            } else {
                "SOME CHECKS FAILED"
            }
        ));
        lines.join("\n")
    }
}

/// What validation needs to know from the vault: each part's file count, and the
/// `*.dist-info` directory names in the image.
#[derive(Default)]
pub struct Facts {
    /// Regular files per part snapshot, as recorded.
    pub files: std::collections::HashMap<SnapshotId, u64>,
    /// Names of the image's `*.dist-info` directories (its flattened file system).
    pub image_dist_infos: Vec<String>,
}

impl Facts {
    /// The facts, read from a local repository.
    ///
    /// # Errors
    /// Store and corruption errors.
    pub fn local(repo: &Repository, parts: &[Part]) -> Result<Facts> {
        let mut facts = Facts::default();
        for part in parts {
            let snap = repo.load_snapshot(part.snapshot)?;
            facts.files.insert(part.snapshot, snap.stats.files);
            if part.kind == PartKind::Image {
                for manifest in view::manifests(repo, part.snapshot, &snap)? {
                    for path in view::flattened(repo, &manifest)?.keys() {
                        let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                        if name.ends_with(b".dist-info") {
                            facts.image_dist_infos.push(String::from_utf8_lossy(name).into_owned());
                        }
                    }
                }
            }
        }
        Ok(facts)
    }
}

/// Runs every validation step (only of parts whose restore succeeded).
pub fn all(facts: &Facts, env: &Snapshot, parts: &[Part], into: &Path, report: &mut Report) {
    let restored: Vec<&Part> = parts
        .iter()
        .filter(|p| {
            report
                .steps
                .iter()
                .any(|s| s["part"] == p.kind.name() && s["mount"].as_str().unwrap_or("") == p.mount && s["ok"] == true)
        })
        .collect();
    for part in &restored {
        match part.kind {
            PartKind::Image => report.step(part, "digests", image_digests(&into.join("image"))),
            PartKind::Tree => {
                let dest = mounted_at(into, "trees", &part.mount);
                let expected = facts.files.get(&part.snapshot).copied().unwrap_or_default();
                let counted = file_count(expected, part, &dest, &mut report.notebooks);
                report.step(part, "file count", counted);
            }
            PartKind::Volume => {
                let image = PathBuf::from(format!("{}.img", mounted_at(into, "volumes", &part.mount).display()));
                report.step(part, "e2fsck", fsck(&image));
            }
        }
    }
    let wanted: Vec<&str> = env
        .metadata
        .iter()
        .find(|(k, _)| k == "packages")
        .map(|(_, v)| v.lines().filter(|l| !l.trim().is_empty()).collect())
        .unwrap_or_default();
    if !wanted.is_empty() {
        let found = packages(facts, &restored, into, &wanted);
        report.record("environment", "", "packages", found);
    }
}

/// Every blob of the restored layout hashes to its name.
fn image_digests(layout: &Path) -> Result<(String, Value)> {
    let dir = layout.join("blobs/sha256");
    if !dir.is_dir() {
        return Ok((
            "a docker archive: its layers were checked while written".into(),
            Value::Null,
        ));
    }
    let mut n = 0;
    for e in std::fs::read_dir(&dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let (digest, _) = amber_engine::ops::image::source::sha256_of(&mut std::fs::File::open(e.path())?, &name)?;
        if digest != format!("sha256:{name}") {
            return Err(anyhow!("blob {name} hashes to {digest}"));
        }
        n += 1;
    }
    Ok((format!("{n} blobs match their digests"), Value::Null))
}

/// The restored tree has as many regular files as the snapshot; notebooks are listed.
fn file_count(expected: u64, part: &Part, dest: &Path, notebooks: &mut Vec<String>) -> Result<(String, Value)> {
    let mut files = 0u64;
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let kind = e.file_type()?;
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_file() {
                files += 1;
                if e.path().extension().is_some_and(|x| x == "ipynb") {
                    let rel = e.path().strip_prefix(dest).map(Path::to_path_buf).unwrap_or_default();
                    notebooks.push(format!("{}/{}", part.mount, rel.display()));
                }
            }
        }
    }
    notebooks.sort();
    if files == expected {
        Ok((format!("{files} files, as snapshotted"), Value::Null))
    } else {
        Err(anyhow!("{files} files restored, the snapshot has {expected}"))
    }
}

/// `e2fsck -fn` of an ext4 image, when the tool is there.
fn fsck(image: &Path) -> Result<(String, Value)> {
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(image)?;
    let is_ext = f.seek(SeekFrom::Start(1080)).is_ok() && f.read_exact(&mut magic).is_ok() && magic == [0x53, 0xef];
    if !is_ext {
        return Ok(("not an ext2/3/4 file system: not checked".into(), Value::Null));
    }
    let out = match Command::new("e2fsck").arg("-fn").arg(image).output() {
        Ok(out) => out,
        Err(_) => return Ok(("e2fsck is not installed: not checked".into(), Value::Null)),
    };
    if out.status.success() {
        Ok(("e2fsck -fn found no problem".into(), Value::Null))
    } else {
        Err(anyhow!(
            "e2fsck -fn exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default()
        ))
    }
}

/// `name` or `name==version` as the lowercased, `_`-joined form dist-info uses.
fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['-', '.'], "_")
}

/// True when a directory name `<dist>-<version>.dist-info` installs `spec`.
fn installs(dist_info: &str, spec: &str) -> bool {
    let Some(stem) = dist_info.strip_suffix(".dist-info") else {
        return false;
    };
    let Some((dist, version)) = stem.split_once('-') else {
        return false;
    };
    let (name, want) = spec.split_once("==").map_or((spec, None), |(n, v)| (n, Some(v.trim())));
    normalise(dist) == normalise(name) && want.is_none_or(|v| v == version)
}

/// Each package is installed in the image (its flattened file system) or a restored tree.
fn packages(facts: &Facts, parts: &[&Part], into: &Path, wanted: &[&str]) -> Result<(String, Value)> {
    let mut dist_infos: Vec<String> = Vec::new();
    for part in parts {
        match part.kind {
            PartKind::Image => dist_infos.extend(facts.image_dist_infos.iter().cloned()),
            PartKind::Tree => collect_dist_infos(&mounted_at(into, "trees", &part.mount), &mut dist_infos)?,
            PartKind::Volume => {}
        }
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|spec| !dist_infos.iter().any(|d| installs(d, spec)))
        .collect();
    if missing.is_empty() {
        Ok((
            format!("{} packages found: {}", wanted.len(), wanted.join(", ")),
            Value::Null,
        ))
    } else {
        Err(anyhow!(
            "not found in the image or the trees (volumes are not searched): {}",
            missing.join(", ")
        ))
    }
}

fn collect_dist_infos(dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".dist-info") {
                    out.push(name);
                } else {
                    stack.push(e.path());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::installs;

    #[test]
    fn a_dist_info_installs_its_name_in_any_spelling_and_its_version() {
        assert!(installs("numpy-1.26.4.dist-info", "numpy"));
        assert!(installs("numpy-1.26.4.dist-info", "NumPy==1.26.4"));
        assert!(!installs("numpy-1.26.4.dist-info", "numpy==2.0"));
        assert!(installs("jupyter_server-2.14.0.dist-info", "jupyter-server"));
        assert!(!installs("numpy-1.26.4", "numpy"));
    }
}
