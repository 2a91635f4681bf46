//! The vaults a server hosts: one encrypted repository per lab under `vaults/<name>/` of
//! the server's store (a directory or a bucket), opened with a passphrase that is kept,
//! sealed under the cluster key, in the store's `server/vaults/<name>.key`, so every server
//! of a cluster can open every vault. What is local to one server (the index cache, resume
//! journals) lives in its state directory, `<state_dir>/vaults/<name>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber_engine::backend::{BackendError, DynBackend, PutMode, PutOutcome};
use amber_engine::repo::audit::AuditWriter;
use amber_engine::repo::{InitOptions, Repository};
use amber_engine::store::sub_store;
use anyhow::{Context, Result};

use crate::serve::cluster::ClusterKey;
use crate::serve::config::validate_vault_name;
use crate::serve::tokens::{Role, TokenStore};

/// One hosted vault.
pub struct Vault {
    /// Its name.
    pub name: String,
    /// Its repository.
    pub repo: Repository,
    /// This server's chain of the vault's audit log (in the vault's store).
    pub audit: AuditWriter,
    /// Its state directory (this server's own files for it: cache, resume journals).
    pub state: PathBuf,
}

/// Every vault, by name.
#[derive(Default)]
pub struct Vaults {
    map: BTreeMap<String, Arc<Vault>>,
}

/// Where a server keeps things: the store (shared by a cluster) and its state directory.
pub struct Places<'a> {
    /// The store's root.
    pub store: &'a DynBackend,
    /// This server's state directory.
    pub state_dir: &'a Path,
    /// The key that seals vault passphrases.
    pub cluster_key: &'a ClusterKey,
}

/// Store key of the sealed passphrase of a vault (also its entry in the vault registry).
fn key_object(name: &str) -> String {
    format!("server/vaults/{name}.key")
}

/// How long a server waits for another server that registered a vault to create it.
const CREATE_WAIT: Duration = Duration::from_secs(30);

impl Vaults {
    /// Opens every vault in the store's registry and creates the `wanted` ones that are
    /// missing. `announce(vault, token)` is called with an admin token for every vault that
    /// has no admin token yet (a new vault): the only time that token is shown.
    ///
    /// # Errors
    /// A vault that cannot be created or opened (wrong cluster key, damaged config).
    pub fn open(
        places: &Places<'_>,
        wanted: &[String],
        tokens: &TokenStore,
        announce: &mut dyn FnMut(&str, &str),
    ) -> Result<Vaults> {
        let mut names: Vec<String> = wanted.to_vec();
        for name in registered(places.store)? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut map = BTreeMap::new();
        for name in names {
            let vault = open_or_create(places, &name)?;
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

    /// Every vault.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Vault>> {
        self.map.values()
    }
}

/// The vaults in the registry (`server/vaults/<name>.key`), and those of an older local
/// data directory (`server/vault-keys/<name>.key`, an unsealed passphrase).
fn registered(store: &DynBackend) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for prefix in ["server/vaults/", "server/vault-keys/"] {
        for obj in store.list(prefix)? {
            let name = obj.key.strip_prefix(prefix).and_then(|k| k.strip_suffix(".key"));
            if let Some(name) = name.filter(|n| validate_vault_name(n).is_ok())
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// The vault's passphrase, and whether this server registered the vault just now (and so
/// creates it). A vault is registered before it is created, so it never exists without
/// its key.
fn passphrase(places: &Places<'_>, name: &str) -> Result<(Vec<u8>, bool)> {
    let store = places.store;
    let key = places.cluster_key;
    match store.get(&key_object(name)) {
        Ok(sealed) => return Ok((key.open(name, &sealed)?, false)),
        Err(BackendError::NotFound { .. }) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read the key of vault {name}")),
    }
    let legacy = format!("server/vault-keys/{name}.key");
    let (pass, fresh) = match store.get(&legacy) {
        Ok(text) => (text.trim_ascii().to_vec(), false),
        Err(BackendError::NotFound { .. }) => (new_passphrase()?.into_bytes(), true),
        Err(e) => return Err(e).with_context(|| format!("cannot read {legacy}")),
    };
    let sealed = key.seal(name, &pass)?;
    match store.put(&key_object(name), &sealed, PutMode::CreateOnly)? {
        PutOutcome::Created => Ok((pass, fresh)),
        // Another server registered it first: its passphrase is the vault's.
        PutOutcome::AlreadyExisted => Ok((key.open(name, &store.get(&key_object(name))?)?, false)),
    }
}

fn open_or_create(places: &Places<'_>, name: &str) -> Result<Vault> {
    let state = places.state_dir.join("vaults").join(name);
    let cache = state.join("cache");
    let vault_store = sub_store(places.store, &format!("vaults/{name}"))?;
    let (pass, registered_here) = passphrase(places, name)?;
    let exists = || -> Result<bool> { Ok(vault_store.head("config")?.is_some()) };
    let repo = if exists()? {
        Repository::open(vault_store, &cache, &pass).with_context(|| format!("cannot open vault {name}"))?
    } else if registered_here || !wait_for_creator(&exists)? {
        let opts = InitOptions {
            label: format!("amber serve vault {name}"),
            ..InitOptions::default()
        };
        Repository::init(vault_store, &cache, &pass, &opts).with_context(|| format!("cannot create vault {name}"))?
    } else {
        Repository::open(vault_store, &cache, &pass).with_context(|| format!("cannot open vault {name}"))?
    };
    prune_resume_files(&state.join("resume"));
    let audit = AuditWriter::new(repo.backend().clone())?;
    Ok(Vault {
        name: name.to_string(),
        repo,
        audit,
        state,
    })
}

/// Waits for the server that registered a vault to create it; `false` when it did not
/// within [`CREATE_WAIT`] (it stopped half-way), and this server creates it instead.
fn wait_for_creator(exists: &dyn Fn() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    while start.elapsed() < CREATE_WAIT {
        if exists()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(false)
}

/// How long the journal or spool of a push that was never retried is kept.
pub const RESUME_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// A random passphrase for a new vault.
fn new_passphrase() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(hex::encode(bytes))
}
