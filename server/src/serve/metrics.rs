//! Server counters, rendered in the Prometheus text format (0.0.4) and served on a small
//! plain-HTTP listener at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::log::{self, Level};

/// Upper bounds of the latency histogram's buckets, in seconds (1 ms to 60 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Most distinct label values kept per labelled metric; further values are counted under
/// `other`, so a client sending made-up method names cannot grow the rendering without end.
pub const MAX_LABEL_VALUES: usize = 64;

/// Largest HTTP request head read by [`serve_metrics`].
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Connections [`serve_metrics`] handles at once; more are closed at once.
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// Time one metrics connection may take, reading and answering.
pub const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

const OTHER: &str = "other";

/// Latency histogram of one method.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot counts observations above the last bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: u128,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(slot) = self.buckets.get_mut(index) {
            *slot += 1;
        }
        self.sum_nanos += elapsed.as_nanos();
        self.count += 1;
    }
}

/// The labelled metrics, behind one lock (never held across an `.await`).
#[derive(Debug, Default)]
struct Labelled {
    /// By gRPC code name.
    errors: BTreeMap<String, u64>,
    /// By (method, result).
    requests: BTreeMap<(String, String), u64>,
    /// By method.
    latency: BTreeMap<String, Histogram>,
}

/// Server-wide counters; share it as `Arc<Metrics>`. Every method is cheap and
/// non-blocking.
#[derive(Debug, Default)]
pub struct Metrics {
    streams_active: AtomicI64,
    bytes_received: AtomicU64,
    bytes_new: AtomicU64,
    bytes_logical: AtomicU64,
    labelled: Mutex<Labelled>,
}

impl Metrics {
    /// An ingest stream opened (`amber_streams_active` + 1).
    pub fn stream_started(&self) {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
    }

    /// An ingest stream ended, however it ended (`amber_streams_active` − 1).
    pub fn stream_ended(&self) {
        self.streams_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// `bytes` of payload received from clients.
    pub fn add_received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of content newly stored (not found in the vault before).
    pub fn add_new(&self, bytes: u64) {
        self.bytes_new.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of content a push described, new and reused alike.
    pub fn add_logical(&self, bytes: u64) {
        self.bytes_logical.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A call failed with the gRPC code named `kind` (e.g. `permission_denied`).
    pub fn error(&self, kind: &str) {
        let mut labelled = self.lock();
        let key = capped_key(&labelled.errors, kind);
        *labelled.errors.entry(key).or_default() += 1;
    }

    /// A call of `method` (e.g. `/amber.v1.Ingest/Push`) ended after `elapsed` with `result`
    /// (`ok` or a gRPC code name: a fixed set, so it is not capped like `method`).
    pub fn request(&self, method: &str, elapsed: Duration, result: &str) {
        let mut labelled = self.lock();
        let method = capped_key(&labelled.latency, method);
        labelled.latency.entry(method.clone()).or_default().observe(elapsed);
        *labelled.requests.entry((method, result.to_string())).or_default() += 1;
    }

    /// Every metric in the Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let active = self.streams_active.load(Ordering::Relaxed);
        let received = self.bytes_received.load(Ordering::Relaxed);
        let new = self.bytes_new.load(Ordering::Relaxed);
        let logical = self.bytes_logical.load(Ordering::Relaxed);
        header(&mut out, "amber_streams_active", "gauge", "Ingest streams open now.");
        let _ = writeln!(out, "amber_streams_active {active}");
        counter(
            &mut out,
            "amber_bytes_received_total",
            "Payload bytes received from clients.",
            received,
        );
        counter(
            &mut out,
            "amber_bytes_new_total",
            "Content bytes stored that the vault did not hold yet.",
            new,
        );
        counter(
            &mut out,
            "amber_bytes_logical_total",
            "Content bytes described by pushes, new and reused.",
            logical,
        );
        header(
            &mut out,
            "amber_dedup_ratio",
            "gauge",
            "amber_bytes_logical_total / amber_bytes_new_total (1 before any push, +Inf when nothing was new).",
        );
        let _ = writeln!(out, "amber_dedup_ratio {}", float(dedup_ratio(logical, new)));
        self.render_labelled(&mut out);
        out
    }

    fn render_labelled(&self, out: &mut String) {
        let labelled = self.lock();
        header(
            out,
            "amber_errors_total",
            "counter",
            "Failed calls by gRPC status code.",
        );
        for (kind, n) in &labelled.errors {
            let _ = writeln!(out, "amber_errors_total{{kind=\"{}\"}} {n}", escape(kind));
        }
        header(
            out,
            "amber_requests_total",
            "counter",
            "Finished calls by method and result.",
        );
        for ((method, result), n) in &labelled.requests {
            let (m, r) = (escape(method), escape(result));
            let _ = writeln!(out, "amber_requests_total{{method=\"{m}\",result=\"{r}\"}} {n}");
        }
        header(
            out,
            "amber_request_duration_seconds",
            "histogram",
            "Call latency by method.",
        );
        for (method, h) in &labelled.latency {
            render_histogram(out, &escape(method), h);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Labelled> {
        self.labelled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn render_histogram(out: &mut String, method: &str, h: &Histogram) {
    let name = "amber_request_duration_seconds";
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{method=\"{method}\",le=\"{}\"}} {cumulative}",
            float(*bound)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{method=\"{method}\",le=\"+Inf\"}} {}", h.count);
    let sum = h.sum_nanos as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum{{method=\"{method}\"}} {}", float(sum));
    let _ = writeln!(out, "{name}_count{{method=\"{method}\"}} {}", h.count);
}

/// `key` itself if the map has it or has room, else `other`.
fn capped_key<V>(map: &BTreeMap<String, V>, key: &str) -> String {
    if map.len() < MAX_LABEL_VALUES || map.contains_key(key) {
        key.to_string()
    } else {
        OTHER.to_string()
    }
}

fn dedup_ratio(logical: u64, new: u64) -> f64 {
    match (logical, new) {
        (0, 0) => 1.0,
        (_, 0) => f64::INFINITY,
        _ => logical as f64 / new as f64,
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A float as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// A label value escaped for the text format (`\\`, `\"`, `\n`).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes: HTTP/1.1, one request
/// per connection. Anything but `GET /metrics` is 404; a head that is not HTTP or longer
/// than [`MAX_REQUEST_HEAD`] is 400. Connections still open at shutdown are dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    continue; // too many connections: dropping the stream closes it
                };
                let metrics = metrics.clone();
                tasks.spawn(async move {
                    let _ = tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, answer(stream, &metrics)).await;
                    drop(permit);
                });
            }
            Err(e) => {
                log::event(Level::Warn, "", "metrics listener cannot accept", &[("error", &e)]);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let response = match read_head(&mut stream).await? {
        Some(head) => route(&head, metrics),
        None => response("400 Bad Request", "bad request\n"),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The request head (up to the blank line), or `None` if it is longer than
/// [`MAX_REQUEST_HEAD`] or the peer closed before finishing it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        head.extend_from_slice(data);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() >= MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) || parts.next().is_some() {
        return response("400 Bad Request", "bad request\n");
    }
    let path = target.and_then(|t| t.split('?').next());
    if method == Some("GET") && path == Some("/metrics") {
        return response("200 OK", &metrics.render());
    }
    response("404 Not Found", "not found; try GET /metrics\n")
}

fn response(status: &str, body: &str) -> Vec<u8> {
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> Metrics {
        let m = Metrics::default();
        m.stream_started();
        m.stream_started();
        m.stream_ended();
        m.add_received(1000);
        m.add_new(250);
        m.add_logical(1000);
        m.error("permission_denied");
        m.error("permission_denied");
        m.request("/amber.v1.Ingest/Push", Duration::from_millis(3), "ok");
        m.request("/amber.v1.Ingest/Push", Duration::from_secs(120), "unavailable");
        m
    }

    #[test]
    fn render_format() {
        let text = filled().render();
        for line in [
            "# HELP amber_streams_active Ingest streams open now.",
            "# TYPE amber_streams_active gauge",
            "amber_streams_active 1",
            "# TYPE amber_bytes_received_total counter",
            "amber_bytes_received_total 1000",
            "amber_bytes_new_total 250",
            "amber_bytes_logical_total 1000",
            "# TYPE amber_dedup_ratio gauge",
            "amber_dedup_ratio 4",
            "amber_errors_total{kind=\"permission_denied\"} 2",
            "amber_requests_total{method=\"/amber.v1.Ingest/Push\",result=\"ok\"} 1",
            "amber_requests_total{method=\"/amber.v1.Ingest/Push\",result=\"unavailable\"} 1",
            "# TYPE amber_request_duration_seconds histogram",
            "amber_request_duration_seconds_bucket{method=\"/amber.v1.Ingest/Push\",le=\"0.001\"} 0",
            "amber_request_duration_seconds_bucket{method=\"/amber.v1.Ingest/Push\",le=\"0.005\"} 1",
            "amber_request_duration_seconds_bucket{method=\"/amber.v1.Ingest/Push\",le=\"60\"} 1",
            "amber_request_duration_seconds_bucket{method=\"/amber.v1.Ingest/Push\",le=\"+Inf\"} 2",
            "amber_request_duration_seconds_sum{method=\"/amber.v1.Ingest/Push\"} 120.003",
            "amber_request_duration_seconds_count{method=\"/amber.v1.Ingest/Push\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("amber_"), "{l}");
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{l}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn ratio_edges_and_escaping() {
        let m = Metrics::default();
        assert!(m.render().contains("amber_dedup_ratio 1\n"));
        m.add_logical(5);
        assert!(m.render().contains("amber_dedup_ratio +Inf\n"));
        m.error("a\"b\\c\nd");
        assert!(m.render().contains(r#"amber_errors_total{kind="a\"b\\c\nd"} 1"#));
    }

    #[test]
    fn label_values_are_capped() {
        let m = Metrics::default();
        for i in 0..(MAX_LABEL_VALUES + 10) {
            m.request(&format!("/m{i}"), Duration::from_millis(1), "ok");
        }
        let text = m.render();
        let counts = text
            .lines()
            .filter(|l| l.starts_with("amber_request_duration_seconds_count"))
            .count();
        assert_eq!(counts, MAX_LABEL_VALUES + 1);
        assert!(text.contains("amber_request_duration_seconds_count{method=\"other\"} 10"));
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn http_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(filled());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, metrics, async {
            let _ = stopped.await;
        }));

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(body.contains("amber_streams_active 1\n"));

        let missing = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 404"), "{post}");
        // Exactly the limit without the blank line: all of it is read, so no reset.
        let mut huge = "GET /metrics HTTP/1.1\r\nX: ".to_string();
        huge.push_str(&"a".repeat(MAX_REQUEST_HEAD - huge.len()));
        assert!(get(addr, &huge).await.starts_with("HTTP/1.1 400"));
        assert!(get(addr, "nonsense\r\n\r\n").await.starts_with("HTTP/1.1 400"));

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener closed after shutdown"
        );
    }
}
