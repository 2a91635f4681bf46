//! The cluster key, and vault passphrases sealed under it so that they can live in the
//! store where every server of a cluster finds them (`format-spec/server.md`, "Sealed vault
//! keys"). The cluster key is given to each server (a file, or `AMBER_CLUSTER_KEY`); this is
//! the seam where a KMS would go.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// First bytes of a sealed vault key.
pub const MAGIC: &[u8; 7] = b"AMBERVK";
/// Its version.
pub const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

/// The 32-byte key that seals every vault passphrase of a cluster.
pub struct ClusterKey([u8; 32]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    /// A key from its 64 hex digits (surrounding white space ignored).
    ///
    /// # Errors
    /// Anything but 64 hex digits.
    pub fn from_hex(text: &str) -> Result<ClusterKey> {
        let bytes = hex::decode(text.trim()).map_err(|_| anyhow!("a cluster key is 64 hex digits"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow!("a cluster key is 64 hex digits (32 bytes)"))?;
        Ok(ClusterKey(key))
    }

    /// Reads the key from `path`; when `create` and the file is missing, makes a new random
    /// key there first (mode 0600, crash-safely).
    ///
    /// # Errors
    /// An unreadable or malformed file; a failed write.
    pub fn load(path: &Path, create: bool) -> Result<ClusterKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text).with_context(|| format!("invalid cluster key file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| anyhow!("the system random number generator failed"))?;
                write_new_key(path, &hex::encode(key))?;
                Self::load(path, false)
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read the cluster key {} (every server of a cluster is given the same key: \
                     set cluster_key_file or AMBER_CLUSTER_KEY)",
                    path.display()
                )
            }),
        }
    }

    fn aead(&self) -> Result<LessSafeKey> {
        let key = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| anyhow!("bad cluster key"))?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals the passphrase of vault `vault` with a random nonce.
    ///
    /// # Errors
    /// A failing random generator.
    pub fn seal(&self, vault: &str, passphrase: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow!("the system random number generator failed"))?;
        self.seal_with_nonce(vault, passphrase, nonce)
    }

    /// [`ClusterKey::seal`] with a given nonce (for the golden vector).
    ///
    /// # Errors
    /// None in practice.
    pub fn seal_with_nonce(&self, vault: &str, passphrase: &[u8], nonce: [u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let mut body = passphrase.to_vec();
        self.aead()?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(vault)), &mut body)
            .map_err(|_| anyhow!("cannot seal the key of vault {vault}"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a sealed passphrase of vault `vault`.
    ///
    /// # Errors
    /// Another magic or version, or a key or vault name that does not open it.
    pub fn open(&self, vault: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| anyhow!("the sealed key of vault {vault} does not start with {MAGIC:?}"))?;
        let (&version, rest) = rest
            .split_first()
            .ok_or_else(|| anyhow!("the sealed key of vault {vault} is empty"))?;
        if version != VERSION {
            bail!("the sealed key of vault {vault} has version {version}; this amber reads {VERSION}");
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            bail!("the sealed key of vault {vault} is truncated");
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow!("bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::from(aad(vault)), &mut body)
            .map_err(|_| {
                anyhow!(
                    "the cluster key does not open the key of vault {vault}: this server was given another \
                     cluster's key, or the sealed key was changed"
                )
            })?;
        Ok(plain.to_vec())
    }
}

fn aad(vault: &str) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.push(VERSION);
    aad.extend_from_slice(vault.as_bytes());
    aad
}

fn write_new_key(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ClusterKey;

    const VECTOR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../format-spec/vectors/server-sealed-vault-key.hex"
    );

    fn key() -> ClusterKey {
        ClusterKey::from_hex(&"0f".repeat(32)).unwrap()
    }

    #[test]
    fn golden_vector() {
        let sealed = key().seal_with_nonce("lab-a", b"vault passphrase", [7u8; 12]).unwrap();
        if std::env::var_os("AMBER_BLESS").is_some() {
            let header =
                "# sealed key of vault lab-a: passphrase \"vault passphrase\", cluster key 0f x 32, nonce 07 x 12";
            std::fs::write(VECTOR, format!("{header}\n{}\n", hex::encode(&sealed))).unwrap();
        }
        let text = std::fs::read_to_string(VECTOR).unwrap();
        let stored: String = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(stored.trim(), hex::encode(&sealed), "encoding changed");
        assert_eq!(
            key().open("lab-a", &hex::decode(stored.trim()).unwrap()).unwrap(),
            b"vault passphrase"
        );
    }

    #[test]
    fn another_key_vault_or_a_changed_byte_does_not_open() {
        let sealed = key().seal("lab-a", b"secret").unwrap();
        assert_eq!(key().open("lab-a", &sealed).unwrap(), b"secret");
        assert!(key().open("lab-b", &sealed).is_err());
        assert!(
            ClusterKey::from_hex(&"01".repeat(32))
                .unwrap()
                .open("lab-a", &sealed)
                .is_err()
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(key().open("lab-a", &bad).is_err());
        assert!(ClusterKey::from_hex("abc").is_err());
    }
}
