//! End-to-end tests: the real `amber` binary (build it first with
//! `cargo build -p amber-server`, or point `AMBER_BIN` at it) against real repositories in
//! temporary directories.

// Test code: a panic is the failure report. (clippy.toml allows these only inside
// `#[test]` functions; the shared helpers need them too.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_local;
mod bad_input;
mod block;
mod cli;
mod common;
mod compact;
mod crash;
mod dedup;
mod environment;
mod forget;
mod image;
mod index;
pub mod integrity;
mod keys;
mod repair;
mod repair_snapshots;
mod roundtrip;
mod s3;
mod security;
mod server;
mod stats;
mod stores;
mod tar;
mod verify;
