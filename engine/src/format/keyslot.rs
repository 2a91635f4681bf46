//! Key slots: the vault master key wrapped under a passphrase-derived key.
//!
//! Stored as `keys/<slot id>`:
//! ```text
//! 0   8  "AMBRKEYS"
//! 8   2  version (1)
//! 10  1  KDF (1 = Argon2id v1.3)
//! 11  1  zero
//! 12  4  memory KiB, 4 iterations, 4 lanes (u32)
//! 24  16 salt
//! 40  8  created, seconds since the epoch (i64)
//! 48  .. bytes16 label
//! ..  60 nonce ‖ AES-256-GCM(master key) ‖ tag
//! ```
//! Associated data: `"amber keyslot v1" ‖ vault id ‖ slot id ‖ every byte before the nonce`.

use crate::crypto::{KdfParams, SEAL_OVERHEAD};
use crate::format::FormatError;
use crate::format::codec::{Reader, Writer, expect_header};
use crate::id::{KeySlotId, VaultId};

/// Magic.
pub const KEYSLOT_MAGIC: &[u8; 8] = b"AMBRKEYS";
/// Version.
pub const KEYSLOT_VERSION: u16 = 1;
/// Bytes of the wrapped master key.
pub const WRAPPED_LEN: usize = 32 + SEAL_OVERHEAD;

/// One key slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    /// Argon2id cost.
    pub kdf: KdfParams,
    /// KDF salt.
    pub salt: [u8; 16],
    /// Creation time, seconds.
    pub created: i64,
    /// Free label (user@host).
    pub label: String,
    /// `nonce ‖ ciphertext ‖ tag` of the master key.
    pub wrapped: Vec<u8>,
}

impl KeySlot {
    /// The bytes before the wrapped key (also part of the associated data).
    pub fn encode_header(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.label.len());
        w.bytes(KEYSLOT_MAGIC);
        w.u16(KEYSLOT_VERSION);
        w.u8(1);
        w.u8(0);
        w.u32(self.kdf.memory_kib);
        w.u32(self.kdf.iterations);
        w.u32(self.kdf.parallelism);
        w.bytes(&self.salt);
        w.i64(self.created);
        w.bytes16(self.label.as_bytes());
        w.into_bytes()
    }

    /// Full encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_header();
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// Decodes a slot.
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        expect_header(&mut r, KEYSLOT_MAGIC, "key slot", KEYSLOT_VERSION)?;
        let kdf_tag = r.u8("kdf")?;
        if kdf_tag != 1 {
            return Err(FormatError::invalid("kdf", format!("unknown KDF {kdf_tag}")));
        }
        r.u8("key slot padding")?;
        let kdf = KdfParams {
            memory_kib: r.u32("kdf memory")?,
            iterations: r.u32("kdf iterations")?,
            parallelism: r.u32("kdf lanes")?,
        };
        let mut salt = [0u8; 16];
        salt.copy_from_slice(r.take(16, "salt")?);
        let created = r.i64("created")?;
        let label = r.string16("label")?;
        let wrapped = r.take(WRAPPED_LEN, "wrapped key")?.to_vec();
        r.finish()?;
        Ok(KeySlot {
            kdf,
            salt,
            created,
            label,
            wrapped,
        })
    }

    /// Associated data binding the wrapped key to this vault, slot and header.
    pub fn aad(&self, vault: &VaultId, slot: &KeySlotId) -> Vec<u8> {
        let mut aad = b"amber keyslot v1".to_vec();
        aad.extend_from_slice(vault.as_bytes());
        aad.extend_from_slice(slot.as_bytes());
        aad.extend_from_slice(&self.encode_header());
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = KeySlot {
            kdf: KdfParams::DEFAULT,
            salt: [3; 16],
            created: 5,
            label: "ada@node".into(),
            wrapped: vec![9; WRAPPED_LEN],
        };
        assert_eq!(KeySlot::decode(&s.encode()).unwrap(), s);
        assert!(KeySlot::decode(&s.encode()[..50]).is_err());
    }
}
