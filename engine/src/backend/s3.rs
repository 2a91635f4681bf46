//! An S3 bucket (AWS, or any S3-compatible server: Ceph RGW, MinIO) as a store, over
//! `aws-sdk-s3`.
//!
//! - Credentials and region come from the standard AWS chain (environment, profile,
//!   instance role); the endpoint from [`S3Options::endpoint`] or `AWS_ENDPOINT_URL_S3` /
//!   `AWS_ENDPOINT_URL`, with path-style addressing whenever an endpoint is set.
//! - Create-only writes send `If-None-Match: *`; compare-and-swap sends `If-Match`. A 412
//!   means the condition failed; a 409 (a concurrent conditional write in progress) is
//!   retried. The protocol is in `format-spec/s3.md`.
//! - Every upload carries a SHA-256 checksum the server verifies; objects above
//!   [`S3Options::multipart_threshold`] go up in parts, in parallel, and an upload that fails
//!   is aborted.
//! - Throttling, 5xx and timeouts are retried by the SDK's standard strategy (exponential
//!   backoff with jitter, [`S3Options::max_attempts`]); what still fails names the key and
//!   the S3 error code. At most [`S3Options::max_concurrency`] requests run at once.
//!
//! The trait is synchronous: each call runs its request on a runtime of the backend's own
//! and waits on a channel, so it may be called from any thread.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, GlacierJobParameters, MetadataDirective,
    RestoreRequest, Tier,
};
use base64::Engine as _;
use tokio::sync::Semaphore;

use super::{
    Backend, BackendError, CasOutcome, ListPage, ObjectInfo, PendingUpload, PutMode, PutOutcome, RestoreStatus,
    RetrievalTier, StorageClass, validate_key,
};

/// How to reach and use a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// The endpoint of an S3-compatible server; `None`: the AWS chain's
    /// (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS itself).
    pub endpoint: Option<String>,
    /// The region; `None`: the AWS chain's, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); `None`: whenever an endpoint is set.
    pub path_style: Option<bool>,
    /// The class new data packs are written in; metadata is always `STANDARD`.
    pub data_class: StorageClass,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Objects larger than this go up in parts.
    pub multipart_threshold: u64,
    /// Size of each part (S3's minimum is 5 MiB).
    pub part_size: u64,
    /// Ranges of one object closer than this are read with one request.
    pub coalesce_gap: u64,
    /// An access key id and secret given directly; `None`: the AWS chain's credentials.
    pub static_keys: Option<(String, String)>,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: None,
            path_style: None,
            data_class: StorageClass::Standard,
            max_concurrency: 16,
            max_attempts: 8,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            coalesce_gap: 1 << 20,
            static_keys: None,
        }
    }
}

impl S3Options {
    /// The defaults, with what `AMBER_S3_*` variables set: `AMBER_S3_ENDPOINT`,
    /// `AMBER_S3_REGION`, `AMBER_S3_PATH_STYLE` (`true`/`false`), `AMBER_S3_DATA_CLASS`,
    /// `AMBER_S3_CONCURRENCY`, `AMBER_S3_MAX_ATTEMPTS`, `AMBER_S3_PART_MIB`.
    ///
    /// # Errors
    /// A variable that does not parse.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<Option<u64>, String> {
            var(name)
                .map(|v| v.parse::<u64>().map_err(|_| format!("{name}={v} is not a number")))
                .transpose()
        };
        let mut o = S3Options {
            endpoint: var("AMBER_S3_ENDPOINT"),
            region: var("AMBER_S3_REGION"),
            ..S3Options::default()
        };
        if let Some(v) = var("AMBER_S3_PATH_STYLE") {
            o.path_style = Some(
                v.parse()
                    .map_err(|_| format!("AMBER_S3_PATH_STYLE={v} is not true or false"))?,
            );
        }
        if let Some(v) = var("AMBER_S3_DATA_CLASS") {
            o.data_class = StorageClass::parse(&v);
        }
        if let Some(n) = number("AMBER_S3_CONCURRENCY")? {
            o.max_concurrency = usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        }
        if let Some(n) = number("AMBER_S3_MAX_ATTEMPTS")? {
            o.max_attempts = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("AMBER_S3_PART_MIB")? {
            o.part_size = n.max(5) << 20;
            o.multipart_threshold = o.part_size * 2;
        }
        Ok(o)
    }
}

/// One bucket, or the objects under one prefix of it.
#[derive(Clone)]
pub struct S3Backend {
    client: Client,
    bucket: String,
    /// Empty, or ending in `/`.
    prefix: String,
    opts: S3Options,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Backend({})", self.describe())
    }
}

/// The runtime every S3 request runs on.
fn runtime() -> Result<&'static tokio::runtime::Runtime, BackendError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("amber-s3")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BackendError::Unsupported {
            store: "S3".into(),
            what: format!("start its I/O runtime: {e}"),
        })
}

/// Runs `fut` on the S3 runtime and waits for it from this (synchronous) thread.
fn run<T: Send + 'static>(
    fut: impl Future<Output = Result<T, BackendError>> + Send + 'static,
) -> Result<T, BackendError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| BackendError::Unsupported {
        store: "S3".into(),
        what: "finish a request: its task ended without an answer".into(),
    })?
}

/// What an S3 error is, for the mapping below.
struct Failure {
    status: Option<u16>,
    code: String,
    message: String,
}

fn failure<E>(e: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_string).unwrap_or_else(|| match e {
        SdkError::TimeoutError(_) => "Timeout".into(),
        SdkError::DispatchFailure(_) => "ConnectionFailed".into(),
        _ => status.map_or_else(|| "Unknown".into(), |s| format!("HTTP{s}")),
    });
    let message = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(e).to_string());
    Failure { status, code, message }
}

impl Failure {
    fn into_error(self, op: &'static str, key: &str) -> BackendError {
        match (self.status, self.code.as_str()) {
            (Some(404), _) | (_, "NoSuchKey" | "NotFound") => BackendError::NotFound { key: key.into() },
            (_, "InvalidObjectState") => BackendError::Archived {
                key: key.into(),
                class: StorageClass::Other("an archive class".into()),
            },
            _ => BackendError::Remote {
                op,
                key: key.into(),
                status: self.status,
                code: self.code,
                message: self.message,
            },
        }
    }

    fn is_precondition_failed(&self) -> bool {
        self.status == Some(412) || self.code == "PreconditionFailed"
    }

    /// A concurrent conditional write on the same key: S3 asks to retry.
    fn is_conflict(&self) -> bool {
        self.status == Some(409) && self.code != "RestoreAlreadyInProgress"
    }
}

fn sha256_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// How often a 409 (conditional write in progress) is retried, and the first wait.
const CONFLICT_RETRIES: u32 = 6;
const CONFLICT_WAIT: Duration = Duration::from_millis(100);

impl S3Backend {
    /// Connects to `bucket` (objects under `prefix`, which may be empty).
    ///
    /// # Errors
    /// An invalid prefix; the runtime failing to start.
    pub fn connect(bucket: &str, prefix: &str, opts: S3Options) -> Result<Self, BackendError> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix)?;
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let o = opts.clone();
        let client = run(async move { Ok(client(&o).await) })?;
        Ok(S3Backend {
            client,
            bucket: bucket.to_string(),
            prefix,
            permits: Arc::new(Semaphore::new(opts.max_concurrency.max(1))),
            opts,
        })
    }

    /// Creates the bucket when it does not exist (for tests and first set-up).
    ///
    /// # Errors
    /// The store refusing.
    pub fn create_bucket(&self) -> Result<(), BackendError> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        run(async move {
            match client.create_bucket().bucket(&bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let f = failure(&e);
                    if matches!(f.code.as_str(), "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                        Ok(())
                    } else {
                        Err(f.into_error("CreateBucket", &bucket))
                    }
                }
            }
        })
    }

    fn full_key(&self, key: &str) -> Result<String, BackendError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn class_for(&self, key: &str) -> StorageClass {
        if key.starts_with("data/") {
            self.opts.data_class.clone()
        } else {
            StorageClass::Standard
        }
    }

    /// One create-only or overwriting PUT (or multipart upload), retrying 409s.
    async fn put_async(
        self,
        key: String,
        full: String,
        bytes: Arc<Vec<u8>>,
        mode: PutMode,
    ) -> Result<PutOutcome, BackendError> {
        let mut wait = CONFLICT_WAIT;
        for _ in 0..CONFLICT_RETRIES {
            let sent = if (bytes.len() as u64) > self.opts.multipart_threshold {
                self.multipart(&key, &full, bytes.clone(), mode).await
            } else {
                self.single_put(&full, bytes.clone(), mode).await
            };
            match sent {
                Ok(()) => return Ok(PutOutcome::Created),
                Err(f) if f.is_precondition_failed() && mode == PutMode::CreateOnly => {
                    return self.after_precondition(&key, &full, &bytes).await;
                }
                Err(f) if f.is_conflict() => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(f) => return Err(f.into_error("PutObject", &full)),
            }
        }
        Err(BackendError::Remote {
            op: "PutObject",
            key: full,
            status: Some(409),
            code: "ConditionalRequestConflict".into(),
            message: format!("still conflicting after {CONFLICT_RETRIES} tries"),
        })
    }

    /// A create-only put found the key taken. When the object holds exactly these bytes
    /// (our own earlier attempt, whose answer was lost and which the SDK retried), it was
    /// created by us.
    async fn after_precondition(&self, _key: &str, full: &str, bytes: &[u8]) -> Result<PutOutcome, BackendError> {
        let _permit = self.permits.acquire().await;
        let got = self.client.get_object().bucket(&self.bucket).key(full).send().await;
        let Ok(out) = got else {
            return Ok(PutOutcome::AlreadyExisted);
        };
        let same = out.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == bytes);
        Ok(if same {
            PutOutcome::Created
        } else {
            PutOutcome::AlreadyExisted
        })
    }

    async fn single_put(&self, full: &str, bytes: Arc<Vec<u8>>, mode: PutMode) -> Result<(), Failure> {
        let _permit = self.permits.acquire().await;
        let key = full.strip_prefix(&self.prefix).unwrap_or(full);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .storage_class(self.class_for(key).as_str().into())
            .checksum_sha256(sha256_b64(&bytes))
            .body(ByteStream::from(bytes.as_ref().clone()));
        if mode == PutMode::CreateOnly {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| failure(&e))
    }

    async fn multipart(&self, key: &str, full: &str, bytes: Arc<Vec<u8>>, mode: PutMode) -> Result<(), Failure> {
        let created = {
            let _permit = self.permits.acquire().await;
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .storage_class(self.class_for(key).as_str().into())
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| failure(&e))?
        };
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(full, &upload_id, bytes, mode).await;
        if result.is_err() {
            let _permit = self.permits.acquire().await;
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        full: &str,
        upload_id: &str,
        bytes: Arc<Vec<u8>>,
        mode: PutMode,
    ) -> Result<(), Failure> {
        let part = usize::try_from(self.opts.part_size.max(5 << 20)).unwrap_or(5 << 20);
        let count = bytes.len().div_ceil(part);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let me = self.clone();
            let (full, upload_id, bytes) = (full.to_string(), upload_id.to_string(), bytes.clone());
            tasks.spawn(async move {
                let start = i * part;
                let piece = bytes
                    .get(start..(start + part).min(bytes.len()))
                    .unwrap_or_default()
                    .to_vec();
                let checksum = sha256_b64(&piece);
                let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let _permit = me.permits.acquire().await;
                let out = me
                    .client
                    .upload_part()
                    .bucket(&me.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .checksum_sha256(&checksum)
                    .body(ByteStream::from(piece))
                    .send()
                    .await
                    .map_err(|e| failure(&e))?;
                Ok::<CompletedPart, Failure>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .checksum_sha256(checksum)
                        .build(),
                )
            });
        }
        let mut parts = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            let done = joined.map_err(|e| Failure {
                status: None,
                code: "TaskFailed".into(),
                message: e.to_string(),
            })??;
            parts.push(done);
        }
        parts.sort_by_key(|p| p.part_number());
        let _permit = self.permits.acquire().await;
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        if mode == PutMode::CreateOnly {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| failure(&e))
    }

    /// Up to `len` (≥ 1) bytes at `offset`: S3 answers a range past the end with what there is.
    async fn get_span_upto(&self, full: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let _permit = self.permits.acquire().await;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .range(format!("bytes={offset}-{}", offset + len - 1));
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                let f = failure(&e);
                if f.status == Some(416) || f.code == "InvalidRange" {
                    return Err(BackendError::OutOfRange {
                        key: full.to_string(),
                        offset,
                        len,
                    });
                }
                return Err(f.into_error("GetObject", full));
            }
        };
        let bytes = out.body.collect().await.map_err(|e| BackendError::Remote {
            op: "GetObject",
            key: full.to_string(),
            status: None,
            code: "BodyReadFailed".into(),
            message: e.to_string(),
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// Exactly `len` (≥ 1) bytes at `offset`.
    async fn get_span(&self, full: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let bytes = self.get_span_upto(full, offset, len).await?;
        if bytes.len() as u64 != len {
            return Err(BackendError::OutOfRange {
                key: full.to_string(),
                offset,
                len,
            });
        }
        Ok(bytes)
    }

    async fn head_async(&self, full: &str) -> Result<Option<HeadInfo>, BackendError> {
        let _permit = self.permits.acquire().await;
        match self.client.head_object().bucket(&self.bucket).key(full).send().await {
            Ok(h) => Ok(Some(HeadInfo {
                size: u64::try_from(h.content_length().unwrap_or(0)).unwrap_or(0),
                etag: h.e_tag().map(str::to_string),
                modified: h.last_modified().map(aws_sdk_s3::primitives::DateTime::secs),
                class: h
                    .storage_class()
                    .map_or(StorageClass::Standard, |c| StorageClass::parse(c.as_str())),
                restore: h.restore().map(str::to_string),
            })),
            Err(e) => match failure(&e).into_error("HeadObject", full) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}

struct HeadInfo {
    size: u64,
    etag: Option<String>,
    modified: Option<i64>,
    class: StorageClass,
    restore: Option<String>,
}

async fn client(o: &S3Options) -> Client {
    let retry = RetryConfig::standard()
        .with_max_attempts(o.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(300))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(endpoint) = &o.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &o.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some((id, secret)) = &o.static_keys {
        let keys = aws_sdk_s3::config::Credentials::new(id, secret, None, None, "amber-static");
        loader = loader.credentials_provider(keys);
    }
    let sdk = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk);
    if sdk.region().is_none() {
        builder = builder.region(Region::new("us-east-1"));
    }
    let path_style = o.path_style.unwrap_or(sdk.endpoint_url().is_some());
    Client::from_conf(builder.force_path_style(path_style).build())
}

/// Groups ranges (given by index into `ranges`, sorted by offset) whose gaps are at most
/// `gap` bytes: each group is read with one request.
fn coalesce(ranges: &[(u64, u64)], gap: u64) -> Vec<(u64, u64, Vec<usize>)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges.get(i).map_or(0, |r| r.0));
    let mut groups: Vec<(u64, u64, Vec<usize>)> = Vec::new();
    for i in order {
        let Some(&(offset, len)) = ranges.get(i) else { continue };
        let end = offset.saturating_add(len);
        match groups.last_mut() {
            Some((start, stop, members)) if offset <= stop.saturating_add(gap) => {
                *stop = (*stop).max(end);
                members.push(i);
                let _ = start;
            }
            _ => groups.push((offset, end, vec![i])),
        }
    }
    groups
}

impl Backend for S3Backend {
    fn put(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<PutOutcome, BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        let (key, bytes) = (key.to_string(), Arc::new(bytes.to_vec()));
        run(me.put_async(key, full, bytes, mode))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        let me = self.clone();
        let full = self.full_key(key)?;
        run(async move {
            let _permit = me.permits.acquire().await;
            let out = me
                .client
                .get_object()
                .bucket(&me.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| failure(&e).into_error("GetObject", &full))?;
            let body = out.body.collect().await.map_err(|e| BackendError::Remote {
                op: "GetObject",
                key: full.clone(),
                status: None,
                code: "BodyReadFailed".into(),
                message: e.to_string(),
            })?;
            Ok(body.into_bytes().to_vec())
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let full = self.full_key(key)?;
        if len == 0 {
            return match self.head(key)? {
                Some(size) if offset <= size => Ok(Vec::new()),
                Some(_) => Err(BackendError::OutOfRange { key: full, offset, len }),
                None => Err(BackendError::NotFound { key: full }),
            };
        }
        let me = self.clone();
        run(async move { me.get_span(&full, offset, len).await })
    }

    fn get_range_upto(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        run(async move { me.get_span_upto(&full, offset, len.max(1)).await })
    }

    fn prefers_large_reads(&self) -> bool {
        true
    }

    fn get_ranges(&self, key: &str, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>, BackendError> {
        let full = self.full_key(key)?;
        let groups = coalesce(ranges, self.opts.coalesce_gap);
        let me = self.clone();
        let spans: Vec<(u64, u64)> = groups.iter().map(|g| (g.0, g.1 - g.0)).collect();
        let fetched: Vec<Vec<u8>> = run(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (n, (offset, len)) in spans.into_iter().enumerate() {
                let (me, full) = (me.clone(), full.clone());
                tasks.spawn(async move { (n, me.get_span(&full, offset, len).await) });
            }
            let mut out: Vec<Vec<u8>> = vec![Vec::new(); tasks.len()];
            while let Some(joined) = tasks.join_next().await {
                let (n, got) = joined.map_err(|e| BackendError::Unsupported {
                    store: "S3".into(),
                    what: format!("finish a ranged read: {e}"),
                })?;
                if let Some(slot) = out.get_mut(n) {
                    *slot = got?;
                }
            }
            Ok(out)
        })?;
        let mut result = vec![Vec::new(); ranges.len()];
        for ((start, _, members), bytes) in groups.iter().zip(fetched) {
            for &i in members {
                let Some(&(offset, len)) = ranges.get(i) else { continue };
                let from = usize::try_from(offset - start).unwrap_or(usize::MAX);
                let to = from.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                let piece = bytes.get(from..to).ok_or_else(|| BackendError::OutOfRange {
                    key: key.to_string(),
                    offset,
                    len,
                })?;
                if let Some(slot) = result.get_mut(i) {
                    *slot = piece.to_vec();
                }
            }
        }
        Ok(result)
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        let head = run(async move { me.head_async(&full).await })?;
        Ok(head.map(|h| ObjectInfo {
            key: key.to_string(),
            size: h.size,
            modified: h.modified,
            etag: h.etag,
            class: h.class,
        }))
    }

    fn list_page(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage, BackendError> {
        let me = self.clone();
        let full_prefix = format!("{}{prefix}", self.prefix);
        let start_after = after.map(|a| format!("{}{a}", self.prefix));
        let limit = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        run(async move {
            let _permit = me.permits.acquire().await;
            let mut req = me
                .client
                .list_objects_v2()
                .bucket(&me.bucket)
                .prefix(&full_prefix)
                .max_keys(limit);
            if let Some(a) = &start_after {
                req = req.start_after(a);
            }
            let out = req
                .send()
                .await
                .map_err(|e| failure(&e).into_error("ListObjectsV2", &full_prefix))?;
            let objects: Vec<ObjectInfo> = out
                .contents()
                .iter()
                .filter_map(|o| {
                    let key = o.key()?.strip_prefix(&me.prefix)?.to_string();
                    validate_key(&key).ok()?;
                    Some(ObjectInfo {
                        key,
                        size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                        modified: o.last_modified().map(aws_sdk_s3::primitives::DateTime::secs),
                        etag: o.e_tag().map(str::to_string),
                        class: o
                            .storage_class()
                            .map_or(StorageClass::Standard, |c| StorageClass::parse(c.as_str())),
                    })
                })
                .collect();
            let truncated = out.is_truncated().unwrap_or(false);
            let last = out
                .contents()
                .last()
                .and_then(|o| o.key())
                .map(|k| k.strip_prefix(&me.prefix).unwrap_or(k).to_string());
            Ok(ListPage {
                objects,
                next_after: if truncated { last } else { None },
            })
        })
    }

    fn put_if_match(&self, key: &str, bytes: &[u8], etag: &str) -> Result<CasOutcome, BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        let (bytes, etag) = (bytes.to_vec(), etag.to_string());
        run(async move {
            let mut wait = CONFLICT_WAIT;
            for _ in 0..CONFLICT_RETRIES {
                let _permit = me.permits.acquire().await;
                let sent = me
                    .client
                    .put_object()
                    .bucket(&me.bucket)
                    .key(&full)
                    .if_match(&etag)
                    .checksum_sha256(sha256_b64(&bytes))
                    .body(ByteStream::from(bytes.clone()))
                    .send()
                    .await;
                match sent {
                    Ok(out) => return Ok(CasOutcome::Replaced(out.e_tag().map(str::to_string))),
                    Err(e) => {
                        let f = failure(&e);
                        if f.is_precondition_failed() || f.status == Some(404) || f.code == "NoSuchKey" {
                            return Ok(CasOutcome::Conflict);
                        }
                        if !f.is_conflict() {
                            return Err(f.into_error("PutObject", &full));
                        }
                    }
                }
                drop(_permit);
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Ok(CasOutcome::Conflict)
        })
    }

    fn set_storage_class(&self, key: &str, class: &StorageClass) -> Result<(), BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        let class = class.clone();
        run(async move {
            let head = me
                .head_async(&full)
                .await?
                .ok_or_else(|| BackendError::NotFound { key: full.clone() })?;
            if head.class == class {
                return Ok(());
            }
            let _permit = me.permits.acquire().await;
            me.client
                .copy_object()
                .bucket(&me.bucket)
                .key(&full)
                .copy_source(format!("{}/{}", me.bucket, full))
                .metadata_directive(MetadataDirective::Copy)
                .storage_class(class.as_str().into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failure(&e).into_error("CopyObject", &full))
        })
    }

    fn request_restore(&self, key: &str, days: u32, tier: RetrievalTier) -> Result<(), BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        run(async move {
            let tier = match tier {
                RetrievalTier::Standard => Tier::Standard,
                RetrievalTier::Bulk => Tier::Bulk,
            };
            let params = GlacierJobParameters::builder()
                .tier(tier)
                .build()
                .map_err(|e| BackendError::Unsupported {
                    store: "S3".into(),
                    what: format!("build a restore request: {e}"),
                })?;
            let request = RestoreRequest::builder()
                .days(i32::try_from(days).unwrap_or(i32::MAX))
                .glacier_job_parameters(params)
                .build();
            let _permit = me.permits.acquire().await;
            match me
                .client
                .restore_object()
                .bucket(&me.bucket)
                .key(&full)
                .restore_request(request)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    let f = failure(&e);
                    // Already under way, or not archived at all: nothing to ask.
                    if f.code == "RestoreAlreadyInProgress" || f.code == "InvalidObjectState" {
                        Ok(())
                    } else {
                        Err(f.into_error("RestoreObject", &full))
                    }
                }
            }
        })
    }

    fn restore_status(&self, key: &str) -> Result<RestoreStatus, BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        let head = run(async move { me.head_async(&full).await })?
            .ok_or_else(|| BackendError::NotFound { key: key.to_string() })?;
        if !head.class.is_archive() {
            return Ok(RestoreStatus::Readable);
        }
        Ok(match head.restore.as_deref() {
            None => RestoreStatus::Archived,
            Some(r) if r.contains("ongoing-request=\"true\"") => RestoreStatus::InProgress,
            Some(_) => RestoreStatus::Readable,
        })
    }

    fn delete(&self, key: &str) -> Result<(), BackendError> {
        let full = self.full_key(key)?;
        let me = self.clone();
        run(async move {
            let _permit = me.permits.acquire().await;
            match me.client.delete_object().bucket(&me.bucket).key(&full).send().await {
                Ok(_) => Ok(()),
                Err(e) => match failure(&e).into_error("DeleteObject", &full) {
                    BackendError::NotFound { .. } => Ok(()),
                    other => Err(other),
                },
            }
        })
    }

    fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, BackendError> {
        let me = self.clone();
        let full_prefix = format!("{}{prefix}", self.prefix);
        run(async move {
            let mut uploads = Vec::new();
            let mut marker: Option<(String, String)> = None;
            loop {
                let _permit = me.permits.acquire().await;
                let mut req = me
                    .client
                    .list_multipart_uploads()
                    .bucket(&me.bucket)
                    .prefix(&full_prefix);
                if let Some((key, id)) = &marker {
                    req = req.key_marker(key).upload_id_marker(id);
                }
                let out = req
                    .send()
                    .await
                    .map_err(|e| failure(&e).into_error("ListMultipartUploads", &full_prefix))?;
                uploads.extend(out.uploads().iter().filter_map(|u| {
                    Some(PendingUpload {
                        key: u.key()?.strip_prefix(&me.prefix)?.to_string(),
                        id: u.upload_id()?.to_string(),
                        started: u.initiated().map(aws_sdk_s3::primitives::DateTime::secs),
                    })
                }));
                match (out.is_truncated(), out.next_key_marker(), out.next_upload_id_marker()) {
                    (Some(true), Some(key), Some(id)) => marker = Some((key.to_string(), id.to_string())),
                    _ => return Ok(uploads),
                }
            }
        })
    }

    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), BackendError> {
        let full = self.full_key(&upload.key)?;
        let id = upload.id.clone();
        let me = self.clone();
        run(async move {
            let _permit = me.permits.acquire().await;
            let sent = me
                .client
                .abort_multipart_upload()
                .bucket(&me.bucket)
                .key(&full)
                .upload_id(&id)
                .send()
                .await;
            match sent {
                Ok(_) => Ok(()),
                Err(e) => match failure(&e) {
                    f if f.status == Some(404) || f.code == "NoSuchUpload" => Ok(()),
                    f => Err(f.into_error("AbortMultipartUpload", &full)),
                },
            }
        })
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn neighbouring_ranges_are_read_together() {
        let groups = super::coalesce(&[(100, 10), (0, 10), (5000, 10), (20, 5)], 50);
        assert_eq!(
            groups,
            vec![(0, 25, vec![1, 3]), (100, 110, vec![0]), (5000, 5010, vec![2])]
        );
    }
}
