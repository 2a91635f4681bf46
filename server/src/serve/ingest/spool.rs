//! Spools of unfinished layer pushes: the stream as received, sealed with the vault's key,
//! so that a retry of the same layer (same token, source, resume key and announced digest)
//! sends only the rest. A spool is a cache: an unreadable one is deleted and the retry
//! sends everything. Format: `format-spec/server.md`, "Layer spools".
//!
//! ```text
//! header:  magic "AMBRSPOL" | u16 version (1) | 16-byte spool id | u16 n | n bytes digest
//! record:  u32 sealed length | nonce 12 | ciphertext | tag 16
//!          AAD = "amber spool v1" | spool id | u64 record index   (all integers LE)
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use amber_engine::crypto::SealKey;
use anyhow::{Context, Result, bail};

/// First bytes of a spool.
pub const MAGIC: &[u8; 8] = b"AMBRSPOL";
/// Format version.
pub const VERSION: u16 = 1;
/// Bytes a seal adds: nonce and tag.
const SEAL_OVERHEAD: u64 = amber_engine::crypto::SEAL_OVERHEAD as u64;
/// Largest plaintext of one record (one data frame).
pub const MAX_RECORD: u64 = 1024 * 1024;
const AAD_PREFIX: &[u8] = b"amber spool v1";

/// The header's bytes.
pub fn encode_header(id: &[u8; 16], digest: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + digest.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&u16::try_from(digest.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(digest.as_bytes());
    out
}

/// The associated data of record `index`.
pub fn record_aad(id: &[u8; 16], index: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 24);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(id);
    aad.extend_from_slice(&index.to_le_bytes());
    aad
}

/// A record's bytes: its length, then `sealed`.
pub fn encode_record(sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + sealed.len());
    out.extend_from_slice(&u32::try_from(sealed.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(sealed);
    out
}

fn read_array<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads a header; returns the spool id, the digest and the header's length.
///
/// # Errors
/// A wrong magic or version, or a short file.
pub fn read_header(r: &mut impl Read) -> Result<([u8; 16], String, u64)> {
    if &read_array::<8>(r)? != MAGIC {
        bail!("not a layer spool");
    }
    if u16::from_le_bytes(read_array(r)?) != VERSION {
        bail!("a layer spool of another version");
    }
    let id = read_array::<16>(r)?;
    let n = u16::from_le_bytes(read_array(r)?);
    let mut digest = vec![0u8; usize::from(n)];
    r.read_exact(&mut digest)?;
    Ok((id, String::from_utf8(digest)?, 28 + u64::from(n)))
}

/// A spool being written.
pub struct Spool {
    path: PathBuf,
    id: [u8; 16],
    out: BufWriter<File>,
    records: u64,
    /// Plaintext bytes held (the stream offset it reaches).
    pub len: u64,
}

/// The validated prefix of an existing spool, to replay before the wire.
pub struct Replay {
    input: BufReader<File>,
    id: [u8; 16],
    next: u64,
    count: u64,
}

impl Spool {
    /// Starts a new spool at `path` (replacing any) for a stream announced with `digest`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(path: &Path, digest: &str) -> Result<Spool> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let id: [u8; 16] = amber_engine::crypto::random_array()?;
        let mut file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&encode_header(&id, digest))?;
        Ok(Spool {
            path: path.to_path_buf(),
            id,
            out: BufWriter::with_capacity(MAX_RECORD as usize, file),
            records: 0,
            len: 0,
        })
    }

    /// Opens the spool at `path` if it was made for `digest`: finds the last whole record,
    /// cuts a torn tail, and returns the spool (appending after it) and its replay.
    /// Anything else (missing, other digest, damaged) yields `None` and removes the file.
    pub fn resume(path: &Path, digest: &str) -> Option<(Spool, Replay)> {
        let found = Spool::scan(path, digest);
        if found.is_none() {
            let _ = std::fs::remove_file(path);
        }
        found
    }

    fn scan(path: &Path, digest: &str) -> Option<(Spool, Replay)> {
        let mut input = BufReader::new(File::open(path).ok()?);
        let (id, stored, header) = read_header(&mut input).ok()?;
        if stored != digest || digest.is_empty() {
            return None;
        }
        let (mut end, mut count, mut len) = (header, 0u64, 0u64);
        while let Ok(b) = read_array::<4>(&mut input) {
            let sealed = u64::from(u32::from_le_bytes(b));
            if !(SEAL_OVERHEAD..=MAX_RECORD + SEAL_OVERHEAD).contains(&sealed) {
                break;
            }
            if input.seek_relative(i64::try_from(sealed).ok()? - 1).is_err() || read_array::<1>(&mut input).is_err() {
                break;
            }
            end += 4 + sealed;
            count += 1;
            len += sealed - SEAL_OVERHEAD;
        }
        let mut file = OpenOptions::new().write(true).open(path).ok()?;
        file.set_len(end).ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        let mut input = BufReader::new(File::open(path).ok()?);
        input.seek(SeekFrom::Start(header)).ok()?;
        let spool = Spool {
            path: path.to_path_buf(),
            id,
            out: BufWriter::with_capacity(MAX_RECORD as usize, file),
            records: count,
            len,
        };
        Some((
            spool,
            Replay {
                input,
                id,
                next: 0,
                count,
            },
        ))
    }

    /// Appends one piece of the stream.
    ///
    /// # Errors
    /// Sealing or I/O errors.
    pub fn append(&mut self, key: &SealKey, data: &[u8]) -> Result<()> {
        let sealed = key.seal(&record_aad(&self.id, self.records), data.to_vec())?;
        self.out.write_all(&encode_record(&sealed))?;
        self.records += 1;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        Ok(())
    }

    /// Deletes the spool (the push committed).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Replay {
    /// The next record's plaintext, or `None` after the last.
    ///
    /// # Errors
    /// A record that does not open (the spool is then useless: the push fails and the
    /// spool is removed by the next attempt).
    pub fn next(&mut self, key: &SealKey) -> Result<Option<Vec<u8>>> {
        if self.next >= self.count {
            return Ok(None);
        }
        let len = u32::from_le_bytes(read_array(&mut self.input)?) as usize;
        let mut sealed = vec![0u8; len];
        self.input.read_exact(&mut sealed)?;
        let plain = key.open(&record_aad(&self.id, self.next), &sealed, || {
            format!("spool record {}", self.next)
        })?;
        self.next += 1;
        Ok(Some(plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../format-spec/vectors/server-spool.hex");

    fn key() -> SealKey {
        SealKey::new(&[5u8; 32]).unwrap()
    }

    #[test]
    fn golden_spool_bytes() {
        let id = [1u8; 16];
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut bytes = encode_header(&id, &digest);
        for (i, piece) in [&b"first piece"[..], b"second"].iter().enumerate() {
            let sealed = key()
                .seal_with_nonce([i as u8; 12], &record_aad(&id, i as u64), piece.to_vec())
                .unwrap();
            bytes.extend(encode_record(&sealed));
        }
        let text: String = bytes.chunks(32).map(|c| hex::encode(c) + "\n").collect();
        if std::env::var_os("AMBER_BLESS").is_some() {
            std::fs::write(VECTOR, &text).unwrap();
        }
        let stored = std::fs::read_to_string(VECTOR).unwrap();
        assert_eq!(stored, text, "the vector differs from what the code writes");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.spool");
        std::fs::write(
            &path,
            hex::decode(stored.split_whitespace().collect::<String>()).unwrap(),
        )
        .unwrap();
        let (spool, mut replay) = Spool::resume(&path, &digest).unwrap();
        assert_eq!(spool.len, 17);
        assert_eq!(replay.next(&key()).unwrap().unwrap(), b"first piece");
        assert_eq!(replay.next(&key()).unwrap().unwrap(), b"second");
        assert!(replay.next(&key()).unwrap().is_none());
    }

    #[test]
    fn resume_cuts_a_torn_tail_and_refuses_another_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume/x.spool");
        let mut s = Spool::create(&path, "sha256:aa").unwrap();
        s.append(&key(), b"one").unwrap();
        s.append(&key(), b"two").unwrap();
        s.sync().unwrap();
        drop(s);
        let full = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut s, mut replay) = Spool::resume(&path, "sha256:aa").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        assert_eq!(s.len, 6);
        s.append(&key(), b"three").unwrap();
        s.sync().unwrap();
        assert_eq!(replay.next(&key()).unwrap().unwrap(), b"one");
        drop((s, replay));
        let (s, mut replay) = Spool::resume(&path, "sha256:aa").unwrap();
        assert_eq!(s.len, 11);
        let all: Vec<Vec<u8>> = std::iter::from_fn(|| replay.next(&key()).unwrap()).collect();
        assert_eq!(all, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(Spool::resume(&path, "sha256:bb").is_none());
        assert!(!path.exists(), "a spool for another digest is removed");
        let wrong = SealKey::new(&[6u8; 32]).unwrap();
        let mut s = Spool::create(&path, "sha256:aa").unwrap();
        s.append(&key(), b"x").unwrap();
        s.sync().unwrap();
        let (_, mut replay) = Spool::resume(&path, "sha256:aa").unwrap();
        assert!(replay.next(&wrong).is_err());
    }
}
