//! The library half of the `amber` binary: the gRPC server (`amber serve`), so that its
//! decoders can be fuzzed and its parts tested on their own. The command line and the
//! client live in the binary.

pub mod serve;
