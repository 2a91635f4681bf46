//! Keys, key derivation and authenticated encryption (ring AES-256-GCM, Argon2id).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::CryptoError;
use crate::hash::IdKey;
use crate::id::VaultId;

/// Bytes of an AEAD nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of an AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes every sealed message adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Fills an array from the system random generator.
///
/// # Errors
/// [`CryptoError::Random`] when the OS generator fails.
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// A 256-bit AES-GCM key.
pub struct SealKey(LessSafeKey);

impl SealKey {
    /// Builds a key from 32 bytes.
    ///
    /// # Errors
    /// Never in practice: ring accepts every 32-byte key.
    pub fn new(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&aead::AES_256_GCM, bytes).map_err(|_| CryptoError::Kdf("bad AES key length".into()))?;
        Ok(SealKey(LessSafeKey::new(unbound)))
    }

    /// Seals with a random nonce: `nonce ‖ ciphertext ‖ tag`.
    ///
    /// # Errors
    /// [`CryptoError::Random`] when no nonce could be drawn.
    pub fn seal(&self, aad: &[u8], plaintext: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(random_array()?, aad, plaintext)
    }

    /// Seals with a given nonce (golden vectors only; never reuse a nonce).
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] if ring refuses (cannot happen for sane lengths).
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        mut plaintext: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut plaintext)
            .map_err(|_| CryptoError::Authentication { what: "seal".into() })?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plaintext);
        Ok(out)
    }

    /// Opens `nonce ‖ ciphertext ‖ tag`; `what` names the object in the error.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] when the bytes or the associated data differ.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: impl Fn() -> String) -> Result<Vec<u8>, CryptoError> {
        let fail = || CryptoError::Authentication { what: what() };
        if sealed.len() < SEAL_OVERHEAD {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail())?;
        let mut buf = body.to_vec();
        let plain_len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// A vault's random master key. Never stored unwrapped.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// [`CryptoError::Random`].
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(MasterKey(random_array()?))
    }
    /// Wraps known bytes (unwrapping a key slot, golden vectors).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn derive(&self, vault: &VaultId, label: &[u8]) -> Result<[u8; 32], CryptoError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, vault.as_bytes());
        let prk = salt.extract(&self.0);
        let info = [label];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .map_err(|_| CryptoError::Kdf("hkdf expand".into()))?;
        let mut out = [0u8; 32];
        okm.fill(&mut out).map_err(|_| CryptoError::Kdf("hkdf fill".into()))?;
        Ok(out)
    }

    /// Derives the vault's working keys with HKDF-SHA256 (salt = vault id).
    ///
    /// # Errors
    /// [`CryptoError::Kdf`] (cannot happen for these fixed lengths).
    pub fn subkeys(&self, vault: &VaultId) -> Result<VaultKeys, CryptoError> {
        let id = |label: &[u8]| self.derive(vault, label).map(IdKey::from_bytes);
        Ok(VaultKeys {
            ids: IdKeys {
                chunk: id(b"amber v1 chunk id")?,
                tree: id(b"amber v1 tree id")?,
                list: id(b"amber v1 chunk list id")?,
                snapshot: id(b"amber v1 snapshot id")?,
                layout: id(b"amber v1 tar layout id")?,
            },
            seal_key: SealKey::new(&self.derive(vault, b"amber v1 blob key")?)?,
            audit_key: SealKey::new(&self.derive(vault, b"amber v1 audit key")?)?,
            config_mac: self.derive(vault, b"amber v1 config mac")?,
            chunker_key: self.derive(vault, b"amber v1 chunker gear")?,
        })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// One keyed-BLAKE3 key per kind of content-addressed object, so a chunk can never
/// share an id with a tree node whose encoding happens to equal its bytes.
pub struct IdKeys {
    /// Chunk ids.
    pub chunk: IdKey,
    /// Tree node ids.
    pub tree: IdKey,
    /// Chunk-list node ids.
    pub list: IdKey,
    /// Snapshot ids.
    pub snapshot: IdKey,
    /// Tar layout chunk ids.
    pub layout: IdKey,
}

/// The working keys of one vault, all derived from its master key.
pub struct VaultKeys {
    /// Keys BLAKE3 for ids.
    pub ids: IdKeys,
    /// Seals every blob, pack directory, index segment and snapshot.
    pub seal_key: SealKey,
    /// Seals the records of the audit log (`format-spec/audit.md`).
    pub audit_key: SealKey,
    /// Authenticates the plaintext config.
    pub config_mac: [u8; 32],
    /// Keys the chunker's gear table.
    pub chunker_key: [u8; 32],
}

/// Argon2id cost parameters, stored in each key slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// Default: 64 MiB, 3 passes, 1 lane (OWASP's Argon2id baseline is 19 MiB, 2 passes).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// Smallest memory accepted when creating a slot.
    pub const MIN_MEMORY_KIB: u32 = 8 * 1024;
    /// Largest memory accepted when opening a slot (a forged slot cannot exhaust memory).
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
}

/// Derives a key-encryption key from a passphrase with Argon2id.
///
/// # Errors
/// [`CryptoError::Kdf`] when the parameters are out of range.
pub fn derive_kek(passphrase: &[u8], salt: &[u8; 16], params: KdfParams) -> Result<[u8; 32], CryptoError> {
    if params.memory_kib > KdfParams::MAX_MEMORY_KIB || params.iterations > 64 || params.parallelism > 16 {
        return Err(CryptoError::Kdf(format!(
            "key slot asks for excessive KDF cost {params:?}"
        )));
    }
    let p = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = SealKey::new(&[1u8; 32]).unwrap();
        let sealed = key.seal(b"aad", b"hello".to_vec()).unwrap();
        assert_eq!(key.open(b"aad", &sealed, || "x".into()).unwrap(), b"hello");
        assert!(key.open(b"other", &sealed, || "x".into()).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(key.open(b"aad", &bad, || "x".into()).is_err());
        assert!(key.open(b"aad", &sealed[..10], || "x".into()).is_err());
    }

    #[test]
    fn subkeys_differ_per_vault() {
        let mk = MasterKey::from_bytes([9u8; 32]);
        let a = mk.subkeys(&VaultId::default()).unwrap();
        let b = mk
            .subkeys(&VaultId::new(crate::id::Hash32::from_bytes([1; 32])))
            .unwrap();
        assert_ne!(a.config_mac, b.config_mac);
        assert_ne!(a.chunker_key, b.chunker_key);
        assert_ne!(a.ids.chunk.hash(b"x"), a.ids.tree.hash(b"x"));
    }

    #[test]
    fn kdf_rejects_forged_costs() {
        let p = KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        };
        assert!(derive_kek(b"pw", &[0; 16], p).is_err());
    }
}
