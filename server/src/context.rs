//! Opening the repository from the global options.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use amber_engine::backend::DynBackend;
use amber_engine::backend::s3::S3Options;
use amber_engine::crypto::KdfParams;
use amber_engine::repo::index::IndexMode;
use amber_engine::repo::{OpenOptions, Repository};
use amber_engine::store::{StoreUrl, open_store};
use anyhow::{Context, Result, bail};

use crate::cli::{Global, KdfArgs};

/// How to ask for a passphrase on the terminal when none is configured.
#[derive(Clone, Copy, Debug)]
pub enum Ask {
    /// One prompt.
    Once(&'static str),
    /// A prompt and a confirmation that must match (a new passphrase).
    Twice(&'static str),
}

/// Reads a passphrase from a file (first line) or an environment variable; when neither
/// is set and stdin is a terminal, asks on `/dev/tty` without echo.
///
/// # Errors
/// An unreadable file; no passphrase and no terminal; an empty or unconfirmed answer.
pub fn passphrase(file: Option<&Path>, var: &str, ask: Ask) -> Result<Vec<u8>> {
    if let Some(path) = file {
        let text = std::fs::read(path).with_context(|| format!("cannot read password file {}", path.display()))?;
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        return Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
    }
    if let Some(v) = std::env::var_os(var) {
        return Ok(v.into_encoded_bytes());
    }
    let Some(tty) = terminal() else {
        bail!("no passphrase: set {var} or pass a password file");
    };
    let (prompt, confirm) = match ask {
        Ask::Once(p) => (p, false),
        Ask::Twice(p) => (p, true),
    };
    let pass = read_hidden(&tty, prompt)?;
    if pass.is_empty() {
        bail!("empty passphrase: nothing was changed");
    }
    if confirm && read_hidden(&tty, "enter the passphrase again: ")? != pass {
        bail!("the passphrases do not match: nothing was changed");
    }
    Ok(pass)
}

/// The controlling terminal, when stdin is one.
fn terminal() -> Option<File> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    File::options().read(true).write(true).open("/dev/tty").ok()
}

/// Prints `prompt` on the terminal and reads one line with echo turned off.
fn read_hidden(tty: &File, prompt: &str) -> Result<Vec<u8>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let mut out = tty;
    write!(out, "{prompt}").context("cannot write to the terminal")?;
    out.flush().context("cannot write to the terminal")?;
    let saved = tcgetattr(tty).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // TCSADRAIN, not TCSAFLUSH: what was typed ahead is kept.
    tcsetattr(tty, SetArg::TCSADRAIN, &quiet).context("cannot turn off echo")?;
    let mut line = Vec::new();
    let read = BufReader::new(tty).read_until(b'\n', &mut line);
    let restored = tcsetattr(tty, SetArg::TCSADRAIN, &saved);
    read.context("cannot read the passphrase from the terminal")?;
    restored.context("cannot restore the terminal's settings")?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The store `--repo` names: a directory, `file://…` or `s3://bucket/prefix`.
///
/// # Errors
/// A name that is not a store URL.
pub fn store_url(global: &Global) -> Result<StoreUrl> {
    Ok(StoreUrl::parse(global.repo.as_os_str())?)
}

/// The state directory (the local index cache): `--cache-dir` / `AMBER_CACHE`; else for a
/// local store `<repo>/cache` (beside the store's objects, never one of them), and for a
/// bucket the user's cache directory (`$XDG_CACHE_HOME/amber`, else `~/.cache/amber`).
/// The engine adds `<vault id>/index`, so one directory serves many vaults.
pub fn cache_dir(global: &Global) -> PathBuf {
    if let Some(dir) = &global.cache_dir {
        return dir.clone();
    }
    match store_url(global) {
        Ok(StoreUrl::Local(path)) => path.join("cache"),
        _ => user_cache_dir(),
    }
}

/// `$XDG_CACHE_HOME/amber`, else `$HOME/.cache/amber`, else `./amber-cache`.
pub fn user_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("amber");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("amber"),
        None => PathBuf::from("amber-cache"),
    }
}

/// S3 settings from the environment (`AMBER_S3_*`, and the AWS chain's own variables).
///
/// # Errors
/// A variable that does not parse.
pub fn s3_options() -> Result<S3Options> {
    S3Options::from_env().map_err(anyhow::Error::msg)
}

/// The store at `--repo`.
///
/// # Errors
/// A name that is not a store URL; S3 set-up errors.
pub fn backend(global: &Global) -> Result<DynBackend> {
    Ok(open_store(&store_url(global)?, &s3_options()?)?)
}

/// Opens the repository for writing, checking first that it exists; while another
/// process holds the index, waits for it (saying so once on stderr).
///
/// # Errors
/// No repository, no or a wrong passphrase, store and index errors.
pub fn open(global: &Global) -> Result<Repository> {
    let say = |msg: &str| eprintln!("amber: {msg}");
    let opts = OpenOptions {
        mode: IndexMode::Write,
        on_wait: Some(&say),
        fresh_index: false,
    };
    open_as(global, &opts)
}

/// Opens the repository for writing with its local index deleted first (for `index
/// rebuild`): works whatever state the cache is in.
///
/// # Errors
/// As [`open`].
pub fn open_fresh(global: &Global) -> Result<Repository> {
    let say = |msg: &str| eprintln!("amber: {msg}");
    let opts = OpenOptions {
        mode: IndexMode::Write,
        on_wait: Some(&say),
        fresh_index: true,
    };
    open_as(global, &opts)
}

/// Opens the repository for reading (listing, restoring): this works while another
/// process writes, and on a full disk.
///
/// # Errors
/// As [`open`].
pub fn open_read(global: &Global) -> Result<Repository> {
    let opts = OpenOptions {
        mode: IndexMode::Read,
        on_wait: None,
        fresh_index: false,
    };
    open_as(global, &opts)
}

/// The first repository this process opened: where a command's audit record goes.
static OPENED: Mutex<Option<Repository>> = Mutex::new(None);
/// What the command acted on, when it names more than its arguments do (a new snapshot).
static TARGET: Mutex<Option<String>> = Mutex::new(None);

/// Notes what the running command acted on, for its audit record.
pub fn audit_target(target: &str) {
    *TARGET.lock().unwrap_or_else(PoisonError::into_inner) = Some(target.to_string());
}

/// The first repository opened and the noted target, taken (for the audit record).
pub fn take_audited() -> (Option<Repository>, Option<String>) {
    let repo = OPENED.lock().unwrap_or_else(PoisonError::into_inner).take();
    let target = TARGET.lock().unwrap_or_else(PoisonError::into_inner).take();
    (repo, target)
}

fn open_as(global: &Global, opts: &OpenOptions<'_>) -> Result<Repository> {
    let url = store_url(global)?;
    let store = open_store(&url, &s3_options()?)?;
    if store.head("config")?.is_none() {
        bail!("no repository at {url}: run `amber init` first (or set --repo / AMBER_REPO)");
    }
    let pass = passphrase(
        global.password_file.as_deref(),
        "AMBER_PASSWORD",
        Ask::Once("enter the repository's passphrase: "),
    )?;
    let repo = Repository::open_with(store, &cache_dir(global), &pass, opts)?;
    OPENED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(|| repo.clone());
    Ok(repo)
}

/// KDF parameters from the command line.
pub fn kdf(args: &KdfArgs) -> KdfParams {
    KdfParams {
        memory_kib: args.kdf_memory_mib.saturating_mul(1024),
        iterations: args.kdf_iterations,
        parallelism: 1,
    }
}

/// `user@host` for key slot labels.
pub fn default_label() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", amber_engine::ops::ingest::hostname())
}
