//! The audit log of a vault, kept in its store beside the data: one create-only sealed
//! object per record, in chains (one per writer) linked by hashes
//! (`format-spec/audit.md`). No record is ever rewritten, so many servers and commands
//! can append to one vault's log at once without a lock; each chain's head (replaced by
//! its one writer after every record) names its last record, so a cut end is noticed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::backend::{Backend, BackendError, DynBackend, PutMode, PutOutcome};
use crate::crypto::{SealKey, random_array};
use crate::error::{Error, Result};
use crate::format::audit::{
    AUDIT_PREFIX, AuditEvent, AuditHead, AuditRecord, chain_hash, head_key, open_head, open_record, parse_head_key,
    parse_record_key, record_key, seal_head, seal_record,
};
use crate::id::Hash32;

/// Appends records to one chain of a vault's audit log. Each process (each server start,
/// each command) writes a chain of its own under a random writer id, so writers never
/// contend for a key.
pub struct AuditWriter {
    backend: DynBackend,
    writer: u64,
    tip: Mutex<Tip>,
}

/// Where the chain stands: the next sequence number and the hash the next record carries.
struct Tip {
    seq: u64,
    prev: Hash32,
}

/// How often a record is written again at the next sequence number when its key turns out
/// taken (only after an earlier write that failed but landed).
const TAKEN_RETRIES: u32 = 3;

impl AuditWriter {
    /// A new chain in the audit log of the vault stored in `backend`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when no random writer id could be drawn.
    pub fn new(backend: DynBackend) -> Result<AuditWriter> {
        Ok(AuditWriter {
            backend,
            writer: u64::from_le_bytes(random_array()?),
            tip: Mutex::new(Tip {
                seq: 0,
                prev: Hash32::from_bytes([0; 32]),
            }),
        })
    }

    /// This chain's writer id.
    pub fn writer_id(&self) -> u64 {
        self.writer
    }

    /// Seals `event`, stamped with the current time, and stores it create-only as the
    /// chain's next record. Blocking (one store write); records of one writer are written
    /// one at a time, in order.
    ///
    /// # Errors
    /// Store and crypto errors; the record is then not in the log (or, when the write
    /// failed after it landed, found and chained from by the next record).
    pub fn append(&self, key: &SealKey, event: &AuditEvent) -> Result<AuditRecord> {
        let mut tip = self.tip.lock().map_err(|_| Error::Poisoned("audit writer".into()))?;
        for _ in 0..TAKEN_RETRIES {
            let record = AuditRecord {
                seq: tip.seq,
                prev: tip.prev,
                time_unix_ms: now_unix_ms(),
                event: event.clone(),
            };
            let plain = record.encode();
            let object = record_key(self.writer, tip.seq);
            let file = seal_record(key, &object, &plain)?;
            match self.backend.put(&object, &file, PutMode::CreateOnly)? {
                PutOutcome::Created => {
                    *tip = Tip {
                        seq: tip.seq + 1,
                        prev: chain_hash(&plain),
                    };
                    self.put_head(key, record.seq, tip.prev)?;
                    return Ok(record);
                }
                PutOutcome::AlreadyExisted => {
                    let landed = open_record(key, &object, &self.backend.get(&object)?)?;
                    *tip = Tip {
                        seq: tip.seq + 1,
                        prev: chain_hash(&landed),
                    };
                }
            }
        }
        Err(Error::InvalidArgument(format!(
            "audit chain {:016x}: {TAKEN_RETRIES} keys in a row were already taken",
            self.writer
        )))
    }
}

impl AuditWriter {
    /// Replaces the chain's head (only this writer writes it) to name record `seq`.
    fn put_head(&self, key: &SealKey, seq: u64, hash: Hash32) -> Result<()> {
        let object = head_key(self.writer);
        let file = seal_head(key, &object, &AuditHead { seq, hash }.encode())?;
        self.backend.put(&object, &file, PutMode::Overwrite)?;
        Ok(())
    }
}

/// One record read back, with the chain it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The chain's writer id.
    pub writer: u64,
    /// The record.
    pub record: AuditRecord,
}

/// Something wrong with the log: a record that does not open, a gap, a broken link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditProblem {
    /// The object concerned (for a gap: the first missing key).
    pub key: String,
    /// What is wrong.
    pub detail: String,
}

/// A vault's audit log as read back: every record that opened, oldest first, and what was
/// found wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditLog {
    /// Records, ordered by time, then writer and sequence number.
    pub entries: Vec<AuditEntry>,
    /// Damage found; empty for an intact log.
    pub problems: Vec<AuditProblem>,
}

/// Reads and checks every chain of the audit log in `backend`, keeping records written at
/// or after `since_unix_ms`. Every chain is checked whole whatever `since` is: each record
/// must open at its key, carry its key's sequence number, follow its predecessor without
/// a gap, and name the hash of its predecessor's plaintext.
///
/// # Errors
/// Store errors listing or reading (an object that cannot be read is a problem of the
/// log only when it is missing or damaged, not when the store fails).
pub fn read_audit(backend: &dyn Backend, key: &SealKey, since_unix_ms: Option<i64>) -> Result<AuditLog> {
    let mut chains: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut heads: Vec<u64> = Vec::new();
    for object in backend.list(AUDIT_PREFIX)? {
        if let Some((writer, seq)) = parse_record_key(&object.key) {
            chains.entry(writer).or_default().push(seq);
        } else if let Some(writer) = parse_head_key(&object.key) {
            chains.entry(writer).or_default();
            heads.push(writer);
        }
    }
    let mut log = AuditLog::default();
    for (writer, mut seqs) in chains {
        seqs.sort_unstable();
        let opened = seqs
            .par_iter()
            .map(|&seq| read_one(backend, key, writer, seq))
            .collect::<Result<Vec<_>>>()?;
        let head = if heads.contains(&writer) {
            Some(read_head(backend, key, writer)?)
        } else {
            None
        };
        let hashes: BTreeMap<u64, Hash32> = seqs
            .iter()
            .zip(&opened)
            .filter_map(|(&seq, o)| o.as_ref().ok().map(|(plain, _)| (seq, chain_hash(plain))))
            .collect();
        check_chain(writer, &seqs, opened, &mut log);
        check_end(writer, &seqs, &hashes, head, &mut log);
    }
    if let Some(since) = since_unix_ms {
        log.entries.retain(|e| e.record.time_unix_ms >= since);
    }
    log.entries
        .sort_by_key(|e| (e.record.time_unix_ms, e.writer, e.record.seq));
    Ok(log)
}

/// One record's plaintext and decoding, or why it could not be had.
type Opened = std::result::Result<(Vec<u8>, AuditRecord), String>;

fn read_one(backend: &dyn Backend, key: &SealKey, writer: u64, seq: u64) -> Result<Opened> {
    let object = record_key(writer, seq);
    let bytes = match backend.get(&object) {
        Ok(bytes) => bytes,
        Err(BackendError::NotFound { .. }) => return Ok(Err("listed but gone".into())),
        Err(e) => return Err(e.into()),
    };
    let plain = match open_record(key, &object, &bytes) {
        Ok(plain) => plain,
        Err(e) => return Ok(Err(format!("damaged: {e}"))),
    };
    Ok(AuditRecord::decode(&plain)
        .map(|record| (plain, record))
        .map_err(|e| format!("damaged: {e}")))
}

/// A chain's head as read back, or why it could not be had.
type OpenedHead = std::result::Result<AuditHead, String>;

fn read_head(backend: &dyn Backend, key: &SealKey, writer: u64) -> Result<OpenedHead> {
    let object = head_key(writer);
    let bytes = match backend.get(&object) {
        Ok(bytes) => bytes,
        Err(BackendError::NotFound { .. }) => return Ok(Err("listed but gone".into())),
        Err(e) => return Err(e.into()),
    };
    Ok(open_head(key, &object, &bytes)
        .map_err(|e| e.to_string())
        .and_then(|plain| AuditHead::decode(&plain).map_err(|e| e.to_string()))
        .map_err(|e| format!("damaged: {e}")))
}

/// Checks the end of a chain against its head: records cut off the end, or a last
/// record replaced, show here (the links between records cannot show them).
fn check_end(writer: u64, seqs: &[u64], hashes: &BTreeMap<u64, Hash32>, head: Option<OpenedHead>, log: &mut AuditLog) {
    let mut problem = |key: String, detail: String| log.problems.push(AuditProblem { key, detail });
    let head = match head {
        None if seqs.is_empty() => return,
        None => {
            let detail = "the chain has no head, so records cut off its end could not be noticed \
                          (or its writer stopped between its first record and its head)";
            return problem(head_key(writer), detail.into());
        }
        Some(Err(detail)) => return problem(head_key(writer), detail),
        Some(Ok(head)) => head,
    };
    let first_missing = seqs.last().map_or(0, |last| last + 1);
    if first_missing <= head.seq {
        let detail = format!(
            "records {first_missing} to {} at the end of the chain are missing (its head names record {})",
            head.seq, head.seq
        );
        problem(record_key(writer, first_missing), detail);
    } else if hashes.get(&head.seq).is_some_and(|h| *h != head.hash) {
        problem(
            record_key(writer, head.seq),
            "is not the record the chain's head names (replaced)".into(),
        );
    }
}

fn check_chain(writer: u64, seqs: &[u64], opened: Vec<Opened>, log: &mut AuditLog) {
    let problem = |log: &mut AuditLog, seq: u64, detail: String| {
        log.problems.push(AuditProblem {
            key: record_key(writer, seq),
            detail,
        });
    };
    let mut expected = 0u64;
    // The plaintext hash of the previous record, when it was read.
    let mut prev: Option<Hash32> = Some(Hash32::from_bytes([0; 32]));
    for (&seq, item) in seqs.iter().zip(opened) {
        if seq != expected {
            let detail = format!("records {expected} to {} of the chain are missing", seq - 1);
            problem(log, expected, detail);
            prev = None;
        }
        expected = seq + 1;
        let (plain, record) = match item {
            Ok(ok) => ok,
            Err(detail) => {
                problem(log, seq, detail);
                prev = None;
                continue;
            }
        };
        if record.seq != seq {
            problem(
                log,
                seq,
                format!("holds sequence number {} of another place", record.seq),
            );
        } else if prev.is_some_and(|p| p != record.prev) {
            problem(
                log,
                seq,
                "does not follow the record before it (hash chain broken)".into(),
            );
        }
        prev = Some(chain_hash(&plain));
        log.entries.push(AuditEntry { writer, record });
    }
}

fn now_unix_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use std::sync::Arc;

    fn event(call: &str) -> AuditEvent {
        AuditEvent {
            call: call.into(),
            result: "ok".into(),
            role: "local".into(),
            ..AuditEvent::default()
        }
    }

    fn setup() -> (DynBackend, SealKey) {
        (Arc::new(MemoryBackend::new()), SealKey::new(&[5; 32]).unwrap())
    }

    #[test]
    fn two_writers_append_and_the_log_reads_back_whole() {
        let (store, key) = setup();
        let a = AuditWriter::new(store.clone()).unwrap();
        let b = AuditWriter::new(store.clone()).unwrap();
        std::thread::scope(|s| {
            for w in [&a, &b] {
                let key = &key;
                s.spawn(move || {
                    for i in 0..20 {
                        w.append(key, &event(&format!("call {i}"))).unwrap();
                    }
                });
            }
        });
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert_eq!(log.problems, vec![]);
        assert_eq!(log.entries.len(), 40);
        for w in [a.writer_id(), b.writer_id()] {
            let seqs: Vec<u64> = log
                .entries
                .iter()
                .filter(|e| e.writer == w)
                .map(|e| e.record.seq)
                .collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        }
        let later = read_audit(store.as_ref(), &key, Some(i64::MAX)).unwrap();
        assert!(later.entries.is_empty() && later.problems.is_empty());
    }

    #[test]
    fn removal_reordering_and_damage_are_found() {
        let (store, key) = setup();
        let w = AuditWriter::new(store.clone()).unwrap();
        for i in 0..6 {
            w.append(&key, &event(&format!("call {i}"))).unwrap();
        }
        let k = |seq| record_key(w.writer_id(), seq);
        // A gap: record 1 deleted.
        store.delete(&k(1)).unwrap();
        // Reordering: record 3's bytes put at 4's place (and 4's dropped).
        let three = store.get(&k(3)).unwrap();
        store.delete(&k(4)).unwrap();
        store.put(&k(4), &three, PutMode::Overwrite).unwrap();
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        let keys: Vec<&str> = log.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec![k(1).as_str(), k(4).as_str()], "{log:#?}");
        assert!(log.problems[0].detail.contains("missing"));
        assert!(log.problems[1].detail.contains("damaged"));
        assert_eq!(log.entries.len(), 4);
        // A record rewritten in place under the right key, but not the one that was there.
        let forged = AuditRecord {
            seq: 3,
            prev: Hash32::from_bytes([1; 32]),
            time_unix_ms: 2,
            event: event("forged"),
        };
        store.delete(&k(3)).unwrap();
        let file = seal_record(&key, &k(3), &forged.encode()).unwrap();
        store.put(&k(3), &file, PutMode::CreateOnly).unwrap();
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert!(
            log.problems
                .iter()
                .any(|p| p.key == k(3) && p.detail.contains("hash chain")),
            "{log:#?}"
        );
    }

    #[test]
    fn a_key_taken_by_an_earlier_landed_write_is_chained_from() {
        let (store, key) = setup();
        let w = AuditWriter::new(store.clone()).unwrap();
        // As if the write of record 0 had failed after landing.
        let landed = AuditRecord {
            seq: 0,
            prev: Hash32::from_bytes([0; 32]),
            time_unix_ms: 1,
            event: event("landed"),
        };
        let object = record_key(w.writer_id(), 0);
        let file = seal_record(&key, &object, &landed.encode()).unwrap();
        store.put(&object, &file, PutMode::CreateOnly).unwrap();
        let record = w.append(&key, &event("next")).unwrap();
        assert_eq!(record.seq, 1);
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert_eq!(log.problems, vec![]);
        assert_eq!(log.entries.len(), 2);
    }

    #[test]
    fn records_cut_off_the_end_and_a_replaced_last_record_are_found_by_the_head() {
        let (store, key) = setup();
        let w = AuditWriter::new(store.clone()).unwrap();
        for i in 0..5 {
            w.append(&key, &event(&format!("call {i}"))).unwrap();
        }
        let k = |seq| record_key(w.writer_id(), seq);
        assert_eq!(read_audit(store.as_ref(), &key, None).unwrap().problems, vec![]);
        // The last two records deleted: the links of the rest are intact, the head is not.
        let (three, four) = (store.get(&k(3)).unwrap(), store.get(&k(4)).unwrap());
        store.delete(&k(3)).unwrap();
        store.delete(&k(4)).unwrap();
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert_eq!(log.problems.len(), 1, "{log:#?}");
        assert_eq!(log.problems[0].key, k(3));
        assert!(log.problems[0].detail.contains("records 3 to 4 at the end"), "{log:#?}");
        // Record 3 back, and a forged record 4 chained from it in the place of the real one.
        store.put(&k(3), &three, PutMode::CreateOnly).unwrap();
        let prev = chain_hash(&open_record(&key, &k(3), &three).unwrap());
        let forged = AuditRecord {
            seq: 4,
            prev,
            time_unix_ms: 9,
            event: event("forged"),
        };
        let file = seal_record(&key, &k(4), &forged.encode()).unwrap();
        store.put(&k(4), &file, PutMode::CreateOnly).unwrap();
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert_eq!(log.problems.len(), 1, "{log:#?}");
        assert!(
            log.problems[0].key == k(4) && log.problems[0].detail.contains("replaced"),
            "{log:#?}"
        );
        // The real one back: clean. Then the head deleted (with the tail, to hide it): named.
        store.delete(&k(4)).unwrap();
        store.put(&k(4), &four, PutMode::CreateOnly).unwrap();
        assert_eq!(read_audit(store.as_ref(), &key, None).unwrap().problems, vec![]);
        store.delete(&head_key(w.writer_id())).unwrap();
        store.delete(&k(4)).unwrap();
        let log = read_audit(store.as_ref(), &key, None).unwrap();
        assert_eq!(log.problems.len(), 1, "{log:#?}");
        assert!(log.problems[0].key.ends_with("/head") && log.problems[0].detail.contains("no head"));
    }
}
