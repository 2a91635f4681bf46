//! Command-line definitions.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Amber: deduplicated, encrypted snapshots of Jupyter environments.
#[derive(Debug, Parser)]
#[command(name = "amber", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Repository: a directory, file:///path, or s3://bucket/prefix (credentials and
    /// endpoint from the AWS chain: AWS_* variables, profile, instance role).
    #[arg(long, global = true, env = "AMBER_REPO", default_value = "./amber-data")]
    pub repo: PathBuf,
    /// File holding the passphrase (else AMBER_PASSWORD).
    #[arg(long, global = true, env = "AMBER_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// State directory for the local index cache, deletable at any time (default:
    /// <repo>/cache for a directory, ~/.cache/amber for a bucket).
    #[arg(long, global = true, env = "AMBER_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Environment that `latest` refers to.
    #[arg(long = "env", global = true)]
    pub env: Option<String>,
    /// Worker threads for CPU work (default: one per core).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Talk to this `amber serve` (e.g. http://127.0.0.1:7207) instead of a local
    /// repository; the token comes from AMBER_TOKEN.
    #[arg(long, global = true, env = "AMBER_SERVER")]
    pub server: Option<String>,
    /// Vault on the server (default: the token's).
    #[arg(long, global = true, env = "AMBER_VAULT")]
    pub vault: Option<String>,
    /// CA certificate (PEM) to trust for an https:// server. A self-signed server
    /// certificate works if it is an end-entity certificate (basicConstraints CA:FALSE).
    #[arg(long, global = true, env = "AMBER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init {
        #[command(flatten)]
        kdf: KdfArgs,
        /// Block size in KiB for volume images (power of two, 4 to 16384).
        #[arg(long, default_value_t = 256)]
        block_size_kib: u32,
    },
    /// Snapshot a directory tree.
    Snapshot(SnapshotArgs),
    /// List snapshots.
    Snapshots,
    /// List the files of a snapshot.
    Ls {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Only below this path inside the snapshot.
        path: Option<std::ffi::OsString>,
    },
    /// Restore a snapshot: a tree into a directory, a volume into an image.
    #[command(group(ArgGroup::new("target").required(true).args(["dest", "block", "tar", "image"])))]
    Restore {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Target directory for a tree (created if missing).
        dest: Option<PathBuf>,
        /// Restore only paths matching this glob (repeatable; trees).
        #[arg(long)]
        include: Vec<String>,
        /// Write a volume snapshot to this image file or block device.
        #[arg(long, value_name = "OUT")]
        block: Option<PathBuf>,
        /// Take blocks that match from this older image instead of the repository.
        #[arg(long, requires = "block", value_name = "EXISTING_IMAGE")]
        seed: Option<PathBuf>,
        /// Write a layer snapshot as its original (uncompressed) tar stream; `-` for stdout.
        #[arg(long, value_name = "OUT")]
        tar: Option<PathBuf>,
        /// When extracting a layer into DEST, apply OCI whiteouts (`.wh.` files, opaque dirs).
        #[arg(long)]
        apply_whiteouts: bool,
        /// Write an image snapshot: an OCI layout directory, or a docker archive file.
        #[arg(long, value_name = "OUT")]
        image: Option<PathBuf>,
        /// The image's format: `oci` or `docker-archive` (default: the one it was given in).
        #[arg(long, requires = "image", value_name = "FORMAT")]
        format: Option<String>,
        #[command(flatten)]
        cold: ColdArgs,
    },
    /// Find files by name or path in snapshots (every snapshot, those of --env, or the
    /// ones given with --snapshot).
    Find {
        /// Glob: without `/` it matches a name at any depth (`*.ipynb`), with `/` a path
        /// from the snapshot's root (`data/**/*.csv`); `*` does not cross `/`, `**` does.
        pattern: String,
        /// Search only this snapshot: id, unique prefix, or `latest` (repeatable).
        #[arg(long = "snapshot", value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
    },
    /// Write one file of a snapshot to stdout, every chunk verified.
    Dump {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Path of the file inside the snapshot.
        path: std::ffi::OsString,
    },
    /// Show what changed between two snapshots.
    Diff {
        /// First snapshot.
        a: String,
        /// Second snapshot.
        b: String,
    },
    /// Manage the local index cache.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Repair what `amber verify` found damaged.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Manage passphrases (key slots).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Copy snapshots into another repository (another bucket or region, a local
    /// directory): only what the target lacks is stored; already copied ones are skipped.
    Copy {
        /// Snapshots (ids, prefixes, `latest`); none: every snapshot.
        snapshots: Vec<String>,
        /// The target repository (initialised with `amber init`): a directory or s3://bucket/prefix.
        #[arg(long, value_name = "STORE")]
        to: std::ffi::OsString,
        /// File holding the target's passphrase (else AMBER_TO_PASSWORD, else a prompt).
        #[arg(long, env = "AMBER_TO_PASSWORD_FILE")]
        to_password_file: Option<PathBuf>,
        /// The target's state directory (default: as --cache-dir for that store).
        #[arg(long)]
        to_cache_dir: Option<PathBuf>,
    },
    /// Move data packs between storage classes by age (S3 stores).
    #[command(subcommand)]
    Tier(TierCommand),
    /// Remove the snapshots a retention policy does not keep (environments, images and
    /// their parts as units; protected snapshots always stay). Space returns with compaction.
    Forget(ForgetArgs),
    /// Give back space: delete packs no snapshot uses (after a grace period, so that
    /// ingests running meanwhile are safe) and repack packs that are mostly unused.
    Compact(CompactArgs),
    /// Protect a snapshot from every retention policy.
    Protect {
        /// Snapshot id, unique prefix or `latest`.
        snapshot: String,
    },
    /// Lift a snapshot's protection.
    Unprotect {
        /// Snapshot id, unique prefix or `latest`.
        snapshot: String,
    },
    /// How much the vault holds: restore size, distinct content and stored bytes, in all,
    /// per kind of snapshot and per environment, with the deduplication ratio.
    Stats,
    /// Check that every snapshot can be restored: name what is damaged or lost and every
    /// snapshot, path and byte range it affects (exit 0 clean, 3 damaged, 1 could not run).
    #[command(alias = "check")]
    Verify(VerifyArgs),
    /// Run the gRPC server (one vault per lab) on the local store.
    Serve {
        /// Address to listen on (default 127.0.0.1:7207, or the configuration's).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// TOML configuration file.
        #[arg(long, env = "AMBER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Push a snapshot to a server (--server or AMBER_SERVER, token in AMBER_TOKEN).
    Push(PushArgs),
    /// Whole environments: one snapshot of an image, trees and a volume taken together.
    #[command(subcommand)]
    Env(EnvCommand),
    /// List environment snapshots (those of --env when given) with their parts.
    Envs,
    /// Manage the bearer tokens of a vault: on a server (with an admin token), or without
    /// --server directly in the data directory --repo of a stopped server (recovery).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the vault's audit log (every call on a server's vault, from every server of a
    /// cluster), checking that no record is missing, damaged or out of place (exit 3 if so).
    Audit {
        /// Only records since this age before now (`12h`, `7d`, `4w`) or this time
        /// (RFC 3339, e.g. 2026-12-01T08:00:00Z).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Copy a snapshot into another vault on the server (admin tokens of both vaults:
    /// AMBER_TOKEN for this one, AMBER_TARGET_TOKEN for the other).
    Share {
        /// Snapshot id or unique prefix.
        snapshot: String,
        /// Vault receiving the copy.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Snapshot every part (through a server: pushed in parallel), then commit the
    /// environment snapshot naming them; a part that fails leaves no environment snapshot.
    Snapshot(Box<EnvSnapshotArgs>),
    /// Restore every part under one directory, verify it, and validate the result.
    Restore {
        /// Environment snapshot id, unique prefix, or `latest` (the newest environment
        /// snapshot, of --env when given).
        snapshot: String,
        /// Directory to restore into (created; must be empty).
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EnvSnapshotArgs {
    /// The container image: an OCI image layout directory or a docker archive.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// A tree and where it is mounted: `/home/researcher/notebooks=./notebooks` (repeatable).
    #[arg(long = "tree", value_name = "MOUNT=DIR", value_parser = parse_mount)]
    pub trees: Vec<(String, PathBuf)>,
    /// The volume image and where it is mounted: `/opt/jupyter=./jupyter.img`.
    #[arg(long, value_name = "MOUNT=IMAGE", value_parser = parse_mount)]
    pub volume: Option<(String, PathBuf)>,
    /// Lab the environment belongs to.
    #[arg(long, default_value = "")]
    pub lab: String,
    /// Researcher responsible for it.
    #[arg(long, default_value = "")]
    pub researcher: String,
    /// Experiment id.
    #[arg(long, default_value = "")]
    pub experiment: String,
    /// Funding source.
    #[arg(long, default_value = "")]
    pub funding: String,
    /// Criticality (for example `high`).
    #[arg(long, default_value = "")]
    pub criticality: String,
    /// A Python package the environment must have, `name` or `name==version`
    /// (repeatable); `env restore` checks that each is found.
    #[arg(long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Free metadata KEY=VALUE (repeatable).
    #[arg(long = "meta", value_parser = parse_meta)]
    pub metadata: Vec<(String, String)>,
}

fn parse_mount(s: &str) -> Result<(String, PathBuf), String> {
    let (mount, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected MOUNT=PATH, got {s:?}"))?;
    amber_engine::ops::environment::check_mount(mount).map_err(|e| e.to_string())?;
    Ok((mount.to_string(), PathBuf::from(path)))
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub snap: SnapshotArgs,
    /// Key naming this push for resumption (default: derived from kind, host and path, so
    /// a retry of the same push resumes).
    #[arg(long)]
    pub resume_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// sidecar (push only), restore (read) or admin.
        #[arg(long)]
        role: String,
        /// A label for the token.
        #[arg(long)]
        name: String,
    },
    /// List the vault's tokens.
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id (16 hex characters).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct KdfArgs {
    /// Argon2id memory in MiB for the new key slot.
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes for the new key slot.
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["paths", "block", "tar", "image"])))]
pub struct SnapshotArgs {
    /// Directory to snapshot; with several paths (directories or files), the snapshot's
    /// root holds each under its own name.
    pub paths: Vec<PathBuf>,
    /// Leave out paths matching this pattern (repeatable): without `/` it matches a name
    /// at any depth (`*.pyc`), with `/` a path from the snapshot's root (`data/raw`,
    /// `**/.cache`).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from this file, one per line (`#` comments; repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Snapshot a container layer: a tar stream, plain, gzip or zstd; `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Snapshot a raw volume image or block device instead, in fixed-size blocks.
    #[arg(long, value_name = "FILE")]
    pub block: Option<PathBuf>,
    /// Snapshot a container image: an OCI image layout directory or a `docker save` archive.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Only these byte ranges changed since --parent (one `OFFSET LENGTH` per line).
    #[arg(long, requires = "block", value_name = "FILE")]
    pub changed_ranges: Option<PathBuf>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Lab the environment belongs to.
    #[arg(long, default_value = "")]
    pub lab: String,
    /// Researcher responsible for it.
    #[arg(long, default_value = "")]
    pub researcher: String,
    /// Free metadata KEY=VALUE (repeatable): experiment, funding, criticality, ...
    #[arg(long = "meta", value_parser = parse_meta)]
    pub metadata: Vec<(String, String)>,
    /// Compare against this snapshot instead of the latest of the same host and path
    /// (for volumes: the previous snapshot of this volume).
    #[arg(long, conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file, ignoring any parent snapshot.
    #[arg(long)]
    pub force: bool,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Show what a policy would move: packs, bytes per class and monthly cost, before and after.
    Plan(TierArgs),
    /// Move the packs the plan moves (never before a class's minimum storage duration
    /// has passed, unless --force), and record the moves.
    Apply {
        #[command(flatten)]
        args: TierArgs,
        /// Move packs still within their class's minimum storage duration, paying for it.
        #[arg(long)]
        force: bool,
    },
}

/// A retention policy (as restic's `forget`), applied per environment (or, without one,
/// per kind, host and source path).
#[derive(Debug, Args, Clone)]
pub struct ForgetArgs {
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the newest N hours that have one (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// … of each of the newest N days.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// … of each of the newest N weeks (from Monday).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// … of each of the newest N months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// … of each of the newest N years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every snapshot up to this long before the group's newest (`7d`, `2w`, `1y6m`,
    /// `36h`: y = 365 days, m = 30 days).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Show what would be removed and why each kept snapshot is kept; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How `amber compact` runs.
#[derive(Debug, Args, Clone)]
pub struct CompactArgs {
    /// Show what would be deleted and repacked, and the bytes freed and moved; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repack a pack when more than this share of it is unused (`5%`, `0.05`).
    #[arg(long, value_name = "SHARE", default_value = "5%")]
    pub max_unused: String,
    /// Copy at most this many live bytes in one run (`500M`, `2G`, bytes without a unit).
    #[arg(long, value_name = "BYTES")]
    pub max_repack: Option<String>,
    /// Time between condemning a pack and deleting it, and the least age of an unused
    /// pack that is condemned (`1h`, `30s`; `0s` only when nothing else writes the vault).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: String,
    /// Also delete archived packs before their storage class's minimum duration, paying
    /// the early-deletion charge.
    #[arg(long)]
    pub force_cold: bool,
}

/// What `amber verify` reads.
#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// Also read every pack whole and re-hash every blob in it (archived packs need
    /// --warm-up and a later run).
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the packs: `N/M` (part N of M, by pack id) or `P%` (the next P
    /// percent after those the previous run read, so repeated runs cover everything).
    #[arg(long, value_name = "N/M|P%", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// Ask the store to bring back archived packs, so that a later --read-data run can
    /// read them (checking them needs no restore: their listing is checked every time).
    #[arg(long)]
    pub warm_up: bool,
}

/// Restoring data kept in an archive class (GLACIER, DEEP_ARCHIVE).
#[derive(Debug, Args, Clone)]
pub struct ColdArgs {
    /// Ask the store to bring back the archived packs the restore needs.
    #[arg(long)]
    pub warm_up: bool,
    /// Wait (polling with backoff) until the archived packs are readable, then restore.
    #[arg(long)]
    pub resume: bool,
    /// Retrieval speed for --warm-up: `bulk` (cheapest) or `standard`.
    #[arg(long, default_value = "bulk", value_name = "SPEED")]
    pub retrieval: String,
    /// Days the restored copies stay readable.
    #[arg(long, default_value_t = 7)]
    pub warm_days: u32,
    /// With --resume, give up after this many seconds (the exit status is then 4).
    #[arg(long, default_value_t = 172_800)]
    pub wait_seconds: u64,
}

/// What tiering follows.
#[derive(Debug, Args)]
pub struct TierArgs {
    /// Classes by age of the newest snapshot needing a pack.
    #[arg(long, default_value = "STANDARD:30d,STANDARD_IA:365d,DEEP_ARCHIVE")]
    pub policy: String,
    /// A TOML price table (`[storage]` and `[retrieval_standard]`, `[retrieval_bulk]`:
    /// class = USD per GB); default: AWS us-east-1 list prices (docs/tiering.md).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Throw the index away and rebuild it from the packs alone.
    Rebuild,
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs; describe packs that no readable index segment
    /// describes in new segments and remove the damaged ones; copy the blobs of packs
    /// whose header or directory is damaged into new packs and condemn those packs
    /// (`amber compact` deletes them after the grace period).
    Index {
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a new snapshot for each snapshot short of data, in which every file,
    /// directory, volume or layer that lacks data is marked damaged (never dropped); the
    /// originals are kept. A restore of a repaired snapshot writes what can be read and
    /// names the rest; a blob stored again later (a new snapshot of the same content)
    /// heals the mark. Run `amber verify --read-data` first to find damage in packs.
    Snapshots {
        /// Show what would be marked; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only these snapshots (and their damaged parts); default: every snapshot short
        /// of data.
        snapshots: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a passphrase (from --new-password-file or AMBER_NEW_PASSWORD).
    Add {
        /// File holding the new passphrase.
        #[arg(long, env = "AMBER_NEW_PASSWORD_FILE")]
        new_password_file: Option<PathBuf>,
        /// Label for the slot (default user@host).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// List key slots.
    List,
    /// Remove a key slot by id or unique prefix.
    Remove {
        /// Slot id or prefix.
        id: String,
    },
}
