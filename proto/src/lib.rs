//! Amber's wire protocol, package `amber.v1`: generated from the `.proto` files in this
//! crate, which are the contract (every field documented there).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `amber.v1`.
pub mod v1 {
    tonic::include_proto!("amber.v1");
}

/// The encoded file descriptor set of every Amber `.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("amber_descriptor");
