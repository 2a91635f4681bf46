//! Condemnation records: the packs one compaction run proposes to delete, stored as
//! `compact/<32 hex>` so that every writer of the vault learns of them before they go.
//! See `format-spec/compact.md`.
//!
//! Object: `"AMBRCOND" ‖ u16 version ‖ u16 zero ‖ nonce ‖ AES-256-GCM(plaintext)` under the
//! vault's audit key, associated data the 12 header bytes and the object's key. Plaintext:
//! ```text
//! u8  version (1)
//! i64 time (ms since the epoch, the writer's clock: informative only)
//! u32 pack count
//! pack*: id pack id, u8 pack kind, u64 pack length, u8 reason (1 unreferenced, 2 repacked)
//! ```

use crate::crypto::{NONCE_LEN, SealKey, random_array};
use crate::error::Error;
use crate::format::FormatError;
use crate::format::audit::{open_framed, seal_framed};
use crate::format::codec::{Reader, Writer};
use crate::format::pack::PackKind;
use crate::id::PackId;

/// Magic of a condemnation record.
pub const CONDEMN_MAGIC: &[u8; 8] = b"AMBRCOND";
/// Prefix of condemnation records.
pub const CONDEMN_PREFIX: &str = "compact/";
const CONDEMN_VERSION: u8 = 1;
/// Bytes of one pack in the plaintext.
const PACK_LEN: usize = 32 + 1 + 8 + 1;

/// Why a pack is condemned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No snapshot named any of its blobs.
    Unreferenced = 1,
    /// Its live blobs were copied into new packs first.
    Repacked = 2,
}

/// One condemned pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Condemned {
    /// The pack.
    pub id: PackId,
    /// Data or metadata.
    pub kind: PackKind,
    /// Its length when condemned: a pack of another length is not this one.
    pub len: u64,
    /// Why.
    pub reason: Reason,
}

/// What one compaction run proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondemnRecord {
    /// When it was written (the writer's clock, milliseconds; never used to decide).
    pub time_unix_ms: i64,
    /// The packs.
    pub packs: Vec<Condemned>,
}

impl CondemnRecord {
    /// The plaintext.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(13 + PACK_LEN * self.packs.len());
        w.u8(CONDEMN_VERSION);
        w.i64(self.time_unix_ms);
        w.u32(u32::try_from(self.packs.len()).unwrap_or(u32::MAX));
        for p in &self.packs {
            w.id(p.id.hash());
            w.u8(p.kind as u8);
            w.u64(p.len);
            w.u8(p.reason as u8);
        }
        w.into_bytes()
    }

    /// Decodes a plaintext.
    ///
    /// # Errors
    /// [`FormatError`] when malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("condemnation version")?;
        if v != CONDEMN_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "condemnation record",
                version: u16::from(v),
                supported: u16::from(CONDEMN_VERSION),
            });
        }
        let time_unix_ms = r.i64("condemnation time")?;
        let n = r.count32("condemned pack count", PACK_LEN)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId::new(r.id("condemned pack id")?);
            let kind = PackKind::from_u8(r.u8("condemned pack kind")?)?;
            let len = r.u64("condemned pack length")?;
            let reason = match r.u8("condemnation reason")? {
                1 => Reason::Unreferenced,
                2 => Reason::Repacked,
                other => {
                    return Err(FormatError::invalid(
                        "condemnation reason",
                        format!("unknown tag {other}"),
                    ));
                }
            };
            packs.push(Condemned { id, kind, len, reason });
        }
        r.finish()?;
        Ok(CondemnRecord { time_unix_ms, packs })
    }
}

/// `compact/<32 hex digits>` for a new record.
///
/// # Errors
/// [`Error::Crypto`] when no randomness is available.
pub fn new_key() -> Result<String, Error> {
    let name: [u8; 16] = random_array()?;
    Ok(format!("{CONDEMN_PREFIX}{}", hex::encode(name)))
}

/// Whether `key` names a condemnation record.
pub fn is_record_key(key: &str) -> bool {
    key.strip_prefix(CONDEMN_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The object stored at `key` for `plaintext`.
///
/// # Errors
/// [`Error::Crypto`] when no nonce could be drawn.
pub fn seal(key: &SealKey, object: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    seal_with_nonce(key, random_array()?, object, plaintext)
}

/// As [`seal`] with a fixed nonce: for golden vectors only.
///
/// # Errors
/// [`Error::Crypto`] if sealing fails.
pub fn seal_with_nonce(
    key: &SealKey,
    nonce: [u8; NONCE_LEN],
    object: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_framed(CONDEMN_MAGIC, key, nonce, object, plaintext)
}

/// Opens the record stored at `object` and returns its plaintext.
///
/// # Errors
/// [`Error::Format`] for a bad header, [`Error::Crypto`] when the bytes were changed or
/// belong at another key.
pub fn open(key: &SealKey, object: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    open_framed(CONDEMN_MAGIC, "condemnation record", key, object, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_unknown_reasons() {
        let rec = CondemnRecord {
            time_unix_ms: 1_700_000_000_000,
            packs: vec![Condemned {
                id: PackId::new(crate::id::Hash32::from_bytes([7; 32])),
                kind: PackKind::Data,
                len: 33_554_432,
                reason: Reason::Repacked,
            }],
        };
        let plain = rec.encode();
        assert_eq!(plain.len(), 13 + PACK_LEN);
        assert_eq!(CondemnRecord::decode(&plain).unwrap(), rec);
        let mut bad = plain.clone();
        *bad.last_mut().unwrap() = 9;
        assert!(CondemnRecord::decode(&bad).is_err());
        assert!(CondemnRecord::decode(&plain[..plain.len() - 1]).is_err());
        assert!(is_record_key(&new_key().unwrap()));
        assert!(!is_record_key("compact/xyz"));
    }
}
