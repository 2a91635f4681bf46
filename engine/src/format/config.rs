//! The vault config: plaintext parameters fixed at init, authenticated by a MAC.
//!
//! ```text
//! 0   8  "AMBRCONF"
//! 8   2  version (1)
//! 10  2  zero
//! 12  32 vault id
//! 44  8  created, seconds since the epoch (i64)
//! 52  1  chunker algorithm (1 = FastCDC 2020, normalization level 1, keyed gear table)
//! 53  4  chunk min, 4 avg, 4 max (u32)
//! 65  4  block size for volumes (u32)
//! 69  1  AEAD (1 = AES-256-GCM)
//! 70  1  compression (1 = zstd), 1 level (i8)
//! 72  4  data pack target, 4 metadata pack target (u32)
//! 80  32 keyed BLAKE3 MAC (config MAC key) of bytes 0..80
//! ```

use crate::chunker::ChunkerParams;
use crate::format::FormatError;
use crate::format::codec::{Reader, Writer, expect_header};
use crate::id::{Hash32, VaultId};

/// Magic.
pub const CONFIG_MAGIC: &[u8; 8] = b"AMBRCONF";
/// Version.
pub const CONFIG_VERSION: u16 = 1;
/// Bytes before the MAC.
pub const BODY_LEN: usize = 80;
/// Total bytes.
pub const CONFIG_LEN: usize = BODY_LEN + 32;

const _: () = assert!(BODY_LEN == 8 + 2 + 2 + 32 + 8 + 1 + 12 + 4 + 1 + 2 + 8);

/// Parameters fixed for the life of a vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultConfig {
    /// The vault's id (salt of its key derivation).
    pub vault_id: VaultId,
    /// Creation time, seconds.
    pub created: i64,
    /// Content chunking.
    pub chunker: ChunkerParams,
    /// Fixed block size for volume images.
    pub block_size: u32,
    /// zstd level.
    pub zstd_level: i8,
    /// Target size of data packs.
    pub data_pack_target: u32,
    /// Target size of metadata packs.
    pub meta_pack_target: u32,
}

impl VaultConfig {
    /// Defaults for a new vault.
    pub fn new(vault_id: VaultId, created: i64) -> Self {
        VaultConfig {
            vault_id,
            created,
            chunker: ChunkerParams::DEFAULT,
            block_size: crate::repo::DEFAULT_BLOCK_SIZE,
            zstd_level: 3,
            data_pack_target: 32 * 1024 * 1024,
            meta_pack_target: 8 * 1024 * 1024,
        }
    }

    /// Encodes the body (without MAC).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CONFIG_LEN);
        w.bytes(CONFIG_MAGIC);
        w.u16(CONFIG_VERSION);
        w.u16(0);
        w.id(self.vault_id.hash());
        w.i64(self.created);
        w.u8(1);
        w.u32(self.chunker.min());
        w.u32(self.chunker.avg());
        w.u32(self.chunker.max());
        w.u32(self.block_size);
        w.u8(1);
        w.u8(1);
        w.bytes(&self.zstd_level.to_le_bytes());
        w.u32(self.data_pack_target);
        w.u32(self.meta_pack_target);
        w.into_bytes()
    }

    /// Encodes body and MAC.
    pub fn encode(&self, mac_key: &[u8; 32]) -> Vec<u8> {
        let mut body = self.encode_body();
        let mac = blake3::keyed_hash(mac_key, &body);
        body.extend_from_slice(mac.as_bytes());
        body
    }

    /// Decodes without checking the MAC (the key is not known yet); returns the config
    /// and the MAC to check with [`VaultConfig::verify`] once the master key is open.
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<(Self, [u8; 32]), FormatError> {
        let mut r = Reader::new(bytes);
        expect_header(&mut r, CONFIG_MAGIC, "config", CONFIG_VERSION)?;
        r.u16("config padding")?;
        let vault_id = VaultId::new(r.id("vault id")?);
        let created = r.i64("created")?;
        expect_tag(r.u8("chunker algorithm")?, "chunker algorithm")?;
        let chunker = ChunkerParams::new(r.u32("chunk min")?, r.u32("chunk avg")?, r.u32("chunk max")?)?;
        let block_size = r.u32("block size")?;
        if !block_size.is_power_of_two() || !(4096..=(16 << 20)).contains(&block_size) {
            return Err(FormatError::invalid("block size", format!("{block_size}")));
        }
        expect_tag(r.u8("aead")?, "aead")?;
        expect_tag(r.u8("compression")?, "compression")?;
        let zstd_level = i8::from_le_bytes([r.u8("zstd level")?]);
        let data_pack_target = r.u32("data pack target")?;
        let meta_pack_target = r.u32("meta pack target")?;
        for t in [data_pack_target, meta_pack_target] {
            if !(64 * 1024..=1024 * 1024 * 1024).contains(&t) {
                return Err(FormatError::invalid("pack target", format!("{t}")));
            }
        }
        let mac = r.id("config mac")?;
        r.finish()?;
        let config = VaultConfig {
            vault_id,
            created,
            chunker,
            block_size,
            zstd_level,
            data_pack_target,
            meta_pack_target,
        };
        Ok((config, *mac.as_bytes()))
    }

    /// Checks the MAC.
    pub fn verify(&self, mac: &[u8; 32], mac_key: &[u8; 32]) -> bool {
        let expected = blake3::keyed_hash(mac_key, &self.encode_body());
        // blake3::Hash compares in constant time.
        expected == blake3::Hash::from(*mac)
    }
}

fn expect_tag(v: u8, field: &'static str) -> Result<(), FormatError> {
    if v == 1 {
        Ok(())
    } else {
        Err(FormatError::invalid(field, format!("unknown algorithm {v}")))
    }
}

/// A stand-in id used only by tests and vectors.
pub const fn fixed_vault_id(byte: u8) -> VaultId {
    VaultId::new(Hash32::from_bytes([byte; 32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mac() {
        let c = VaultConfig::new(fixed_vault_id(4), 1_700_000_000);
        let bytes = c.encode(&[8; 32]);
        assert_eq!(bytes.len(), CONFIG_LEN);
        let (d, mac) = VaultConfig::decode(&bytes).unwrap();
        assert_eq!(d, c);
        assert!(d.verify(&mac, &[8; 32]));
        assert!(!d.verify(&mac, &[9; 32]));
        let mut bad = bytes.clone();
        bad[60] ^= 1;
        if let Ok((d, mac)) = VaultConfig::decode(&bad) {
            assert!(!d.verify(&mac, &[8; 32]));
        }
    }
}
