//! Printing results as text or one JSON document, and progress on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amber_engine::ops::progress::Progress;
use amber_engine::ops::display_path;
use serde_json::{Map, Value};

/// Prints `value` as JSON when asked, else the text `human` produces.
pub fn emit(json: bool, value: &Value, human: impl FnOnce() -> String) {
    let mut out = std::io::stdout().lock();
    let text = if json { value.to_string() } else { human() };
    let _ = writeln!(out, "{text}");
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
