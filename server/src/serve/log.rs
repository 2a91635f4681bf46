//! Structured logs: one JSON object per line on stderr,
//! `{"ts":"2024-05-01T12:34:56.789Z","level":"info","request_id":"…","msg":"…", fields…}`.
//! Field values are written as JSON strings (their `Display` text).

use std::fmt::{self, Display};
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};

/// How serious an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something failed that an operator should look at.
    Error,
    /// A refused or failed call; something unusual.
    Warn,
    /// Normal operation: start, stop, each call.
    Info,
    /// Detail for debugging; hidden unless [`LOG_LEVEL_ENV`] asks for it.
    Debug,
}

impl Level {
    /// The level named `name` (any case); `info` for anything else or nothing.
    fn parse(name: Option<&str>) -> Level {
        match name.map(str::to_ascii_lowercase).as_deref() {
            Some("error") => Level::Error,
            Some("warn") => Level::Warn,
            Some("debug") => Level::Debug,
            _ => Level::Info,
        }
    }

    /// `error`, `warn`, `info` or `debug`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

impl Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys every line has; a field with one of these names is written as `field_<name>`.
const RESERVED: [&str; 4] = ["ts", "level", "request_id", "msg"];

/// Environment variable choosing the most detailed level written: `error`, `warn`,
/// `info` (the default) or `debug`. Read once, at the first event.
pub const LOG_LEVEL_ENV: &str = "AMBER_LOG";

/// Whether events at `level` are written (see [`LOG_LEVEL_ENV`]).
pub fn enabled(level: Level) -> bool {
    static MAX: OnceLock<Level> = OnceLock::new();
    let max = *MAX.get_or_init(|| Level::parse(std::env::var(LOG_LEVEL_ENV).ok().as_deref()));
    level <= max
}

/// Writes one event as a JSON line to stderr (in one write; errors writing are ignored).
/// `request_id` may be empty for events outside a request.
pub fn event(level: Level, request_id: &str, message: &str, fields: &[(&str, &dyn Display)]) {
    if !enabled(level) {
        return;
    }
    let line = format_line(SystemTime::now(), level, request_id, message, fields);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line [`event`] writes, newline included.
pub fn format_line(
    time: SystemTime,
    level: Level,
    request_id: &str,
    message: &str,
    fields: &[(&str, &dyn Display)],
) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"ts\":\"");
    out.push_str(&rfc3339_ms(time));
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"request_id\":");
    push_json_str(&mut out, request_id);
    out.push_str(",\"msg\":");
    push_json_str(&mut out, message);
    for (key, value) in fields {
        out.push(',');
        if RESERVED.contains(key) {
            push_json_str(&mut out, &format!("field_{key}"));
        } else {
            push_json_str(&mut out, key);
        }
        out.push(':');
        push_json_str(&mut out, &value.to_string());
    }
    out.push_str("}\n");
    out
}

/// A new request id: 16 lower-case hex digits from 8 random bytes.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = fallback_id();
    }
    hex::encode(bytes)
}

/// Unique (not unpredictable) ids if the system generator ever fails: a hash of the time
/// and a counter.
fn fallback_id() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let hash = blake3::Hasher::new()
        .update(&nanos.to_le_bytes())
        .update(&n.to_le_bytes())
        .finalize();
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(hash.as_bytes()) {
        *o = *b;
    }
    out
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:34:56.789Z`. Times
/// before 1970 are written as the epoch.
pub fn rfc3339_ms(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = amber_engine::civil::civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Appends `text` as a JSON string literal.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(unix_ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(unix_ms)
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(at(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(at(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(at(1_709_251_199_999)), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(at(4_102_444_800_000)), "2100-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn line_is_json() {
        let err = std::io::Error::other("disk \"full\"\n");
        let n = 42u64;
        let line = format_line(
            at(1_700_000_000_123),
            Level::Warn,
            "0011223344556677",
            "write failed",
            &[
                ("error", &err),
                ("bytes", &n),
                ("msg", &"shadow"),
                ("ctl", &"\u{1}\u{2028}"),
            ],
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1, "{line}");
        assert!(line.starts_with(
            "{\"ts\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warn\",\"request_id\":\"0011223344556677\",\"msg\":\"write failed\","
        ));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"], "disk \"full\"\n");
        assert_eq!(v["bytes"], "42");
        assert_eq!(v["msg"], "write failed");
        assert_eq!(v["field_msg"], "shadow");
        assert_eq!(v["ctl"], "\u{1}\u{2028}");
    }

    #[test]
    fn levels_and_ids() {
        assert!(enabled(Level::Error) && enabled(Level::Info));
        assert_eq!(Level::parse(None), Level::Info);
        assert_eq!(Level::parse(Some("DEBUG")), Level::Debug);
        assert_eq!(Level::parse(Some("warn")), Level::Warn);
        assert_eq!(Level::parse(Some("bogus")), Level::Info);
        let a = new_request_id();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_request_id());
        assert_ne!(fallback_id(), fallback_id());
        event(Level::Debug, "", "hidden", &[]);
        event(Level::Info, "", "shown", &[("k", &1)]);
    }
}
