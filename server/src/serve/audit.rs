//! A vault's audit log: one JSON line per call, appended and synced before the call's
//! answer is sent (`format-spec/server.md`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Longest `target` or `detail` written, in bytes; longer text is cut at a character
/// boundary and ends in `…`.
pub const MAX_FIELD: usize = 1024;

/// What a call did, as the caller describes it. [`AuditLog::record`] adds the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditEvent<'a> {
    /// The request's id, as in the structured log.
    pub request_id: &'a str,
    /// Id of the token used; empty when none was accepted.
    pub token_id: &'a str,
    /// The token's role (`sidecar`, `restore`, `admin`); empty when none.
    pub role: &'a str,
    /// The gRPC method, e.g. `/amber.v1.Ingest/Push`.
    pub call: &'a str,
    /// What the call acted on (a snapshot id, a token id, a vault); may be empty.
    pub target: &'a str,
    /// `ok`, or the gRPC status code's name, e.g. `permission_denied`.
    pub result: &'a str,
    /// A short free-text detail (the status message on failure).
    pub detail: &'a str,
}

/// One line of an audit log, as read back.
///
/// Readers ignore fields they do not know (`format-spec/server.md`: fields may be added,
/// never removed or redefined).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch when the record was written.
    pub time_unix_ms: i64,
    /// See [`AuditEvent::request_id`].
    pub request_id: String,
    /// See [`AuditEvent::token_id`].
    pub token_id: String,
    /// See [`AuditEvent::role`].
    pub role: String,
    /// See [`AuditEvent::call`].
    pub call: String,
    /// See [`AuditEvent::target`].
    pub target: String,
    /// See [`AuditEvent::result`].
    pub result: String,
    /// See [`AuditEvent::detail`].
    pub detail: String,
}

impl AuditRecord {
    /// The record for `event` at `time_unix_ms`, with `target` and `detail` cut to
    /// [`MAX_FIELD`] bytes.
    pub fn new(event: &AuditEvent<'_>, time_unix_ms: i64) -> AuditRecord {
        AuditRecord {
            time_unix_ms,
            request_id: event.request_id.to_string(),
            token_id: event.token_id.to_string(),
            role: event.role.to_string(),
            call: event.call.to_string(),
            target: cut(event.target),
            result: event.result.to_string(),
            detail: cut(event.detail),
        }
    }

    /// The record as one line of JSON, newline included. JSON escapes line breaks inside
    /// strings, so a record is always exactly one line.
    ///
    /// # Errors
    /// Only if serialization fails, which it does not for these fields.
    pub fn to_line(&self) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self).context("cannot encode an audit record")?;
        line.push(b'\n');
        Ok(line)
    }
}

/// An open audit log. Safe to share between threads: each record is one `write` to a file
/// opened with `O_APPEND`, so concurrent records never interleave.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

impl AuditLog {
    /// Opens (creating with mode 0600 if missing, and then syncing its directory) the log
    /// at `path` for appending. A last line left without its newline by a crash is ended
    /// first, so it stays one (invalid) line and the next record starts cleanly.
    ///
    /// # Errors
    /// The file cannot be opened or created.
    pub fn open(path: &Path) -> Result<AuditLog> {
        let context = || format!("cannot open audit log {}", path.display());
        let mut options = OpenOptions::new();
        options.read(true).append(true).mode(0o600);
        let file = match options.clone().create_new(true).open(path) {
            Ok(file) => {
                sync_parent(path).with_context(context)?;
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let file = options.open(path).with_context(context)?;
                end_torn_line(&file).with_context(context)?;
                file
            }
            Err(e) => return Err(e).with_context(context),
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends the record of `event`, stamped with the current time, in one write, then
    /// syncs the file's data. Blocking: from async code call it where blocking is allowed
    /// (it costs one fsync).
    ///
    /// # Errors
    /// The write was short or failed, or the sync failed; the record may then be missing
    /// or (after a short write) partial.
    pub fn record(&self, event: &AuditEvent<'_>) -> Result<()> {
        let line = AuditRecord::new(event, now_unix_ms()).to_line()?;
        let written = (&self.file)
            .write(&line)
            .with_context(|| format!("cannot append to audit log {}", self.path.display()))?;
        if written != line.len() {
            bail!(
                "short write to audit log {}: {written} of {} bytes",
                self.path.display(),
                line.len()
            );
        }
        self.file
            .sync_data()
            .with_context(|| format!("cannot sync audit log {}", self.path.display()))
    }
}

/// If a crash cut the last record short (the file does not end in a newline), ends that
/// line, so the next record starts a line of its own.
fn end_torn_line(file: &File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || (file.read_at(&mut last, len - 1)? == 1 && last == *b"\n") {
        return Ok(());
    }
    let mut writer = file;
    writer.write_all(b"\n")?;
    file.sync_data()
}

/// Every record of the log at `path`, in order.
///
/// # Errors
/// The file cannot be read, or a line (numbered from 1 in the message) is not a complete
/// record ending in a newline.
#[allow(dead_code, reason = "for tests and tooling; the server itself only appends")]
pub fn read_all(path: &Path) -> Result<Vec<AuditRecord>> {
    let file = File::open(path).with_context(|| format!("cannot open audit log {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read audit log {} line {number}", path.display()))?;
        if n == 0 {
            break;
        }
        let Some(text) = line.strip_suffix('\n') else {
            bail!("audit log {} line {number} is incomplete (no newline)", path.display());
        };
        let record = serde_json::from_str(text)
            .with_context(|| format!("audit log {} line {number} is not a record", path.display()))?;
        records.push(record);
    }
    Ok(records)
}

/// `text` cut to at most [`MAX_FIELD`] bytes (ending in `…` when cut).
fn cut(text: &str) -> String {
    if text.len() <= MAX_FIELD {
        return text.to_string();
    }
    let mut end = MAX_FIELD - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text.get(..end).unwrap_or_default().to_string();
    out.push('…');
    out
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
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

    const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../format-spec/vectors/server-audit.jsonl");

    fn vector_records() -> Vec<AuditRecord> {
        let events = [
            (
                1_700_000_000_123,
                AuditEvent {
                    request_id: "00112233445566aa",
                    token_id: "0123456789abcdef",
                    role: "sidecar",
                    call: "/amber.v1.Ingest/Push",
                    target: "6b1f0c7e2d3a49588f1e0a7c5d4b3a291807f6e5d4c3b2a1908f7e6d5c4b3a29",
                    result: "ok",
                    detail: "",
                },
            ),
            (
                1_700_000_001_000,
                AuditEvent {
                    request_id: "00112233445566bb",
                    token_id: "0123456789abcdef",
                    role: "sidecar",
                    call: "/amber.v1.Admin/CreateToken",
                    target: "lab-a",
                    result: "permission_denied",
                    detail: "a sidecar token may not call /amber.v1.Admin/CreateToken",
                },
            ),
            (
                1_700_000_002_500,
                AuditEvent {
                    request_id: "00112233445566cc",
                    token_id: "fedcba9876543210",
                    role: "admin",
                    call: "/amber.v1.Admin/RevokeToken",
                    target: "0123456789abcdef",
                    result: "ok",
                    detail: "name \"ci\"\nline two é",
                },
            ),
        ];
        events.iter().map(|(t, e)| AuditRecord::new(e, *t)).collect()
    }

    #[test]
    fn golden_vector() {
        let records = vector_records();
        let mut expected = Vec::new();
        for r in &records {
            expected.extend(r.to_line().unwrap());
        }
        if std::env::var_os("AMBER_BLESS").is_some() {
            std::fs::write(VECTOR, &expected).unwrap();
        }
        let stored = std::fs::read(VECTOR).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&stored),
            String::from_utf8_lossy(&expected),
            "encoding changed"
        );
        assert_eq!(read_all(Path::new(VECTOR)).unwrap(), records);
    }

    #[test]
    fn records_append_across_reopen() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let records = vector_records();
        fn event(r: &AuditRecord) -> AuditEvent<'_> {
            AuditEvent {
                request_id: &r.request_id,
                token_id: &r.token_id,
                role: &r.role,
                call: &r.call,
                target: &r.target,
                result: &r.result,
                detail: &r.detail,
            }
        }
        let log = AuditLog::open(&path).unwrap();
        log.record(&event(&records[0])).unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.record(&event(&records[2])).unwrap();
        let read = read_all(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].detail, records[2].detail);
        assert!(read[0].time_unix_ms > 1_700_000_000_000);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn concurrent_records_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let detail = "x".repeat(900);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (log, detail) = (&log, &detail);
                s.spawn(move || {
                    for i in 0..25 {
                        let id = format!("{t}-{i}");
                        let e = AuditEvent {
                            request_id: &id,
                            token_id: "",
                            role: "",
                            call: "/c",
                            target: "",
                            result: "ok",
                            detail,
                        };
                        log.record(&e).unwrap();
                    }
                });
            }
        });
        assert_eq!(read_all(&path).unwrap().len(), 100);
    }

    #[test]
    fn long_fields_are_cut_and_bad_lines_named() {
        let long = "é".repeat(MAX_FIELD);
        let e = AuditEvent {
            request_id: "r",
            token_id: "",
            role: "",
            call: "/c",
            target: &long,
            result: "ok",
            detail: "",
        };
        let r = AuditRecord::new(&e, 0);
        assert!(r.target.len() <= MAX_FIELD && r.target.ends_with('…'));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(
            &path,
            String::from_utf8(r.to_line().unwrap()).unwrap() + "{\"bad\":1}\n",
        )
        .unwrap();
        let err = read_all(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(read_all(&path).unwrap_err().to_string().contains("incomplete"));
    }

    #[test]
    fn torn_last_line_is_ended_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let whole = String::from_utf8(vector_records()[0].to_line().unwrap()).unwrap();
        std::fs::write(&path, format!("{whole}{}", &whole[..20])).unwrap();
        let log = AuditLog::open(&path).unwrap();
        let e = AuditEvent {
            request_id: "r",
            token_id: "",
            role: "",
            call: "/c",
            target: "",
            result: "ok",
            detail: "",
        };
        log.record(&e).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], &whole[..20]);
        assert!(lines[2].starts_with("{\"time_unix_ms\":"));
        let err = read_all(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        drop(log);
        AuditLog::open(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "a whole file is left alone"
        );
    }
}
