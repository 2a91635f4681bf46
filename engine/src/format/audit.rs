//! Audit records: one sealed object per audited action, chained per writer
//! (`format-spec/audit.md`).
//!
//! Stored as `audit/<writer>/<seq>` (16 lower-case hex digits each):
//! `"AMBRAUDT" ‖ u16 version (1) ‖ u16 zero ‖ nonce ‖ AES-256-GCM(plaintext) ‖ tag`, sealed
//! under the vault's audit key with the 12 header bytes and the object's key as associated
//! data, so a record cannot be moved to another place in a chain.
//!
//! Each chain also has a head, `audit/<writer>/head`, framed the same way with magic
//! `"AMBRAUDH"`, replaced after every record: `u8 version (1) ‖ u64 seq ‖ id hash` of the
//! chain's last record, so records cut off the end of a chain are noticed.
//!
//! ```text
//! u8  version (1)
//! u64 seq               position in the writer's chain, from 0
//! id  prev              BLAKE3 of the previous record's plaintext; zeros for seq 0
//! i64 time              milliseconds since the Unix epoch
//! bytes16 request id, token id, role, call, target, result, detail (UTF-8 each)
//! ```

use crate::crypto::{NONCE_LEN, SealKey, random_array};
use crate::error::Error;
use crate::format::FormatError;
use crate::format::codec::{Reader, Writer, expect_header, expect_zeros};
use crate::id::Hash32;

/// File magic.
pub const AUDIT_MAGIC: &[u8; 8] = b"AMBRAUDT";
/// File framing version.
pub const AUDIT_FILE_VERSION: u16 = 1;
/// Plaintext version.
const AUDIT_RECORD_VERSION: u8 = 1;
/// Bytes of the file header: magic, version, reserved.
pub const AUDIT_HEADER_LEN: usize = 12;
/// Longest `target` or `detail` kept, in bytes; longer text is cut at a character
/// boundary and ends in `…`.
pub const MAX_FIELD: usize = 1024;
/// Longest other text field accepted.
const MAX_SHORT_FIELD: usize = 256;
/// The key prefix of audit records in a vault's store.
pub const AUDIT_PREFIX: &str = "audit/";
/// Magic of a chain's head object (`audit/<writer>/head`).
pub const AUDIT_HEAD_MAGIC: &[u8; 8] = b"AMBRAUDH";
/// Plaintext version of a head.
const AUDIT_HEAD_VERSION: u8 = 1;
/// Bytes of a head's plaintext: version, seq, hash.
pub const AUDIT_HEAD_PLAIN_LEN: usize = 1 + 8 + 32;

/// What an audited action was. The writer adds the time and the chain fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// The request's id (a server call's, as in its structured log); may be empty.
    pub request_id: String,
    /// Id of the token used; empty when none was accepted or for a local command.
    pub token_id: String,
    /// The actor's role: a token role (`sidecar`, `restore`, `admin`), or `local` for a
    /// command run against the store directly.
    pub role: String,
    /// What was done: the gRPC method (`/amber.v1.Ingest/Push`) or the command (`amber tier apply`).
    pub call: String,
    /// What it acted on (a snapshot id, a token id, a vault); may be empty.
    pub target: String,
    /// `ok`, or the failure's name (a gRPC status code's, e.g. `permission_denied`).
    pub result: String,
    /// A short free-text detail (the error on failure).
    pub detail: String,
}

/// One record of a writer's chain, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the writer's chain, from 0.
    pub seq: u64,
    /// BLAKE3 of the previous record's plaintext; zeros for the first.
    pub prev: Hash32,
    /// Milliseconds since the Unix epoch when it was written.
    pub time_unix_ms: i64,
    /// What happened.
    pub event: AuditEvent,
}

/// Store key of record `seq` of chain `writer`.
pub fn record_key(writer: u64, seq: u64) -> String {
    format!("{AUDIT_PREFIX}{writer:016x}/{seq:016x}")
}

/// The writer and sequence number a store key names; `None` for anything else.
pub fn parse_record_key(key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(AUDIT_PREFIX)?;
    let (writer, seq) = rest.split_once('/')?;
    let hex16 = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex16(writer)?, hex16(seq)?))
}

/// Store key of the head of chain `writer`.
pub fn head_key(writer: u64) -> String {
    format!("{AUDIT_PREFIX}{writer:016x}/head")
}

/// The writer whose head a store key is; `None` for anything else.
pub fn parse_head_key(key: &str) -> Option<u64> {
    let writer = key.strip_prefix(AUDIT_PREFIX)?.strip_suffix("/head")?;
    let hex = writer.len() == 16 && writer.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(writer, 16).ok()).flatten()
}

/// A chain's head: its last record as the writer last recorded it, so that records cut
/// off the end of the chain are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// Sequence number of the chain's last record.
    pub seq: u64,
    /// [`chain_hash`] of that record's plaintext.
    pub hash: Hash32,
}

impl AuditHead {
    /// The plaintext bytes: `u8 version (1) ‖ u64 seq ‖ id hash`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(AUDIT_HEAD_VERSION);
        w.u64(self.seq);
        w.id(&self.hash);
        w.into_bytes()
    }

    /// Decodes plaintext bytes.
    ///
    /// # Errors
    /// [`FormatError`] for an unknown version, truncation or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<AuditHead, FormatError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("audit head version")?;
        if version != AUDIT_HEAD_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "audit head",
                version: u16::from(version),
                supported: u16::from(AUDIT_HEAD_VERSION),
            });
        }
        let head = AuditHead {
            seq: r.u64("seq")?,
            hash: r.id("hash")?,
        };
        r.finish()?;
        Ok(head)
    }
}

impl AuditRecord {
    /// The plaintext bytes, with `target` and `detail` cut to [`MAX_FIELD`] bytes and the
    /// other fields to 256.
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.event;
        let mut w = Writer::new();
        w.u8(AUDIT_RECORD_VERSION);
        w.u64(self.seq);
        w.id(&self.prev);
        w.i64(self.time_unix_ms);
        for (text, max) in [
            (&e.request_id, MAX_SHORT_FIELD),
            (&e.token_id, MAX_SHORT_FIELD),
            (&e.role, MAX_SHORT_FIELD),
            (&e.call, MAX_SHORT_FIELD),
            (&e.target, MAX_FIELD),
            (&e.result, MAX_SHORT_FIELD),
            (&e.detail, MAX_FIELD),
        ] {
            w.bytes16(cut(text, max).as_bytes());
        }
        w.into_bytes()
    }

    /// Decodes plaintext bytes.
    ///
    /// # Errors
    /// [`FormatError`] for an unknown version, truncation, text that is not UTF-8 or
    /// trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<AuditRecord, FormatError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("audit record version")?;
        if version != AUDIT_RECORD_VERSION {
            return Err(FormatError::UnsupportedVersion {
                object: "audit record",
                version: u16::from(version),
                supported: u16::from(AUDIT_RECORD_VERSION),
            });
        }
        let seq = r.u64("seq")?;
        let prev = r.id("prev")?;
        let time_unix_ms = r.i64("time")?;
        let event = AuditEvent {
            request_id: r.string16("request id")?,
            token_id: r.string16("token id")?,
            role: r.string16("role")?,
            call: r.string16("call")?,
            target: r.string16("target")?,
            result: r.string16("result")?,
            detail: r.string16("detail")?,
        };
        r.finish()?;
        Ok(AuditRecord {
            seq,
            prev,
            time_unix_ms,
            event,
        })
    }
}

/// The hash the next record of a chain carries as `prev`.
pub fn chain_hash(plaintext: &[u8]) -> Hash32 {
    Hash32::from_bytes(*blake3::hash(plaintext).as_bytes())
}

fn header(magic: &[u8; 8]) -> [u8; AUDIT_HEADER_LEN] {
    let mut out = [0u8; AUDIT_HEADER_LEN];
    out[..8].copy_from_slice(magic);
    out[8..10].copy_from_slice(&AUDIT_FILE_VERSION.to_le_bytes());
    out
}

fn aad(header: &[u8], key: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// The object stored at `key` for `plaintext`.
///
/// # Errors
/// [`Error::Crypto`] when no nonce could be drawn.
pub fn seal_record(seal: &SealKey, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    seal_record_with_nonce(seal, random_array()?, key, plaintext)
}

/// As [`seal_record`] with a fixed nonce: for golden vectors only.
///
/// # Errors
/// [`Error::Crypto`] if sealing fails.
pub fn seal_record_with_nonce(
    seal: &SealKey,
    nonce: [u8; NONCE_LEN],
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_framed(AUDIT_MAGIC, seal, nonce, key, plaintext)
}

/// The head object stored at `key` (see [`head_key`]) for `plaintext`.
///
/// # Errors
/// [`Error::Crypto`] when no nonce could be drawn.
pub fn seal_head(seal: &SealKey, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    seal_head_with_nonce(seal, random_array()?, key, plaintext)
}

/// As [`seal_head`] with a fixed nonce: for golden vectors only.
///
/// # Errors
/// [`Error::Crypto`] if sealing fails.
pub fn seal_head_with_nonce(
    seal: &SealKey,
    nonce: [u8; NONCE_LEN],
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    seal_framed(AUDIT_HEAD_MAGIC, seal, nonce, key, plaintext)
}

/// Opens the head object stored at `key` and returns its plaintext.
///
/// # Errors
/// As [`open_record`].
pub fn open_head(seal: &SealKey, key: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    open_framed(AUDIT_HEAD_MAGIC, "audit head", seal, key, bytes)
}

pub(crate) fn seal_framed(
    magic: &[u8; 8],
    seal: &SealKey,
    nonce: [u8; NONCE_LEN],
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let header = header(magic);
    let sealed = seal.seal_with_nonce(nonce, &aad(&header, key), plaintext.to_vec())?;
    let mut file = header.to_vec();
    file.extend_from_slice(&sealed);
    Ok(file)
}

/// Opens the object stored at `key` and returns its plaintext.
///
/// # Errors
/// [`Error::Format`] for a bad header, [`Error::Crypto`] when the bytes were changed or
/// belong at another key.
pub fn open_record(seal: &SealKey, key: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    open_framed(AUDIT_MAGIC, "audit record", seal, key, bytes)
}

pub(crate) fn open_framed(
    magic: &'static [u8; 8],
    what: &'static str,
    seal: &SealKey,
    key: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, Error> {
    let (header, sealed) = bytes
        .split_at_checked(AUDIT_HEADER_LEN)
        .ok_or(FormatError::Truncated("audit object header"))?;
    let mut r = Reader::new(header);
    expect_header(&mut r, magic, what, AUDIT_FILE_VERSION)?;
    expect_zeros(&mut r, 2, "audit object reserved bytes")?;
    Ok(seal.open(&aad(header, key), sealed, || format!("{what} {key}"))?)
}

/// `text` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text.get(..end).unwrap_or_default().to_string();
    out.push('…');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        AuditRecord {
            seq: 7,
            prev: Hash32::from_bytes([9; 32]),
            time_unix_ms: 1_700_000_000_123,
            event: AuditEvent {
                request_id: "00112233445566aa".into(),
                token_id: "0123456789abcdef".into(),
                role: "admin".into(),
                call: "/amber.v1.Admin/RevokeToken".into(),
                target: "fedcba9876543210".into(),
                result: "ok".into(),
                detail: "name \"ci\"\nline two é".into(),
            },
        }
    }

    #[test]
    fn records_round_trip_and_long_fields_are_cut() {
        let r = sample();
        assert_eq!(AuditRecord::decode(&r.encode()).unwrap(), r);
        let mut long = sample();
        long.event.detail = "é".repeat(MAX_FIELD);
        let back = AuditRecord::decode(&long.encode()).unwrap();
        assert!(back.event.detail.len() <= MAX_FIELD && back.event.detail.ends_with('…'));
        let mut bytes = r.encode();
        bytes.push(0);
        assert!(AuditRecord::decode(&bytes).is_err(), "trailing bytes");
        assert!(AuditRecord::decode(&bytes[..20]).is_err(), "truncated");
    }

    #[test]
    fn a_record_opens_only_at_its_own_key() {
        let seal = SealKey::new(&[3; 32]).unwrap();
        let key = record_key(0xabc, 7);
        assert_eq!(key, "audit/0000000000000abc/0000000000000007");
        assert_eq!(parse_record_key(&key), Some((0xabc, 7)));
        assert_eq!(parse_record_key("audit/0000000000000ABC/0000000000000007"), None);
        assert_eq!(parse_record_key("audit/x"), None);
        let plain = sample().encode();
        let file = seal_record(&seal, &key, &plain).unwrap();
        assert_eq!(open_record(&seal, &key, &file).unwrap(), plain);
        assert!(open_record(&seal, &record_key(0xabc, 8), &file).is_err());
        let mut flipped = file.clone();
        flipped[30] ^= 1;
        assert!(open_record(&seal, &key, &flipped).is_err());
        assert!(open_record(&seal, &key, &file[..5]).is_err());
    }
}
