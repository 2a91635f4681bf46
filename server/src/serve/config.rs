//! The server's configuration: defaults, then a TOML file, then `AMBER_*` environment
//! variables; the caller applies command-line flags last and calls
//! [`ServerConfig::validate`] again.
//!
//! ```toml
//! listen = "0.0.0.0:7207"
//! metrics_listen = "127.0.0.1:9207"
//! data_dir = "data"              # relative to this file's directory
//! store = "s3://lab-bucket/amber" # default: data_dir itself (a local directory)
//! state_dir = "/var/cache/amber"  # default: <data_dir>/state
//! cluster_key_file = "cluster.key" # default: <data_dir>/server/cluster.key (made for a local store)
//! refresh_seconds = 10           # how often tokens and other servers' packs are read again
//! verify_every_seconds = 86400   # scheduled `amber verify` of every vault; 0: never
//! verify_subset = "10%"          # the packs each scheduled run reads (as --read-data-subset)
//! vaults = ["lab-a", "lab-b"]    # or [[vault]] tables with name = "..."
//! forget_every_seconds = 86400   # apply each vault's retention policy this often
//! compact_every_seconds = 86400  # scheduled `amber compact` of every vault; 0: never
//! compact_grace_seconds = 3600   # its grace period (as --grace)
//!
//! [[vault]]
//! name = "lab-c"
//! [vault.retention]              # as `amber forget`: keep_last, keep_hourly, keep_daily,
//! keep_daily = 7                 # keep_weekly, keep_monthly, keep_yearly,
//! keep_weekly = 4                # keep_within_seconds, keep_tags
//!
//! [s3]                           # all optional; else the AWS chain and AWS_ENDPOINT_URL
//! endpoint = "http://rgw.lab:7480"
//! region = "us-east-1"
//! path_style = true
//! data_class = "STANDARD"
//! max_concurrency = 16
//!
//! [tls]
//! cert = "tls/cert.pem"
//! key = "tls/key.pem"
//!
//! [limits]
//! max_streams = 32
//! drain_seconds = 30
//! idle_timeout_seconds = 300
//! max_message_bytes = 4194304
//! max_frame_bytes = 1048576
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The vault a server hosts when the configuration names none.
pub const DEFAULT_VAULT: &str = "default";

/// Longest vault name, in bytes.
pub const MAX_VAULT_NAME: usize = 64;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./amber-data";

/// Everything `amber serve` is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address of the gRPC listener.
    pub listen: SocketAddr,
    /// Address of the plain-HTTP `/metrics` listener; `None`: no metrics server.
    pub metrics_listen: Option<SocketAddr>,
    /// The server's local directory: the store when `store` is not set, and the default
    /// parent of the state directory and the cluster key.
    pub data_dir: PathBuf,
    /// The store every vault lives in (`vaults/<name>/`) with the cluster's shared state
    /// (`server/`): a path or `s3://bucket/prefix`; `None`: `data_dir`.
    pub store: Option<String>,
    /// This server's own files (index caches, resume journals); deletable when stopped.
    /// `None`: `<data_dir>/state`.
    pub state_dir: Option<PathBuf>,
    /// The file holding the cluster key; `AMBER_CLUSTER_KEY` (hex) wins over it.
    pub cluster_key_file: Option<PathBuf>,
    /// Seconds between re-reads of the tokens and of other servers' new packs.
    pub refresh_seconds: u64,
    /// Seconds between scheduled verifications of every vault (0: none). Each run's
    /// result goes to the vault's audit log.
    pub verify_every_seconds: u64,
    /// What each scheduled run reads of the packs (`N/M` or `P%`; empty: structure only).
    pub verify_subset: String,
    /// S3 settings.
    pub s3: S3Table,
    /// Certificate and key for TLS; `None`: plaintext gRPC.
    pub tls: Option<TlsFiles>,
    /// Vaults to create on start if missing. Empty: only [`DEFAULT_VAULT`]; see
    /// [`ServerConfig::vault_names`].
    pub vaults: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Retention policies by vault name (`[vault.retention]`), applied inside the server.
    pub retention: BTreeMap<String, Retention>,
    /// Seconds between scheduled runs of those policies.
    pub forget_every_seconds: u64,
    /// Seconds between scheduled compactions of every vault (0: none), with the default
    /// thresholds; each run's result goes to the vault's audit log.
    pub compact_every_seconds: u64,
    /// The grace period of those compactions (`amber compact --grace`).
    pub compact_grace_seconds: u64,
}

/// A `[vault.retention]` table: a policy as `amber forget` takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// The newest N.
    pub keep_last: u32,
    /// The newest of each of the newest N hours.
    pub keep_hourly: u32,
    /// … days.
    pub keep_daily: u32,
    /// … weeks.
    pub keep_weekly: u32,
    /// … months.
    pub keep_monthly: u32,
    /// … years.
    pub keep_yearly: u32,
    /// Everything up to this many seconds older than the group's newest.
    pub keep_within_seconds: u64,
    /// Everything with one of these tags.
    pub keep_tags: Vec<String>,
}

/// The `[s3]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Table {
    /// Endpoint of an S3-compatible server.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing (default: when an endpoint is set).
    pub path_style: Option<bool>,
    /// Storage class of new data packs.
    pub data_class: Option<String>,
    /// Requests to S3 in flight at once.
    pub max_concurrency: Option<usize>,
}

impl S3Table {
    /// These settings over `base` (the `AMBER_S3_*` environment).
    pub fn apply(&self, mut base: amber_engine::backend::s3::S3Options) -> amber_engine::backend::s3::S3Options {
        if self.endpoint.is_some() {
            base.endpoint.clone_from(&self.endpoint);
        }
        if self.region.is_some() {
            base.region.clone_from(&self.region);
        }
        if self.path_style.is_some() {
            base.path_style = self.path_style;
        }
        if let Some(class) = &self.data_class {
            base.data_class = amber_engine::backend::StorageClass::parse(class);
        }
        if let Some(n) = self.max_concurrency {
            base.max_concurrency = n.max(1);
        }
        base
    }
}

/// PEM files for the gRPC listener's TLS.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Resource limits; every one must be at least 1.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Ingest streams open at once; further pushes wait in a queue.
    pub max_streams: usize,
    /// Pushes that may wait for a stream at once; beyond, RESOURCE_EXHAUSTED.
    pub max_queued_pushes: usize,
    /// Seconds a push may wait in the queue before it gets RESOURCE_EXHAUSTED.
    pub queue_timeout_seconds: u64,
    /// Seconds a SIGTERM waits for running streams before the server stops.
    pub drain_seconds: u64,
    /// Seconds a stream may stay silent before it is closed.
    pub idle_timeout_seconds: u64,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Largest data frame within a message, in bytes; at most `max_message_bytes`.
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 32,
            max_queued_pushes: 1024,
            queue_timeout_seconds: 600,
            drain_seconds: 30,
            idle_timeout_seconds: 300,
            max_message_bytes: 4 << 20,
            max_frame_bytes: 1 << 20,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7207)),
            metrics_listen: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: None,
            state_dir: None,
            cluster_key_file: None,
            refresh_seconds: 10,
            verify_every_seconds: 86_400,
            verify_subset: "10%".into(),
            s3: S3Table::default(),
            tls: None,
            vaults: Vec::new(),
            limits: Limits::default(),
            retention: BTreeMap::new(),
            forget_every_seconds: 86_400,
            compact_every_seconds: 86_400,
            compact_grace_seconds: 3_600,
        }
    }
}

/// The TOML file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    state_dir: Option<PathBuf>,
    cluster_key_file: Option<PathBuf>,
    refresh_seconds: Option<u64>,
    verify_every_seconds: Option<u64>,
    verify_subset: Option<String>,
    s3: Option<S3Table>,
    tls: Option<TlsFiles>,
    #[serde(default)]
    vaults: Vec<String>,
    #[serde(default)]
    vault: Vec<VaultTable>,
    limits: Option<Limits>,
    forget_every_seconds: Option<u64>,
    compact_every_seconds: Option<u64>,
    compact_grace_seconds: Option<u64>,
}

/// One `[[vault]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultTable {
    name: String,
    retention: Option<Retention>,
}

impl ServerConfig {
    /// Defaults, overridden by the TOML `file` (if given), overridden by the environment
    /// (`AMBER_LISTEN`, `AMBER_METRICS_LISTEN`, `AMBER_REPO`, `AMBER_TLS_CERT`,
    /// `AMBER_TLS_KEY`; an empty value counts as unset). `env` looks a variable up; pass
    /// `|k| std::env::var(k).ok()`. Relative paths in the file are taken relative to the
    /// file's directory; relative paths from the environment relative to the working
    /// directory. The result is validated.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, an unknown key (named in the message), an address
    /// that does not parse, a TLS certificate without a key or the reverse, an invalid vault
    /// name, or a limit of 0.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<ServerConfig> {
        let mut config = ServerConfig::default();
        let mut tls = (None, None);
        if let Some(path) = file {
            tls = config.apply_file(path)?;
        }
        config.apply_env(&env, tls)?;
        config.validate()?;
        Ok(config)
    }

    /// The store's URL: `store`, else `data_dir`.
    pub fn store_name(&self) -> std::ffi::OsString {
        match &self.store {
            Some(url) => url.into(),
            None => self.data_dir.clone().into_os_string(),
        }
    }

    /// The state directory: `state_dir`, else `<data_dir>/state`.
    pub fn state_path(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.data_dir.join("state"))
    }

    /// The cluster key file: `cluster_key_file`, else `<data_dir>/server/cluster.key`.
    pub fn cluster_key_path(&self) -> PathBuf {
        self.cluster_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("server").join("cluster.key"))
    }

    /// The vaults to host: `vaults`, or [`DEFAULT_VAULT`] when that is empty.
    pub fn vault_names(&self) -> Vec<String> {
        if self.vaults.is_empty() {
            vec![DEFAULT_VAULT.to_string()]
        } else {
            self.vaults.clone()
        }
    }

    /// Checks vault names (valid, no duplicates) and limits (each at least 1, a frame no
    /// larger than a message). Call again after applying command-line flags.
    ///
    /// # Errors
    /// Names the first offending vault or limit.
    pub fn validate(&self) -> Result<()> {
        if !self.verify_subset.is_empty() {
            amber_engine::ops::verify::Subset::parse(&self.verify_subset).context("verify_subset")?;
        }
        if self.refresh_seconds == 0 {
            bail!("refresh_seconds must be at least 1");
        }
        let mut seen = BTreeSet::new();
        for name in &self.vaults {
            validate_vault_name(name)?;
            if !seen.insert(name.as_str()) {
                bail!("vault {name:?} is listed twice");
            }
        }
        self.limits.validate()
    }

    /// Reads `path`; returns the TLS paths it named, kept apart because the environment may
    /// supply the other half.
    fn apply_file(&mut self, path: &Path) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read server config {}", path.display()))?;
        let parsed: FileConfig =
            toml::from_str(&text).with_context(|| format!("invalid server config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        if let Some(listen) = parsed.listen {
            self.listen = listen;
        }
        self.metrics_listen = parsed.metrics_listen.or(self.metrics_listen);
        if let Some(dir) = parsed.data_dir {
            self.data_dir = resolve(dir);
        }
        if let Some(store) = parsed.store {
            // A relative path is relative to the file; a URL is kept as it is.
            self.store = Some(if store.contains("://") {
                store
            } else {
                resolve(PathBuf::from(store)).to_string_lossy().into_owned()
            });
        }
        self.state_dir = parsed.state_dir.map(resolve).or(self.state_dir.take());
        self.cluster_key_file = parsed.cluster_key_file.map(resolve).or(self.cluster_key_file.take());
        if let Some(n) = parsed.refresh_seconds {
            self.refresh_seconds = n;
        }
        if let Some(n) = parsed.verify_every_seconds {
            self.verify_every_seconds = n;
        }
        if let Some(subset) = parsed.verify_subset {
            self.verify_subset = subset;
        }
        if let Some(s3) = parsed.s3 {
            self.s3 = s3;
        }
        if let Some(limits) = parsed.limits {
            self.limits = limits;
        }
        self.vaults = parsed.vaults;
        if let Some(n) = parsed.forget_every_seconds {
            self.forget_every_seconds = n;
        }
        if let Some(n) = parsed.compact_every_seconds {
            self.compact_every_seconds = n;
        }
        if let Some(n) = parsed.compact_grace_seconds {
            self.compact_grace_seconds = n;
        }
        for v in parsed.vault {
            if let Some(r) = v.retention {
                self.retention.insert(v.name.clone(), r);
            }
            self.vaults.push(v.name);
        }
        Ok(match parsed.tls {
            Some(t) => (Some(resolve(t.cert)), Some(resolve(t.key))),
            None => (None, None),
        })
    }

    fn apply_env(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
        tls: (Option<PathBuf>, Option<PathBuf>),
    ) -> Result<()> {
        let var = |key: &str| env(key).filter(|v| !v.is_empty());
        if let Some(v) = var("AMBER_LISTEN") {
            self.listen = parse_addr("AMBER_LISTEN", &v)?;
        }
        if let Some(v) = var("AMBER_METRICS_LISTEN") {
            self.metrics_listen = Some(parse_addr("AMBER_METRICS_LISTEN", &v)?);
        }
        if let Some(v) = var("AMBER_REPO") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("AMBER_STORE") {
            self.store = Some(v);
        }
        let seconds = |key: &str, into: &mut u64| -> Result<()> {
            if let Some(v) = var(key) {
                *into = v
                    .parse()
                    .with_context(|| format!("{key}={v} is not a number of seconds"))?;
            }
            Ok(())
        };
        seconds("AMBER_VERIFY_EVERY_SECONDS", &mut self.verify_every_seconds)?;
        seconds("AMBER_FORGET_EVERY_SECONDS", &mut self.forget_every_seconds)?;
        seconds("AMBER_COMPACT_EVERY_SECONDS", &mut self.compact_every_seconds)?;
        seconds("AMBER_COMPACT_GRACE_SECONDS", &mut self.compact_grace_seconds)?;
        if let Some(v) = var("AMBER_VERIFY_SUBSET") {
            self.verify_subset = v;
        }
        if let Some(v) = var("AMBER_STATE_DIR") {
            self.state_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("AMBER_CLUSTER_KEY_FILE") {
            self.cluster_key_file = Some(PathBuf::from(v));
        }
        let cert = var("AMBER_TLS_CERT").map(PathBuf::from).or(tls.0);
        let key = var("AMBER_TLS_KEY").map(PathBuf::from).or(tls.1);
        self.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => bail!("a TLS certificate is configured but no key: set AMBER_TLS_KEY or [tls] key"),
            (None, Some(_)) => bail!("a TLS key is configured but no certificate: set AMBER_TLS_CERT or [tls] cert"),
        };
        Ok(())
    }
}

impl Limits {
    /// Checks that every limit is at least 1 and a frame fits in a message.
    ///
    /// # Errors
    /// Names the offending limit.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("max_streams", self.max_streams as u64),
            ("max_queued_pushes", self.max_queued_pushes as u64),
            ("queue_timeout_seconds", self.queue_timeout_seconds),
            ("drain_seconds", self.drain_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("max_frame_bytes", self.max_frame_bytes as u64),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, v)| *v == 0) {
            bail!("limits.{name} must be at least 1");
        }
        if self.max_frame_bytes > self.max_message_bytes {
            bail!(
                "limits.max_frame_bytes ({}) must not exceed limits.max_message_bytes ({})",
                self.max_frame_bytes,
                self.max_message_bytes
            );
        }
        Ok(())
    }
}

fn parse_addr(var: &str, value: &str) -> Result<SocketAddr> {
    value
        .parse()
        .with_context(|| format!("{var}={value:?} is not an address like 127.0.0.1:7207"))
}

/// Checks a vault name: 1 to 64 characters of `a-z 0-9 _ -`, the first a letter or digit.
///
/// # Errors
/// Says what is wrong with the name.
pub fn validate_vault_name(name: &str) -> Result<()> {
    let rule = "a vault name is 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !first_ok || !rest_ok || name.len() > MAX_VAULT_NAME {
        bail!("invalid vault name {name:?}: {rule}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("server.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = ServerConfig::load(None, no_env).unwrap();
        assert_eq!(c, ServerConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:7207");
        assert_eq!(c.data_dir, PathBuf::from("./amber-data"));
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.vault_names(), vec!["default".to_string()]);
        assert_eq!(c.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(c.limits.max_frame_bytes, 1024 * 1024);
    }

    #[test]
    fn full_file_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            r#"
listen = "0.0.0.0:9000"
metrics_listen = "127.0.0.1:9207"
data_dir = "data"
vaults = ["lab-a"]
[[vault]]
name = "lab_b"
[tls]
cert = "c.pem"
key = "/abs/k.pem"
[limits]
max_streams = 4
"#,
        );
        let c = ServerConfig::load(Some(&path), no_env).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9207");
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.vault_names(), vec!["lab-a".to_string(), "lab_b".to_string()]);
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("c.pem"));
        assert_eq!(tls.key, PathBuf::from("/abs/k.pem"));
        assert_eq!(c.limits.max_streams, 4);
        assert_eq!(c.limits.drain_seconds, 30, "unset limits keep their defaults");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in [
            ("lisen = \"1.2.3.4:5\"", "lisen"),
            ("[limits]\nmax_stream = 3", "max_stream"),
            ("[tls]\ncert = \"a\"\nkey = \"b\"\npassword = \"x\"", "password"),
            ("[[vault]]\nname = \"a\"\nsize = 3", "size"),
        ] {
            let path = write(dir.path(), text);
            let err = format!("{:#}", ServerConfig::load(Some(&path), no_env).unwrap_err());
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "listen = \"0.0.0.0:1\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        );
        let env: HashMap<&str, &str> = [
            ("AMBER_LISTEN", "127.0.0.1:2"),
            ("AMBER_METRICS_LISTEN", "[::1]:3"),
            ("AMBER_REPO", "/srv/amber"),
            ("AMBER_TLS_KEY", "/etc/k.pem"),
        ]
        .into_iter()
        .collect();
        let c = ServerConfig::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2");
        assert_eq!(c.metrics_listen.unwrap().to_string(), "[::1]:3");
        assert_eq!(c.data_dir, PathBuf::from("/srv/amber"));
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("c.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/k.pem"));
    }

    #[test]
    fn empty_env_is_unset_and_bad_env_is_named() {
        let c = ServerConfig::load(None, |_| Some(String::new())).unwrap();
        assert_eq!(c, ServerConfig::default());
        let err = ServerConfig::load(None, |k| (k == "AMBER_LISTEN").then(|| "nope".to_string())).unwrap_err();
        assert!(err.to_string().contains("AMBER_LISTEN"), "{err}");
    }

    #[test]
    fn tls_needs_both_halves() {
        let err = ServerConfig::load(None, |k| (k == "AMBER_TLS_CERT").then(|| "c".to_string())).unwrap_err();
        assert!(err.to_string().contains("no key"), "{err}");
        let err = ServerConfig::load(None, |k| (k == "AMBER_TLS_KEY").then(|| "k".to_string())).unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[test]
    fn a_vault_table_carries_its_retention_policy() {
        let dir = tempfile::tempdir().unwrap();
        let text = "forget_every_seconds = 60\n[[vault]]\nname = \"lab-c\"\n[vault.retention]\nkeep_daily = 7\nkeep_tags = [\"paper\"]\n[[vault]]\nname = \"lab-d\"\n";
        let c = ServerConfig::load(Some(&write(dir.path(), text)), no_env).unwrap();
        assert_eq!(c.vault_names(), vec!["lab-c".to_string(), "lab-d".to_string()]);
        assert_eq!(c.forget_every_seconds, 60);
        let r = &c.retention["lab-c"];
        assert_eq!((r.keep_daily, r.keep_tags.clone()), (7, vec!["paper".to_string()]));
        assert!(!c.retention.contains_key("lab-d"));
        let bad = write(
            dir.path(),
            "[[vault]]\nname = \"x\"\n[vault.retention]\nkeep_dayly = 7\n",
        );
        assert!(
            ServerConfig::load(Some(&bad), no_env).is_err(),
            "an unknown key is refused"
        );
    }

    #[test]
    fn vault_names_are_checked() {
        for ok in ["a", "0", "lab-a", "lab_b", "x".repeat(64).as_str()] {
            validate_vault_name(ok).unwrap();
        }
        for bad in ["", "-a", "_a", "Lab", "a b", "a/b", "..", "é", "x".repeat(65).as_str()] {
            assert!(validate_vault_name(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "vaults = [\"Bad\"]");
        assert!(ServerConfig::load(Some(&path), no_env).is_err());
        let path = write(dir.path(), "vaults = [\"a\"]\n[[vault]]\nname = \"a\"");
        let err = ServerConfig::load(Some(&path), no_env).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn limits_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[limits]\nmax_streams = 0");
        let err = ServerConfig::load(Some(&path), no_env).unwrap_err();
        assert!(err.to_string().contains("max_streams"), "{err}");
        let path = write(dir.path(), "[limits]\nmax_frame_bytes = 8388608");
        let err = ServerConfig::load(Some(&path), no_env).unwrap_err();
        assert!(err.to_string().contains("max_frame_bytes"), "{err}");
    }

    #[test]
    fn bad_toml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "listen = ");
        let err = format!("{:#}", ServerConfig::load(Some(&path), no_env).unwrap_err());
        assert!(err.contains("server.toml"), "{err}");
        let missing = dir.path().join("missing.toml");
        assert!(ServerConfig::load(Some(&missing), no_env).is_err());
    }
}
