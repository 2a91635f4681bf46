//! The vaults a server hosts: one encrypted repository per lab under
//! `<data_dir>/vaults/<name>/`, opened with a passphrase the server keeps in
//! `<data_dir>/server/vault-keys/<name>.key`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amber_engine::backend::local::LocalBackend;
use amber_engine::repo::{InitOptions, Repository};
use anyhow::{Context, Result};

use crate::serve::audit::AuditLog;
use crate::serve::config::validate_vault_name;
use crate::serve::tokens::{Role, TokenStore};

/// One hosted vault.
pub struct Vault {
    /// Its name.
    pub name: String,
    /// Its repository.
    pub repo: Repository,
    /// Its audit log.
    pub audit: AuditLog,
    /// Its directory.
    pub dir: PathBuf,
}

/// Every vault, by name.
#[derive(Default)]
pub struct Vaults {
    map: BTreeMap<String, Arc<Vault>>,
}

impl Vaults {
    /// Opens every vault under `data_dir` and creates the `wanted` ones that are missing.
    /// `announce(vault, token)` is called with an admin token for every vault that has no
    /// admin token yet (a new vault): the only time that token is shown.
    ///
    /// # Errors
    /// A vault that cannot be created or opened (wrong key file, damaged config).
    pub fn open(
        data_dir: &Path,
        wanted: &[String],
        tokens: &TokenStore,
        announce: &mut dyn FnMut(&str, &str),
    ) -> Result<Vaults> {
        let root = data_dir.join("vaults");
        std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        let mut names: Vec<String> = wanted.to_vec();
        for entry in std::fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only vault directories: anything else under vaults/ is left alone.
            let is_vault = entry.path().join("config").is_file() && validate_vault_name(&name).is_ok();
            if is_vault && !names.contains(&name) {
                names.push(name);
            }
        }
        let mut map = BTreeMap::new();
        for name in names {
            let vault = open_or_create(data_dir, &name)?;
            if !tokens.has_admin(&name) {
                let (token, _) = tokens.create(&name, Role::Admin, "initial admin token")?;
                announce(&name, &token);
            }
            map.insert(name, Arc::new(vault));
        }
        Ok(Vaults { map })
    }

    /// The vault called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Vault>> {
        self.map.get(name).cloned()
    }
}

fn open_or_create(data_dir: &Path, name: &str) -> Result<Vault> {
    let dir = data_dir.join("vaults").join(name);
    let key_path = data_dir.join("server").join("vault-keys").join(format!("{name}.key"));
    let backend = Arc::new(LocalBackend::new(&dir));
    let cache = dir.join("cache");
    let repo = if dir.join("config").exists() {
        let pass = std::fs::read(&key_path).with_context(|| format!("cannot read the key of vault {name}"))?;
        Repository::open(backend, &cache, pass.trim_ascii()).with_context(|| format!("cannot open vault {name}"))?
    } else {
        let pass = new_passphrase(&key_path)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let opts = InitOptions {
            label: format!("amber serve vault {name}"),
            ..InitOptions::default()
        };
        Repository::init(backend, &cache, pass.as_bytes(), &opts)
            .with_context(|| format!("cannot create vault {name}"))?
    };
    prune_resume_files(&dir.join("resume"));
    let audit = AuditLog::open(&dir.join("audit.log"))?;
    Ok(Vault {
        name: name.to_string(),
        repo,
        audit,
        dir,
    })
}

/// How long the journal or spool of a push that was never retried is kept.
pub const RESUME_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Deletes resume files (journals, spools) untouched for [`RESUME_KEEP`]: their pushes
/// were abandoned. They are caches, so deleting one never loses data.
fn prune_resume_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > RESUME_KEEP);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A random passphrase, written (crash-safely, mode 0600) before the vault is created, so
/// a vault never exists without its key.
fn new_passphrase(path: &Path) -> Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    let text = hex::encode(bytes);
    let dir = path.parent().context("key path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("key.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(text)
}
