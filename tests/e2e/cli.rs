//! One CLI, two modes: every command with `--json` on a local repository and through a
//! real `amber serve`, each document checked against the schema of `docs/json.md` (written
//! here as data, and compared with the page), errors as JSON documents, the same flags in
//! both modes, and what a restic user expects: `find`, `dump`, `ls` of a layer, `--include`
//! through a server, times with their offset, a passphrase prompt on a terminal.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Out, Repo, Rng, amber_bin, run_command, set_mtime, tree_differences, write_random};
use crate::server::harness::Server;

// ---------------------------------------------------------------------------------------
// The schema of docs/json.md, as data.

/// A JSON type as `docs/json.md` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Num,
    Bool,
    /// An object of string values.
    Map,
    StrOrNull,
    IntOrNull,
    ArrOfStr,
    /// An array of `[offset, length]` pairs of integers.
    Ranges,
    /// An array of the named document.
    Arr(&'static str),
    /// The named document.
    Obj(&'static str),
    /// An object whose every value is the named document.
    MapOf(&'static str),
}

/// Whether a field is present in one mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Has {
    Yes,
    Opt,
    No,
}

use Has::{No, Opt, Yes};
use Ty::{Arr, ArrOfStr, Bool, Int, IntOrNull, Map, MapOf, Num, Obj, Ranges, Str, StrOrNull};

type Fields = &'static [(&'static str, Ty, Has, Has)];

const ENTRY: Fields = &[
    ("path", Str, Yes, Yes),
    ("path_base64", Str, Opt, Opt),
    ("type", Str, Yes, Yes),
    ("mode", Str, Yes, Yes),
    ("uid", Int, Yes, Yes),
    ("gid", Int, Yes, Yes),
    ("size", Int, Yes, Yes),
    ("mtime", Str, Yes, Yes),
    ("mtime_unix_nanos", Int, Yes, Yes),
    ("link_target", Str, Opt, Opt),
    ("link_target_base64", Str, Opt, Opt),
];

/// Every document: name and fields (name, type, local, server).
const SCHEMA: &[(&str, Fields)] = &[
    ("error", &[("error", Obj("error-body"), Yes, Yes)]),
    (
        "error-body",
        &[
            ("message", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("exit_code", Int, Yes, Yes),
        ],
    ),
    (
        "snapshot",
        &[
            ("id", Str, Yes, Yes),
            ("already_stored", Bool, Yes, Yes),
            ("complete", Bool, Yes, Yes),
            ("files", Int, Yes, Yes),
            ("dirs", Int, Yes, Yes),
            ("bytes", Int, Yes, Yes),
            ("bytes_read", Int, Yes, Yes),
            ("bytes_new", Int, Yes, Yes),
            ("blobs_new", Int, Yes, Yes),
            ("skipped", Int, Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
            ("kind", Str, Yes, No),
            ("parent", StrOrNull, Yes, No),
            ("time", Str, Yes, No),
            ("time_unix_nanos", Int, Yes, No),
            ("raw_bytes_new", Int, Yes, No),
            ("skipped_paths", Arr("path-error"), Yes, No),
            ("files_unchanged", Int, Opt, No),
            ("packs_written", Int, Opt, No),
            ("members", Int, Opt, No),
            ("size", Int, Opt, No),
            ("input_size", Int, Opt, No),
            ("diff_id", Str, Opt, No),
            ("digest", Str, Opt, No),
            ("compression", Str, Opt, No),
            ("kept_compressed", StrOrNull, Opt, No),
            ("format", Str, Opt, No),
            ("layers", Arr("image-layer"), Opt, No),
            ("unreferenced", ArrOfStr, Opt, No),
            ("block_size", Int, Opt, No),
            ("blocks", Int, Opt, No),
            ("holes", Int, Opt, No),
            ("blocks_inherited", Int, Opt, No),
            ("bytes_sent", Int, No, Yes),
            ("bytes_received_by_server", Int, No, Yes),
            ("reused", Int, No, Yes),
            ("sent", Int, No, Yes),
            ("empty_files", Int, No, Yes),
        ],
    ),
    (
        "env-snapshot",
        &[
            ("id", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("environment", Str, Yes, Yes),
            ("parts", Arr("env-part"), Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
        ],
    ),
    (
        "env-part",
        &[
            ("kind", Str, Yes, Yes),
            ("mount", StrOrNull, Yes, Yes),
            ("snapshot", Str, Yes, Yes),
            ("bytes_new", Int, Yes, Yes),
            ("bytes_sent", Int, No, Yes),
        ],
    ),
    (
        "env-info",
        &[
            ("id", Str, Yes, Yes),
            ("environment", Str, Yes, Yes),
            ("time", Str, Yes, Yes),
            ("time_unix_nanos", Int, Yes, Yes),
            ("lab", Str, Yes, Yes),
            ("researcher", Str, Yes, Yes),
            ("metadata", Map, Yes, Yes),
            ("parts", Arr("env-part-ref"), Yes, Yes),
        ],
    ),
    (
        "env-part-ref",
        &[
            ("kind", Str, Yes, Yes),
            ("mount", StrOrNull, Yes, Yes),
            ("snapshot", Str, Yes, Yes),
        ],
    ),
    (
        "env-restore",
        &[
            ("snapshot", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("environment", Str, Yes, Yes),
            ("ok", Bool, Yes, Yes),
            ("steps", Arr("env-step"), Yes, Yes),
            ("notebooks", ArrOfStr, Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
        ],
    ),
    (
        "env-step",
        &[
            ("part", Str, Yes, Yes),
            ("mount", StrOrNull, Yes, Yes),
            ("step", Str, Yes, Yes),
            ("ok", Bool, Yes, Yes),
            ("detail", Str, Yes, Yes),
        ],
    ),
    (
        "image-layer",
        &[
            ("path", Str, Yes, No),
            ("path_base64", Str, Opt, No),
            ("snapshot", Str, Yes, No),
            ("already_stored", Bool, Yes, No),
            ("digest", Str, Yes, No),
            ("diff_id", Str, Yes, No),
            ("compression", Str, Yes, No),
            ("size", Int, Yes, No),
            ("kept_compressed", StrOrNull, Yes, No),
            ("bytes_new", Int, Yes, No),
            ("raw_bytes_new", Int, Yes, No),
        ],
    ),
    (
        "snapshot-info",
        &[
            ("id", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("time", Str, Yes, Yes),
            ("time_unix_nanos", Int, Yes, Yes),
            ("environment", Str, Yes, Yes),
            ("lab", Str, Yes, Yes),
            ("researcher", Str, Yes, Yes),
            ("hostname", Str, Yes, Yes),
            ("path", Str, Yes, Yes),
            ("parent", StrOrNull, Yes, Yes),
            ("tags", ArrOfStr, Yes, Yes),
            ("metadata", Map, Yes, Yes),
            ("files", Int, Yes, Yes),
            ("dirs", Int, Yes, Yes),
            ("bytes", Int, Yes, Yes),
            ("bytes_new", Int, Yes, Yes),
            ("blobs_new", Int, Yes, Yes),
            ("complete", Bool, Yes, Yes),
            ("skipped", Int, Yes, Yes),
            ("diff_id", StrOrNull, Yes, Yes),
            ("digest", StrOrNull, Yes, Yes),
        ],
    ),
    ("entry", ENTRY),
    (
        "found",
        &[
            ("snapshot", Str, Yes, Yes),
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("type", Str, Yes, Yes),
            ("mode", Str, Yes, Yes),
            ("uid", Int, Yes, Yes),
            ("gid", Int, Yes, Yes),
            ("size", Int, Yes, Yes),
            ("mtime", Str, Yes, Yes),
            ("mtime_unix_nanos", Int, Yes, Yes),
            ("link_target", Str, Opt, Opt),
            ("link_target_base64", Str, Opt, Opt),
        ],
    ),
    (
        "diff",
        &[
            ("from", Str, Yes, Yes),
            ("to", Str, Yes, Yes),
            ("changes", Arr("change"), Yes, Yes),
            ("added", Int, Yes, Yes),
            ("removed", Int, Yes, Yes),
            ("modified", Int, Yes, Yes),
            ("metadata", Int, Yes, Yes),
            ("type_changed", Int, Yes, Yes),
            ("layers", Arr("layer-change"), Opt, No),
        ],
    ),
    (
        "layer-change",
        &[
            ("index", Int, Yes, No),
            ("change", Str, Yes, No),
            ("from", StrOrNull, Yes, No),
            ("to", StrOrNull, Yes, No),
        ],
    ),
    (
        "change",
        &[
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("change", Str, Yes, Yes),
            ("type", Str, Yes, Yes),
            ("size_before", Int, Yes, Yes),
            ("size_after", Int, Yes, Yes),
        ],
    ),
    (
        "restore",
        &[
            ("snapshot", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("target_base64", Str, Opt, Opt),
            ("files", Int, Yes, Yes),
            ("dirs", Int, Yes, Yes),
            ("others", Int, Yes, Yes),
            ("bytes", Int, Yes, Yes),
            ("errors", Arr("path-error"), Yes, Yes),
            ("warnings", Arr("path-error"), Yes, Yes),
            ("damaged", Arr("damaged-path"), Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
            ("bytes_fetched", Int, No, Yes),
            ("chunks_fetched", Int, No, Yes),
            ("chunks_kept", Int, No, Yes),
        ],
    ),
    (
        "extract",
        &[
            ("snapshot", Str, Yes, No),
            ("kind", Str, Yes, No),
            ("target", Str, Yes, No),
            ("target_base64", Str, Opt, No),
            ("members", Int, Yes, No),
            ("whiteouts", Int, Yes, No),
            ("skipped", Int, Yes, No),
            ("skipped_paths", Arr("path-error"), Yes, No),
            ("errors", Arr("path-error"), Yes, No),
            ("warnings", Arr("path-error"), Yes, No),
            ("duration_seconds", Num, Yes, No),
        ],
    ),
    (
        "restore-tar",
        &[
            ("snapshot", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("target_base64", Str, Opt, Opt),
            ("bytes", Int, Yes, Yes),
            ("diff_id", StrOrNull, Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
            ("bytes_fetched", Int, No, Yes),
            ("resumed_from", Int, No, Yes),
        ],
    ),
    (
        "restore-image",
        &[
            ("snapshot", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("target_base64", Str, Opt, Opt),
            ("format", Str, Yes, Yes),
            ("files", Int, Yes, No),
            ("layers", Int, Yes, No),
            ("bytes", Int, Yes, No),
            ("bytes_fetched", Int, No, Yes),
            ("duration_seconds", Num, Yes, Yes),
        ],
    ),
    (
        "restore-block",
        &[
            ("snapshot", Str, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("target_base64", Str, Opt, Opt),
            ("size", Int, Yes, Yes),
            ("blocks", Int, Yes, Yes),
            ("holes", Int, Yes, Yes),
            ("from_repo", Int, Yes, Yes),
            ("from_seed", Int, Yes, Yes),
            ("lost_bytes", Int, Yes, Yes),
            ("lost_ranges", Ranges, Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
            ("bytes_written", Int, Yes, No),
            ("bytes_fetched", Int, No, Yes),
            ("chunks_fetched", Int, No, Yes),
            ("chunks_kept", Int, No, Yes),
        ],
    ),
    (
        "dump",
        &[
            ("snapshot", Str, Yes, Yes),
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("bytes", Int, Yes, Yes),
            ("duration_seconds", Num, Yes, Yes),
        ],
    ),
    (
        "path-error",
        &[
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("error", Str, Yes, Yes),
        ],
    ),
    (
        "init",
        &[
            ("vault_id", Str, Yes, No),
            ("repo", Str, Yes, No),
            ("repo_base64", Str, Opt, No),
        ],
    ),
    (
        "index-rebuild",
        &[
            ("packs", Int, Yes, No),
            ("blobs", Int, Yes, No),
            ("unreadable", Arr("unreadable"), Yes, No),
        ],
    ),
    ("unreadable", &[("object", Str, Yes, Yes), ("error", Str, Yes, Yes)]),
    ("key-added", &[("added", Str, Yes, No)]),
    (
        "key",
        &[
            ("id", Str, Yes, No),
            ("label", Str, Yes, No),
            ("created", Str, Yes, No),
            ("created_unix_nanos", Int, Yes, No),
            ("current", Bool, Yes, No),
            ("kdf_memory_kib", Int, Yes, No),
        ],
    ),
    ("key-removed", &[("removed", Str, Yes, No)]),
    (
        "token-created",
        &[("token", Str, Yes, Yes), ("info", Obj("token"), Yes, Yes)],
    ),
    (
        "token",
        &[
            ("id", Str, Yes, Yes),
            ("role", Str, Yes, Yes),
            ("name", Str, Yes, Yes),
            ("created", Str, Yes, Yes),
            ("created_unix_nanos", Int, Yes, Yes),
            ("revoked", StrOrNull, Yes, Yes),
            ("revoked_unix_nanos", IntOrNull, Yes, Yes),
        ],
    ),
    ("token-revoked", &[("revoked", Str, Yes, Yes)]),
    (
        "audit",
        &[
            ("records", Arr("audit-record"), Yes, Yes),
            ("problems", Arr("audit-problem"), Yes, Yes),
        ],
    ),
    (
        "audit-record",
        &[
            ("time", Str, Yes, Yes),
            ("time_unix_nanos", Int, Yes, Yes),
            ("writer", Str, Yes, Yes),
            ("seq", Int, Yes, Yes),
            ("request_id", Str, Yes, Yes),
            ("token_id", Str, Yes, Yes),
            ("role", Str, Yes, Yes),
            ("call", Str, Yes, Yes),
            ("target", Str, Yes, Yes),
            ("result", Str, Yes, Yes),
            ("detail", Str, Yes, Yes),
        ],
    ),
    ("audit-problem", &[("key", Str, Yes, Yes), ("detail", Str, Yes, Yes)]),
    (
        "share",
        &[("id", Str, No, Yes), ("bytes", Int, No, Yes), ("vault", Str, No, Yes)],
    ),
    (
        "copy",
        &[
            ("copied", Arr("copied"), Yes, No),
            ("skipped", ArrOfStr, Yes, No),
            ("refused", Arr("unreadable-snapshot"), Yes, No),
        ],
    ),
    (
        "copied",
        &[("from", Str, Yes, No), ("to", Str, Yes, No), ("bytes", Int, Yes, No)],
    ),
    (
        "forget",
        &[
            ("dry_run", Bool, Yes, Yes),
            ("kept", Arr("forget-kept"), Yes, Yes),
            ("removed", Arr("forget-removed"), Yes, Yes),
        ],
    ),
    (
        "forget-kept",
        &[
            ("id", Str, Yes, Yes),
            ("group", Str, Yes, Yes),
            ("reasons", ArrOfStr, Yes, Yes),
        ],
    ),
    ("forget-removed", &[("id", Str, Yes, Yes), ("group", Str, Yes, Yes)]),
    ("protect", &[("snapshot", Str, Yes, Yes), ("protected", Bool, Yes, Yes)]),
    (
        "compact",
        &[
            ("dry_run", Bool, Yes, Yes),
            ("snapshots", Int, Yes, Yes),
            ("snapshots_walked", Int, Yes, Yes),
            ("nodes_read", Int, Yes, Yes),
            ("packs", Int, Yes, Yes),
            ("stored_bytes", Int, Yes, Yes),
            ("live_bytes", Int, Yes, Yes),
            ("deleted", Obj("pack-bytes"), Yes, Yes),
            ("repacked", Obj("pack-bytes"), Yes, Yes),
            ("condemned", Obj("pack-bytes"), Yes, Yes),
            ("pending", Obj("pack-bytes"), Yes, Yes),
            ("revived_packs", Int, Yes, Yes),
            ("young_packs", Int, Yes, Yes),
            ("busy_packs", Int, Yes, Yes),
            ("cold_kept", Obj("cold-kept"), Yes, Yes),
            ("cold_sparse_packs", Int, Yes, Yes),
            ("deleted_segments", Int, Yes, Yes),
            ("deleted_temp", Int, Yes, Yes),
            ("unreadable", Arr("unreadable"), Yes, Yes),
        ],
    ),
    ("pack-bytes", &[("packs", Int, Yes, Yes), ("bytes", Int, Yes, Yes)]),
    (
        "cold-kept",
        &[
            ("packs", Int, Yes, Yes),
            ("bytes", Int, Yes, Yes),
            ("early_cost_usd", Num, Yes, Yes),
        ],
    ),
    (
        "repair-index",
        &[
            ("dry_run", Bool, Yes, Yes),
            ("packs", Int, Yes, Yes),
            ("blobs", Int, Yes, Yes),
            ("described_packs", Int, Yes, Yes),
            ("deleted_segments", Int, Yes, Yes),
            ("rescued", Obj("repair-rescued"), Yes, Yes),
            ("lost_blobs", Arr("repair-lost"), Yes, Yes),
            ("unrecoverable", Arr("unreadable"), Yes, Yes),
        ],
    ),
    ("repair-rescued", &[("packs", Int, Yes, Yes), ("blobs", Int, Yes, Yes)]),
    (
        "repair-snapshots",
        &[
            ("dry_run", Bool, Yes, Yes),
            ("checked", Int, Yes, Yes),
            ("repaired", Arr("repaired-snapshot"), Yes, Yes),
            ("unchanged", ArrOfStr, Yes, Yes),
            ("unrepairable", Arr("unrepairable"), Yes, Yes),
        ],
    ),
    (
        "repaired-snapshot",
        &[
            ("original", Str, Yes, Yes),
            ("repaired", StrOrNull, Yes, Yes),
            ("kind", Str, Yes, Yes),
            ("files", Int, Yes, Yes),
            ("dirs", Int, Yes, Yes),
            ("lost_bytes", Int, Yes, Yes),
            ("parts", Int, Yes, Yes),
            ("paths", Arr("damaged-path"), Yes, Yes),
        ],
    ),
    ("unrepairable", &[("snapshot", Str, Yes, Yes), ("error", Str, Yes, Yes)]),
    (
        "damaged-path",
        &[
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("lost_bytes", IntOrNull, Yes, Yes),
        ],
    ),
    (
        "repair-lost",
        &[
            ("blob", Str, Yes, Yes),
            ("pack", Str, Yes, Yes),
            ("error", Str, Yes, Yes),
        ],
    ),
    (
        "stats",
        &[
            ("total", Obj("stats-group"), Yes, Yes),
            ("by_kind", MapOf("stats-group"), Yes, Yes),
            ("by_environment", MapOf("stats-group"), Yes, Yes),
            ("packs", Int, Yes, Yes),
            ("stored_bytes", Int, Yes, Yes),
            ("compression_ratio", Num, Yes, Yes),
            ("unreadable_snapshots", Int, Yes, Yes),
        ],
    ),
    (
        "stats-group",
        &[
            ("snapshots", Int, Yes, Yes),
            ("restore_bytes", Int, Yes, Yes),
            ("chunks", Int, Yes, Yes),
            ("unique_bytes", Int, Yes, Yes),
            ("dedup_ratio", Num, Yes, Yes),
        ],
    ),
    (
        "verify",
        &[
            ("clean", Bool, Yes, Yes),
            ("snapshots", Int, Yes, Yes),
            ("chunks", Int, Yes, Yes),
            ("packs", Int, Yes, Yes),
            ("packs_read", Int, Yes, Yes),
            ("bytes_read", Int, Yes, Yes),
            ("cold_not_read", Int, Yes, Yes),
            ("warm_up_requested", Int, Yes, Yes),
            ("unreferenced_packs", Int, Yes, Yes),
            ("damaged_snapshots", ArrOfStr, Yes, Yes),
            ("problems", Arr("verify-problem"), Yes, Yes),
            ("marked", Arr("verify-marked"), Yes, Yes),
            ("marked_total", Int, Yes, Yes),
            ("healed", Int, Yes, Yes),
        ],
    ),
    (
        "verify-marked",
        &[
            ("snapshot", Str, Yes, Yes),
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("lost_bytes", IntOrNull, Yes, Yes),
        ],
    ),
    (
        "verify-problem",
        &[
            ("kind", Str, Yes, Yes),
            ("pack", StrOrNull, Yes, Yes),
            ("object", StrOrNull, Yes, Yes),
            ("detail", Str, Yes, Yes),
            ("affected", Arr("verify-place"), Yes, Yes),
            ("affected_total", Int, Yes, Yes),
        ],
    ),
    (
        "verify-place",
        &[
            ("snapshot", Str, Yes, Yes),
            ("path", Str, Yes, Yes),
            ("path_base64", Str, Opt, Opt),
            ("offset", Int, Opt, Opt),
            ("length", Int, Opt, Opt),
        ],
    ),
    ("unreadable-snapshot", &[("id", Str, Yes, No), ("error", Str, Yes, No)]),
    (
        "tier-plan",
        &[
            ("policy", Str, Yes, No),
            ("now_unix", Int, Yes, No),
            ("moves", Arr("pack-move"), Yes, No),
            ("bytes_before", Arr("class-bytes"), Yes, No),
            ("bytes_after", Arr("class-bytes"), Yes, No),
            ("monthly_cost_before", Num, Yes, No),
            ("monthly_cost_after", Num, Yes, No),
            ("data_packs", Int, Yes, No),
            ("unreferenced_packs", Int, Yes, No),
        ],
    ),
    (
        "pack-move",
        &[
            ("pack", Str, Yes, No),
            ("bytes", Int, Yes, No),
            ("from", Str, Yes, No),
            ("to", Str, Yes, No),
            ("age_days", Int, Yes, No),
            ("days_in_class", Int, Yes, No),
            ("minimum_left_days", Int, Yes, No),
            ("early_cost", Num, Yes, No),
            ("needs_restore", Bool, Yes, No),
        ],
    ),
    ("class-bytes", &[("class", Str, Yes, No), ("bytes", Int, Yes, No)]),
    (
        "tier-apply",
        &[
            ("plan", Obj("tier-plan"), Yes, No),
            ("moved", Int, Yes, No),
            ("held_by_minimum", Int, Yes, No),
            ("held_archived", Int, Yes, No),
            ("early_cost", Num, Yes, No),
            ("forced", Bool, Yes, No),
        ],
    ),
    (
        "cold-restore",
        &[
            ("snapshot", Str, Yes, Yes),
            ("packs_needed", Int, Yes, Yes),
            ("archived", Arr("cold-pack"), Yes, Yes),
            ("bytes_waiting", Int, Yes, Yes),
            ("retrieval", Str, Yes, Yes),
            ("estimated_cost", Num, Yes, Yes),
            ("expected_wait", Str, Yes, Yes),
            ("requested", Int, Yes, Yes),
        ],
    ),
    (
        "cold-pack",
        &[
            ("pack", Str, Yes, Yes),
            ("bytes", Int, Yes, Yes),
            ("class", Str, Yes, Yes),
            ("status", Str, Yes, Yes),
        ],
    ),
];

/// Where a document came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Local,
    Server,
}

fn fields_of(doc: &str) -> Fields {
    SCHEMA
        .iter()
        .find(|(name, _)| *name == doc)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no document {doc:?} in the schema"))
}

fn type_ok(ty: Ty, v: &Value, mode: Mode, at: &str, problems: &mut Vec<String>) -> bool {
    match ty {
        Str => v.is_string(),
        Int => v.is_i64() || v.is_u64(),
        Num => v.is_number(),
        Bool => v.is_boolean(),
        Map => v.as_object().is_some_and(|o| o.values().all(Value::is_string)),
        StrOrNull => v.is_string() || v.is_null(),
        IntOrNull => v.is_i64() || v.is_u64() || v.is_null(),
        ArrOfStr => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Ranges => v.as_array().is_some_and(|a| {
            a.iter().all(|r| {
                r.as_array()
                    .is_some_and(|p| p.len() == 2 && p.iter().all(Value::is_u64))
            })
        }),
        Arr(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check_into(item, x, mode, &format!("{at}[{i}]"), problems);
                }
                true
            }
            None => false,
        },
        Obj(doc) => {
            check_into(doc, v, mode, at, problems);
            v.is_object()
        }
        MapOf(doc) => match v.as_object() {
            Some(o) => {
                for (k, x) in o {
                    check_into(doc, x, mode, &format!("{at}.{k}"), problems);
                }
                true
            }
            None => false,
        },
    }
}

fn check_into(doc: &str, v: &Value, mode: Mode, at: &str, problems: &mut Vec<String>) {
    let Some(obj) = v.as_object() else {
        problems.push(format!("{at}: a {doc} document must be an object, got {v}"));
        return;
    };
    let fields = fields_of(doc);
    for key in obj.keys() {
        if !fields.iter().any(|(name, ..)| name == key) {
            problems.push(format!("{at}: field {key:?} is not documented for {doc}"));
        }
    }
    for (name, ty, local, server) in fields {
        let has = if mode == Mode::Local { *local } else { *server };
        match (obj.get(*name), has) {
            (None, Yes) => problems.push(format!("{at}: {doc} lacks {name:?} ({mode:?})")),
            (Some(_), No) => problems.push(format!("{at}: {doc} must not have {name:?} ({mode:?})")),
            (Some(x), _) if !type_ok(*ty, x, mode, &format!("{at}.{name}"), problems) => {
                problems.push(format!("{at}: {doc}.{name} should be {ty:?}, is {x}"));
            }
            _ => {}
        }
    }
}

/// Asserts that `v` is a `doc` document of `mode`.
#[track_caller]
pub(crate) fn check(doc: &str, v: &Value, mode: Mode) {
    let mut problems = Vec::new();
    check_into(doc, v, mode, doc, &mut problems);
    assert!(problems.is_empty(), "{mode:?} {doc}:\n{}\nin {v}", problems.join("\n"));
}

/// Asserts that `v` is an array of `doc` documents, with at least one.
#[track_caller]
fn check_array(doc: &str, v: &Value, mode: Mode) {
    let items = v
        .as_array()
        .unwrap_or_else(|| panic!("{mode:?}: expected an array of {doc}: {v}"));
    assert!(!items.is_empty(), "{mode:?}: an empty array of {doc}");
    for item in items {
        check(doc, item, mode);
    }
}

// ---------------------------------------------------------------------------------------
// docs/json.md describes exactly this schema.

fn docs_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/json.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse_ty(text: &str) -> Ty {
    let named = |rest: &str| -> &'static str {
        SCHEMA
            .iter()
            .map(|(n, _)| *n)
            .find(|n| *n == rest)
            .unwrap_or_else(|| panic!("docs/json.md names an unknown document {rest:?}"))
    };
    match text {
        "string" => Str,
        "integer" => Int,
        "number" => Num,
        "boolean" => Bool,
        "object" => Map,
        "string or null" => StrOrNull,
        "integer or null" => IntOrNull,
        "array of string" => ArrOfStr,
        "array of ranges" => Ranges,
        other => match (
            other.strip_prefix("array of "),
            other.strip_prefix("object of "),
            other.strip_prefix("object "),
        ) {
            (Some(doc), _, _) => Arr(named(doc)),
            (_, Some(doc), _) => MapOf(named(doc)),
            (_, _, Some(doc)) => Obj(named(doc)),
            _ => panic!("docs/json.md: unknown type {other:?}"),
        },
    }
}

fn parse_has(text: &str) -> Has {
    match text {
        "yes" => Yes,
        "opt" => Opt,
        "no" => No,
        other => panic!("docs/json.md: presence {other:?} is not yes, opt or no"),
    }
}

type ParsedDoc = Vec<(String, Ty, Has, Has)>;

/// The field tables of docs/json.md: `### \`name\`` then `| \`field\` | type | local | server | meaning |`.
fn documented() -> BTreeMap<String, ParsedDoc> {
    let mut docs = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in docs_page().lines() {
        if let Some(name) = line.strip_prefix("### `").and_then(|r| r.strip_suffix('`')) {
            current = Some(name.to_string());
            docs.insert(name.to_string(), Vec::new());
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(doc), [_, field, ty, local, server, _meaning, _]) = (current.as_ref(), cells.as_slice()) else {
            continue;
        };
        let Some(field) = field.strip_prefix('`').and_then(|f| f.strip_suffix('`')) else {
            continue;
        };
        let row = (field.to_string(), parse_ty(ty), parse_has(local), parse_has(server));
        docs.get_mut(doc).expect("section").push(row);
    }
    docs
}

#[test]
fn docs_json_md_describes_exactly_the_checked_schema() {
    let page = documented();
    let ours: BTreeMap<String, ParsedDoc> = SCHEMA
        .iter()
        .map(|(name, fields)| {
            let rows = fields.iter().map(|(f, t, l, s)| (f.to_string(), *t, *l, *s)).collect();
            (name.to_string(), rows)
        })
        .collect();
    for (name, rows) in &ours {
        assert_eq!(
            page.get(name),
            Some(rows),
            "docs/json.md's table for `{name}` differs from the tests' schema"
        );
    }
    for name in page.keys() {
        assert!(
            ours.contains_key(name),
            "docs/json.md documents `{name}`, which the tests do not check"
        );
    }
}

// ---------------------------------------------------------------------------------------
// One fixture, two modes.

/// A repository, or a server with an admin token, and scratch space.
struct Ctx {
    mode: Mode,
    repo: Option<Repo>,
    server: Option<Server>,
    token: String,
    scratch: TempDir,
}

impl Ctx {
    fn new(mode: Mode) -> Ctx {
        let scratch = tempfile::Builder::new()
            .prefix("amber-cli-")
            .tempdir()
            .expect("tempdir");
        match mode {
            Mode::Local => Ctx {
                mode,
                repo: Some(Repo::init()),
                server: None,
                token: String::new(),
                scratch,
            },
            Mode::Server => {
                let server = Server::start();
                let token = server.admin();
                Ctx {
                    mode,
                    repo: None,
                    server: Some(server),
                    token,
                    scratch,
                }
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `amber --json ARGS` in this mode, not yet run.
    fn command(&self, args: &[&str]) -> Command {
        match (&self.repo, &self.server) {
            (Some(repo), _) => repo.command(args),
            (_, Some(server)) => {
                let mut all = vec!["--json"];
                all.extend_from_slice(args);
                server.client(&self.token, &all)
            }
            _ => unreachable!("a context is local or on a server"),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        run_command(self.command(args))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Value {
        self.run(args).expect_code(0).json()
    }

    /// `snapshot ARGS` locally, `push ARGS` through the server.
    #[track_caller]
    fn create(&self, args: &[&str]) -> Value {
        let verb = if self.mode == Mode::Local { "snapshot" } else { "push" };
        let mut all = vec![verb];
        all.extend_from_slice(args);
        let v = self.ok(&all);
        check("snapshot", &v, self.mode);
        v
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// The source tree every mode snapshots: files at several depths, a symlink, a hard link,
/// a name that is not UTF-8, a sparse-ish larger file; the root directory has its own
/// mode and mtime (the snapshot's root entry).
fn source_tree(root: &Path) {
    let mut rng = Rng::new(7);
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::write(root.join("sub/b.txt"), "beta\n").unwrap();
    fs::write(root.join("sub/deep/c.ipynb"), "{\"cells\": []}\n").unwrap();
    fs::write(root.join("sub/deep/d.txt"), "delta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    fs::write(root.join("hard-1"), "two names\n").unwrap();
    fs::hard_link(root.join("hard-1"), root.join("sub/hard-2")).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9.txt")), "latin-1 name\n").unwrap();
    // Several chunks with a run of zeros between random parts.
    let big = root.join("big.bin");
    write_random(&big, 6 * 1024 * 1024, &mut rng);
    let mut data = fs::read(&big).unwrap();
    data.splice(2 * 1024 * 1024..2 * 1024 * 1024, vec![0u8; 8 * 1024 * 1024]);
    fs::write(&big, &data).unwrap();
    fs::set_permissions(root, fs::Permissions::from_mode(0o750)).unwrap();
    same_times(root);
}

/// Every entry below `root` and `root` itself get the same mtime, so two copies made at
/// different moments list alike.
fn same_times(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            all.push(path);
        }
    }
    // Deepest first, directories after what they hold.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in all {
        set_mtime(&path, 1_500_000_000, 250);
    }
    set_mtime(root, 1_600_000_000, 123);
}

/// A small layer: a directory, files, a symlink, a hard link and a long PAX name.
fn layer(dir: &Path) -> PathBuf {
    let src = dir.join("layer-src");
    let long = "l".repeat(120);
    fs::create_dir_all(src.join("etc").join(&long)).unwrap();
    fs::write(src.join("etc/conf"), "key = value\n").unwrap();
    fs::write(src.join("etc").join(&long).join("f"), "deep\n").unwrap();
    std::os::unix::fs::symlink("conf", src.join("etc/conf-link")).unwrap();
    fs::hard_link(src.join("etc/conf"), src.join("etc/conf-hard")).unwrap();
    same_times(&src);
    let out = dir.join("layer.tar");
    let st = Command::new("tar")
        .args(["--format=pax", "-cf"])
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("etc")
        .status()
        .expect("tar");
    assert!(st.success());
    out
}

/// A 1 MiB volume: random blocks and zero blocks.
fn volume(dir: &Path) -> PathBuf {
    let img = dir.join("disk.img");
    let mut rng = Rng::new(9);
    let mut data = vec![0u8; 1024 * 1024];
    rng.fill(&mut data[..256 * 1024]);
    rng.fill(&mut data[768 * 1024..]);
    fs::write(&img, &data).unwrap();
    img
}

/// What every mode stored: ids of two tree snapshots, a layer and a volume.
struct Stored {
    tree1: String,
    tree2: String,
    layer: String,
    volume: String,
    src: PathBuf,
}

fn store_everything(c: &Ctx) -> Stored {
    let src = c.path("src");
    source_tree(&src);
    let tree1 = id(&c.create(&[s(&src), "--env", "lab", "--tag", "t1"]));
    fs::write(src.join("sub/b.txt"), "beta, edited\n").unwrap();
    fs::remove_file(src.join("sub/deep/d.txt")).unwrap();
    fs::write(src.join("new.txt"), "new\n").unwrap();
    same_times(&src);
    let tree2 = id(&c.create(&[s(&src), "--env", "lab", "--tag", "t2"]));
    let layer_id = id(&c.create(&["--tar", s(&layer(c.scratch.path()))]));
    let volume_id = id(&c.create(&["--block", s(&volume(c.scratch.path()))]));
    Stored {
        tree1,
        tree2,
        layer: layer_id,
        volume: volume_id,
        src,
    }
}

/// Runs every read command of both modes and checks the documents; returns the ones to
/// compare across modes.
fn read_documents(c: &Ctx, st: &Stored) -> BTreeMap<&'static str, Value> {
    let m = c.mode;
    let mut out = BTreeMap::new();
    let snaps = c.ok(&["snapshots"]);
    check_array("snapshot-info", &snaps, m);
    let ls = c.ok(&["ls", &st.tree2]);
    check_array("entry", &ls, m);
    let latin = ls.as_array().unwrap().iter().find(|e| e["path"] == "caf\\xe9.txt");
    let latin = latin.unwrap_or_else(|| panic!("{m:?}: the non-UTF-8 name is listed as text with \\xNN: {ls}"));
    assert_eq!(
        latin["path_base64"], "Y2Fm6S50eHQ=",
        "{m:?}: exact bytes in path_base64"
    );
    assert!(
        ls.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["path"] != latin["path"])
            .all(|e| e.get("path_base64").is_none())
    );
    out.insert("ls", ls);
    let ls_layer = c.ok(&["ls", &st.layer]);
    check_array("entry", &ls_layer, m);
    out.insert("ls-layer", ls_layer);
    let diff = c.ok(&["diff", &st.tree1, &st.tree2]);
    check("diff", &diff, m);
    out.insert("diff", diff);
    let found = c.ok(&["find", "*.txt"]);
    check_array("found", &found, m);
    out.insert("find", found);
    let tree = c.ok(&["restore", &st.tree2, s(&c.path("restored"))]);
    check("restore", &tree, m);
    assert_eq!(tree_differences(&st.src, &c.path("restored")), Vec::<String>::new());
    let tar = c.ok(&["restore", &st.layer, "--tar", s(&c.path("layer-out.tar"))]);
    check("restore-tar", &tar, m);
    let block = c.ok(&["restore", &st.volume, "--block", s(&c.path("disk-out.img"))]);
    check("restore-block", &block, m);
    if m == Mode::Local {
        let extracted = c.ok(&["restore", &st.layer, s(&c.path("layer-dir"))]);
        check("extract", &extracted, m);
    }
    let dump = c.run(&["dump", &st.tree2, "sub/b.txt"]);
    dump.expect_code(0);
    assert_eq!(dump.stdout, "beta, edited\n", "dump writes the content on stdout");
    let doc: Value = serde_json::from_str(dump.stderr.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("dump's document is the last line of stderr ({e})\n{dump}"));
    check("dump", &doc, m);
    out
}

fn check_errors(c: &Ctx) {
    let out = c.run(&["ls", "no-such-snapshot"]);
    out.expect_code(1);
    let v = out.json();
    check("error", &v, c.mode);
    assert_eq!(v["error"]["kind"], "not_found", "{out}");
    assert_eq!(v["error"]["exit_code"], 1, "{out}");
    assert!(
        out.stderr.starts_with("amber: "),
        "the message stays on stderr too\n{out}"
    );
    let usage = c.run(&["ls", "--no-such-flag"]);
    usage.expect_code(2);
    let v = usage.json();
    check("error", &v, c.mode);
    assert_eq!(v["error"]["kind"], "usage", "{usage}");
}

fn admin_documents(c: &Ctx) {
    let m = c.mode;
    let audit = c.ok(&["audit"]);
    check("audit", &audit, m);
    if m == Mode::Server {
        assert!(!audit["records"].as_array().unwrap().is_empty(), "{audit}");
    }
    let verified = c.run(&["verify", "--read-data"]);
    verified.expect_code(0);
    check("verify", &verified.json(), m);
    // Progress, alike in both modes (stderr is not a terminal: one line per phase).
    for phase in ["verify: packs ", "verify: snapshots "] {
        assert!(verified.stderr.contains(phase), "{phase:?} in {m:?}\n{verified}");
    }
    check("repair-snapshots", &c.ok(&["repair", "snapshots", "--dry-run"]), m);
    let dry = c.ok(&["compact", "--dry-run"]);
    check("compact", &dry, m);
    assert_eq!(dry["dry_run"], true, "{dry}");
    let compacted = c.run(&["compact"]);
    compacted.expect_code(0);
    check("compact", &compacted.json(), m);
    // Progress, alike in both modes (stderr is not a terminal: one line per phase).
    for phase in ["compact: snapshots ", "compact: packs "] {
        assert!(compacted.stderr.contains(phase), "{phase:?} in {m:?}\n{compacted}");
    }
    let stats = c.ok(&["stats"]);
    check("stats", &stats, m);
    assert!(!stats["by_kind"].as_object().unwrap().is_empty(), "{stats}");
    let dry_index = c.run(&["repair", "index", "--dry-run"]);
    check("repair-index", &dry_index.expect_code(0).json(), m);
    assert_eq!(dry_index.json()["dry_run"], true, "{dry_index}");
    let index = c.run(&["repair", "index"]);
    let rebuilt = index.expect_code(0).json();
    check("repair-index", &rebuilt, m);
    assert!(rebuilt["blobs"].as_u64().unwrap() > 0, "{index}");
    assert!(index.stderr.contains("repair index: packs "), "{m:?}\n{index}");
    if m == Mode::Local {
        check("index-rebuild", &c.ok(&["index", "rebuild"]), m);
        let pass = c.path("new-pass");
        fs::write(&pass, "another passphrase\n").unwrap();
        let added = c.ok(&[
            "key",
            "add",
            "--new-password-file",
            s(&pass),
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ]);
        check("key-added", &added, m);
        check_array("key", &c.ok(&["key", "list"]), m);
        let removed = c.ok(&["key", "remove", added["added"].as_str().unwrap()]);
        check("key-removed", &removed, m);
        let repo = Repo::uninitialised();
        let init = repo.run(&["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"]);
        check("init", &init.expect_code(0).json(), m);
    } else {
        let created = c.ok(&["token", "create", "--role", "restore", "--name", "reader"]);
        check("token-created", &created, m);
        check_array("token", &c.ok(&["token", "list"]), m);
        let revoked = c.ok(&["token", "revoke", created["info"]["id"].as_str().unwrap()]);
        check("token-revoked", &revoked, m);
        let list = c.ok(&["token", "list"]);
        let gone = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == created["info"]["id"])
            .unwrap();
        assert!(
            gone["revoked"].is_string() && gone["revoked_unix_nanos"].is_i64(),
            "{gone}"
        );
    }
}

/// The documents of one mode with what differs between two stores taken out: snapshot ids
/// (each store has its own keys) and the layer members' mtimes come from the same files.
fn comparable(mut v: Value, ids: &[(&str, &str)]) -> Value {
    fn walk(v: &mut Value, ids: &[(&str, &str)]) {
        match v {
            Value::String(s) => {
                if let Some((_, name)) = ids.iter().find(|(id, _)| id == s) {
                    *s = (*name).to_string();
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, ids)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, ids)),
            _ => {}
        }
    }
    walk(&mut v, ids);
    v
}

#[test]
fn json_documents_follow_the_schema_in_both_modes() {
    let local = Ctx::new(Mode::Local);
    let remote = Ctx::new(Mode::Server);
    let mut docs = Vec::new();
    for c in [&local, &remote] {
        let st = store_everything(c);
        let read = read_documents(c, &st);
        check_errors(c);
        admin_documents(c);
        let names = [
            (st.tree1.as_str(), "T1"),
            (st.tree2.as_str(), "T2"),
            (st.layer.as_str(), "L"),
        ];
        let read: BTreeMap<_, _> = read.into_iter().map(|(k, v)| (k, comparable(v, &names))).collect();
        docs.push(read);
        // The sources are made alike, so the listings match exactly.
        let _ = fs::remove_dir_all(&st.src);
    }
    for (name, l) in &docs[0] {
        assert_eq!(Some(l), docs[1].get(name), "`{name}` differs between the modes");
    }
    // The local token file of the stopped server prints the same token documents.
    let mut server = remote.server.unwrap();
    server.kill();
    let mut cmd = Command::new(amber_bin());
    cmd.args(["--json", "--repo"])
        .arg(server.data())
        .args(["token", "list"]);
    cmd.env_remove("AMBER_SERVER").stdin(Stdio::null());
    check_array("token", &run_command(cmd).expect_code(0).json(), Mode::Local);
}

// ---------------------------------------------------------------------------------------
// The same flags in both modes.

#[test]
fn every_flag_means_the_same_in_both_modes() {
    let modes = [Ctx::new(Mode::Local), Ctx::new(Mode::Server)];
    let mut seen: Vec<BTreeMap<&str, Value>> = Vec::new();
    for c in &modes {
        let src = c.path("src");
        source_tree(&src);
        let excludes = c.path("excludes");
        fs::write(&excludes, "# comment\n*.ipynb\n").unwrap();
        let labels = [
            "--env",
            "lab-x",
            "--tag",
            "t1",
            "--tag",
            "t0",
            "--lab",
            "genomics",
            "--researcher",
            "ada",
            "--meta",
            "exp=42",
            "--exclude",
            "big.bin",
            "--exclude-file",
        ];
        let mut args = vec![s(&src)];
        args.extend_from_slice(&labels);
        args.push(s(&excludes));
        let first = id(&c.create(&args));
        let forced = c.create(&[s(&src), "--env", "lab-x", "--force"]);
        let second = id(&c.create(&[s(&src), "--env", "lab-x", "--parent", &first]));
        let image = volume(c.scratch.path());
        let vol = id(&c.create(&["--block", s(&image)]));
        let mut docs = BTreeMap::new();
        let listed = c.ok(&["snapshots", "--env", "lab-x"]);
        assert_eq!(
            listed.as_array().unwrap().len(),
            3,
            "{:?}: --env filters: {listed}",
            c.mode
        );
        let labelled = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == first.as_str())
            .unwrap();
        for (k, v) in [("lab", "genomics"), ("researcher", "ada"), ("environment", "lab-x")] {
            assert_eq!(labelled[k], v, "{:?}: {labelled}", c.mode);
        }
        assert_eq!(labelled["tags"], serde_json::json!(["t0", "t1"]));
        assert_eq!(labelled["metadata"]["exp"], "42");
        let parent = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == second.as_str())
            .unwrap();
        assert_eq!(parent["parent"], first.as_str(), "{:?}: --parent recorded", c.mode);
        assert_eq!(forced["already_stored"], false);
        let ls = c.ok(&["ls", &first, "sub"]);
        docs.insert("ls-sub", ls.clone());
        let paths: Vec<&str> = ls
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert!(
            !paths.contains(&"sub/deep/c.ipynb"),
            "{:?}: --exclude-file applied: {paths:?}",
            c.mode
        );
        assert!(
            !c.ok(&["ls", &first]).to_string().contains("big.bin"),
            "--exclude applied"
        );
        docs.insert("ls-latest-env", c.ok(&["--env", "lab-x", "ls", "latest", "sub/deep"]));
        docs.insert("diff-env", c.ok(&["--env", "lab-x", "diff", &first, "latest"]));
        let found = c.ok(&["find", "*.txt", "--snapshot", &first, "--snapshot", &second]);
        assert!(
            found
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["snapshot"] == first.as_str() || f["snapshot"] == second.as_str())
        );
        docs.insert("find-env", c.ok(&["--env", "lab-x", "find", "sub/*.txt"]));
        let dest = c.path("included");
        let r = c.ok(&[
            "restore",
            &second,
            s(&dest),
            "--include",
            "sub/deep",
            "--include",
            "/a.txt",
        ]);
        docs.insert("include-files", r["files"].clone());
        let out = c.path("vol.img");
        c.ok(&["restore", &vol, "--block", s(&out), "--seed", s(&image)]);
        assert_eq!(fs::read(&out).unwrap(), fs::read(&image).unwrap());
        let dump = c.run(&["--env", "lab-x", "dump", "latest", "/sub/b.txt"]);
        assert_eq!(dump.expect_code(0).stdout, "beta\n");
        for refused in [
            vec!["restore", second.as_str(), "--tar", "x.tar", "--include", "a.txt"],
            vec!["restore", vol.as_str(), "--block", "x.img", "--include", "a.txt"],
        ] {
            let out = c.run(&refused);
            out.expect_code(1);
            assert!(out.stderr.contains("--include"), "{out}");
        }
        for args in [
            &["verify"][..],
            &["verify", "--read-data"],
            &["verify", "--read-data-subset", "1/1"],
        ] {
            let v = c.ok(args);
            let all_read = v["packs_read"] == v["packs"];
            let kept = serde_json::json!({"clean": v["clean"], "snapshots": v["snapshots"], "all_read": all_read});
            docs.insert(args.last().unwrap(), kept);
        }
        seen.push(docs);
    }
    for (name, local) in &seen[0] {
        let strip = |v: &Value| -> Value {
            let mut v = v.clone();
            if let Value::Array(items) = &mut v {
                for i in items {
                    if let Value::Object(o) = i {
                        o.remove("snapshot");
                    }
                }
            }
            if let Value::Object(o) = &mut v {
                o.remove("from");
                o.remove("to");
            }
            v
        };
        assert_eq!(
            strip(local),
            strip(&seen[1][name]),
            "`{name}` differs between the modes"
        );
    }
}

// ---------------------------------------------------------------------------------------
// find, dump, ls of a layer, --include and the root entry, times, the passphrase prompt.

fn paths_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn find_matches_names_at_any_depth_and_paths_from_the_root() {
    for mode in [Mode::Local, Mode::Server] {
        let c = Ctx::new(mode);
        let src = c.path("src");
        source_tree(&src);
        let one = id(&c.create(&[s(&src), "--env", "a"]));
        fs::write(src.join("sub/deep/e.ipynb"), "{}\n").unwrap();
        let two = id(&c.create(&[s(&src), "--env", "b"]));
        let found = c.ok(&["find", "*.ipynb"]);
        let pairs: Vec<(String, String)> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["snapshot"].as_str().unwrap().to_string(),
                    f["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected = vec![
            (one.clone(), "sub/deep/c.ipynb".to_string()),
            (two.clone(), "sub/deep/c.ipynb".to_string()),
            (two.clone(), "sub/deep/e.ipynb".to_string()),
        ];
        assert_eq!(
            pairs, expected,
            "{mode:?}: every snapshot, oldest first, names at any depth"
        );
        assert_eq!(
            paths_of(&c.ok(&["find", "sub/*.txt"])),
            vec!["sub/b.txt", "sub/b.txt"],
            "{mode:?}: * does not cross /"
        );
        assert_eq!(
            paths_of(&c.ok(&["find", "sub/**/*.txt", "--snapshot", &one])),
            vec!["sub/b.txt", "sub/deep/d.txt"],
            "{mode:?}: ** crosses /, --snapshot restricts"
        );
        assert_eq!(
            paths_of(&c.ok(&["--env", "b", "find", "e.*"])),
            vec!["sub/deep/e.ipynb"],
            "{mode:?}: --env"
        );
        let none = c.ok(&["find", "nothing-like-this"]);
        assert_eq!(none, serde_json::json!([]), "{mode:?}: no match is an empty array");
        let bad = c.run(&["find", "[unclosed"]);
        bad.expect_code(1);
        assert_eq!(bad.json()["error"]["kind"], "invalid_argument", "{bad}");
    }
}

#[test]
fn dump_writes_one_verified_file_and_refuses_a_directory() {
    for mode in [Mode::Local, Mode::Server] {
        let c = Ctx::new(mode);
        let src = c.path("src");
        source_tree(&src);
        let snap = id(&c.create(&[s(&src)]));
        let mut cmd = c.command(&["dump", &snap, "big.bin"]);
        cmd.stdout(Stdio::piped());
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == fs::read(src.join("big.bin")).unwrap(),
            "{mode:?}: dump of a multi-chunk file with a hole"
        );
        let linked = c.run(&["dump", &snap, "sub/hard-2"]);
        assert_eq!(
            linked.expect_code(0).stdout,
            "two names\n",
            "{mode:?}: the later name of a hard link"
        );
        let dir = c.run(&["dump", &snap, "sub"]);
        dir.expect_code(1);
        let msg = dir.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("is a directory"), "{mode:?}: {dir}");
        let missing = c.run(&["dump", &snap, "sub/nope"]);
        missing.expect_code(1);
        assert_eq!(missing.json()["error"]["kind"], "not_found", "{mode:?}: {missing}");
        let link = c.run(&["dump", &snap, "link"]);
        link.expect_code(1);
        assert!(link.stderr.contains("symlink"), "{mode:?}: {link}");
    }
}

#[test]
fn ls_lists_the_members_of_a_layer() {
    for mode in [Mode::Local, Mode::Server] {
        let c = Ctx::new(mode);
        let tar = layer(c.scratch.path());
        let snap = id(&c.create(&["--tar", s(&tar)]));
        let all = c.ok(&["ls", &snap]);
        let long = format!("etc/{}", "l".repeat(120));
        let by_path = |p: &str| -> Value {
            all.as_array()
                .unwrap()
                .iter()
                .find(|e| e["path"] == p)
                .cloned()
                .unwrap_or_else(|| panic!("{mode:?}: no member {p} in {all}"))
        };
        assert_eq!(by_path("etc")["type"], "d");
        assert_eq!(by_path("etc/conf-link")["type"], "l");
        assert_eq!(by_path("etc/conf-link")["link_target"], "conf");
        // tar archives the two names in directory order: the second is the hard link.
        let (a, b) = (by_path("etc/conf"), by_path("etc/conf-hard"));
        let (file, hard) = if a.get("link_target").is_some() { (b, a) } else { (a, b) };
        assert_eq!(file["size"], 12, "{file}");
        assert_eq!(
            (hard["type"].as_str(), hard["size"].as_u64()),
            (Some("-"), Some(0)),
            "{hard}"
        );
        assert_eq!(
            hard["link_target"], file["path"],
            "a hard link names the member it links to"
        );
        assert_eq!(by_path(&format!("{long}/f"))["size"], 5, "PAX long names apply");
        assert_eq!(by_path("etc/conf")["mtime_unix_nanos"], 1_500_000_000_000_000_000i64);
        let below = c.ok(&["ls", &snap, &long]);
        assert_eq!(
            paths_of(&below),
            vec![format!("{long}/f")],
            "{mode:?}: ls SNAPSHOT PATH of a layer"
        );
        let missing = c.run(&["ls", &snap, "usr"]);
        missing.expect_code(1);
        assert_eq!(missing.json()["error"]["kind"], "not_found", "{mode:?}: {missing}");
        let dumped = c.run(&["dump", &snap, hard["path"].as_str().unwrap()]);
        if mode == Mode::Local {
            assert_eq!(
                dumped.expect_code(0).stdout,
                "key = value\n",
                "dump follows a layer's hard link"
            );
        } else {
            dumped.expect_code(1);
            assert!(dumped.stderr.contains("not available with --server"), "{dumped}");
            let extract = c.run(&["restore", &snap, s(&c.path("layer-dir"))]);
            extract.expect_code(1);
            assert!(
                extract.stderr.contains("--tar OUT"),
                "a layer through a server: {extract}"
            );
        }
    }
}

#[test]
fn include_selects_the_same_paths_through_a_server_and_the_root_entry_is_applied() {
    let mut restored = Vec::new();
    for mode in [Mode::Local, Mode::Server] {
        let c = Ctx::new(mode);
        let src = c.path("src");
        source_tree(&src);
        let snap = id(&c.create(&[s(&src)]));
        let whole = c.path("whole");
        c.ok(&["restore", &snap, s(&whole)]);
        let root = fs::metadata(&whole).unwrap();
        assert_eq!(
            root.permissions().mode() & 0o7777,
            0o750,
            "{mode:?}: the root entry's mode"
        );
        assert_eq!(
            (root.mtime(), root.mtime_nsec()),
            (1_600_000_000, 123),
            "{mode:?}: the root entry's mtime"
        );
        let part = c.path("part");
        let v = c.ok(&[
            "restore",
            &snap,
            s(&part),
            "--include",
            "sub/deep",
            "--include",
            "hard-*",
        ]);
        let mut got: Vec<String> = crate::common::walk_tree(&part)
            .keys()
            .map(|p| p.display().to_string())
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec!["hard-1", "sub", "sub/deep", "sub/deep/c.ipynb", "sub/deep/d.txt"],
            "{mode:?}: a matching directory brings what is below it"
        );
        assert_eq!(
            fs::metadata(part.join("sub/deep")).unwrap().mtime(),
            1_500_000_000,
            "{mode:?}: {v}"
        );
        let linked = c.path("linked");
        c.ok(&["restore", &snap, s(&linked), "--include", "sub/hard-2"]);
        assert_eq!(
            fs::read_to_string(linked.join("sub/hard-2")).unwrap(),
            "two names\n",
            "{mode:?}: a later hard-link name alone"
        );
        let none = c.path("none");
        let out = c.run(&["restore", &snap, s(&none), "--include", "no/such/*"]);
        out.expect_code(1);
        let err = out.json();
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--include no/such/* matches no path of the snapshot: nothing was restored"),
            "{mode:?}: {out}"
        );
        assert!(!none.exists(), "{mode:?}: nothing was created");
        restored.push((c, part));
    }
    let (a, b) = (&restored[0].1, &restored[1].1);
    assert_eq!(
        tree_differences(a, b),
        Vec::<String>::new(),
        "--include restores the same tree in both modes"
    );
}

#[test]
fn snapshots_show_the_kind_and_local_times_with_their_offset() {
    for mode in [Mode::Local, Mode::Server] {
        let c = Ctx::new(mode);
        let src = c.path("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        c.create(&[s(&src)]);
        c.create(&["--tar", s(&layer(c.scratch.path()))]);
        c.create(&["--block", s(&volume(c.scratch.path()))]);
        // A POSIX TZ string: five and a half hours east of UTC, no tz database needed.
        let mut text = c.command(&["snapshots"]);
        let args: Vec<String> = text
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| a != "--json")
            .collect();
        let mut plain = Command::new(text.get_program());
        plain.args(&args).env("TZ", "IST-5:30").stdin(Stdio::null());
        for (k, v) in text.get_envs() {
            match v {
                Some(v) => plain.env(k, v),
                None => plain.env_remove(k),
            };
        }
        let out = run_command(plain);
        out.expect_code(0);
        let header = out.stdout.lines().next().unwrap();
        assert!(header.contains("KIND") && header.contains("TIME"), "{out}");
        for kind in ["tree", "tar", "block"] {
            assert!(
                out.stdout.lines().any(|l| l.contains(&format!(" {kind} "))),
                "{mode:?}: a {kind} row\n{out}"
            );
        }
        assert!(
            out.stdout.contains("+05:30"),
            "{mode:?}: local times with their offset\n{out}"
        );
        text.env("TZ", "IST-5:30");
        let json = run_command(text).expect_code(0).json();
        for snap in json.as_array().unwrap() {
            let t = snap["time"].as_str().unwrap();
            assert!(
                t.ends_with("+05:30") && t.contains('T'),
                "{mode:?}: RFC 3339 with the offset: {t}"
            );
            assert!(snap["time_unix_nanos"].as_i64().unwrap() > 1_700_000_000_000_000_000);
        }
    }
}

/// Runs `amber ARGS` on a pseudo-terminal (`script`), typing `answers` one line each time
/// the program prints `prompt`; returns what the terminal showed and the exit status.
fn on_terminal(repo: &Repo, args: &[&str], answers: &[&str]) -> (String, i32) {
    let mut line = format!("{} --repo {}", amber_bin().display(), repo.path.display());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env_remove("AMBER_PASSWORD")
        .env_remove("AMBER_PASSWORD_FILE")
        .env_remove("AMBER_NEW_PASSWORD")
        .env_remove("AMBER_REPO")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs amber on a pseudo-terminal");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for answer in answers {
        let prompts_before = String::from_utf8_lossy(&shown).matches("passphrase").count();
        while String::from_utf8_lossy(&shown).matches("passphrase").count() == prompts_before {
            assert!(
                Instant::now() < deadline,
                "no prompt: {}",
                String::from_utf8_lossy(&shown)
            );
            if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(100)) {
                shown.extend(bytes);
            }
        }
        // Give the program the moment it needs to turn echo off after printing the prompt.
        std::thread::sleep(Duration::from_millis(200));
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(500)) {
        shown.extend(bytes);
    }
    (
        String::from_utf8_lossy(&shown).into_owned(),
        status.code().unwrap_or(-1),
    )
}

#[test]
fn a_passphrase_is_asked_on_the_terminal_without_echo() {
    let repo = Repo::uninitialised();
    let secret = "s3cret-typed-at-the-terminal";
    let (shown, code) = on_terminal(
        &repo,
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
        &[secret, secret],
    );
    assert_eq!(code, 0, "init asks twice: {shown}");
    assert!(shown.contains("again"), "a confirmation is asked: {shown}");
    assert!(!shown.contains(secret), "the passphrase is not echoed: {shown}");
    let (shown, code) = on_terminal(&repo, &["snapshots"], &[secret]);
    assert_eq!(code, 0, "opening asks once: {shown}");
    assert!(shown.contains("0 snapshots"), "{shown}");
    let (shown, code) = on_terminal(&repo, &["snapshots"], &["wrong passphrase"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("wrong passphrase"), "{shown}");
    let other = Repo::uninitialised();
    let (shown, code) = on_terminal(&other, &["init"], &["one", "two"]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("do not match"), "{shown}");
    assert!(!other.path.join("config").exists(), "nothing was created");
    // Without a terminal, the error stays as it was.
    let out = other.run_with(None, &["snapshots"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("no passphrase") || out.stderr.contains("no repository"),
        "{out}"
    );
}
