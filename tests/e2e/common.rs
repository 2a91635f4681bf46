//! Helpers shared by the end-to-end tests: running the real `amber` binary against a
//! repository in a temporary directory, walking and comparing trees, listing the store,
//! seeded random data, and the cached Python environment fixture.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use amber_engine::backend::DynBackend;
use serde_json::Value;
use tempfile::TempDir;

/// Passphrase every test repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";

/// Environment variables of amber that must not leak in from the developer's shell.
const AMBER_VARS: [&str; 9] = [
    "AMBER_REPO",
    "AMBER_SERVER",
    "AMBER_TOKEN",
    "AMBER_VAULT",
    "AMBER_PASSWORD",
    "AMBER_PASSWORD_FILE",
    "AMBER_CACHE",
    "AMBER_NEW_PASSWORD",
    "AMBER_NEW_PASSWORD_FILE",
];

/// `target/<profile>`: the parent of the `deps/` directory holding this test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    deps.parent().expect("deps/ has a parent directory").to_path_buf()
}

/// The `amber` binary under test: `$AMBER_BIN`, else `target/<profile>/amber`.
pub fn amber_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::env::var_os("AMBER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("amber"));
        assert!(
            bin.is_file(),
            "the amber binary is missing at {}: run `cargo build -p amber-server` first (or set AMBER_BIN)",
            bin.display()
        );
        bin
    })
    .clone()
}

/// A path as `&str` (every path the tests make is UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// What one run of `amber` did.
#[derive(Debug)]
pub struct Out {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Out {
    fn from_output(cmdline: String, o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            cmdline,
        }
    }

    /// Asserts the exit code and returns `self`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Out {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{self}"))
    }

    /// Asserts a clear failure: exit code 1, nothing on stdout, and a message on stderr
    /// that starts with `amber: ` and contains every one of `needles` (case-insensitive).
    #[track_caller]
    pub fn expect_error(&self, needles: &[&str]) {
        assert_eq!(self.code, Some(1), "expected exit code 1\n{self}");
        // Without --json stdout is empty; with it, stdout holds only the error document.
        let stdout = self.stdout.trim();
        if !stdout.is_empty() {
            let v: Value = serde_json::from_str(stdout)
                .unwrap_or_else(|e| panic!("stdout on error is neither empty nor one JSON document ({e})\n{self}"));
            assert!(
                v["error"]["message"].is_string(),
                "stdout on error holds an error document\n{self}"
            );
            assert_eq!(v["error"]["exit_code"], 1, "{self}");
        }
        assert!(
            self.stderr.starts_with("amber: "),
            "stderr should start with `amber: `\n{self}"
        );
        let lower = self.stderr.to_lowercase();
        for n in needles {
            assert!(lower.contains(&n.to_lowercase()), "stderr should mention {n:?}\n{self}");
        }
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| -> String {
            if s.len() > 4000 {
                format!("{}… ({} bytes)", s.chars().take(4000).collect::<String>(), s.len())
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "command: {}\nexit: {:?}\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.code,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// A repository in its own temporary directory, with scratch space beside it.
pub struct Repo {
    tmp: TempDir,
    /// The repository directory (`<tmp>/repo`).
    pub path: PathBuf,
    /// Passphrase given in `AMBER_PASSWORD`.
    pub password: String,
    /// Program and arguments to run amber through (for example `setpriv …`); empty: none.
    pub wrapper: Vec<String>,
    /// The store URL when it is not the directory `path` (a bucket): amber then gets
    /// `--repo <url> --cache-dir <tmp>/cache`.
    pub url: Option<String>,
    /// Environment variables every run gets (the S3 endpoint and keys).
    pub env: Vec<(String, String)>,
    /// The store itself when it is not the directory `path`, for the tests to look into.
    pub store: Option<DynBackend>,
}

impl Repo {
    /// A new, initialised repository (fast KDF).
    pub fn init() -> Repo {
        let repo = Repo::uninitialised();
        repo.init_here();
        repo
    }

    /// A temporary directory with no repository in it yet.
    pub fn uninitialised() -> Repo {
        let tmp = tempfile::Builder::new()
            .prefix("amber-e2e-")
            .tempdir()
            .expect("tempdir");
        let path = tmp.path().join("repo");
        Repo {
            tmp,
            path,
            password: PASSWORD.to_string(),
            wrapper: Vec::new(),
            url: None,
            env: Vec::new(),
            store: None,
        }
    }

    /// A temporary directory for scratch space, with the store at `url` (not initialised),
    /// which `store` reaches directly.
    pub fn at_url(url: &str, env: Vec<(String, String)>, store: DynBackend) -> Repo {
        Repo {
            url: Some(url.to_string()),
            env,
            store: Some(store),
            ..Repo::uninitialised()
        }
    }

    /// Runs `amber init` with a fast KDF and checks its output.
    pub fn init_here(&self) {
        let v = self.ok(&["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"]);
        let vault = v["vault_id"].as_str().expect("vault_id");
        assert_eq!(vault.len(), 64, "vault id is 32 bytes hex: {v}");
        assert!(
            self.url.is_some() || self.path.join("config").is_file(),
            "init wrote no config"
        );
    }

    /// The temporary directory (holds the repository and scratch space).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A path in the scratch space beside the repository (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `amber --repo <repo> --json <args>` with the repository's passphrase, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(Some(&self.password), args)
    }

    /// As [`Repo::command`] with another passphrase (`None`: no `AMBER_PASSWORD` at all).
    pub fn command_with(&self, password: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(amber_bin());
                c
            }
            None => Command::new(amber_bin()),
        };
        for var in AMBER_VARS {
            cmd.env_remove(var);
        }
        if let Some(pw) = password {
            cmd.env("AMBER_PASSWORD", pw);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match &self.url {
            Some(url) => cmd.arg("--repo").arg(url).arg("--cache-dir").arg(self.scratch("cache")),
            None => cmd.arg("--repo").arg(&self.path),
        };
        cmd.arg("--json").args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs amber with the repository's passphrase.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(Some(&self.password), args)
    }

    /// Runs amber with the given passphrase.
    pub fn run_with(&self, password: Option<&str>, args: &[&str]) -> Out {
        run_command(self.command_with(password, args))
    }

    /// Runs amber, asserts exit code 0 and returns its JSON.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        out.expect_code(0);
        out.json()
    }

    /// `amber snapshot <dir> <extra>`; asserts exit 0 and returns its JSON.
    #[track_caller]
    pub fn snapshot(&self, dir: &Path, extra: &[&str]) -> Value {
        let mut args = vec!["snapshot", p(dir)];
        args.extend_from_slice(extra);
        let v = self.ok(&args);
        assert_eq!(v["complete"], Value::Bool(true), "snapshot should be complete: {v}");
        v
    }

    /// `amber snapshots` as a list.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<Value> {
        match self.ok(&["snapshots"]) {
            Value::Array(a) => a,
            other => panic!("`amber snapshots` did not print an array: {other}"),
        }
    }

    /// `amber restore <snapshot> <dest>`; asserts exit 0 and no errors, returns its JSON.
    #[track_caller]
    pub fn restore(&self, snapshot: &str, dest: &Path) -> Value {
        let v = self.ok(&["restore", snapshot, p(dest)]);
        assert_eq!(v["errors"], Value::Array(Vec::new()), "restore reported errors: {v}");
        v
    }

    /// Files (with sizes) and directories of the store, excluding the index cache and the
    /// audit log (which grows by a record with every recorded command, refused ones too).
    pub fn listing(&self) -> BTreeMap<String, u64> {
        let mut listing = store_listing(&self.path);
        listing.retain(|k, _| !k.starts_with("audit/"));
        listing
    }

    /// Total size of the objects under `<sub>/` of the store (a directory or a bucket).
    pub fn size_of(&self, sub: &str) -> u64 {
        match &self.store {
            Some(store) => store
                .list(&format!("{sub}/"))
                .expect("list the store")
                .iter()
                .map(|o| o.size)
                .sum(),
            None => dir_size(&self.path.join(sub)),
        }
    }
}

impl Repo {
    /// Keys of the store's objects under `prefix` (`data/`, `meta/`, …), sorted.
    pub fn object_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = match &self.store {
            Some(store) => store
                .list(prefix)
                .expect("list the store")
                .into_iter()
                .map(|o| o.key)
                .collect(),
            None => store_listing(&self.path)
                .into_keys()
                .filter(|k| k.starts_with(prefix) && !k.ends_with('/'))
                .collect(),
        };
        keys.sort();
        keys
    }

    /// The keys under `prefix` that are not in `before` (what a command wrote).
    pub fn new_keys(&self, prefix: &str, before: &[String]) -> Vec<String> {
        let old: std::collections::BTreeSet<&String> = before.iter().collect();
        self.object_keys(prefix)
            .into_iter()
            .filter(|k| !old.contains(k))
            .collect()
    }

    /// Replaces object `key` of the store with what `change` makes of its bytes (damage
    /// done behind amber's back).
    pub fn rewrite_object(&self, key: &str, change: impl FnOnce(&mut Vec<u8>)) {
        match &self.store {
            Some(store) => {
                let mut bytes = store.get(key).expect("read the object");
                change(&mut bytes);
                store.delete(key).expect("delete the object");
                store
                    .put(key, &bytes, amber_engine::backend::PutMode::CreateOnly)
                    .expect("write the object");
            }
            None => {
                let path = self.path.join(key);
                let mut bytes = fs::read(&path).expect("read the object");
                change(&mut bytes);
                fs::remove_file(&path).expect("remove the object");
                fs::write(&path, &bytes).expect("write the object");
            }
        }
    }

    /// Deletes object `key` of the store.
    pub fn delete_object(&self, key: &str) {
        match &self.store {
            Some(store) => store.delete(key).expect("delete the object"),
            None => fs::remove_file(self.path.join(key)).expect("remove the object"),
        }
    }
}

/// Runs a command to completion, capturing its output.
pub fn run_command(mut cmd: Command) -> Out {
    let cmdline = format!("{cmd:?}");
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    Out::from_output(cmdline, output)
}

/// An id from a JSON value (a 64-digit hex string).
#[track_caller]
pub fn id_of(v: &Value) -> String {
    let id = v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string();
    assert_eq!(id.len(), 64, "ids are 32 bytes hex: {v}");
    id
}

/// A number from a JSON field.
#[track_caller]
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field {field:?} is not a number in {v}"))
}

// ---------------------------------------------------------------------------------------
// The store on disk.

/// Every file (with its size) and directory (as `dir/`, size 0) below `repo`, skipping
/// the index cache `cache/`, which is rebuildable and legitimately changes.
pub fn store_listing(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if !repo.exists() {
        return out;
    }
    for (rel, node) in walk_tree(repo) {
        if rel.starts_with("cache") {
            continue;
        }
        let key = rel.to_string_lossy().into_owned();
        match node.kind {
            Kind::Dir => out.insert(format!("{key}/"), 0),
            _ => out.insert(key, node.size),
        };
    }
    out
}

/// Sum of the sizes of regular files below `dir` (0 when it does not exist).
pub fn dir_size(dir: &Path) -> u64 {
    if !dir.exists() {
        return 0;
    }
    walk_tree(dir)
        .values()
        .filter(|n| n.kind == Kind::File)
        .map(|n| n.size)
        .sum()
}

/// Regular files below `dir`, absolute paths.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    walk_tree(dir)
        .into_iter()
        .filter(|(_, n)| n.kind == Kind::File)
        .map(|(rel, _)| dir.join(rel))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Walking and comparing trees.

/// The type of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else, with its `S_IFMT` bits.
    Other(u32),
}

/// What the comparison looks at for one path.
#[derive(Clone, Debug)]
pub struct Node {
    /// Type.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Size (files only; 0 otherwise).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
    /// Symlink target.
    pub target: Option<PathBuf>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    /// Inode number (to check hard links).
    pub inode: u64,
}

fn node_of(path: &Path, meta: &fs::Metadata) -> Node {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other(meta.mode() & 0o170_000)
    };
    let target = (kind == Kind::Symlink).then(|| fs::read_link(path).expect("readlink"));
    let mut xattrs: Vec<(OsString, Vec<u8>)> = match xattr::list(path) {
        Ok(names) if kind != Kind::Symlink => names
            .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
            .collect(),
        _ => Vec::new(),
    };
    xattrs.sort();
    Node {
        kind,
        mode: meta.mode() & 0o7777,
        size: if kind == Kind::File { meta.len() } else { 0 },
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        target,
        xattrs,
        inode: meta.ino(),
    }
}

/// Every path below `root` (relative, `root` itself excluded), by `lstat`.
pub fn walk_tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("read_dir entry");
            let child_rel = rel.join(entry.file_name());
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            if meta.is_dir() {
                stack.push(child_rel.clone());
            }
            out.insert(child_rel, node_of(&path, &meta));
        }
    }
    out
}

/// True when the two files hold the same bytes.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).expect("open a"), File::open(b).expect("open b"));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Every difference between the trees `a` and `b`: paths, types, bytes, permission
/// bits, symlink targets, mtimes (s and ns) of every entry, and extended attributes.
pub fn tree_differences(a: &Path, b: &Path) -> Vec<String> {
    let (ta, tb) = (walk_tree(a), walk_tree(b));
    let mut diffs = Vec::new();
    for rel in ta.keys().filter(|k| !tb.contains_key(*k)) {
        diffs.push(format!("{}: only in {}", rel.display(), a.display()));
    }
    for rel in tb.keys().filter(|k| !ta.contains_key(*k)) {
        diffs.push(format!("{}: only in {}", rel.display(), b.display()));
    }
    for (rel, na) in &ta {
        let Some(nb) = tb.get(rel) else { continue };
        let r = rel.display();
        if na.kind != nb.kind {
            diffs.push(format!("{r}: type {:?} vs {:?}", na.kind, nb.kind));
            continue;
        }
        if na.mode != nb.mode {
            diffs.push(format!("{r}: mode {:o} vs {:o}", na.mode, nb.mode));
        }
        if (na.mtime, na.mtime_nsec) != (nb.mtime, nb.mtime_nsec) {
            diffs.push(format!(
                "{r} ({:?}): mtime {}.{:09} vs {}.{:09}",
                na.kind, na.mtime, na.mtime_nsec, nb.mtime, nb.mtime_nsec
            ));
        }
        if na.target != nb.target {
            diffs.push(format!("{r}: link target {:?} vs {:?}", na.target, nb.target));
        }
        if na.xattrs != nb.xattrs {
            diffs.push(format!("{r}: xattrs {:?} vs {:?}", na.xattrs, nb.xattrs));
        }
        if na.kind == Kind::File {
            if na.size != nb.size {
                diffs.push(format!("{r}: size {} vs {}", na.size, nb.size));
            } else if !same_content(&a.join(rel), &b.join(rel)) {
                diffs.push(format!("{r}: content differs"));
            }
        }
    }
    diffs
}

/// Asserts that `restored` is identical to `original` (see [`tree_differences`]).
#[track_caller]
pub fn assert_same_tree(original: &Path, restored: &Path) {
    let diffs = tree_differences(original, restored);
    assert!(
        diffs.is_empty(),
        "{} differences between {} and {}, first ones:\n{}",
        diffs.len(),
        original.display(),
        restored.display(),
        diffs.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Test data.

/// xorshift64* — seeded, reproducible, fast; no `rand` needed.
pub struct Rng(u64);

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes `size` random bytes to `path` (parents created).
pub fn write_random(path: &Path, size: u64, rng: &mut Rng) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    let mut f = File::create(path).expect("create");
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
}

/// Writes compressible, text-like content of about `size` bytes.
pub fn write_text(path: &Path, size: usize, rng: &mut Rng) {
    const WORDS: [&str; 12] = [
        "import", "numpy", "def", "return", "self", "class", "kernel", "notebook", "lambda", "yield", "array", "\n",
    ];
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    let mut s = String::with_capacity(size + 16);
    while s.len() < size {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push(' ');
    }
    fs::write(path, s).expect("write text");
}

/// Sets a file's (or, with `symlink`, a link's own) mtime and atime.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(sec, nsec);
    filetime::set_symlink_file_times(path, t, t).expect("set times");
}

/// A varied small tree: nested directories, text and binary files, an empty file and an
/// empty directory, unusual modes, relative/absolute/dangling symlinks, a hard-linked
/// pair, an xattr, and odd mtimes (nanoseconds, pre-1970). Returns the number of entries.
pub fn sample_tree(root: &Path, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root).expect("mkdir root");
    for d in 0..4 {
        for f in 0..6 {
            write_text(&root.join(format!("pkg{d}/mod{f}.py")), 200 + 700 * f, &mut rng);
        }
        fs::create_dir_all(root.join(format!("pkg{d}/sub/deeper"))).expect("mkdir");
        write_random(
            &root.join(format!("pkg{d}/sub/deeper/data.bin")),
            70_000 * (d + 1),
            &mut rng,
        );
    }
    write_random(&root.join("big.bin"), 3 * 1024 * 1024 + 12_345, &mut rng);
    File::create(root.join("empty.txt")).expect("empty file");
    fs::create_dir_all(root.join("empty-dir")).expect("empty dir");
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(root.join("pkg1/mod2.py"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::set_permissions(root.join("pkg2/mod3.py"), fs::Permissions::from_mode(0o444)).expect("chmod");
    fs::set_permissions(root.join("pkg3/sub"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("pkg0/mod0.py", root.join("link-rel")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).expect("symlink");
    std::os::unix::fs::symlink("pkg1", root.join("link-dir")).expect("symlink");
    fs::write(root.join("hard-a"), "shared by two names\n").expect("write");
    fs::hard_link(root.join("hard-a"), root.join("pkg0/hard-b")).expect("hard link");
    let _ = xattr::set(root.join("pkg0/mod1.py"), "user.amber.test", b"xattr value");
    fs::write(root.join("naïve ünïcode name.txt"), "non-ASCII name\n").expect("write");
    set_mtime(&root.join("pkg2/mod4.py"), 1_234_567_890, 123_456_789);
    set_mtime(&root.join("pkg3/mod5.py"), -86_400 * 365, 999_999_999);
    set_mtime(&root.join("link-rel"), 1_600_000_000, 1);
    // Directories last: creating entries inside them changes their mtimes.
    set_mtime(&root.join("pkg0/sub/deeper"), 1_500_000_000, 500);
    set_mtime(&root.join("empty-dir"), 1_400_000_000, 42);
    walk_tree(root).len()
}

/// Copies a tree preserving types, modes and symlinks (not mtimes).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    let tree = walk_tree(from);
    for (rel, node) in tree.clone() {
        let (src, dst) = (from.join(&rel), to.join(&rel));
        match node.kind {
            Kind::Dir => fs::create_dir_all(&dst).expect("mkdir"),
            Kind::File => {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).expect("mkdir");
                }
                fs::copy(&src, &dst).expect("copy");
            }
            Kind::Symlink => {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).expect("mkdir");
                }
                std::os::unix::fs::symlink(node.target.expect("target"), &dst).expect("symlink");
            }
            Kind::Other(_) => {}
        }
    }
    for (rel, node) in tree.iter().filter(|(_, n)| n.kind == Kind::Dir) {
        fs::set_permissions(to.join(rel), fs::Permissions::from_mode(node.mode)).expect("chmod dir");
    }
}

/// True when the tests run as root (then permissions do not stop reads).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid: line");
    // Uid: real effective saved filesystem
    uid_line.split_whitespace().nth(2) == Some("0")
}

/// Finds `needle` in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// The Python environment fixture.

/// A real Python virtual environment with numpy and jupyterlab installed, built once and
/// cached in `$AMBER_TEST_CACHE` (the venv directory itself) or else in
/// `target/<profile>/amber-fixtures/venv`. A `<venv>.complete` marker beside it says the
/// build finished; the build happens in a temporary sibling that is renamed into place,
/// under a lock directory (`<venv>.lock`, holding the builder's pid) so concurrent test
/// processes neither race nor see a half-built environment.
pub fn python_venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let _in_process = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    VENV.get_or_init(|| {
        let dir = std::env::var_os("AMBER_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("amber-fixtures").join("venv"));
        let parent = dir.parent().expect("venv dir has a parent").to_path_buf();
        fs::create_dir_all(&parent).expect("create fixture dir");
        let marker = dir.with_extension("complete");
        let lock = dir.with_extension("lock");
        if marker.exists() && dir.is_dir() {
            return dir;
        }
        let _guard = LockDir::acquire(&lock);
        if !(marker.exists() && dir.is_dir()) {
            build_venv(&dir, &parent);
            File::create(&marker).expect("write venv marker");
        }
        dir
    })
    .clone()
}

fn build_venv(dir: &Path, parent: &Path) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("remove half-built venv");
    }
    let tmp = parent.join(format!("venv.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).expect("remove stale temp venv");
    }
    eprintln!(
        "building the Python fixture in {} (pip install numpy jupyterlab)…",
        tmp.display()
    );
    let out = run_command({
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&tmp);
        c
    });
    assert_eq!(out.code, Some(0), "python3 -m venv failed\n{out}");
    let out = run_command({
        let mut c = Command::new(tmp.join("bin/python"));
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "numpy",
            "jupyterlab",
        ]);
        c
    });
    assert_eq!(
        out.code,
        Some(0),
        "pip install numpy jupyterlab failed (needs network access to PyPI)\n{out}"
    );
    fs::rename(&tmp, dir).expect("move the venv into place");
}

/// A cross-process lock: a directory created atomically, holding the owner's pid; a lock
/// whose owner is gone is taken over.
struct LockDir(PathBuf);

impl LockDir {
    fn acquire(path: &Path) -> LockDir {
        let start = Instant::now();
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    fs::write(path.join("pid"), std::process::id().to_string()).expect("write lock pid");
                    return LockDir(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(path.join("pid")).unwrap_or_default();
                    let alive = owner
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if !alive && start.elapsed() > Duration::from_secs(2) {
                        let _ = fs::remove_dir_all(path);
                        continue;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(3600),
                        "timed out waiting for the fixture lock {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("cannot create lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for LockDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
