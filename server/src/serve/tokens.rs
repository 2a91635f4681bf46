//! Bearer tokens, each scoped to one vault and one role, kept in one JSON object of the
//! store, so every server of a cluster sees the same tokens (`format-spec/server.md`).
//! Changes are compare-and-swap: read the object and its version, change, write it back
//! only if the version is unchanged, else read again; no lock. A token is `amber1_<id>_<secret>`: the id is 8 random bytes
//! and the secret 32, both as lower-case hex. The file keeps only BLAKE3 of the secret's
//! 32 bytes, so reading it does not give anyone a usable token.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use amber_engine::backend::local::LocalBackend;
use amber_engine::backend::{BackendError, CasOutcome, DynBackend, PutMode, PutOutcome};
use anyhow::{Context, Result, anyhow, bail};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::config::validate_vault_name;

/// `format` of the token file.
pub const FILE_FORMAT: &str = "amber-tokens";
/// `version` of the token file.
pub const FILE_VERSION: u32 = 1;
/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "amber1_";
/// Longest token name, in bytes.
pub const MAX_NAME: usize = 128;

const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// What a token may do in its vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pushes snapshots (a backup sidecar).
    Sidecar,
    /// Lists, reads and restores snapshots.
    Restore,
    /// Everything, including managing tokens.
    Admin,
}

impl Role {
    /// The role's name: `sidecar`, `restore` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sidecar => "sidecar",
            Role::Restore => "restore",
            Role::Admin => "admin",
        }
    }

    /// The role called `text` (as written by [`Role::as_str`]).
    ///
    /// # Errors
    /// Any other text; the message lists the roles.
    pub fn parse(text: &str) -> Result<Role> {
        match text {
            "sidecar" => Ok(Role::Sidecar),
            "restore" => Ok(Role::Restore),
            "admin" => Ok(Role::Admin),
            _ => bail!("unknown role {text:?}: expected sidecar, restore or admin"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (16 hex digits; not secret).
    pub token_id: String,
    /// The one vault the token is valid for.
    pub vault: String,
    /// What it may do there.
    pub role: Role,
    /// The name given when it was made.
    pub name: String,
}

/// A token as listed: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Id (16 hex digits).
    pub id: String,
    /// Vault.
    pub vault: String,
    /// Role.
    pub role: Role,
    /// Name given when it was made.
    pub name: String,
    /// Seconds since the Unix epoch when it was made.
    pub created_unix: i64,
    /// Seconds since the Unix epoch when it was revoked; 0 while valid.
    pub revoked_unix: i64,
}

/// Why a request's token was refused. The messages never contain the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header.
    #[error("no bearer token was sent")]
    Missing,
    /// The header is not `Bearer amber1_<16 hex>_<64 hex>`.
    #[error("the authorization header is not of the form `Bearer amber1_<id>_<secret>`")]
    Malformed,
    /// No token has this id, or the secret does not match.
    #[error("the bearer token is not known to this server")]
    Unknown,
    /// The token was revoked.
    #[error("the bearer token has been revoked")]
    Revoked,
}

/// One token as stored in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    id: String,
    vault: String,
    role: Role,
    name: String,
    secret_blake3: String,
    created_unix: i64,
    revoked_unix: i64,
}

/// The token file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    format: String,
    version: u32,
    tokens: Vec<Stored>,
}

/// A stored token with its hash parsed, for verifying.
#[derive(Clone, Debug)]
struct Entry {
    stored: Stored,
    hash: blake3::Hash,
}

impl Entry {
    fn info(&self) -> TokenInfo {
        let s = &self.stored;
        TokenInfo {
            id: s.id.clone(),
            vault: s.vault.clone(),
            role: s.role,
            name: s.name.clone(),
            created_unix: s.created_unix,
            revoked_unix: s.revoked_unix,
        }
    }
}

/// The server's tokens, persisted in one store object and changed by compare-and-swap.
/// Safe to share between threads. Its methods do blocking store I/O only when they change
/// the tokens (`create`, `revoke`) or [`TokenStore::refresh`] them.
#[derive(Debug)]
pub struct TokenStore {
    store: DynBackend,
    key: String,
    entries: Mutex<Vec<Entry>>,
}

/// How often a change is tried again after another writer changed the tokens first.
const CAS_TRIES: usize = 50;

impl TokenStore {
    /// Opens the tokens kept in the file `path` (a local store of one object); a missing
    /// file is an empty store (the file is made on the first change).
    ///
    /// # Errors
    /// As [`TokenStore::open_in`].
    pub fn open(path: &Path) -> Result<TokenStore> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("token file {} has no UTF-8 name", path.display()))?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Self::open_in(Arc::new(LocalBackend::new(dir)), name)
    }

    /// Opens the tokens kept in object `key` of `store`; a missing object is an empty store.
    ///
    /// # Errors
    /// An unreadable object, invalid JSON, another `format` or `version`, or an invalid entry
    /// (bad id or hash, bad vault name, duplicate id).
    pub fn open_in(store: DynBackend, key: &str) -> Result<TokenStore> {
        let (entries, _) = read_entries(store.as_ref(), key)?;
        Ok(TokenStore {
            store,
            key: key.to_string(),
            entries: Mutex::new(entries),
        })
    }

    /// Reads the tokens again, taking what other servers of the cluster changed.
    ///
    /// # Errors
    /// As [`TokenStore::open_in`]; the tokens in memory are unchanged then.
    pub fn refresh(&self) -> Result<()> {
        let (entries, _) = read_entries(self.store.as_ref(), &self.key)?;
        *self.lock() = entries;
        Ok(())
    }

    /// Makes a token for `vault` with `role`, persists it, and returns the token text (the
    /// only time it exists outside the caller) with its listing.
    ///
    /// # Errors
    /// An invalid vault name, a name that is empty, longer than 128 bytes or holds control
    /// characters, a failing random generator, or a failed write (the store is unchanged).
    pub fn create(&self, vault: &str, role: Role, name: &str) -> Result<(String, TokenInfo)> {
        validate_vault_name(vault)?;
        validate_name(name)?;
        let secret: [u8; SECRET_BYTES] = random()?;
        let hash = blake3::hash(&secret);
        let info = self.update(|entries| {
            let id = loop {
                let id = hex::encode(random::<ID_BYTES>()?);
                if !entries.iter().any(|e| e.stored.id == id) {
                    break id;
                }
            };
            let stored = Stored {
                id,
                vault: vault.to_string(),
                role,
                name: name.to_string(),
                secret_blake3: hash.to_hex().to_string(),
                created_unix: now_unix(),
                revoked_unix: 0,
            };
            let entry = Entry { stored, hash };
            let info = entry.info();
            entries.push(entry);
            Ok(info)
        })?;
        Ok((format!("{TOKEN_PREFIX}{}_{}", info.id, hex::encode(secret)), info))
    }

    /// Checks an `authorization` header value (`Bearer amber1_…`; the scheme is matched
    /// without regard to case). The secret's hash is compared in constant time.
    ///
    /// # Errors
    /// [`AuthError`]: a revoked token is reported as such only to a caller that knows its
    /// secret.
    pub fn verify(&self, header_value: Option<&str>) -> Result<Principal, AuthError> {
        let (id, secret) = parse_header(header_value.ok_or(AuthError::Missing)?)?;
        let hash = blake3::hash(&secret);
        let entries = self.lock();
        let entry = entries.iter().find(|e| e.stored.id == id).ok_or(AuthError::Unknown)?;
        if entry.hash != hash {
            return Err(AuthError::Unknown);
        }
        if entry.stored.revoked_unix != 0 {
            return Err(AuthError::Revoked);
        }
        Ok(Principal {
            token_id: entry.stored.id.clone(),
            vault: entry.stored.vault.clone(),
            role: entry.stored.role,
            name: entry.stored.name.clone(),
        })
    }

    /// Every token of `vault`, revoked ones included, oldest first.
    pub fn list(&self, vault: &str) -> Vec<TokenInfo> {
        let mut list: Vec<TokenInfo> = self
            .lock()
            .iter()
            .filter(|e| e.stored.vault == vault)
            .map(Entry::info)
            .collect();
        list.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        list
    }

    /// Revokes token `id` of `vault` and persists the change. Revoking a revoked token
    /// changes nothing and returns it as it is.
    ///
    /// # Errors
    /// No token `id` in `vault` (the same message whether or not another vault has it), or
    /// a failed write (the store is unchanged).
    pub fn revoke(&self, vault: &str, id: &str) -> Result<TokenInfo> {
        self.update(|entries| {
            let entry = entries
                .iter_mut()
                .find(|e| e.stored.vault == vault && e.stored.id == id)
                .ok_or_else(|| anyhow!("vault {vault:?} has no token with id {id:?}"))?;
            if entry.stored.revoked_unix == 0 {
                entry.stored.revoked_unix = now_unix().max(1);
            }
            Ok(entry.info())
        })
    }

    /// Whether `vault` has an admin token that is not revoked.
    pub fn has_admin(&self, vault: &str) -> bool {
        self.lock()
            .iter()
            .any(|e| e.stored.vault == vault && e.stored.role == Role::Admin && e.stored.revoked_unix == 0)
    }

    /// The entries; a panic elsewhere cannot leave them half-changed (changes are swapped
    /// in whole after the write), so a poisoned lock is still good.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the current tokens and their version, applies `change`, and writes them back
    /// only if nobody changed them meanwhile (create-only when there were none); on a
    /// conflict, does it all again on what the other writer stored.
    fn update<T>(&self, mut change: impl FnMut(&mut Vec<Entry>) -> Result<T>) -> Result<T> {
        let _held = self.lock();
        for _ in 0..CAS_TRIES {
            let (mut entries, version) = read_entries(self.store.as_ref(), &self.key)?;
            let out = change(&mut entries)?;
            let bytes = encode_file(&entries)?;
            let written = match &version {
                None => self.store.put(&self.key, &bytes, PutMode::CreateOnly)? == PutOutcome::Created,
                Some(etag) => matches!(
                    self.store.put_if_match(&self.key, &bytes, etag)?,
                    CasOutcome::Replaced(_)
                ),
            };
            if written {
                drop(_held);
                *self.lock() = entries;
                return Ok(out);
            }
        }
        bail!(
            "the tokens in {} kept changing under this change ({CAS_TRIES} tries): nothing was changed",
            self.where_()
        )
    }

    fn where_(&self) -> String {
        format!("{}/{}", self.store.describe(), self.key)
    }
}

/// The tokens in `key` and the object's version (`None`: no object yet).
fn read_entries(store: &dyn amber_engine::backend::Backend, key: &str) -> Result<(Vec<Entry>, Option<String>)> {
    let place = || format!("{}/{key}", store.describe());
    let Some(info) = store
        .stat(key)
        .with_context(|| format!("cannot read token file {}", place()))?
    else {
        return Ok((Vec::new(), None));
    };
    let bytes = match store.get(key) {
        Ok(b) => b,
        Err(BackendError::NotFound { .. }) => return Ok((Vec::new(), None)),
        Err(e) => return Err(e).with_context(|| format!("cannot read token file {}", place())),
    };
    let entries = decode_file(&bytes).with_context(|| format!("invalid token file {}", place()))?;
    Ok((entries, info.etag))
}

/// The file's bytes: pretty JSON (two-space indent) and a final newline.
fn encode_file(entries: &[Entry]) -> Result<Vec<u8>> {
    let file = TokenFile {
        format: FILE_FORMAT.to_string(),
        version: FILE_VERSION,
        tokens: entries.iter().map(|e| e.stored.clone()).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&file).context("cannot encode the token file")?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decodes a token file's bytes as [`TokenStore::open`] does and returns how many tokens
/// it holds: for tooling and fuzzing.
///
/// # Errors
/// Whatever makes `open` refuse the file.
pub fn check_file(bytes: &[u8]) -> Result<usize> {
    decode_file(bytes).map(|e| e.len())
}

fn decode_file(bytes: &[u8]) -> Result<Vec<Entry>> {
    let header: serde_json::Value = serde_json::from_slice(bytes)?;
    let format = header.get("format").and_then(|v| v.as_str());
    let version = header.get("version").and_then(|v| v.as_u64());
    if format != Some(FILE_FORMAT) || version != Some(u64::from(FILE_VERSION)) {
        bail!("expected format {FILE_FORMAT:?} version {FILE_VERSION}, found {format:?} version {version:?}");
    }
    let file: TokenFile = serde_json::from_value(header)?;
    let mut entries: Vec<Entry> = Vec::with_capacity(file.tokens.len());
    for stored in file.tokens {
        let entry = check_stored(stored)?;
        if entries.iter().any(|e| e.stored.id == entry.stored.id) {
            bail!("token id {} appears twice", entry.stored.id);
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn check_stored(stored: Stored) -> Result<Entry> {
    let id = &stored.id;
    if !is_lower_hex(id, ID_BYTES * 2) {
        bail!("token id {id:?} is not 16 lower-case hex digits");
    }
    if !is_lower_hex(&stored.secret_blake3, 64) {
        bail!("token {id}: secret_blake3 is not 64 lower-case hex digits");
    }
    validate_vault_name(&stored.vault).with_context(|| format!("token {id}"))?;
    validate_name(&stored.name).with_context(|| format!("token {id}"))?;
    let hash = blake3::Hash::from_hex(&stored.secret_blake3).with_context(|| format!("token {id}"))?;
    Ok(Entry { stored, hash })
}

/// `Bearer amber1_<id>_<secret>` → (id, secret bytes).
fn parse_header(value: &str) -> Result<(&str, [u8; SECRET_BYTES]), AuthError> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let rest = token
        .trim_start()
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(AuthError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
    if !is_lower_hex(id, ID_BYTES * 2) || !is_lower_hex(secret, SECRET_BYTES * 2) {
        return Err(AuthError::Malformed);
    }
    let mut bytes = [0u8; SECRET_BYTES];
    hex::decode_to_slice(secret, &mut bytes).map_err(|_| AuthError::Malformed)?;
    Ok((id, bytes))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        bail!("a token name is 1 to {MAX_NAME} bytes; this one has {}", name.len());
    }
    if name.chars().any(char::is_control) {
        bail!("a token name may not contain control characters");
    }
    Ok(())
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("the system random number generator failed"))?;
    Ok(bytes)
}

fn now_unix() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../format-spec/vectors/server-tokens.json");

    /// The vector's tokens, made from fixed secrets (bytes 0..32, 32..64 and 64..96).
    fn vector_entries() -> Vec<(String, Entry)> {
        let rows = [
            (
                "0123456789abcdef",
                "lab-a",
                Role::Sidecar,
                "ci sidecar",
                1_700_000_000,
                0,
                0u8,
            ),
            (
                "fedcba9876543210",
                "lab-a",
                Role::Admin,
                "old admin",
                1_700_000_100,
                1_700_000_200,
                32,
            ),
            (
                "00000000000000ff",
                "default",
                Role::Restore,
                "restore \"ops\"",
                1_700_000_300,
                0,
                64,
            ),
        ];
        rows.iter()
            .map(|&(id, vault, role, name, created, revoked, first)| {
                let secret: Vec<u8> = (first..first + 32).collect();
                let hash = blake3::hash(&secret);
                let stored = Stored {
                    id: id.to_string(),
                    vault: vault.to_string(),
                    role,
                    name: name.to_string(),
                    secret_blake3: hash.to_hex().to_string(),
                    created_unix: created,
                    revoked_unix: revoked,
                };
                (
                    format!("{TOKEN_PREFIX}{id}_{}", hex::encode(&secret)),
                    Entry { stored, hash },
                )
            })
            .collect()
    }

    #[test]
    fn golden_vector() {
        let vector = vector_entries();
        let entries: Vec<Entry> = vector.iter().map(|(_, e)| e.clone()).collect();
        let expected = encode_file(&entries).unwrap();
        if std::env::var_os("AMBER_BLESS").is_some() {
            std::fs::write(VECTOR, &expected).unwrap();
        }
        let stored = std::fs::read(VECTOR).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(&expected),
            "encoding changed"
        );
        let store = TokenStore::open(Path::new(VECTOR)).unwrap();
        let sidecar = &vector[0].0;
        assert_eq!(
            sidecar,
            "amber1_0123456789abcdef_000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        let p = store.verify(Some(&format!("Bearer {sidecar}"))).unwrap();
        assert_eq!(
            p,
            Principal {
                token_id: "0123456789abcdef".into(),
                vault: "lab-a".into(),
                role: Role::Sidecar,
                name: "ci sidecar".into()
            }
        );
        assert_eq!(
            store.verify(Some(&format!("Bearer {}", vector[1].0))),
            Err(AuthError::Revoked)
        );
        let p = store.verify(Some(&format!("bearer {}", vector[2].0))).unwrap();
        assert_eq!((p.vault.as_str(), p.role), ("default", Role::Restore));
        assert!(!store.has_admin("lab-a"));
    }

    #[test]
    fn create_verify_list_revoke_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server").join("tokens.json");
        let store = TokenStore::open(&path).unwrap();
        assert!(store.list("lab").is_empty());
        let (token, info) = store.create("lab", Role::Admin, "first").unwrap();
        assert!(
            token.starts_with("amber1_") && token.len() == 7 + 16 + 1 + 64,
            "{token}"
        );
        assert!(
            !std::fs::read_to_string(&path).unwrap().contains(&token[24..]),
            "secret stored"
        );
        let header = format!("Bearer {token}");
        let p = store.verify(Some(&header)).unwrap();
        assert_eq!(
            (p.token_id.as_str(), p.vault.as_str(), p.role),
            (info.id.as_str(), "lab", Role::Admin)
        );
        assert!(store.has_admin("lab") && !store.has_admin("other"));
        let (_, other) = store.create("other", Role::Sidecar, "x").unwrap();

        let reopened = TokenStore::open(&path).unwrap();
        assert_eq!(reopened.list("lab"), vec![info.clone()]);
        assert!(reopened.verify(Some(&header)).is_ok());

        assert!(store.revoke("lab", &other.id).is_err(), "another vault's token");
        let revoked = store.revoke("lab", &info.id).unwrap();
        assert_ne!(revoked.revoked_unix, 0);
        assert_eq!(store.revoke("lab", &info.id).unwrap(), revoked, "idempotent");
        assert_eq!(store.verify(Some(&header)), Err(AuthError::Revoked));
        assert!(!store.has_admin("lab"));
        let reopened = TokenStore::open(&path).unwrap();
        assert_eq!(reopened.verify(Some(&header)), Err(AuthError::Revoked));
    }

    #[test]
    fn file_mode_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = TokenStore::open(&path).unwrap();
        store.create("lab", Role::Restore, "r").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("tokens.json.tmp").exists());
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(&dir.path().join("t.json")).unwrap();
        let (token, _) = store.create("lab", Role::Sidecar, "s").unwrap();
        assert_eq!(store.verify(None), Err(AuthError::Missing));
        for bad in [
            "",
            "Bearer",
            token.as_str(),
            "Basic abc",
            "Bearer amber1_xyz",
            "Bearer amber2_0_0",
        ] {
            assert_eq!(store.verify(Some(bad)), Err(AuthError::Malformed), "{bad:?}");
        }
        let upper = format!("Bearer {}", token.to_uppercase().replace("AMBER1_", "amber1_"));
        assert_eq!(store.verify(Some(&upper)), Err(AuthError::Malformed));
        let mut wrong = format!("Bearer {token}");
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert_eq!(store.verify(Some(&wrong)), Err(AuthError::Unknown));
        let unknown = format!("Bearer amber1_{}_{}", "1".repeat(16), "2".repeat(64));
        assert_eq!(store.verify(Some(&unknown)), Err(AuthError::Unknown));
        let message = AuthError::Unknown.to_string() + &AuthError::Malformed.to_string();
        assert!(!message.contains(&token[24..]));
    }

    #[test]
    fn invalid_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(&dir.path().join("t.json")).unwrap();
        assert!(store.create("Bad", Role::Admin, "x").is_err());
        assert!(store.create("lab", Role::Admin, "").is_err());
        assert!(store.create("lab", Role::Admin, &"x".repeat(129)).is_err());
        assert!(store.create("lab", Role::Admin, &"x".repeat(128)).is_ok());
        assert!(store.create("lab", Role::Admin, "a\nb").is_err());
        assert!(!dir.path().join("t.json").exists() || store.list("lab").len() == 1);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        for text in [
            r#"{"format":"amber-tokens","version":2,"tokens":[]}"#,
            r#"{"format":"other","version":1,"tokens":[]}"#,
            r#"{"format":"amber-tokens","version":1,"tokens":[],"extra":1}"#,
            r#"{"format":"amber-tokens","version":1,"tokens":[{"id":"0123456789abcdeF","vault":"a","role":"admin","name":"n","secret_blake3":"00","created_unix":0,"revoked_unix":0}]}"#,
            "not json",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(TokenStore::open(&path).is_err(), "{text}");
        }
        std::fs::write(&path, r#"{"format":"amber-tokens","version":1,"tokens":[]}"#).unwrap();
        assert!(TokenStore::open(&path).unwrap().list("a").is_empty());
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Sidecar, Role::Restore, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
            assert_eq!(role.to_string(), role.as_str());
        }
        assert!(Role::parse("Admin").is_err());
    }
}
