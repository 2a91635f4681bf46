//! TLS: a server with a self-signed certificate (made with `openssl` at test time) serves
//! clients that trust it (`--ca-cert` or `AMBER_CA_CERT`); a client that does not trust
//! it, or that speaks plain HTTP/2 to the TLS port, fails cleanly and changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::faults::{config_file, small_tree, snapshot_id};
use super::harness::{Server, s};
use crate::common::{Out, run_command};

/// How long a client that cannot connect may take to give up.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Makes `cert.pem` and `key.pem` (self-signed, for localhost and 127.0.0.1) in `dir`.
///
/// The certificate says `CA:FALSE`: the client verifies with rustls/webpki, which rejects
/// a CA certificate presented as the server's own (`CaUsedAsEndEntity`), and that is what
/// `openssl req -x509` makes by default (its `v3_ca` section sets `CA:TRUE`).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run_command({
        let mut c = Command::new("openssl");
        c.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args([
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ])
            .stdin(Stdio::null());
        c
    });
    assert_eq!(out.code, Some(0), "openssl could not make a certificate\n{out}");
    (cert, key)
}

/// Runs a client command, killing it if it has not ended within [`CLIENT_LIMIT`].
fn run_limited(mut cmd: Command) -> Out {
    let cmdline = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn amber");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > CLIENT_LIMIT {
            let _ = child.kill();
            panic!("{cmdline} hung for {CLIENT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("collect output");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmdline,
    }
}

#[test]
fn tls_with_a_self_signed_certificate() {
    // The configuration names the PEM files relative to itself.
    let (cfg_dir, cfg) = config_file("[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    let (cert, _key) = self_signed(cfg_dir.path());
    let server = Server::start_with(&["--config", s(&cfg)], &[]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "a TLS server announces an https URL: {}",
        server.url
    );
    let admin = server.admin();
    let tree = server.scratch("tree");
    small_tree(&tree, 51);

    // Trusting the certificate with --ca-cert: push, list and restore work.
    let out = run_limited({
        let mut c = server.client(&admin, &["--ca-cert", s(&cert), "--json", "push", s(&tree)]);
        c.env_remove("AMBER_CA_CERT");
        c
    });
    out.expect_code(0);
    let id = snapshot_id(&out.json());
    // ... and with AMBER_CA_CERT.
    let out = run_limited({
        let mut c = server.client(&admin, &["--json", "snapshots"]);
        c.env("AMBER_CA_CERT", &cert);
        c
    });
    out.expect_code(0);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{out}");
    let dest = server.scratch("restored");
    let out = run_limited({
        let mut c = server.client(&admin, &["--json", "restore", &id, s(&dest)]);
        c.env("AMBER_CA_CERT", &cert);
        c
    });
    out.expect_code(0);
    crate::common::assert_same_tree(&tree, &dest);

    // Without the CA certificate the server is not trusted.
    let untrusted = run_limited({
        let mut c = server.client(&admin, &["push", s(&tree)]);
        c.env_remove("AMBER_CA_CERT");
        c
    });
    eprintln!("tls: without --ca-cert: {}", untrusted.stderr.trim());
    untrusted.expect_error(&["cannot connect", &server.url, "certificate"]);

    // Some other certificate is no better.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let (other_cert, _) = self_signed(other_dir.path());
    let wrong_ca = run_limited({
        let mut c = server.client(&admin, &["--ca-cert", s(&other_cert), "push", s(&tree)]);
        c.env_remove("AMBER_CA_CERT");
        c
    });
    eprintln!("tls: with another CA: {}", wrong_ca.stderr.trim());
    wrong_ca.expect_error(&["cannot connect", "certificate"]);

    // Plain HTTP/2 to the TLS port fails too (and does not hang).
    let plain_url = server.url.replacen("https://", "http://", 1);
    let plain = run_limited({
        let mut c = server.client(&admin, &["push", s(&tree)]);
        c.env("AMBER_SERVER", &plain_url).env_remove("AMBER_CA_CERT");
        c
    });
    eprintln!("tls: plain http:// to the TLS port: {}", plain.stderr.trim());
    assert_eq!(plain.code, Some(1), "plain HTTP to a TLS port must fail\n{plain}");
    assert!(plain.stderr.starts_with("amber: "), "a clear error\n{plain}");
    assert!(plain.stdout.trim().is_empty(), "{plain}");

    // None of the failed attempts stored anything; the one snapshot still restores.
    let list = run_limited({
        let mut c = server.client(&admin, &["--json", "snapshots"]);
        c.env("AMBER_CA_CERT", &cert);
        c
    });
    list.expect_code(0);
    assert_eq!(list.json().as_array().map(Vec::len), Some(1), "{list}");
    let again = server.scratch("restored-again");
    let out = run_limited({
        let mut c = server.client(&admin, &["--json", "restore", &id, s(&again)]);
        c.env("AMBER_CA_CERT", &cert);
        c
    });
    out.expect_code(0);
    crate::common::assert_same_tree(&tree, &again);
}
