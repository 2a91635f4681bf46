//! Amber on S3: a real S3-compatible server (moto, started by these tests from the venv that
//! `scripts/test` makes) on a loopback port, over real HTTP.

mod cache;
mod cluster;
mod cold_server;
mod copy;
mod faults;
mod store;
mod tiering;
mod writers;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use amber_engine::backend::s3::{S3Backend, S3Options};

use crate::common::{Repo, target_dir};

/// The Python that has `moto[server]==5.2.5`: `$AMBER_MOTO_PYTHON`, else the venv
/// `scripts/setup` makes under `<target>/amber-fixtures/moto-5.2.5`.
fn moto_python() -> PathBuf {
    if let Some(p) = std::env::var_os("AMBER_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let root = target_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf();
    let python = root.join("amber-fixtures/moto-5.2.5/bin/python");
    assert!(
        python.is_file(),
        "no moto at {}: run scripts/test (or scripts/setup), which installs moto[server]==5.2.5 there",
        python.display()
    );
    python
}

/// Runs a shell command, which must succeed.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("run sh");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One moto server. It stops when this process ends: it serves until its stdin closes.
pub struct Moto {
    child: Mutex<Child>,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// The server shared by this test process's tests (a bucket per test keeps them apart).
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| Moto::start(&[]))
    }

    /// A server of its own, with faults (`--fail-every N`, `--drop-part N`).
    pub fn start(args: &[&str]) -> Moto {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("s3/moto_serve.py");
        let mut child = Command::new(moto_python())
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("moto stdout"))
            .read_line(&mut line)
            .expect("read moto's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto printed {line:?}, not a port"));
        Moto {
            child: Mutex::new(child),
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// How many faults the server injected: (503 answers, dropped connections).
    pub fn faults(&self) -> (u64, u64) {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/_faults", self.endpoint)])
            .output()
            .expect("run curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fault counts");
        (v["failed"].as_u64().unwrap_or(0), v["dropped"].as_u64().unwrap_or(0))
    }

    /// Every request line the server saw ("METHOD /bucket/key?query"), when started with
    /// `--record`.
    pub fn requests(&self) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/_requests", self.endpoint)])
            .output()
            .expect("run curl");
        serde_json::from_slice(&out.stdout).expect("request lines")
    }

    /// The environment amber runs with to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "amber-test"),
            ("AWS_SECRET_ACCESS_KEY", "amber-test-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Options for a backend in this test process.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            static_keys: Some(("amber-test".into(), "amber-test-secret".into())),
            region: Some("us-east-1".into()),
            ..S3Options::default()
        }
    }

    /// A new, empty bucket.
    pub fn bucket(&self, hint: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}-{n}-{hint}", std::process::id()).to_ascii_lowercase();
        self.backend(&name, "").create_bucket().expect("create bucket");
        name
    }

    /// The objects under `prefix` of `bucket`.
    pub fn backend(&self, bucket: &str, prefix: &str) -> S3Backend {
        S3Backend::connect(bucket, prefix, self.options()).expect("connect to moto")
    }

    /// A repository (not initialised) at `s3://<new bucket>/<prefix>`.
    pub fn repo(&self, hint: &str, prefix: &str) -> (Repo, String) {
        let bucket = self.bucket(hint);
        (self.repo_at(&bucket, prefix), bucket)
    }

    /// A repository (not initialised) at `s3://<bucket>/<prefix>`, with scratch space of its
    /// own.
    pub fn repo_at(&self, bucket: &str, prefix: &str) -> Repo {
        let url = format!("s3://{bucket}/{prefix}");
        Repo::at_url(&url, self.env(), Arc::new(self.backend(bucket, prefix)))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
