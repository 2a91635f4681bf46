//! End-to-end tests of `amber serve` driven by the real `amber` client (and, for malformed
//! input, a raw gRPC client).

#![allow(dead_code)]

mod bad_input;
pub mod faults;
mod flows;
pub mod harness;
pub mod integrity;
mod isolation;
mod load;
mod ops;
mod tls;
