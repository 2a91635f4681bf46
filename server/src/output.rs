//! Printing results as text or one JSON document (its schema in `docs/json.md`), errors
//! as one JSON object under `--json`, times in the local time zone, and progress on a
//! terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amber_engine::ops::display_path;
use amber_engine::ops::progress::Progress;
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

/// Set once a command writes file or tar bytes to stdout: its document then goes to stderr.
static DATA_ON_STDOUT: AtomicBool = AtomicBool::new(false);

/// Marks stdout as carrying data (`dump`, `restore --tar -`), so documents and errors are
/// printed on stderr instead.
pub fn stdout_is_data() {
    DATA_ON_STDOUT.store(true, Ordering::Relaxed);
}

/// Writes one line on stdout, or on stderr when stdout carries data.
fn print_line(text: &str) {
    if DATA_ON_STDOUT.load(Ordering::Relaxed) {
        eprintln!("{text}");
    } else {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
}

/// Prints `value` as JSON when asked, else the text `human` produces.
pub fn emit(json: bool, value: &Value, human: impl FnOnce() -> String) {
    let text = if json { value.to_string() } else { human() };
    print_line(&text);
}

/// Reports a failed command: `amber: MESSAGE` on stderr, and under `--json` also the
/// error document `{"error": {"message", "kind", "exit_code"}}` on stdout.
pub fn print_error(json: bool, e: &anyhow::Error, exit_code: u8) {
    let message = format!("{e:#}");
    eprintln!("amber: {message}");
    if json {
        let value = json!({ "error": { "message": message, "kind": error_kind(e), "exit_code": exit_code } });
        print_line(&value.to_string());
    }
}

/// The `kind` of an error document: the first cause in the chain that says what failed.
/// Errors the command line raises itself (a refused combination of options, a snapshot of
/// the wrong kind) are `invalid_argument`.
pub fn error_kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<crate::client::RemoteError>() {
            return match r.code {
                // The server's name for what is `corrupt` locally.
                tonic::Code::DataLoss => "corrupt",
                code => amber_server::serve::status::code_name(code),
            };
        }
        if let Some(k) = cause.downcast_ref::<Failure>() {
            return k.kind;
        }
        if let Some(en) = cause.downcast_ref::<amber_engine::error::Error>() {
            return engine_kind(en);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io_kind(io.kind());
        }
        if cause.downcast_ref::<tonic::transport::Error>().is_some() {
            return "unavailable";
        }
    }
    "invalid_argument"
}

/// An error of a known kind raised by the command line itself.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// One of the kinds in `docs/json.md`.
    pub kind: &'static str,
    /// What failed.
    pub message: String,
}

/// An error of `kind` (as in `docs/json.md`).
pub fn failure(kind: &'static str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
    })
}

fn engine_kind(e: &amber_engine::error::Error) -> &'static str {
    use amber_engine::backend::BackendError as B;
    use amber_engine::error::{CryptoError, Error as E};
    match e {
        E::NoSuchSnapshot(_) | E::NoSuchPath(_) | E::NoRepository(_) => "not_found",
        E::InvalidArgument(_) | E::AmbiguousSnapshot { .. } => "invalid_argument",
        E::Corrupt { .. } | E::MissingBlob(_) | E::Format(_) => "corrupt",
        E::Crypto(CryptoError::WrongPassphrase) => "unauthenticated",
        E::Crypto(CryptoError::Authentication { .. }) => "corrupt",
        E::AlreadyExists(_) => "already_exists",
        E::LimitExceeded(_) => "resource_exhausted",
        E::IndexBusy(_) => "unavailable",
        E::Io { source, .. } | E::Backend(B::Io { source, .. }) => io_kind(source.kind()),
        E::Backend(B::NotFound { .. }) => "not_found",
        E::Backend(_) => "unavailable",
        _ => "internal",
    }
}

fn io_kind(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => "not_found",
        K::PermissionDenied => "permission_denied",
        K::AlreadyExists => "already_exists",
        K::InvalidInput => "invalid_argument",
        _ => "io",
    }
}

/// The local time zone (the `TZ` variable, else `/etc/localtime`, else UTC).
fn zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(TimeZone::system)
}

/// A time (nanoseconds since the epoch) as RFC 3339 with the local offset, e.g.
/// `2026-12-01T21:00:05.25+01:00`.
pub fn rfc3339(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t.display_with_offset(zone().to_offset(t)).to_string(),
        Err(_) => ns.to_string(),
    }
}

/// A time for tables: local date and time to the second, with the offset
/// (`2026-12-01 21:00:05 +01:00`).
pub fn time_text(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t
            .to_zoned_datetime(zone().clone())
            .strftime("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => ns.to_string(),
    }
}

/// Adds a time to a JSON object as `key` (RFC 3339, local offset) and `<key>_unix_nanos`.
pub fn put_time(obj: &mut Map<String, Value>, key: &str, ns: i64) {
    obj.insert(key.to_string(), Value::String(rfc3339(ns)));
    obj.insert(format!("{key}_unix_nanos"), json!(ns));
}

/// Adds a path of raw bytes to a JSON object as `key` (its text form: UTF-8 as it is,
/// other bytes as `\xNN`) and, only when the bytes are not UTF-8, `<key>_base64` (the
/// exact bytes, standard base64). Scripts that must be exact use `<key>_base64` when it
/// is present.
pub fn put_path(obj: &mut Map<String, Value>, key: &str, path: &[u8]) {
    obj.insert(key.to_string(), Value::String(display_path(path)));
    if std::str::from_utf8(path).is_err() {
        use base64::Engine;
        let exact = base64::engine::general_purpose::STANDARD.encode(path);
        obj.insert(format!("{key}_base64"), Value::String(exact));
    }
}

/// Human-readable bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS.get(unit).unwrap_or(&"?"))
    }
}

/// A progress line on stderr, refreshed while the operation runs; silent when stderr is
/// not a terminal, unless made with [`ProgressDisplay::start_logged`].
pub struct ProgressDisplay {
    progress: Arc<Progress>,
    /// Dropping it tells the drawing thread to stop at once.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    terminal: bool,
}

impl ProgressDisplay {
    pub fn start(verb: &'static str) -> Self {
        Self::spawn(verb, None)
    }

    /// Like [`ProgressDisplay::start`], but when stderr is not a terminal (a sidecar's
    /// log), prints a plain progress line every `every` instead of nothing.
    pub fn start_logged(verb: &'static str, every: Duration) -> Self {
        Self::spawn(verb, Some(every))
    }

    fn spawn(verb: &'static str, log_every: Option<Duration>) -> Self {
        let progress = Arc::new(Progress::default());
        let (stop, stopped) = channel();
        let terminal = std::io::stderr().is_terminal();
        let p = progress.clone();
        let thread = match (terminal, log_every) {
            (true, _) => Some(std::thread::spawn(move || draw_loop(verb, &p, &stopped, None))),
            (false, Some(every)) => Some(std::thread::spawn(move || draw_loop(verb, &p, &stopped, Some(every)))),
            (false, None) => None,
        };
        ProgressDisplay {
            progress,
            stop: Some(stop),
            thread,
            terminal,
        }
    }

    pub fn counters(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn finish(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            if self.terminal {
                eprint!("\r\x1b[K");
            }
        }
    }
}

/// Redraws the progress line every 250 ms (`log_every` None), or prints one plain line
/// per period; returns as soon as the display is finished.
fn draw_loop(verb: &str, p: &Progress, stopped: &Receiver<()>, log_every: Option<Duration>) {
    let start = Instant::now();
    let mut next_line = log_every.unwrap_or_default();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(250)) {
        let (files, b, errors) = p.snapshot();
        let errors = if errors > 0 {
            format!(", {errors} errors")
        } else {
            String::new()
        };
        match log_every {
            None => {
                let secs = start.elapsed().as_secs_f64().max(0.001);
                eprint!(
                    "\r\x1b[K{verb}: {files} files, {} ({}/s){errors}",
                    bytes(b),
                    bytes((b as f64 / secs) as u64)
                );
            }
            Some(every) if start.elapsed() >= next_line => {
                next_line += every;
                eprintln!(
                    "{verb}: {files} files, {} after {} s{errors}",
                    bytes(b),
                    start.elapsed().as_secs()
                );
            }
            Some(_) => {}
        }
    }
}

/// Progress of a long command on stderr (`compact`, `verify`), alike in both modes: one
/// line redrawn in place on a terminal; otherwise (a log) one line as each phase ends.
pub struct StepPrinter {
    label: &'static str,
    terminal: bool,
}

impl StepPrinter {
    /// A printer whose lines start with `label`.
    pub fn new(label: &'static str) -> Self {
        StepPrinter {
            label,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Shows `done` of `total` in `phase`.
    pub fn show(&self, phase: &str, done: u64, total: u64) {
        let label = self.label;
        if self.terminal {
            eprint!("\r\x1b[K{label}: {phase} {done}/{total}");
        } else if done == total {
            eprintln!("{label}: {phase} {done}/{total}");
        }
    }

    /// Clears the line on a terminal.
    pub fn finish(&self) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
    }
}
