//! A real `amber serve` process on a loopback port, and the real `amber` client driven
//! against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Out, amber_bin, run_command};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `amber serve` and its data directory.
pub struct Server {
    /// The data directory (kept across restarts).
    pub dir: TempDir,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or https).
    pub url: String,
    /// Admin tokens printed at first start, in vault order of creation.
    pub admin_tokens: Vec<(String, String)>,
    /// Extra environment for the server process.
    env: Vec<(String, String)>,
    /// Extra arguments for `amber serve`.
    args: Vec<String>,
    /// Lines the server printed on stdout.
    pub stdout_lines: Vec<String>,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts a server on the embedded default (a fresh data directory, port 0).
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    /// Starts a server with extra `amber serve` arguments and environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            dir,
            child: None,
            url: String::new(),
            admin_tokens: Vec::new(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            stdout_lines: Vec::new(),
            stderr_path: PathBuf::new(),
        };
        s.spawn();
        s
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin token of the default (first) vault.
    pub fn admin(&self) -> String {
        self.admin_tokens.first().expect("an admin token was printed").1.clone()
    }

    /// The admin token of `vault`.
    pub fn admin_of(&self, vault: &str) -> String {
        self.admin_tokens
            .iter()
            .find(|(v, _)| v == vault)
            .unwrap_or_else(|| panic!("no admin token for vault {vault}"))
            .1
            .clone()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn spawn(&mut self) {
        let n = self.stdout_lines.len();
        self.stderr_path = self.dir.path().join(format!("serve-{n}.log"));
        let stderr = std::fs::File::create(&self.stderr_path).expect("log file");
        let mut cmd = Command::new(amber_bin());
        cmd.arg("serve").args(&self.args);
        if !self.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.env("AMBER_REPO", self.data())
            .env_remove("AMBER_SERVER")
            .env_remove("AMBER_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn amber serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut last_vault = String::from("default");
        loop {
            let line = rx
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("amber serve did not start: {}", self.stderr()));
            self.stdout_lines.push(line.clone());
            if let Some(rest) = line.strip_prefix("vault ") {
                last_vault = rest.split(':').next().unwrap_or_default().to_string();
            } else if let Some(token) = line.strip_prefix("admin token: ") {
                self.admin_tokens.push((last_vault.clone(), token.trim().to_string()));
            } else if let Some(url) = line.strip_prefix("listening on ") {
                self.url = url.trim().to_string();
                break;
            }
        }
        self.child = Some(child);
    }

    /// What the server logged on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (up to `limit`) for the server to exit; returns its status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY-free: `kill` from the shell, so the tests need no libc call.
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Starts the server again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// An `amber` client command against this server with `token`.
    pub fn client(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(amber_bin());
        cmd.args(args)
            .env("AMBER_SERVER", &self.url)
            .env("AMBER_TOKEN", token)
            .env_remove("AMBER_REPO")
            .env_remove("AMBER_VAULT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a client command.
    pub fn run(&self, token: &str, args: &[&str]) -> Out {
        run_command(self.client(token, args))
    }

    /// Runs a client command with `--json`, expecting success, and parses its output.
    pub fn ok(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(token, &all).expect_code(0).json()
    }

    /// Creates a token of `role` in the token's vault; returns the bearer token.
    pub fn token(&self, admin: &str, role: &str) -> String {
        let v = self.ok(
            admin,
            &["token", "create", "--role", role, "--name", &format!("test {role}")],
        );
        v["token"].as_str().expect("token").to_string()
    }

    /// Pushes `args` (e.g. a directory, or `--tar F`) and returns the JSON summary.
    pub fn push(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["push"];
        all.extend_from_slice(args);
        self.ok(token, &all)
    }

    /// Snapshot ids the vault lists.
    pub fn snapshot_ids(&self, token: &str) -> Vec<String> {
        let v = self.ok(token, &["snapshots"]);
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// The records of the vault's audit log (`amber audit --server`, with an admin token of
    /// the vault), after checking that the log is intact.
    pub fn audit(&self, admin: &str) -> Vec<Value> {
        let v = self.ok(admin, &["audit"]);
        assert_eq!(v["problems"], serde_json::json!([]), "the audit log is intact");
        v["records"].as_array().expect("records").clone()
    }

    /// The server's peak resident set (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// A path in the server's temporary directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A path as a `&str`.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
